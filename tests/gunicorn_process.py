"""A gunicorn process for the tests that need one (the README's command, several workers,
gunicorn's own HTTP parser): started on an ephemeral loopback port, waited on until
/health answers, stopped however the test ends."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

import psutil
import pytest
import requests

from tests.conftest import REPO, free_port

START_SECONDS = 30


@contextmanager
def running_gunicorn(args: list[str], env: Mapping[str, str]) -> Iterator[tuple[str, list[int]]]:
    """`python -m gunicorn *args` (its `-b` replaced by a free loopback port) with `env` over
    ours; yields (its URL, its worker pids). Skips when gunicorn is not installed."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed (pip install -e .[serve])")
    port = free_port()
    args = list(args)
    if "-b" in args:
        args[args.index("-b") + 1] = f"127.0.0.1:{port}"
    else:
        args[:0] = ["-b", f"127.0.0.1:{port}"]
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert proc.poll() is None, "gunicorn exited:\n" + proc.stdout.read()
            assert time.monotonic() < deadline, f"gunicorn did not answer /health within {START_SECONDS} s"
            try:
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield url, [c.pid for c in psutil.Process(proc.pid).children()]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
