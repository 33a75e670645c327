"""Client HTTP framing (issue 9, class 5; and the header limits of class 7),
against a real `python -m app serve` over raw sockets.

RFC 9112: a request whose body length is ambiguous (Content-Length beside
Transfer-Encoding, two lengths, a length that is not digits, a final coding
other than chunked), without exactly one Host, or with a field line that is
not `token: value` is answered 400 and the connection closed, so nothing
after it is read as a next request. The answer is a small JSON error, never
HTML. A request head must be complete within server.head_timeout of its
first byte; an idle kept-alive connection is closed after
server.keepalive_timeout.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, ServerProcess, every_split
from tests.integration.rawhttp import Connection, exchange, request

HEAD_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 1.0

OPENAI_BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()
# Every frontend's generation path (and protocol mode), each with a body it serves.
FRONTEND_PATHS = [
    ("/v1/chat/completions", OPENAI_BODY),
    ("/v1/messages", json.dumps({"model": "claude-haiku-4-5", "max_tokens": 20,
                                 "messages": [{"role": "user", "content": "Hi"}]}).encode()),
    ("/v1beta/models/gemini-2.5-flash:generateContent",
     json.dumps({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}).encode()),
    ("/openai/anthropic/v1/chat/completions",
     json.dumps({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}).encode()),
]
PATH_IDS = ["openai", "anthropic", "gemini", "protocol-mode"]


@pytest.fixture(scope="module")
def proxy(stack, tmp_path_factory):
    """A proxy with short head and keep-alive deadlines, on the session's mock."""
    text = (REPO / "config-mock.toml").read_text()
    text = text.replace('log_level = "info"\n', f'log_level = "info"\nhead_timeout = {HEAD_TIMEOUT}\n'
                        f'keepalive_timeout = {KEEPALIVE_TIMEOUT}\n', 1)
    config = Path(tmp_path_factory.mktemp("framing")) / "config.toml"
    config.write_text(text)
    server = ServerProcess(["serve", "--config", str(config)], env={"MOCK_URL": stack.mock_url})
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def refused(proxy, data: bytes, status: int = 400) -> dict:
    """`data` is answered `status` with a JSON error, then the connection is closed."""
    response, conn = exchange(proxy.url, data)
    try:
        assert response.status == status, response.body
        assert response.headers["content-type"] == "application/json"
        assert response.headers["connection"] == "close"
        error = response.json()["error"]
        assert error["code"] == status and error["message"]
        assert conn.closed_by_server()
        return error
    finally:
        conn.close()


def served(proxy, data: bytes) -> int:
    response, conn = exchange(proxy.url, data)
    conn.close()
    return response.status


# ------------------------------------------------------------ message length


