"""Shared test fixtures: where the recorded provider traffic lives, and how to
start our servers (mock, proxy) as subprocesses on ephemeral ports."""
from __future__ import annotations

import os
import re
import subprocess
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


class ServerProcess:
    """A server started as `python -m app <args> --port 0`; its URL is read from
    the 'listening on http://…' line it prints first."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 20.0):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args, "--port", "0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})},
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
