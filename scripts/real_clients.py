"""Real agent CLIs through the proxy: each client x each configured backend must finish a tool loop.

For every client (Claude Code, Gemini CLI, Codex) the runner
installs the pinned npm package into a cache outside the repository, writes a scenario folder in
which the mock's `function_calling` reply calls one of *that client's own* tools (a harmless read
of a file in a throwaway work folder), starts the mock on it and a proxy in front (ephemeral
ports), and runs the CLI non-interactively once per backend, with a model of that backend, its
own throwaway HOME and settings, and the internet out of reach (telemetry and updates off, and a
dead HTTP(S) proxy for anything not on loopback).

A cell passes when the mock's request log shows the loop really happened — a first upstream
request answered with the tool call, a later one carrying the file's contents as the tool result,
all at the backend's protocol — and the CLI exits 0 with the mock's final answer.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import requests
import yaml

from app.config import BackendConfig, Config, ConfigError, load_config
from mocks.scenarios import PROVIDERS, ScenarioLibrary
from scripts.matrix import DEFAULT_CONFIG, SCENARIOS, TABLE_MARK, UPSTREAM_KINDS, Servers, StartupError, _config_path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "interchange" / "real-clients"
RUN_TIMEOUT = 90.0  # seconds per CLI run (a cold Gemini CLI start is ~3 s; a passing run ~1-4 s)
INSTALL_TIMEOUT = 600.0
PROMPT = "Read the file notes.txt in the current folder and tell me what it says."
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so any non-loopback call fails fast
EXIT_OK, EXIT_FAILED, EXIT_SETUP = 0, 1, 2


# ----------------------------------------------------------------- clients


@dataclass(frozen=True)
class Client:
    """One CLI: its package, the protocol it speaks, and a tool of its own the mock asks it to run."""
    key: str
    label: str
    package: str
    version: str  # pinned: the version the issue and ../shared/protocols/real-clients.md describe
    binary: str
    tool: str
    # Capabilities every request of the CLI asks for (its default settings): a backend that does
    # not declare one refuses it at routing, so the cell is n/a, with that reason.
    asks_for: frozenset[str] = frozenset()

    def tool_arguments(self, file: Path) -> dict[str, Any]:
        raise NotImplementedError

    def setup(self, home: Path, proxy_url: str, model: str) -> dict[str, str]:
        """Write the client's settings under `home`; return its environment variables."""
        raise NotImplementedError

    def argv(self, binary: Path, model: str) -> list[str]:
        raise NotImplementedError

    def outcome(self, stdout: str) -> tuple[str | None, str | None]:
        """(final answer, error message) from the CLI's machine-readable output."""
        raise NotImplementedError


class ClaudeCode(Client):
    # Variables read by 2.1.197 (strings of its binary): the base URL and key, and everything
    # that would reach the internet (telemetry, error reports, updates, feature flags) off.
    def tool_arguments(self, file: Path) -> dict[str, Any]:
        return {"file_path": str(file)}

    def setup(self, home: Path, proxy_url: str, model: str) -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": proxy_url, "ANTHROPIC_API_KEY": "sk-ant-real-clients-test",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
                "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}

    def argv(self, binary: Path, model: str) -> list[str]:
        return [str(binary), "-p", PROMPT, "--model", model, "--output-format", "json"]

    def outcome(self, stdout: str) -> tuple[str | None, str | None]:
        result = _last_json(stdout)
        if not isinstance(result, dict):
            return None, _clip(stdout.strip() or "no output", 300)
        if result.get("is_error") or result.get("subtype") != "success":
            return None, _clip(str(result.get("result") or result.get("subtype")), 300)
        return str(result.get("result", "")), None


