"""The mock and proxy processes a matrix run starts (the standard ports unless given), and
the signal handling that stops them."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import requests

from scripts.matrix.defaults import MOCK_PORT, PROXY_PORT, REPO


class StartupError(Exception):
    pass


class _Server:
    """One child `python -m app ...`, its output kept in a temp file for error reports."""

    def __init__(self, name: str, args: list[str], port: int, env: Mapping[str, str] | None = None):
        """`port` 0: any free port, read from the 'listening on http://…' line the server prints."""
        self.name = name
        self.url = f"http://127.0.0.1:{port}" if port else ""
        if port and _port_in_use(port):
            raise StartupError(f"port {port} is already in use: is a {name} already running? "
                               f"Use --proxy-url/--mock-url to test running servers")
        self.output = tempfile.TemporaryFile()
        # Own session: a terminal Ctrl-C reaches only us, and we stop the children in order.
        self.proc = subprocess.Popen([sys.executable, "-m", "app", *args, "--port", str(port)], cwd=REPO,
                                     stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartupError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            if not self.url:
                found = _LISTENING.search(self.tail())
                if not found:
                    time.sleep(0.05)
                    continue
                self.url = found.group(1).rstrip("/")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise StartupError(f"{self.name} did not answer GET /health within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.output.seek(0)
        return "\n".join(self.output.read().decode("utf-8", "replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


_LISTENING = re.compile(r"listening on (http://[^\s(]+)")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Servers:
    """Starts the mock and the proxy (the standard ports unless given; 0: any free port);
    stops both on exit, however we exit."""

    def __init__(self, config_path: Path, mock_port: int = MOCK_PORT, proxy_port: int = PROXY_PORT,
                 mock_args: Sequence[str] = ()):
        self.config_path = config_path
        self.ports = (mock_port, proxy_port)
        self.mock_args = list(mock_args)  # e.g. --scenarios FOLDER
        self.started: list[_Server] = []

    def __enter__(self) -> tuple[str, str]:
        try:
            mock = self._start("mock", ["mock", *self.mock_args], self.ports[0])
            proxy = self._start("proxy", ["serve", "--config", str(self.config_path)], self.ports[1],
                                {"MOCK_URL": mock.url})
        except BaseException:
            self.stop()
            raise
        return proxy.url, mock.url

    def _start(self, name: str, args: list[str], port: int, env: Mapping[str, str] | None = None) -> _Server:
        server = _Server(name, args, port, env)
        self.started.append(server)
        server.wait_healthy()
        return server

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        while self.started:
            self.started.pop().stop()


class Interrupted(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so every `finally` runs."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}


def restore_signal_handlers(previous: Mapping[int, Any]) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)
