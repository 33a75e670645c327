"""A client that leaves while the upstream is silent (issue 9, class 6).

20 clients at a time disconnect while their upstream call waits: for the first
byte (`slow_first_byte_long`: 60 s of silence) or mid-reply (`stall_mid_stream`:
60 s of silence after the first frames, or half the body), streamed and not,
on every frontend path and, in protocol mode, through every configured backend. The proxy's sockets to the mock
(counted with psutil on the proxy process) must be back to what they were
within 2 s; before, they stayed open until the backend timeout (30 s).
"""
from __future__ import annotations

import json
import shutil
from urllib.parse import urlsplit

import psutil
import pytest

from app.config import load_config
from mocks.scenarios import DEFAULT_ROOT
from tests.conftest import REPO, ServerProcess
from tests.integration.rawhttp import Connection, exchange, request, wait_until

CLIENTS = 20
GONE_WITHIN = 2.0

LONG_SILENCE = """\
description: "The text scenario, but nothing (not even headers) is sent for 60 s."
base: "text"
fault:
  type: "slow_first_byte"
  delay_ms: 60000
"""

HI = [{"role": "user", "content": "Hi"}]


# Protocol mode pins each configured backend in turn (`/anthropic/<backend>/v1/messages`),
# so a backend added to the demo config is covered here without a new test.
BACKENDS = {name: next(iter(b.model_mapping)) for name, b in load_config(REPO / "config-mock.toml").backends.items()}


def generation(frontend: str, stream: bool, scenario: str) -> bytes:
    """A generation request on `frontend`'s path: the plain paths each to another
    backend; `pinned:<backend>` in protocol mode, through that backend."""
    headers = {"Content-Type": "application/json", "X-Mock-Scenario": scenario}
    if frontend == "openai":  # to the Gemini backend
        path, body = "/v1/chat/completions", {"model": "gemini-2.5-flash", "stream": stream, "messages": HI}
    elif frontend == "anthropic":  # to the OpenAI backend
        path, body = "/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 50, "stream": stream, "messages": HI}
        headers["anthropic-version"] = "2023-06-01"
    elif frontend == "gemini":  # to the Anthropic backend
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path, body = f"/v1beta/models/claude-haiku-4-5:{action}", {"contents": [{"role": "user",
                                                                                 "parts": [{"text": "Hi"}]}]}
    else:
        backend = frontend.removeprefix("pinned:")
        path = f"/anthropic/{backend}/v1/messages"
        body = {"model": BACKENDS[backend], "max_tokens": 50, "stream": stream, "messages": HI}
        headers["anthropic-version"] = "2023-06-01"
    return request("POST", path, json.dumps(body).encode(), headers)


FRONTENDS = ["openai", "anthropic", "gemini"] + [f"pinned:{name}" for name in sorted(BACKENDS)]


@pytest.fixture(scope="module")
def silent(tmp_path_factory):
    """A mock with a 60 s first-byte silence beside the bundled scenarios, and a proxy on it."""
    root = tmp_path_factory.mktemp("disconnect") / "scenarios"
    shutil.copytree(DEFAULT_ROOT, root)
    for folder in root.iterdir():
        if folder.is_dir():
            (folder / "slow_first_byte_long.yaml").write_text(LONG_SILENCE)
    mock = ServerProcess(["mock", "--scenarios", str(root)])
    try:
        proxy = ServerProcess(["serve", "--config", "config-mock.toml"], env={"MOCK_URL": mock.url})
    except Exception:
        mock.stop()
        raise
    # One call through each backend first: a backend that fetches a token (Vertex) keeps its
    # token endpoint's connection, which must be in every baseline, not counted as a leak.
    for backend in BACKENDS:
        response, conn = exchange(proxy.url, generation(f"pinned:{backend}", False, "text"))
        conn.close()
        assert response.status == 200, response.body
    yield proxy, urlsplit(mock.url).port
    proxy.stop()
    mock.stop()
    assert "Traceback" not in proxy.output()


def upstream_sockets(proxy: ServerProcess, mock_port: int) -> int:
    """The proxy's TCP sockets to the mock, in any state."""
    conns = psutil.Process(proxy.proc.pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == mock_port)


def start_clients(proxy: ServerProcess, data: bytes) -> list[Connection]:
    clients = []
    for _ in range(CLIENTS):
        conn = Connection(proxy.url)
        conn.send(data)
        clients.append(conn)
    return clients


@pytest.mark.parametrize("scenario", ["slow_first_byte_long", "stall_mid_stream"])
@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "streamed"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_clients_that_leave_close_their_upstream_calls(silent, frontend, stream, scenario):
    proxy, mock_port = silent
    baseline = upstream_sockets(proxy, mock_port)
    clients = start_clients(proxy, generation(frontend, stream, scenario))
    try:
        assert wait_until(lambda: upstream_sockets(proxy, mock_port) >= CLIENTS, 10), "calls never in flight"
        if stream and scenario == "stall_mid_stream":
            for conn in clients:  # the stream has begun: the client leaves mid-stream
                assert conn.sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for conn in clients:
            conn.close()
    assert wait_until(lambda: upstream_sockets(proxy, mock_port) <= baseline, GONE_WITHIN), \
        f"{upstream_sockets(proxy, mock_port)} upstream sockets still open (baseline {baseline})"
    # The proxy serves on, and the abandoned connections were not pooled.
    response, conn = exchange(proxy.url, generation(frontend, False, "text"))
    conn.close()
    assert response.status == 200, response.body
    log = proxy.output()
    assert "call abandoned, the client left" in log
    assert "unreachable" not in log and "broke" not in log  # the client left: no backend is blamed


def test_a_reset_closes_the_upstream_call_too(silent):
    proxy, mock_port = silent
    baseline = upstream_sockets(proxy, mock_port)
    clients = start_clients(proxy, generation("openai", True, "slow_first_byte_long"))
    assert wait_until(lambda: upstream_sockets(proxy, mock_port) >= CLIENTS, 10)
    for conn in clients:
        conn.reset()
    assert wait_until(lambda: upstream_sockets(proxy, mock_port) <= baseline, GONE_WITHIN)


@pytest.mark.parametrize("frontend", ["openai", "pinned:gemini"])  # the fast path, and the Flask views
def test_a_pipelined_request_is_no_disconnect(silent, frontend):
    """Bytes of the client's next request arriving during an upstream call
    mean it is still there: its slow reply comes whole, then the next one."""
    proxy, _ = silent
    conn = Connection(proxy.url)
    try:
        conn.send(generation(frontend, False, "slow_first_byte"))  # 1.5 s of upstream silence
        conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = conn.response(), conn.response()
        assert first.status == 200 and b"Hello" in first.body
        assert second.status == 200 and second.json()["status"] == "ok"
    finally:
        conn.close()
