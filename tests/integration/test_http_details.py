"""HTTP details the client sees (issue 9, class 8, server side), over raw
sockets against the session's proxy: no redirects (werkzeug's were HTML with
a Location built from the client's Host header), 405 with Allow in every
frontend's envelope, the envelope picked the same way whatever the path's
case, and `Connection: close` honoured among other options."""
from __future__ import annotations

import json

import pytest

from tests.integration.rawhttp import Connection, exchange, request

HI = [{"role": "user", "content": "Hi"}]
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def assert_envelope(protocol: str, response) -> None:
    """The body is `protocol`'s error envelope, as JSON."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if protocol == "openai":
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    elif protocol == "anthropic":
        assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
    else:
        assert set(body) == {"error"} and {"code", "message", "status"} <= set(body["error"])


def send(stack, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    response, conn = exchange(stack.proxy_url, request(method, path, body, headers))
    conn.close()
    return response


# ------------------------------------------------------------ no redirects


@pytest.mark.parametrize("method,path,protocol", [
    ("POST", "/v1//chat/completions", "openai"),
    ("POST", "/v1//messages", "anthropic"),
    ("POST", "/v1//messages/count_tokens", "anthropic"),
    ("POST", "/v1beta//models/gemini-2.5-flash:generateContent", "gemini"),
    ("POST", "/v1beta/models//gemini-2.5-flash:generateContent", "gemini"),
    ("POST", "/v1//models/gemini-2.5-flash:streamGenerateContent", "gemini"),
    ("POST", "/openai//openai/v1/chat/completions", "openai"),
    ("POST", "/anthropic/anthropic//v1/messages", "anthropic"),
    ("POST", "/gemini/gemini/v1beta//models/gemini-2.5-flash:generateContent", "gemini"),
    ("GET", "/v1//models", "openai"),
])
def test_odd_paths_are_answered_in_the_envelope_without_a_redirect(stack, method, path, protocol):
    """The issue's reproduction: these were 308s to http://<the client's Host>/..."""
    response = send(stack, method, path, body_for(protocol) if method == "POST" else b"",
                    {"Host": "evil.example", "Content-Type": "application/json"})
    assert response.status in (400, 404), response.body
    assert "location" not in response.headers
    assert b"evil.example" not in response.body and b"<html" not in response.body.lower()
    assert_envelope(protocol, response)


@pytest.mark.parametrize("method,path,protocol", [
    ("POST", "//v1/chat/completions", "openai"),
    ("POST", "//v1/messages", "anthropic"),
    ("POST", "///v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
    ("GET", "//health", "openai"),
])
def test_leading_slashes_are_one_and_never_a_redirect(stack, method, path, protocol):
    """werkzeug reads `//v1/...` as `/v1/...` (a base URL ending in a slash):
    served as the single-slash path, by the Flask views as the fast path would."""
    response = send(stack, method, path, body_for(protocol) if method == "POST" else b"",
                    {"Host": "evil.example", "Content-Type": "application/json",
                     "anthropic-version": "2023-06-01"})
    assert response.status == 200, response.body
    assert "location" not in response.headers and b"evil.example" not in response.body


def body_for(protocol: str) -> bytes:
    if protocol == "gemini":
        return json.dumps(GEMINI_BODY).encode()
    return json.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": HI}).encode()


# ------------------------------------------------------------ 405


@pytest.mark.parametrize("method,path,protocol,allow", [
    ("GET", "/v1/chat/completions", "openai", "OPTIONS, POST"),
    ("GET", "/chat/completions", "openai", "OPTIONS, POST"),
    ("PUT", "/v1/chat/completions", "openai", "OPTIONS, POST"),
    ("GET", "/v1/messages", "anthropic", "OPTIONS, POST"),
    ("DELETE", "/v1/messages", "anthropic", "OPTIONS, POST"),
    ("GET", "/v1/messages/count_tokens", "anthropic", "OPTIONS, POST"),
    ("GET", "/v1beta/models/gemini-2.5-flash:generateContent", "gemini", "OPTIONS, POST"),
    ("GET", "/v1/models/gemini-2.5-flash:streamGenerateContent", "gemini", "OPTIONS, POST"),
    ("PATCH", "/v1beta/models/gemini-2.5-flash:countTokens", "gemini", "OPTIONS, POST"),
    ("GET", "/openai/openai/v1/chat/completions", "openai", "OPTIONS, POST"),
    ("GET", "/anthropic/anthropic/v1/messages", "anthropic", "OPTIONS, POST"),
    ("GET", "/gemini/gemini/v1beta/models/gemini-2.5-flash:generateContent", "gemini", "OPTIONS, POST"),
    ("POST", "/v1/models", "openai", "GET, HEAD, OPTIONS"),
    ("POST", "/v1beta/models", "gemini", "GET, HEAD, OPTIONS"),
    ("POST", "/health", "openai", "GET, HEAD, OPTIONS"),
])
def test_a_wrong_method_is_405_with_allow_in_the_envelope(stack, method, path, protocol, allow):
    response = send(stack, method, path)
    assert response.status == 405, response.body
    assert response.headers["allow"] == allow
    assert_envelope(protocol, response)
    assert method in response.json()["error"]["message"]


# ------------------------------------------------------------ case


@pytest.mark.parametrize("path,protocol", [
    ("/V1/MESSAGES", "anthropic"),
    ("/v1/Messages", "anthropic"),
    ("/V1/MESSAGES/COUNT_TOKENS", "anthropic"),
    ("/V1BETA/MODELS/GEMINI-2.5-FLASH:GENERATECONTENT", "gemini"),
    ("/V1/MODELS/GEMINI-2.5-FLASH:STREAMGENERATECONTENT", "gemini"),
    ("/v1/models/gemini-2.5-flash:GenerateContent", "gemini"),
    ("/V1/CHAT/COMPLETIONS", "openai"),
    ("/ANTHROPIC/anthropic/v1/messages", "anthropic"),
    ("/Gemini/gemini/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
    ("/OPENAI/openai/v1/chat/completions", "openai"),
])
def test_upper_case_paths_are_404_in_their_protocols_envelope(stack, path, protocol):
    response = send(stack, "POST", path, b"{}", {"Content-Type": "application/json"})
    assert response.status == 404, response.body
    assert_envelope(protocol, response)


@pytest.mark.parametrize("path,protocol", [
    ("/openai/openai/v1/messages", "openai"),
    ("/anthropic/anthropic/v1/chat/completions", "anthropic"),
    ("/gemini/gemini/v1/chat/completions", "gemini"),
])
def test_protocol_mode_errors_speak_the_prefix_protocol(stack, path, protocol):
    response = send(stack, "POST", path, b"{}", {"Content-Type": "application/json"})
    assert response.status == 404
    assert_envelope(protocol, response)


# ------------------------------------------------------------ Connection: close


def generation(frontend: str, stream: bool) -> tuple[str, bytes]:
    if frontend == "openai":
        return "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": HI}).encode()
    if frontend == "anthropic":
        return "/v1/messages", json.dumps({"model": "claude-haiku-4-5", "max_tokens": 20, "stream": stream,
                                           "messages": HI}).encode()
    if frontend == "gemini":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/v1beta/models/gemini-2.5-flash:{action}", json.dumps(GEMINI_BODY).encode()
    return "/openai/gemini/v1/chat/completions", json.dumps({"model": "gemini-2.5-flash", "stream": stream,
                                                             "messages": HI}).encode()


@pytest.mark.parametrize("frontend,stream,connection", [
    *[(f, s, "keep-alive, close") for f in ("openai", "anthropic", "gemini", "protocol-mode") for s in (False, True)],
    *[("openai", True, c) for c in ("close", "TE, close", "Close", "close , upgrade", "TE,CLOSE")],
])
def test_connection_close_among_other_options_closes_after_the_reply(stack, frontend, stream, connection):
    """The issue's reproduction (`keep-alive, close`, `TE, close`) on every
    frontend, streamed and not; the spellings on one."""
    path, body = generation(frontend, stream)
    response, conn = exchange(stack.proxy_url, request("POST", path, body, {
        "Content-Type": "application/json", "anthropic-version": "2023-06-01", "Connection": connection}))
    try:
        assert response.status == 200, response.body
        assert response.headers["connection"] == "close"
        assert conn.closed_by_server(within=3)
    finally:
        conn.close()


def test_close_in_a_second_connection_field_is_honoured(stack):
    response, conn = exchange(stack.proxy_url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
                                               b"Connection: close\r\n\r\n")
    assert response.status == 200 and conn.closed_by_server(within=3)
    conn.close()


@pytest.mark.parametrize("head", [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                                  b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, TE\r\n\r\n",
                                  b"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"])
def test_without_close_the_connection_serves_the_next_request(stack, head):
    conn = Connection(stack.proxy_url)
    try:
        for _ in range(3):
            conn.send(head)
            response = conn.response()
            assert response.status == 200 and "close" not in response.headers.get("connection", "")
    finally:
        conn.close()


def test_http_1_0_without_keep_alive_closes(stack):
    response, conn = exchange(stack.proxy_url, b"GET /health HTTP/1.0\r\n\r\n")
    assert response.status == 200 and conn.closed_by_server(within=3)
    conn.close()