@pytest.mark.parametrize("path,body", FRONTEND_PATHS, ids=PATH_IDS)
def test_content_length_with_transfer_encoding_is_refused_and_nothing_is_smuggled(proxy, path, body):
    """The issue's reproduction: the chunked body ends at once, so a server
    that went by Transfer-Encoding would read the GET as a second request."""
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    data = request("POST", path, b"0\r\n\r\n" + smuggled,
                   {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    error = refused(proxy, data)
    assert "Content-Length and Transfer-Encoding" in error["message"]


@pytest.mark.parametrize("lengths", [["5", "6"], ["5, 6"], ["6", "5, 5"]], ids=["two-fields", "list", "mixed"])
def test_different_content_lengths_are_refused(proxy, lengths):
    head = "".join(f"Content-Length: {v}\r\n" for v in lengths)
    data = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{head}\r\nhello".encode()
    assert "different values" in refused(proxy, data)["message"]


@pytest.mark.parametrize("value", ["+72", "-1", "0x10", "1_0", "7 7", "", "٣", "1" * 19, "5,"])
def test_content_length_must_be_plain_digits(proxy, value):
    data = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n".encode()
    refused(proxy, data)


def test_a_control_character_around_content_length_is_refused(proxy):
    refused(proxy, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \x0c7\r\n\r\n")


def test_the_same_content_length_repeated_is_one_length(proxy):
    """RFC 9110 8.6 lets a recipient take identical values as one."""
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d, %d\r\nX-Mock-Scenario: text\r\n\r\n" % (len(OPENAI_BODY), len(OPENAI_BODY))
            + OPENAI_BODY)
    assert served(proxy, data) == 200


def test_whitespace_around_the_length_is_optional_whitespace(proxy):
    data = request("POST", "/v1/chat/completions", OPENAI_BODY,
                   {"Content-Length": f" \t{len(OPENAI_BODY)}\t ", "Content-Type": "application/json"})
    assert served(proxy, data) == 200


@pytest.mark.parametrize("codings,status", [
    ("gzip", 400), ("chunked, gzip", 400), ("identity", 400), ("chunked;x=1", 400), ("chunked, chunked", 400),
    ("chunked,", 400), ("gzip, chunked", 501),
])
def test_transfer_codings_other_than_a_final_chunked_are_refused(proxy, codings, status):
    data = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {codings}\r\n\r\n0\r\n\r\n".encode()
    refused(proxy, data, status)


def test_an_unknown_coding_beside_content_length_is_refused(proxy):
    refused(proxy, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                   b"Transfer-Encoding: gzip\r\n\r\nabc")


def test_transfer_encoding_in_http_1_0_is_refused(proxy):
    refused(proxy, b"POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


@pytest.mark.parametrize("path,body", FRONTEND_PATHS, ids=PATH_IDS)
def test_a_chunked_body_is_served(proxy, path, body):
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    data = request("POST", path, chunked + b"0\r\n\r\n", {"Content-Type": "application/json",
                                                          "Content-Length": None, "Transfer-Encoding": " Chunked ",
                                                          "anthropic-version": "2023-06-01"})
    assert served(proxy, data) == 200


# ------------------------------------------------------------ Host


def test_http_1_1_without_host_is_refused(proxy):
    assert "Host" in refused(proxy, b"GET /health HTTP/1.1\r\n\r\n")["message"]


def test_two_hosts_are_refused(proxy):
    assert "More than one Host" in refused(proxy, b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")["message"]


@pytest.mark.parametrize("host", ["a b", "a/b", "a\"b"])
def test_a_host_that_is_no_host_name_is_refused(proxy, host):
    refused(proxy, f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


@pytest.mark.parametrize("host", ["", "127.0.0.1:9001", "[::1]:80", "proxy.example"])
def test_host_forms_that_are_served(proxy, host):
    assert served(proxy, f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()) == 200


def test_http_1_0_needs_no_host(proxy):
    assert served(proxy, b"GET /health HTTP/1.0\r\n\r\n") == 200


# ------------------------------------------------------------ field lines


@pytest.mark.parametrize("line,why", [
    (b"X-No-Colon", "without a colon"),
    (b"X-Space : 1", "Whitespace between"),
    (b"X-Tab\t: 1", "Whitespace between"),
    (b"X\x00Nul: 1", "token characters"),
    (b"X-Nul: a\x00b", "control character"),
    (b"X-Cr: a\rb", "control character"),
    (b"X-Ctl: a\x01b", "control character"),
    (b"X-Del: a\x7fb", "control character"),
    (b"X-Esc: \x1b[2J", "control character"),
    (b"X(Paren): 1", "token characters"),
    (b": no-name", "token characters"),
    (b" folded: 1", "folding"),
], ids=lambda v: repr(v)[:20])
def test_malformed_field_lines_are_refused(proxy, line, why):
    error = refused(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n")
    assert why in error["message"]


def test_obsolete_line_folding_is_refused(proxy):
    refused(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n")


def test_tab_and_obs_text_in_a_value_are_served(proxy):
    assert served(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Tab: a\tb\r\nX-Latin: caf\xe9\r\n\r\n") == 200


def test_bare_lf_line_ends_are_served(proxy):
    assert served(proxy, b"GET /health HTTP/1.1\nHost: x\n\n") == 200


# ------------------------------------------------------------ request line and limits


@pytest.mark.parametrize("line", [b"GET /health", b"GET  /health HTTP/1.1", b"GET /health HTTP/1.1 x",
                                  b"GET /he\x00lth HTTP/1.1", b"G(T /health HTTP/1.1", b"GET /health http/1.1"])
def test_malformed_request_lines_are_refused(proxy, line):
    refused(proxy, line + b"\r\nHost: x\r\n\r\n")


def test_other_http_versions_are_505(proxy):
    refused(proxy, b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505)


def test_a_request_line_too_long_is_414(proxy):
    refused(proxy, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)


def test_a_header_line_too_long_is_431(proxy):
    refused(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431)


def test_more_than_100_header_fields_is_431_without_a_traceback(proxy):
    fields = b"".join(b"X-H%d: 1\r\n" % i for i in range(100))
    assert "100" in refused(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", 431)["message"]
    assert "Traceback" not in proxy.output()


def test_100_header_fields_are_served(proxy):
    fields = b"".join(b"X-H%d: 1\r\n" % i for i in range(99))
    assert served(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n") == 200


def test_a_head_split_at_every_byte_is_served(proxy):
    data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}"
    for parts in every_split(data):
        conn = Connection(proxy.url)
        try:
            for part in parts:
                conn.send(part)
                time.sleep(0.002)  # a segment each
            response = conn.response()
            assert response.status == 400 and "model" in response.json()["error"]["message"], parts
        finally:
            conn.close()


def test_empty_lines_before_the_request_line_are_ignored(proxy):
    assert served(proxy, b"\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n") == 200


def test_a_refusal_is_read_whole_even_with_a_large_unread_body(proxy):
    """The refused request's bytes are drained before the close, so the client
    gets the 400 and not a reset that destroys it."""
    refused(proxy, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            + b"x" * 300_000)


# ------------------------------------------------------------ deadlines


def test_a_partial_head_is_dropped_after_the_head_timeout(proxy):
    conn = Connection(proxy.url)
    try:
        conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert conn.closed_by_server(within=HEAD_TIMEOUT * 4 + 1)
        assert time.monotonic() - started >= HEAD_TIMEOUT * 0.9
    finally:
        conn.close()


def test_a_trickled_head_does_not_extend_the_deadline(proxy):
    conn = Connection(proxy.url)
    started = time.monotonic()
    try:
        conn.send(b"GET /health HTTP/1.1\r\n")
        for i in range(40):  # one field every 0.1 s: 4 s in all, far past the deadline
            time.sleep(0.1)
            try:
                conn.send(b"X-Slow-%d: 1\r\n" % i)
            except OSError:
                break
        assert conn.closed_by_server(within=1)
        assert time.monotonic() - started < HEAD_TIMEOUT * 4 + 1
    finally:
        conn.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_keepalive_timeout(proxy):
    conn = Connection(proxy.url)
    try:
        started = time.monotonic()
        assert conn.closed_by_server(within=KEEPALIVE_TIMEOUT * 3)
        assert time.monotonic() - started >= KEEPALIVE_TIMEOUT * 0.9
    finally:
        conn.close()


def test_an_idle_kept_alive_connection_serves_then_closes(proxy):
    conn = Connection(proxy.url)
    try:
        for _ in range(2):  # idle shorter than the timeout: still served
            conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.response().status == 200
            time.sleep(KEEPALIVE_TIMEOUT / 3)
        assert conn.closed_by_server(within=KEEPALIVE_TIMEOUT * 3)
    finally:
        conn.close()


def test_a_slow_upstream_is_not_a_head_timeout(proxy):
    """The head deadline ends with the head: a reply slower than it is served."""
    response, conn = exchange(proxy.url, request("POST", "/v1/chat/completions", OPENAI_BODY, {
        "Content-Type": "application/json", "X-Mock-Scenario": "slow_first_byte"}))
    conn.close()
    assert response.status == 200 and response.json()["choices"][0]["message"]["content"]
