"""Shared test fixtures: where the recorded provider traffic lives, and how to
start our servers (mock, proxy) as subprocesses on ephemeral ports."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = REPO.parent / "shared" / "real-samples"


@pytest.fixture
def real_samples() -> Path:
    """Bytes recorded from the real services; tests using it skip when the folder is absent."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip("../shared/real-samples is not present")
    return REAL_SAMPLES


def every_split(data: bytes):
    """Yield the input as two chunks split at every byte boundary (and whole)."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


def stream_events(parser, chunks: list[bytes]) -> list:
    """Bytes, cut as given, through the SSE framer and a protocol's stream parser."""
    from app.upstream.framing import SSEFramer
    framer = SSEFramer()
    events: list = []
    for chunk in chunks:
        for frame in framer.feed(chunk):
            events += parser.feed(frame)
    for frame in framer.close():
        events += parser.feed(frame)
    return events + parser.close()


_LISTENING = re.compile(r"listening on (http://\S+)")
# Proxies started by tests keep their default state store (app/state.py) here, not in ~.
_DATA_HOME = tempfile.mkdtemp(prefix="interchange-test-data-")
atexit.register(shutil.rmtree, _DATA_HOME, True)
# Apps built in this process too: a default provider switched in a demo (kept in ~) never steers a test.
os.environ["XDG_DATA_HOME"] = _DATA_HOME


class ServerProcess:
    """A server started as `python -m app <args> --port 0` in the checkout (or as `command
    <args> --port 0` in `cwd`: an installed `interchange`); its URL is read from the
    'listening on http://…' line it prints first."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 20.0, *,
                 command: list[str] | None = None, cwd: Path = REPO):
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "app"]), *args, "--port", "0"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "XDG_DATA_HOME": _DATA_HOME, **(env or {})},
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        self.url = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = _LISTENING.search(line)
            if m:
                self.url = m.group(1).rstrip("/")
                break
        if not self.url:
            self.stop()
            raise RuntimeError("server did not start: " + "".join(self.lines))
        # Keep draining output so the child never blocks on a full pipe.
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    """A loopback port free right now (for servers that cannot bind port 0 and say which)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on an ephemeral loopback port, in a tmp dir, for the session.
    `python3 scripts/dev.py test` installs the Debian package when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/dev.py test installs it)")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("redis-server did not start: " + proc.stdout.read().decode(errors="replace"))
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("redis-server did not listen within 10 s")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
