"""Running the matrix: the rows (backends and models), n/a rules, and one Cell per
frontend x row x capability."""
from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

import requests

from app.config import BackendConfig, Config, ModelEntry, load_config
from scripts.matrix.capabilities import CAPABILITIES, Capability
from scripts.matrix.checks import FixtureError, check_reply, check_upstream, load_expect
from scripts.matrix.defaults import DEFAULT_CONFIG, REQUEST_TIMEOUT, _config_path
from scripts.matrix.frontend import Frontend
from scripts.matrix.frontends import FRONTENDS
from scripts.matrix.kinds import UPSTREAM_KINDS
from scripts.matrix.reply import Reply, clip, decode, differ, headers_text


@dataclass
class Cell:
    frontend: str
    backend: str
    capability: str
    status: str  # pass | fail | n/a
    reason: str | None = None
    detail: str | None = None  # the exchange, for -v (not in the JSON report)
    model: str | None = None  # a registry model with capabilities of its own; None: the backend's first model

    @property
    def row(self) -> str:
        return f"{self.frontend} -> {self.backend}" + (f" ({self.model})" if self.model else "")

    def to_json(self) -> dict[str, Any]:
        return {"frontend": self.frontend, "backend": self.backend, "model": self.model,
                "capability": self.capability, "status": self.status, "reason": self.reason}


def backend_rows(config: Config, backend: BackendConfig) -> list[ModelEntry | None]:
    """The models that drive a backend's rows: its first mapped model (None here), then
    each registry model on it (`[models]`) that narrows the backend's capabilities (a model
    family that lacks one, behind the same backend). A registry model with the backend's
    capabilities is one of its names with request defaults (a reasoning effort, say): the
    seed tests check those; a row would repeat the backend's with the cells' requests changed."""
    entries = [m for m in config.models.values() if m.backend == backend.name]
    narrowing = [m for m in entries if m.capabilities is not None and m.capabilities != backend.capabilities]
    if backend.model_mapping:
        return [None] + narrowing
    return narrowing or entries[:1] or [None]


def not_applicable(backend: BackendConfig, capability: Capability, model: ModelEntry | None = None) -> str | None:
    """Why the backend (or the registry model on it) cannot serve the capability, or None
    when it can: the backend's wire may lack it (UPSTREAM_KINDS); else only declared
    capabilities count, and declaring none ("auto") can do anything."""
    kind = UPSTREAM_KINDS.get(backend.kind)
    if kind is not None and capability.name in kind.unsupported:
        return f"backend '{backend.name}' ({backend.kind}): {kind.unsupported[capability.name]}"
    if model is not None and model.capabilities:
        if capability.needs <= model.capabilities:
            return None
        missing = sorted(capability.needs - model.capabilities)
        return f"model '{model.name}' (backend '{backend.name}') does not declare {', '.join(missing)} in its capabilities"
    if backend.has(capability.needs):
        return None
    missing = sorted(capability.needs - backend.capabilities)
    return f"backend '{backend.name}' does not declare {', '.join(missing)} in its capabilities"


