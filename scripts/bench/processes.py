"""The servers a run starts (free loopback ports), their health and their CPU/RSS."""
from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from scripts.bench.defaults import REPO


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def _child_setup() -> None:
    raise_nofile()
    os.setsid()  # its own process group: stop() ends it and anything it spawned


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LISTENING = re.compile(r"listening on (http://[^\s)]+)")


class Server:
    """A server subprocess (its own process group), its log in a file."""

    def __init__(self, name: str, argv: list[str] | str, log_path: Path, env: dict[str, str] | None = None,
                 shell: bool = False):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, shell=shell,
                                     preexec_fn=_child_setup)
        self.url = ""

    def wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = _LISTENING.search(text)
            if m:
                self.url = m.group(1).rstrip("/")
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60) -> float:
        """Poll `check` until it is true; seconds since spawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if check():
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()


def http_ok(url: str, req: dict[str, Any] | None = None, timeout: float = 5) -> bool:
    """One blocking request (stdlib); True on a 2xx."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        if req is None:
            conn.request("GET", u.path or "/health")
        else:
            headers = {k: v for k, v in req["headers"].items() if k.lower() != "host"}
            conn.request(req["method"], req["path"], body=req["body"].encode(), headers=headers)
        resp = conn.getresponse()
        resp.read()
        return 200 <= resp.status < 300
    finally:
        conn.close()


class ProcStats:
    """CPU and memory of a process (and its children: a peer may fork workers)."""

    def __init__(self, pid: int):
        import psutil
        self._psutil = psutil
        self.proc = psutil.Process(pid)

    def _tree(self):
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except self._psutil.Error:
            pass
        return procs

    def cpu(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:
                pass
        return total

    def rss_mib(self) -> float:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except self._psutil.Error:
                pass
        return total / (1024 * 1024)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
