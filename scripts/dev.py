#!/usr/bin/env python3
"""The README's two commands, needing nothing but Python 3.11+:

    python3 scripts/dev.py demo   # install, start mock + proxy, run the matrix, keep the proxy up
    python3 scripts/dev.py test   # install, run the whole test suite (extra args go to pytest)

and the benchmark:

    python3 scripts/dev.py bench  # install (+ the bench extras), run `python -m scripts.bench` (extra args go to it)

Each creates `.venv` and installs the project into it (again only when
pyproject.toml changed or more extras are needed). Standard library only: this runs before anything
is installed.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".interchange-installed"
MOCK_PORT = 8888
PROXY_PORT = 9001


def ensure_installed(extras: tuple[str, ...] = ("test", "serve", "oci")) -> None:  # serve: the gunicorn test
    """Create the venv and install the project with `extras`, once per pyproject change."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists():
        stamp = STAMP.read_text().split()
        if stamp[:1] == [digest] and set(extras) <= set(stamp[1:]):
            return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    print(f"installing interchange and its {', '.join(extras)} dependencies into .venv ...", flush=True)
    subprocess.check_call([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "-e", f"{REPO}[{','.join(extras)}]"])
    STAMP.write_text(" ".join((digest, *extras)))


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url}: no answer on /health within {timeout:.0f} s")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def demo(args: list[str]) -> int:
    """Mock (8888) + proxy (9001, config-mock.toml), the matrix against them, then serve until Ctrl-C."""
    ensure_installed()
    # Stop the servers on a polite kill or a closed terminal too, not only on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    mock_url, proxy_url = f"http://127.0.0.1:{MOCK_PORT}", f"http://127.0.0.1:{PROXY_PORT}"
    procs = [
        subprocess.Popen([str(PY), "-m", "app", "mock", "--port", str(MOCK_PORT)], cwd=REPO,
                         stdout=subprocess.DEVNULL),
        subprocess.Popen([str(PY), "-m", "app", "serve", "--config", "config-mock.toml",
                          "--port", str(PROXY_PORT)], cwd=REPO, stdout=subprocess.DEVNULL),
    ]
    try:
        wait_healthy(mock_url, procs[0])
        wait_healthy(proxy_url, procs[1])
        code = subprocess.call([str(PY), "-m", "scripts.matrix", "--proxy-url", proxy_url,
                                "--mock-url", mock_url, *args], cwd=REPO)
        print(f"\nThe proxy is up at {proxy_url} (mock providers at {mock_url}). Try:\n"
              f"  curl -s {proxy_url}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
              f"    -d '{{\"model\":\"claude-haiku-4-5\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}}]}}'\n"
              f"Admin: the page at {proxy_url}/admin, the API at {proxy_url}/admin/provider-settings, with\n"
              f"  {_admin_key_hint()}\n"
              "Ctrl-C stops both.", flush=True)
        if code != 0:
            print(f"(the matrix exited with {code}: some cells failed)", flush=True)
        signal.pause() if hasattr(signal, "pause") else procs[1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def _admin_key_hint() -> str:
    """How the demo's admin key is set (config-mock.toml: INTERCHANGE_ADMIN_KEY, default mock-admin-key);
    a key of the user's own is not printed."""
    if os.environ.get("INTERCHANGE_ADMIN_KEY"):
        return "Authorization: Bearer <your INTERCHANGE_ADMIN_KEY> (the page asks for the same key)"
    return ("Authorization: Bearer mock-admin-key (the page asks for the same key; set INTERCHANGE_ADMIN_KEY "
            "before `dev.py demo` for another)")


def ensure_redis_server() -> None:
    """The state-store tests run a real redis-server."""
    ensure_debian_package("redis-server", "redis-server", "the Redis tests")


def ensure_chromium() -> None:
    """The admin page's browser test drives Debian's Chromium with Playwright (never a browser
    download: `playwright install` is not used)."""
    ensure_debian_package("chromium", "chromium", "the admin page's browser test")


def ensure_debian_package(binary: str, package: str, who: str) -> None:
    """Install the Debian package that provides `binary` when it is missing (apt-get, as root,
    non-interactive). Where that is impossible `who` (the tests needing it) skip and say why."""
    import shutil

    if shutil.which(binary):
        return
    if not shutil.which("apt-get"):
        print(f"{binary} is missing and apt-get is not available: {who} will skip", flush=True)
        return
    if os.geteuid() != 0:
        print(f"{binary} is missing and installing it needs root (apt-get install {package}): "
              f"{who} will skip", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        print("running:", " ".join(cmd), flush=True)
        if subprocess.call(cmd, env=env) != 0:
            print(f"{' '.join(cmd)} failed: {who} will skip", flush=True)
            return


def test(args: list[str]) -> int:
    ensure_installed()
    ensure_redis_server()
    ensure_chromium()
    return subprocess.call([str(PY), "-m", "pytest", *args], cwd=REPO)


def bench(args: list[str]) -> int:
    ensure_installed(("test", "serve", "oci", "bench"))
    return subprocess.call([str(PY), "-m", "scripts.bench", *args], cwd=REPO)


def main() -> int:
    commands = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