class Matrix:
    """Runs cells against a proxy and a mock that are already up."""

    def __init__(self, proxy_url: str, mock_url: str):
        self.proxy_url = proxy_url.rstrip("/")
        self.mock_url = mock_url.rstrip("/")
        self.session = requests.Session()

    def run_cell(self, frontend: Frontend, backend: BackendConfig, capability: Capability,
                 model: ModelEntry | None = None) -> Cell:
        cell = Cell(frontend.name, backend.name, capability.name, "n/a", model=model.name if model else None)
        cell.reason = frontend.unsupported.get(capability.name) or not_applicable(backend, capability, model)
        if cell.reason:
            return cell
        exchange: list[str] = []
        try:
            problems = self._exercise(frontend, backend, capability, model, exchange)
        except FixtureError as e:
            problems = [str(e)]
        except requests.RequestException as e:
            problems = [f"HTTP failure: {type(e).__name__}: {clip(str(e), 200)}"]
        except Exception as e:  # a reply the readers choke on is a finding, not a crash of the whole run
            problems = [f"could not read the exchange: {type(e).__name__}: {clip(str(e), 200)}"]
            exchange.append(traceback.format_exc())
        cell.status = "fail" if problems else "pass"
        cell.reason = "; ".join(dict.fromkeys(problems)) or None
        cell.detail = "\n".join(exchange) if problems else None
        return cell

    def _exercise(self, frontend: Frontend, backend: BackendConfig, capability: Capability,
                  entry: ModelEntry | None, exchange: list[str]) -> list[str]:
        if entry is not None:
            model, upstream_model = entry.name, entry.api_model
        elif backend.model_mapping:
            model = next(iter(backend.model_mapping))
            upstream_model = backend.model_mapping[model]
        else:
            return [f"backend '{backend.name}' has no model_mapping to drive it with"]
        kind = UPSTREAM_KINDS.get(backend.kind)
        if kind is None:
            return [f"the matrix cannot read requests of backend kind {backend.kind!r} (add it to UPSTREAM_KINDS)"]
        expect = load_expect(kind.scenarios, capability.scenario)
        if kind.thoughts_on_request and not frontend.asks_for_thoughts:
            expect = {**expect, "thinking": ""}  # thinking is on upstream (checked there); its text is not asked for
        missing = [k for k in capability.expect_keys if k not in expect]
        if missing:
            return [f"fixture {kind.scenarios}/{capability.scenario}.yaml expect: lacks {', '.join(missing)}"]
        req = frontend.request(capability.conversation, model)
        headers = {"Content-Type": "application/json", **req.headers}
        if capability.ask_mock:
            headers["X-Mock-Scenario"] = capability.scenario
        self._clear_log()
        url = self.proxy_url + req.path
        resp = self.session.post(url, data=json.dumps(req.body, ensure_ascii=False).encode(), headers=headers,
                                 stream=req.stream, timeout=REQUEST_TIMEOUT)
        raw = resp.content  # for a stream: the whole event stream, framing checked below
        log = self._log()
        exchange += [f"--> POST {url}", headers_text(headers), json.dumps(req.body, indent=2, ensure_ascii=False),
                     f"<-- HTTP {resp.status_code}", headers_text(resp.headers), clip(decode(raw), 6000),
                     "--- mock request log:", clip(json.dumps(log, indent=2, ensure_ascii=False), 6000)]
        reply = self._read(frontend, resp, raw, req.stream, model)
        return check_reply(reply, expect, frontend, capability.conversation, resp.headers) + \
            check_upstream(log, backend, upstream_model, capability)

    @staticmethod
    def _read(frontend: Frontend, resp: requests.Response, raw: bytes, stream: bool, model: str) -> Reply:
        text = decode(raw)
        content_type = resp.headers.get("Content-Type", "")
        if resp.status_code >= 400 or not stream:
            try:
                data = json.loads(text)
            except ValueError:
                reply = Reply(status=resp.status_code)
                reply.problem(f"HTTP {resp.status_code} body is not JSON: {clip(text, 120)!r}")
                if resp.status_code >= 400:
                    reply.error = {"status": resp.status_code, "type": None, "kind": None, "message": text}
                return reply
            reply = frontend.read_error(resp.status_code, data) if resp.status_code >= 400 \
                else frontend.read_reply(data, model)
            want_type = "application/json"
        else:
            reply = frontend.read_stream(text, model)
            want_type = "text/event-stream"
        reply.status = resp.status_code
        if not content_type.startswith(want_type):
            reply.problem(differ("Content-Type", want_type, content_type))
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reply.problem(f"reply is not valid UTF-8 ({e.reason} at byte {e.start})")
        return reply

    def _clear_log(self) -> None:
        self.session.delete(f"{self.mock_url}/_mock/requests", timeout=REQUEST_TIMEOUT).raise_for_status()

    def _log(self) -> list[Mapping[str, Any]]:
        resp = self.session.get(f"{self.mock_url}/_mock/requests", timeout=REQUEST_TIMEOUT)
        resp.raise_for_status()
        data = resp.json()
        return data.get("requests", []) if isinstance(data, dict) else data


def run_matrix(proxy_url: str, mock_url: str, config: Config | str | Path = DEFAULT_CONFIG, *,
               frontends: Sequence[str] | None = None, backends: Sequence[str] | None = None,
               capabilities: Sequence[str] | None = None, progress: TextIO | None = None) -> list[Cell]:
    """Run every selected cell against servers already running; returns the cells in table order."""
    if not isinstance(config, Config):
        config = load_config(_config_path(config))
    matrix = Matrix(proxy_url, mock_url)
    cells = []
    for f in frontends or list(FRONTENDS):
        for b in backends or list(config.backends):
            for model in backend_rows(config, config.backends[b]):
                if progress:
                    progress.write(f"{f} -> {b}" + (f" ({model.name})" if model else "") + ": ")
                    progress.flush()
                for c in capabilities or list(CAPABILITIES):
                    cell = matrix.run_cell(FRONTENDS[f], config.backends[b], CAPABILITIES[c], model)
                    cells.append(cell)
                    if progress:
                        progress.write(PROGRESS_MARK[cell.status])
                        progress.flush()
                if progress:
                    progress.write("\n")
    return cells


PROGRESS_MARK = {"pass": ".", "fail": "F", "n/a": "-"}