class GeminiCli(Client):
    # 0.61.0 reads GOOGLE_GEMINI_BASE_URL (genai SDK) and GEMINI_API_KEY; the auth type and the
    # update/usage-statistics switches live in ~/.gemini/settings.json.
    def tool_arguments(self, file: Path) -> dict[str, Any]:
        return {"file_path": str(file)}

    def setup(self, home: Path, proxy_url: str, model: str) -> dict[str, str]:
        settings = {"general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
                    "privacy": {"usageStatisticsEnabled": False},
                    "telemetry": {"enabled": False},
                    "security": {"auth": {"selectedType": "gemini-api-key"}}}
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))
        return {"GOOGLE_GEMINI_BASE_URL": proxy_url, "GEMINI_API_KEY": "real-clients-test-key",
                "GEMINI_TELEMETRY_ENABLED": "false", "GEMINI_CLI_TRUST_WORKSPACE": "true"}

    def argv(self, binary: Path, model: str) -> list[str]:
        return [str(binary), "-p", PROMPT, "-m", model, "--output-format", "json"]

    def outcome(self, stdout: str) -> tuple[str | None, str | None]:
        result = _last_json(stdout)
        if not isinstance(result, dict):
            return None, _clip(stdout.strip() or "no output", 300)
        if result.get("error"):
            error = result["error"]
            return None, _clip(str(error.get("message") if isinstance(error, dict) else error), 300)
        return str(result.get("response", "")), None


class Codex(Client):
    # Codex speaks only the Responses API (POST {base_url}/responses); a custom provider in
    # $CODEX_HOME/config.toml points it at the proxy (HTTP, no websockets, no retries so a
    # failure shows at once), with update checks, analytics, feedback and OpenTelemetry off
    # (keys read by 0.171.0: strings of its binary).
    def tool_arguments(self, file: Path) -> dict[str, Any]:
        return {"cmd": f"cat {file}"}

    def setup(self, home: Path, proxy_url: str, model: str) -> dict[str, str]:
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            f'model = "{model}"\nmodel_provider = "interchange"\ncheck_for_update_on_startup = false\n\n'
            f'[model_providers.interchange]\nname = "Interchange"\nbase_url = "{proxy_url}/v1"\n'
            f'env_key = "INTERCHANGE_API_KEY"\nwire_api = "responses"\nsupports_websockets = false\n'
            f'request_max_retries = 0\nstream_max_retries = 0\n\n'
            f'[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n[otel]\nexporter = "none"\n')
        return {"CODEX_HOME": str(codex_home), "INTERCHANGE_API_KEY": "real-clients-test-key"}

    def argv(self, binary: Path, model: str) -> list[str]:
        return [str(binary), "exec", "--skip-git-repo-check", "--json", "-m", model, PROMPT]

    def outcome(self, stdout: str) -> tuple[str | None, str | None]:
        answer, error = None, None
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            item = event.get("item") if isinstance(event, dict) else None
            if isinstance(item, dict) and item.get("type") == "agent_message":
                answer = str(item.get("text", ""))
            if isinstance(event, dict) and event.get("type") in ("error", "turn.failed"):
                detail = event.get("message") or event.get("error")
                error = str(detail.get("message", detail) if isinstance(detail, dict) else detail)
        if answer is None and error is None:
            error = _clip(stdout.strip() or "no output", 300)
        return answer, error


CLIENTS: dict[str, Client] = {c.key: c for c in (
    # Claude Code asks for adaptive thinking for other models' names: a backend without thinking
    # serves it without (Claude names get enabled thinking, which every Claude backend here has).
    ClaudeCode("claude-code", "Claude Code", "@anthropic-ai/claude-code", "2.1.197", "claude", "Read"),
    GeminiCli("gemini-cli", "Gemini CLI", "@google/gemini-cli", "0.61.0", "gemini", "read_file",
              asks_for=frozenset({"thinking"})),
    Codex("codex", "Codex", "@openai/codex", "0.171.0", "codex", "exec_command"),
)}


# ----------------------------------------------------------------- install


class InstallError(Exception):
    pass


def resolve_version(client: Client, latest: bool) -> str:
    if not latest:
        return client.version
    out = _npm(["view", f"{client.package}@latest", "version"], timeout=60)
    return out.strip().splitlines()[-1]


def install(client: Client, version: str, cache: Path = CACHE) -> Path:
    """The client's executable, installed once per version into the cache (atomically)."""
    folder = cache / f"{client.package.replace('/', '+')}@{version}"
    binary = folder / "node_modules" / ".bin" / client.binary
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=cache))
    try:
        _npm(["install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save", "--loglevel=error",
              f"{client.package}@{version}"], timeout=INSTALL_TIMEOUT)
        if not (staging / "node_modules" / ".bin" / client.binary).exists():
            raise InstallError(f"{client.package}@{version} installed no '{client.binary}' executable")
        try:
            staging.rename(folder)
        except OSError:
            if not binary.exists():  # not a concurrent install that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return binary


def _npm(args: list[str], timeout: float) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not installed (Node.js 20+ with npm is needed to install the CLIs)")
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    try:
        proc = subprocess.run([npm, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise InstallError(f"npm {' '.join(args)} took longer than {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise InstallError(f"npm {' '.join(args)} failed: {_clip(proc.stderr.strip(), 600)}")
    return proc.stdout


# ----------------------------------------------------------------- the mock's tool call


def retarget_tool_call(fixture: dict[str, Any], name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A `function_calling` fixture calling `name(arguments)` instead of its own tool.

    Works on every provider's wire shape: the tool name wherever the call is named, whole
    argument objects (`input`, `args`, Ollama's `arguments`, OCI Cohere's `parameters`) and Responses' final `arguments` replaced, and streamed
    argument fragments (`arguments` strings, `partial_json`, Bedrock's `input` strings, Responses
    argument deltas) rewritten so they still reassemble: the first non-empty fragment carries the
    whole JSON, the others become empty."""
    old = {c["name"] for c in fixture.get("expect", {}).get("tool_calls", [])}
    text = json.dumps(dict(arguments))

    def walk(value: Any, fragments: list[tuple[dict, str]]) -> Any:
        if isinstance(value, list):
            return [walk(v, fragments) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for k, v in value.items():
            if k == "name" and v in old:
                out[k] = name
            elif k in ("input", "args", "arguments", "parameters") and isinstance(v, dict) and v:  # Ollama's arguments, OCI Cohere's parameters
                out[k] = dict(arguments)
            elif k == "arguments" and isinstance(v, str) and (
                    value.get("status") == "completed" or value.get("type") == "response.function_call_arguments.done"):
                out[k] = text  # a Responses final value (finished item, .done event): the whole arguments
            elif (k in ("arguments", "partial_json", "input") and isinstance(v, str)) or (  # input: Bedrock's deltas
                    k == "delta" and value.get("type") == "response.function_call_arguments.delta"):
                out[k] = v
                fragments.append((out, k))
            else:
                out[k] = walk(v, fragments)
        return out

    result = dict(fixture)
    for part in ("body", "stream"):
        if part in fixture:
            fragments: list[tuple[dict, str]] = []
            result[part] = walk(fixture[part], fragments)
            nonempty = [(d, k) for d, k in fragments if d[k]]
            for d, k in fragments:
                d[k] = ""
            if nonempty:
                d, k = nonempty[0]
                d[k] = text
    expect = dict(fixture.get("expect", {}))
    expect["tool_calls"] = [{"name": name, "arguments": dict(arguments)}]
    result["expect"] = expect
    result["description"] = f"One tool call: {name} (the real client's own tool), for the real-clients run."
    return result


def write_scenarios(root: Path, client: Client, file: Path) -> ScenarioLibrary:
    """The bundled scenarios, with every provider's function_calling calling the client's tool."""
    shutil.copytree(SCENARIOS, root)
    for provider in PROVIDERS:
        path = root / provider / "function_calling.yaml"
        fixture = yaml.safe_load(path.read_text(encoding="utf-8"))
        fixture = retarget_tool_call(fixture, client.tool, client.tool_arguments(file))
        path.write_text(yaml.safe_dump(fixture, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return ScenarioLibrary(root)  # checks the shapes, as the mock will


# ----------------------------------------------------------------- one cell


@dataclass
class Cell:
    client: str
    version: str
    backend: str
    protocol: str
    model: str
    status: str  # pass | fail | n/a
    reason: str = ""
    seconds: float = 0.0
    upstream: list[str] = field(default_factory=list)  # "scenario status" of each logged generation

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_cell(client: Client, version: str, binary: Path, backend: BackendConfig, model: str,
             proxy_url: str, mock_url: str, library: ScenarioLibrary, file: Path, marker: str,
             scratch: Path) -> Cell:
    cell = Cell(client.key, version, backend.name, backend.protocol, model, "fail")
    home = scratch / f"home-{client.key}-{backend.name}"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "TMPDIR": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "https_proxy": DEAD_PROXY,
           "http_proxy": DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           **client.setup(home, proxy_url, model)}
    requests.delete(f"{mock_url}/_mock/requests", timeout=10).raise_for_status()
    started = time.monotonic()
    try:
        proc = subprocess.run(client.argv(binary, model), cwd=file.parent, env=env, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        stdout, returncode = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, returncode = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or ""), None
    cell.seconds = round(time.monotonic() - started, 1)
    log = [e for e in requests.get(f"{mock_url}/_mock/requests", timeout=10).json() if e.get("scenario")]
    cell.upstream = [f"{e['provider']}/{e['scenario']} {e['status']}" for e in log]
    answer, error = client.outcome(stdout)
    kind = UPSTREAM_KINDS[backend.kind]  # the mock's provider name and fixtures for the backend's kind
    final = library.get(kind.scenarios, "after_tool_result").expect["text"]
    cell.reason = _judge(log, kind.mock_provider, marker, returncode, answer, error, final)
    if not cell.reason:
        cell.status = "pass"
    return cell


def _judge(log: list[Mapping[str, Any]], provider: str, marker: str, returncode: int | None,
           answer: str | None, error: str | None, final: str) -> str:
    """'' when the tool loop happened and the CLI gave the final answer; else the first problem."""
    if returncode is None:
        return f"timed out after {RUN_TIMEOUT:.0f}s" + (f" ({error})" if error else "")
    if error:
        return f"{error} (exit {returncode})"
    wrong = sorted({e["provider"] for e in log if e["provider"] != provider})
    if wrong:
        return f"upstream requests reached the {', '.join(wrong)} mock, not {provider}"
    scenarios = [e["scenario"] for e in log]
    if "function_calling" not in scenarios:
        return f"no upstream request was answered with the tool call (mock saw: {scenarios or 'nothing'})"
    after = [e for e in log if e["scenario"] == "after_tool_result"]
    if not after:
        return "the CLI never sent the tool result back (no after_tool_result request)"
    if not any(marker in json.dumps(e.get("body"), ensure_ascii=False) for e in after):
        return "the tool result sent upstream lacks the file's contents (the tool did not run, or the result was lost in conversion)"
    if any(e["status"] != 200 for e in log):
        return "an upstream request was refused: " + ", ".join(f"{e['scenario']} {e['status']}" for e in log)
    if returncode != 0:
        return f"exit {returncode}"
    if (answer or "").strip() != final:
        return f"answer {_clip(answer or '', 120)!r}, expected {final!r}"
    return ""


# ----------------------------------------------------------------- the run


def _models(config: Config) -> list[tuple[BackendConfig, str]]:
    """A model of each backend: the first client-facing name in its model_mapping."""
    return [(b, next(iter(b.model_mapping))) for b in config.backends.values() if b.model_mapping]


def run_real_clients(config_path: Path, clients: Sequence[str] = tuple(CLIENTS), latest: bool = False,
                     cache: Path = CACHE, progress: Any = None) -> list[Cell]:
    """Every client x backend cell. Raises InstallError / StartupError when the run cannot start."""
    config = load_config(config_path)
    models = _models(config)
    runnable = [CLIENTS[k] for k in clients]
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="interchange-real-clients-") as tmp:
        scratch = Path(tmp)
        versions = {c.key: resolve_version(c, latest) for c in runnable}
        with ThreadPoolExecutor(max(1, len(runnable))) as pool:
            binaries = dict(zip(versions, pool.map(lambda c: install(c, versions[c.key], cache), runnable)))
        for c in runnable:
            work = scratch / f"work-{c.key}"
            work.mkdir()
            marker = f"interchange-marker-{secrets.token_hex(6)}"
            file = work / "notes.txt"
            file.write_text(f"The notes say: {marker}\n")
            library = write_scenarios(scratch / f"scenarios-{c.key}", c, file)
            with Servers(config_path, mock_port=0, proxy_port=0,
                         mock_args=["--scenarios", str(library.root)]) as (proxy_url, mock_url):
                for b, m in models:
                    if not b.has(c.asks_for):
                        missing = ", ".join(sorted(c.asks_for - b.capabilities))
                        # The CLI needs what the backend does not declare.
                        cells.append(Cell(c.key, versions[c.key], b.name, b.protocol, m, "n/a", f"needs {missing}"))
                        continue
                    cell = run_cell(c, versions[c.key], binaries[c.key], b, m, proxy_url, mock_url, library,
                                    file, marker, scratch)
                    cells.append(cell)
                    if progress:
                        progress.write(f"{c.label} {versions[c.key]} -> {b.name} ({m}): "
                                       f"{TABLE_MARK[cell.status]} {cell.seconds}s {cell.reason}\n")
                        progress.flush()
    order = {k: i for i, k in enumerate(CLIENTS)}
    return sorted(cells, key=lambda c: order[c.client])


def render_table(cells: Sequence[Cell]) -> str:
    """Rows clients, columns backends (`name (model)`), then every FAIL and n/a reason."""
    backends = list(dict.fromkeys((c.backend, c.model) for c in cells))
    rows = list(dict.fromkeys((c.client, c.version) for c in cells))
    by_key = {(c.client, c.backend): c for c in cells}
    labels = {r: f"{CLIENTS[r[0]].label} {r[1]}" for r in rows}
    heads = [f"{b} ({m})" for b, m in backends]

    def mark(cell: Cell | None) -> str:
        if cell is None:
            return ""
        return cell.reason if cell.status == "n/a" else TABLE_MARK[cell.status]
    first = max([len(v) for v in labels.values()] + [len("client")])
    widths = [max([len(h)] + [len(mark(by_key.get((r[0], b)))) for r in rows]) for h, (b, _) in zip(heads, backends)]
    lines = ["  ".join(["client".ljust(first)] + [h.ljust(w) for h, w in zip(heads, widths)]).rstrip(),
             "  ".join(["-" * first] + ["-" * w for w in widths])]
    for r in rows:
        marks = [mark(by_key.get((r[0], b))).ljust(w) for (b, _), w in zip(backends, widths)]
        lines.append("  ".join([labels[r].ljust(first)] + marks).rstrip())
    counts = {s: sum(1 for c in cells if c.status == s) for s in TABLE_MARK}
    lines += ["", f"{len(cells)} cells: {counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} n/a"]
    failed = [c for c in cells if c.status == "fail"]
    if failed:
        lines += ["", "FAIL:"] + [f"  {CLIENTS[c.client].label} -> {c.backend} ({c.model}): {c.reason}"
                                  for c in failed]
    return "\n".join(lines)


def _last_json(text: str) -> Any:
    """The last complete JSON value the CLI printed (its result), or None."""
    text = text.strip()
    start = text.rfind("\n{")
    for candidate in (text, text[start + 1:] if start >= 0 else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="test-real-clients", description="Run the real agent CLIs through the proxy and the mock, "
        "once per configured backend, each finishing a tool loop.",
        epilog=f"CLIs are installed with npm into {CACHE}/<package>@<version> (once). "
               "exit status: 0 every cell passed or is n/a; 1 a cell failed; 2 the run could not start.")
    p.add_argument("--client", action="append", choices=list(CLIENTS),
                   help="run only this client (repeatable; default: all)")
    p.add_argument("--latest", action="store_true", help="the newest published versions instead of the pinned ones")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"proxy config (default: {DEFAULT_CONFIG})")
    p.add_argument("--json", type=Path, metavar="PATH", help='write {"cells": [...]} to PATH')
    args = p.parse_args(argv)
    started = time.monotonic()
    try:
        cells = run_real_clients(_config_path(args.config), args.client or tuple(CLIENTS), args.latest,
                                 progress=sys.stderr)
    except (InstallError, StartupError, ConfigError) as e:
        print(f"test-real-clients: {e}", file=sys.stderr)
        return EXIT_SETUP
    print(render_table(cells))
    print(f"\n({time.monotonic() - started:.0f}s)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cells": [c.to_json() for c in cells]}, indent=2, ensure_ascii=False) + "\n")
    return EXIT_FAILED if any(c.status == "fail" for c in cells) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
