"""Our HTTP/1.1 client against a scripted server on 127.0.0.1: exact request
bytes, reply framing, connection reuse, and transport failures as ProxyErrors.

The server (plain sockets + threads) records every connection it accepts and
every raw request it reads, and answers each request with the next scripted
reply: a list of steps, each bytes (sent), a float (sleep), an Event (wait for
the test to set it), CLOSE (close the connection) or HANG (say nothing until
the client goes away).
"""
from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib

import pytest

from app.config import BackendConfig
from app.errors import ErrorKind, ProxyError
from app.protocols.base import UpstreamRequest
from app.upstream.http import (
    HeldConnection,
    Headers,
    UpstreamClient,
    UpstreamProtocolError,
    iter_body,
    parse_head,
    read_body,
)

CLOSE = "close"
HANG = "hang"


class ServerConn:
    """One accepted connection, as the server saw it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.requests: list[bytes] = []  # raw request bytes (head + body), in order
        self.first_reads: list[bytes] = []  # what the first recv of each request returned
        self.closed = threading.Event()
        self.tls_error: Exception | None = None


class ScriptedServer:
    def __init__(self, tls: ssl.SSLContext | None = None):
        self.replies: list[list] = []
        self.conns: list[ServerConn] = []
        self.errors: list[BaseException] = []
        self._tls = tls
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._start(self._accept_loop)

    # -------------------------------------------------------------- scripting

    def reply(self, *steps) -> ScriptedServer:
        self.replies.append(list(steps))
        return self

    @property
    def requests(self) -> list[bytes]:
        return [r for c in self.conns for r in c.requests]

    # -------------------------------------------------------------- machinery

    def _start(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            sock.settimeout(0.05)
            if self._tls is not None:
                try:
                    sock.settimeout(2)
                    sock = self._tls.wrap_socket(sock, server_side=True)
                    sock.settimeout(0.05)
                except (ssl.SSLError, OSError) as e:
                    conn = ServerConn(sock)
                    conn.tls_error = e
                    self.conns.append(conn)
                    sock.close()
                    conn.closed.set()
                    continue
            conn = ServerConn(sock)
            self.conns.append(conn)
            self._start(self._serve, conn)

    def _recv(self, conn: ServerConn) -> bytes | None:
        """One recv; None when stopping."""
        while not self._stop.is_set():
            try:
                return conn.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return b""
        return None

    def _read_request(self, conn: ServerConn, buf: bytes) -> tuple[bytes | None, bytes]:
        first = None
        while b"\r\n\r\n" not in buf:
            data = self._recv(conn)
            if not data:
                return None, b""
            if first is None:
                first = data
            buf += data
        end = buf.index(b"\r\n\r\n") + 4
        length = 0
        for line in buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buf) < end + length:
            data = self._recv(conn)
            if not data:
                return None, b""
            buf += data
        conn.first_reads.append(first if first is not None else buf)
        return buf[:end + length], buf[end + length:]

    def _serve(self, conn: ServerConn) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                request, buf = self._read_request(conn, buf)
                if request is None:
                    break
                conn.requests.append(request)
                with self._lock:
                    steps = self.replies.pop(0) if self.replies else [CLOSE]
                if not self._run(conn, steps):
                    break
        except Exception as e:  # noqa: BLE001 - reported by the fixture
            self.errors.append(e)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            conn.closed.set()

    def _run(self, conn: ServerConn, steps: list) -> bool:
        """Play one reply; False once the connection is finished."""
        for step in steps:
            if isinstance(step, bytes):
                try:
                    conn.sock.sendall(step)
                except OSError:
                    return False
            elif isinstance(step, float):
                time.sleep(step)
            elif isinstance(step, threading.Event):
                step.wait(5)
            elif step == CLOSE:
                return False
            elif step == HANG:
                while True:  # until the client closes (or the test ends)
                    data = self._recv(conn)
                    if not data:
                        return False
            else:
                raise AssertionError(f"bad step {step!r}")
        return True

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self._listener.close()
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.stop()
    assert not s.errors, s.errors


@pytest.fixture
def client():
    c = UpstreamClient()
    yield c
    c.close()


def backend_for(url: str, name: str = "b", timeout: float = 2.0) -> BackendConfig:
    return BackendConfig(name=name, protocol="openai", url=url, api_key="k", timeout=timeout,
                         connect_timeout=1.0)


def post(url: str, body: bytes = b"{}", headers=None, method: str = "POST") -> UpstreamRequest:
    return UpstreamRequest(method=method, url=url, headers=headers or {}, body=body)


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunked_head(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + extra + b"\r\n"


def fetch(client: UpstreamClient, backend: BackendConfig, req: UpstreamRequest | None = None, **kw) -> bytes:
    resp = client.send(backend, req or post(backend.url + "/x"))
    return read_body(resp, backend, **kw)


def expect_error(kind: ErrorKind, message: str, call, *args, **kw) -> ProxyError:
    with pytest.raises(ProxyError) as info:
        call(*args, **kw)
    assert info.value.kind == kind
    assert info.value.message == message
    return info.value


# ================================================================ request head


def test_request_head_and_body_exact(server, client):
    server.reply(ok(b'{"id":1}'))
    b = backend_for(server.url)
    req = post(server.url + "/v1/chat/completions?x=1&y=a%20b", b'{"model":"m"}',
               {"Authorization": "Bearer k", "Content-Type": "application/json", "X-Trace": "t-1"})
    resp = client.send(b, req)
    assert resp.status_code == 200
    assert read_body(resp, b) == b'{"id":1}'
    expected = (
        b"POST /v1/chat/completions?x=1&y=a%20b HTTP/1.1\r\n"
        b"Host: 127.0.0.1:PORT\r\n"
        b"Authorization: Bearer k\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Trace: t-1\r\n"
        b"Content-Length: 13\r\n"
        b"User-Agent: interchange/0.1\r\n"
        b"Accept-Encoding: identity\r\n"
        b"\r\n"
        b'{"model":"m"}'
    ).replace(b"PORT", b"%d" % server.port)
    assert server.requests == [expected]
    # one write: the head and the small body arrive together in the server's first read
    assert server.conns[0].first_reads == [expected]


def test_caller_headers_replace_the_defaults(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    req = post(server.url + "/p", b"abc", {"host": "example.test", "user-agent": "mine/1",
                                           "Accept-Encoding": "gzip", "Content-Length": "3"})
    assert fetch(client, b, req) == b"ok"
    assert server.requests == [(
        b"POST /p HTTP/1.1\r\nhost: example.test\r\nuser-agent: mine/1\r\nAccept-Encoding: gzip\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )]


def test_get_without_path_sends_slash_and_zero_length(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    assert fetch(client, b, post(server.url, b"", method="GET")) == b"ok"
    assert server.requests == [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\nUser-Agent: interchange/0.1\r\n"
        b"Accept-Encoding: identity\r\n\r\n" % server.port
    ]


def test_query_without_path(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    assert fetch(client, b, post(server.url + "?key=v", b"", method="GET")) == b"ok"
    assert server.requests[0].startswith(b"GET /?key=v HTTP/1.1\r\n")


def test_query_with_slash_without_path(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    assert fetch(client, b, post(server.url + "?next=/v1", b"", method="GET")) == b"ok"
    assert server.requests[0].startswith(b"GET /?next=/v1 HTTP/1.1\r\n")


def test_non_ascii_path_is_percent_encoded(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    assert fetch(client, b, post(server.url + "/models/caf\u00e9 x?q=1")) == b"ok"
    assert server.requests[0].startswith(b"POST /models/caf%C3%A9%20x?q=1 HTTP/1.1\r\n")


def test_large_body_arrives_whole(server, client):
    server.reply(ok())
    b = backend_for(server.url)
    body = bytes(range(256)) * 1200  # 307200 bytes: above the one-send threshold
    assert fetch(client, b, post(server.url + "/big", body)) == b"ok"
    (request,) = server.requests
    head, _, got = request.partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: 307200\r\n" in head + b"\r\n"
    assert got == body


# Every C0 control and DEL, in a header value and in a header name; and names that are not names.
_CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Bad\r\nName": "v"}, {"X-Bad:": "v"},
                                     {"X Bad": "v"}, {"": "v"}]
                         + [{"X-Evil": f"a{c}b"} for c in _CONTROLS] + [{f"X-Ev{c}il": "v"} for c in _CONTROLS])
def test_header_with_a_control_character_is_a_configuration_error_and_nothing_is_sent(server, client, headers):
    server.reply(ok())
    b = backend_for(server.url)
    with pytest.raises(ProxyError) as info:
        client.send(b, post(server.url + "/x", b"{}", headers))
    assert info.value.kind == ErrorKind.configuration
    assert "contains a control character or is not a header name" in info.value.message
    assert "\r" not in info.value.message and "\n" not in info.value.message
    # the next (good) request is the first thing the server ever sees
    assert fetch(client, b) == b"ok"
    assert len(server.conns) == 1
    assert server.requests == [server.conns[0].requests[0]]
    assert b"X-Evil" not in server.requests[0] and b"X-Bad" not in server.requests[0]


@pytest.mark.parametrize("url_tail", [f"/v1beta/models/m{c}x:generateContent" for c in _CONTROLS]
                         + ["/m:generateContent\tHTTP/1.1\r\nHost:x\r\n\r\nDELETE\t/_mock/requests?",
                            "/a b\r\nX: y", "/x?q=\n"])
def test_control_character_in_the_path_is_refused_and_nothing_is_sent(server, client, url_tail):
    server.reply(ok())
    b = backend_for(server.url)
    with pytest.raises(ProxyError) as info:
        client.send(b, post(server.url + url_tail, b"{}"))
    assert (info.value.kind, info.value.status) == (ErrorKind.api_error, 500)
    assert info.value.message == ("Refused to send a request to backend 'b': its method or path contains a "
                                  "control character.")
    assert fetch(client, b) == b"ok"
    assert len(server.conns) == 1 and len(server.requests) == 1
    assert server.requests[0].startswith(b"POST /x HTTP/1.1\r\n")


@pytest.mark.parametrize("method", ["POST\r\nX", "GET /x HTTP/1.1\r\n\r\nPOST", "PO ST", "POST\t"])
def test_control_character_or_space_in_the_method_is_refused(server, client, method):
    b = backend_for(server.url)
    with pytest.raises(ProxyError) as info:
        client.send(b, post(server.url + "/x", b"{}", method=method))
    assert info.value.kind == ErrorKind.api_error
    assert server.requests == []


def test_non_latin1_header_is_a_configuration_error(server, client):
    b = backend_for(server.url)
    with pytest.raises(ProxyError) as info:
        client.send(b, post(server.url + "/x", b"{}", {"X-Name": "\u2713"}))
    assert info.value.kind == ErrorKind.configuration
    assert info.value.message == "A header for backend 'b' is not Latin-1 text."


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/x", "Backend URL 'ftp://127.0.0.1/x' is not an http(s) URL without credentials."),
    ("http://user:pw@127.0.0.1/x?key=SECRET",
     "Backend URL 'http://***@127.0.0.1/x' is not an http(s) URL without credentials."),
    ("127.0.0.1:8080/x", "Backend URL '127.0.0.1:8080/x' is not an http(s) URL without credentials."),
    ("http://127.0.0.1:port/x?key=SECRET", "Backend URL 'http://127.0.0.1:port/x' has a bad port."),
])
def test_bad_backend_urls(client, url, message):
    b = backend_for(url)
    expect_error(ErrorKind.configuration, message, client.send, b, post(url))


# ================================================================ framing and reuse


def test_content_length_reply_and_keep_alive(server, client):
    server.reply(ok(b"first")).reply(ok(b"second!"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/a"))
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == "5"
    assert read_body(resp, b) == b"first"
    assert fetch(client, b, post(server.url + "/b")) == b"second!"
    assert len(server.conns) == 1
    assert [r.split(b" ")[1] for r in server.conns[0].requests] == [b"/a", b"/b"]


def test_content_length_body_arriving_in_pieces(server, client):
    server.reply(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n012", 0.02, b"3456", 0.02, b"789")
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 201
    assert read_body(resp, b) == b"0123456789"


def test_status_line_without_reason(server, client):
    server.reply(b"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno")
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 404
    assert read_body(resp, b) == b"no"


CHUNK_PIECES = [
    chunked_head(b"Content-Type: text/event-stream\r\n") + b"1",  # size line split
    b"0\r\nsixteen bytes...",  # 0x10 = 16
    b"\r",  # CRLF after the data split
    b"\n5;ext=1\r",
    b"\nhel",
    b"lo\r\n",
    b"0\r\nX-Trailer: t\r\n",
    b"\r\n",
]
CHUNK_BODY = b"sixteen bytes...hello"


def test_chunked_reply_in_awkward_pieces_read_body(server, client):
    steps = []
    for piece in CHUNK_PIECES:
        steps += [piece, 0.01]
    server.reply(*steps).reply(ok(b"again"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert read_body(resp, b) == CHUNK_BODY
    assert fetch(client, b) == b"again"
    assert len(server.conns) == 1


def test_chunked_reply_in_awkward_pieces_iter_body(server, client):
    steps = []
    for piece in CHUNK_PIECES:
        steps += [piece, 0.01]
    server.reply(*steps).reply(ok(b"again"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    pieces = list(iter_body(resp, b))
    assert b"".join(pieces) == CHUNK_BODY
    assert len(pieces) >= 2
    assert all(pieces)  # no empty pieces
    assert fetch(client, b) == b"again"
    assert len(server.conns) == 1


def test_iter_body_hands_on_each_read_as_it_arrives(server, client):
    """The server sends the next bytes only after the client has the previous
    piece, so the pieces are exact: everything each read completed or started."""
    got_first, got_second = threading.Event(), threading.Event()
    server.reply(chunked_head() + b"5\r\nhel", got_first, b"lo\r\n6\r\n wor", got_second, b"ld\r\n0\r\n\r\n")
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    pieces = []
    for piece in iter_body(resp, b):
        pieces.append(piece)
        (got_first if len(pieces) == 1 else got_second).set()
    assert pieces == [b"hel", b"lo wor", b"ld"]


def test_chunked_reply_followed_by_stray_bytes_is_not_reused(server, client):
    server.reply(chunked_head() + b"2\r\nok\r\n0\r\n\r\nGARBAGE").reply(ok(b"new"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"ok"
    assert fetch(client, b) == b"new"
    assert len(server.conns) == 2


def test_content_length_reply_followed_by_stray_bytes_is_not_reused(server, client):
    server.reply(ok(b"abc") + b"EXTRA").reply(ok(b"new"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"abc"
    assert fetch(client, b) == b"new"
    assert len(server.conns) == 2


def test_close_delimited_reply(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ", 0.02, b"part two", CLOSE)
    server.reply(ok(b"next"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"part one, part two"
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


def test_connection_close_reply_is_not_reused(server, client):
    server.reply(ok(b"bye", b"Connection: close\r\n")).reply(ok(b"next"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"bye"
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2
    assert [len(c.requests) for c in server.conns] == [1, 1]


def test_http10_reply_without_keep_alive_is_not_reused(server, client):
    server.reply(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold").reply(ok(b"next"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"old"
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


def test_http10_reply_with_keep_alive_is_reused(server, client):
    server.reply(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nold").reply(ok(b"next"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"old"
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1


# ================================================================ content coding


TEXT = b'{"choices":[{"text":"' + b"hello world " * 200 + b'"}]}'


def test_gzip_body_is_decoded(server, client):
    server.reply(ok(gzip.compress(TEXT), b"Content-Encoding: gzip\r\n")).reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.headers["content-encoding"] == "gzip"
    assert read_body(resp, b) == TEXT
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1


def test_x_gzip_chunked_body_in_pieces_is_decoded(server, client):
    packed = gzip.compress(TEXT)
    half = len(packed) // 2
    server.reply(chunked_head(b"Content-Encoding: x-gzip\r\n") + b"%x\r\n" % half + packed[:half] + b"\r\n", 0.01,
                 b"%x\r\n" % (len(packed) - half) + packed[half:] + b"\r\n0\r\n\r\n")
    b = backend_for(server.url)
    assert fetch(client, b) == TEXT


def test_deflate_body_is_decoded(server, client):
    server.reply(ok(zlib.compress(TEXT), b"Content-Encoding: deflate\r\n"))
    b = backend_for(server.url)
    assert fetch(client, b) == TEXT


def test_raw_deflate_body_is_decoded(server, client):
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # deflate without the zlib header, as some servers send
    server.reply(ok(packer.compress(TEXT) + packer.flush(), b"Content-Encoding: deflate\r\n"))
    assert fetch(client, backend_for(server.url)) == TEXT


def test_gzip_members_one_after_another_are_all_decoded(server, client):
    server.reply(ok(gzip.compress(b"first ") + gzip.compress(b"second"), b"Content-Encoding: gzip\r\n"))
    assert fetch(client, backend_for(server.url)) == b"first second"


def test_bytes_after_a_deflate_stream_are_bad_gateway(server, client):
    server.reply(ok(zlib.compress(TEXT) + b"junk", b"Content-Encoding: deflate\r\n"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (DecodeError).",
                 read_body, resp, b)


def test_identity_content_encoding(server, client):
    server.reply(ok(b"plain", b"Content-Encoding: identity\r\n"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"plain"


def test_corrupt_gzip_body_is_bad_gateway(server, client):
    server.reply(ok(b"\x1f\x8b\x08\x00this is not gzip at all", b"Content-Encoding: gzip\r\n"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (DecodeError).",
                 read_body, resp, b)


def test_truncated_gzip_body_is_bad_gateway(server, client):
    packed = gzip.compress(TEXT)[:-30]  # framing complete (Content-Length matches), gzip stream cut short
    server.reply(ok(packed, b"Content-Encoding: gzip\r\n"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (DecodeError).",
                 read_body, resp, b)


def test_unsupported_content_encoding_is_bad_gateway(server, client):
    server.reply(ok(b"xx", b"Content-Encoding: br\r\n"))
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (ContentDecodingError).",
                 client.send, b, post(server.url + "/x"))


# ================================================================ interim, empty


def test_100_continue_is_skipped(server, client):
    server.reply(b"HTTP/1.1 100 Continue\r\n\r\n", 0.02, ok(b"final", b"X-Final: 1\r\n")).reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 200
    assert resp.headers.get("x-final") == "1"
    assert read_body(resp, b) == b"final"
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1


def test_several_interim_replies_in_one_read(server, client):
    server.reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"final"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 200
    assert "link" not in resp.headers
    assert read_body(resp, b) == b"final"


def test_204_has_empty_body_and_connection_is_reused(server, client):
    server.reply(b"HTTP/1.1 204 No Content\r\n\r\n").reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.status_code == 204
    assert list(iter_body(resp, b)) == []
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1


def test_head_reply_has_empty_body_despite_its_length(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n").reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x", b"", method="HEAD"))
    assert resp.status_code == 200
    assert resp.headers["content-length"] == "1234"
    assert read_body(resp, b) == b""
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1
    assert server.requests[0].startswith(b"HEAD /x HTTP/1.1\r\n")


def test_zero_content_length(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").reply(ok(b"next"))
    b = backend_for(server.url)
    assert fetch(client, b) == b""
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 1


# ================================================================ headers


def test_response_headers(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\n"
                 b"Content-Type: application/json\r\n"
                 b"X-Multi: a\r\n"
                 b"x-request-id: r1\r\n"
                 b"x-MULTI: b\r\n"
                 b"X-Fold: first\r\n"
                 b"  second\r\n"
                 b"\tthird\r\n"
                 b"X-Empty:\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    h = resp.headers
    assert h.get("content-type") == "application/json"
    assert h.get("CONTENT-TYPE") == "application/json"
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert list(h) == ["Content-Type", "X-Multi", "x-request-id", "X-Fold", "X-Empty", "Content-Length"]
    assert h["x-multi"] == "a, b"
    assert h["X-Fold"] == "first second third"
    assert h["x-empty"] == ""
    assert "X-REQUEST-ID" in h
    assert len(h) == 6
    assert dict(h.items())["X-Multi"] == "a, b"
    with pytest.raises(KeyError):
        h["nope"]
    assert read_body(resp, b) == b"{}"


def test_headers_class():
    h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X", " v ")])
    assert list(h) == ["Set-Cookie", "X"]
    assert h["SET-COOKIE"] == "a=1, b=2"
    assert h["x"] == " v "
    assert len(Headers()) == 0


# ================================================================ parse_head


def test_parse_head_good():
    version, status, headers = parse_head(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
                                          b"Bad Name : dropped\r\nno colon line\r\n: empty name\r\n"
                                          b"Content-Type:text/plain  ")
    assert (version, status) == ("HTTP/1.1", 429)
    assert dict(headers) == {"Retry-After": "7", "Content-Type": "text/plain"}


def test_parse_head_http10_and_latin1():
    version, status, headers = parse_head(b"HTTP/1.0 200 OK\r\nX-Name: caf\xe9")
    assert (version, status) == ("HTTP/1.0", 200)
    assert headers["x-name"] == "caf\u00e9"


def test_parse_head_fold_before_any_header_is_ignored():
    _, status, headers = parse_head(b"HTTP/1.1 200 OK\r\n  stray\r\nA: 1")
    assert status == 200
    assert dict(headers) == {"A": "1"}


@pytest.mark.parametrize("block", [b"HTTP/2 200", b"HTTP/1.1 20", b"HTTP/1.1 2000 OK", b"HTTP/1.1 abc OK",
                                   b"HTTP/1.1", b"", b"SSH-2.0-OpenSSH_9.6", b"http/1.1 200 OK",
                                   b"HTTP/1.1  200 OK"])
def test_parse_head_rejects_bad_status_lines(block):
    with pytest.raises(UpstreamProtocolError) as info:
        parse_head(block)
    assert info.value.name == "BadStatusLine"


@pytest.mark.parametrize("digit", [b"\xb2", b"\xb3", b"\xb9"])
def test_parse_head_superscript_status_digit(digit):
    # str.isdigit() takes the Latin-1 superscripts, which int() refuses
    with pytest.raises(UpstreamProtocolError) as info:
        parse_head(b"HTTP/1.1 2" + digit + b"0 OK")
    assert info.value.name == "BadStatusLine"


# ================================================================ pooled connection lifecycle


def test_idle_connection_closed_by_server_is_replaced(server, client):
    server.reply(ok(b"one"), CLOSE).reply(ok(b"two"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"one"
    assert server.conns[0].closed.wait(2)
    time.sleep(0.05)  # let the FIN reach our socket
    assert fetch(client, b) == b"two"
    assert len(server.conns) == 2
    assert [len(c.requests) for c in server.conns] == [1, 1]


def test_reused_connection_closed_before_reply_is_retried_once(server, client):
    """The idle-timeout race: the server takes the request on the pooled
    connection and closes without a word; the request goes again on a new one."""
    server.reply(ok(b"one")).reply(CLOSE).reply(ok(b"two"))
    b = backend_for(server.url)
    assert fetch(client, b, post(server.url + "/1")) == b"one"
    assert fetch(client, b, post(server.url + "/2")) == b"two"
    assert len(server.conns) == 2
    assert [[r.split(b" ")[1] for r in c.requests] for c in server.conns] == [[b"/1", b"/2"], [b"/2"]]
    assert server.conns[0].requests[1] == server.conns[1].requests[0]  # the same bytes, sent again


def test_reused_connection_retry_that_also_fails_is_bad_gateway(server, client):
    server.reply(ok(b"one")).reply(CLOSE).reply(CLOSE)
    b = backend_for(server.url)
    assert fetch(client, b) == b"one"
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (RemoteDisconnected).", fetch, client, b)
    assert len(server.requests) == 3  # one retry, not more


def test_fresh_connection_closed_before_reply_is_not_retried(server, client):
    server.reply(CLOSE).reply(ok(b"must not be reached"))
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (RemoteDisconnected).",
                 client.send, b, post(server.url + "/x"))
    assert len(server.requests) == 1
    assert len(server.conns) == 1


def test_reply_cut_inside_the_head_is_bad_gateway(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Le", CLOSE)
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (RemoteDisconnected).",
                 client.send, b, post(server.url + "/x"))
    assert len(server.requests) == 1


def test_connection_refused():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    try:
        url = f"http://127.0.0.1:{holder.getsockname()[1]}"
        client = UpstreamClient()
        b = backend_for(url)
        err = expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (ConnectionRefusedError).",
                           client.send, b, post(url + "/x"))
        assert err.status == 502
    finally:
        holder.close()


def test_server_never_answers_is_timeout(server, client):
    server.reply(HANG)
    b = backend_for(server.url, timeout=0.3)
    err = expect_error(ErrorKind.timeout, "Backend 'b' did not answer within 0.3 s.",
                       client.send, b, post(server.url + "/x"))
    assert err.status == 504
    assert len(server.requests) == 1


def test_stall_mid_body_is_timeout_and_connection_dropped(server, client):
    server.reply(chunked_head() + b"5\r\nhello\r\n", HANG).reply(ok(b"next"))
    b = backend_for(server.url, timeout=0.3)
    resp = client.send(b, post(server.url + "/x"))
    pieces = []
    with pytest.raises(ProxyError) as info:
        for piece in iter_body(resp, b):  # a loop, not list(): keep what came before the error
            pieces.append(piece)  # noqa: PERF402
    assert pieces == [b"hello"]
    assert info.value.kind == ErrorKind.timeout
    assert info.value.message == "Backend 'b' stalled mid-response (no data for 0.3 s)."
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


class ClientLinkStub:
    """A client connection as the upstream client sees it: records what it is
    asked to call when the client leaves; `leave()` is the client leaving."""

    def __init__(self):
        self.abort = None
        self.asked: list[bool] = []  # True: an abort registered, False: withdrawn

    def on_gone(self, abort):
        self.asked.append(abort is not None)
        self.abort = abort

    def leave(self) -> None:
        assert self.abort is not None, "nothing in flight"
        self.abort()


ABANDONED = "The client closed the connection; the call to backend 'b' was abandoned."


def test_a_client_leaving_before_the_reply_abandons_the_call_and_nothing_is_resent(server, client):
    server.reply(ok(b"warm")).reply(HANG)
    b = backend_for(server.url, timeout=30)
    assert fetch(client, b) == b"warm"  # the next call goes on this pooled connection
    link = ClientLinkStub()
    threading.Timer(0.2, link.leave).start()
    started = time.monotonic()
    err = expect_error(ErrorKind.bad_gateway, ABANDONED, client.send, b, post(server.url + "/x"), link)
    assert err.code == "client_closed" and time.monotonic() - started < 2
    assert link.asked == [True, False]
    assert len(server.conns) == 1 and len(server.requests) == 2  # not sent again on a new connection


def test_a_client_leaving_mid_body_abandons_the_call(server, client):
    server.reply(chunked_head() + b"5\r\nhello\r\n", HANG).reply(ok(b"next"))
    b = backend_for(server.url, timeout=30)
    link = ClientLinkStub()
    pieces = iter_body(client.send(b, post(server.url + "/x"), link), b)
    assert next(pieces) == b"hello"
    threading.Timer(0.2, link.leave).start()
    expect_error(ErrorKind.bad_gateway, ABANDONED, next, pieces)
    assert link.asked == [True, False]
    assert server.conns[0].closed.wait(2)  # the upstream connection is closed, not pooled
    assert fetch(client, b) == b"next" and len(server.conns) == 2


def test_a_call_done_withdraws_its_abort_and_pools_the_connection(server, client):
    server.reply(ok(b"one")).reply(ok(b"two"))
    b = backend_for(server.url)
    link = ClientLinkStub()
    assert read_body(client.send(b, post(server.url + "/x"), link), b) == b"one"
    assert link.asked == [True, False]
    assert fetch(client, b) == b"two" and len(server.conns) == 1


def test_time_spent_not_reading_is_not_a_stall(server, client):
    # The read timeout counts only time spent waiting on the upstream: a client
    # downstream that is slow to take a chunk must not get the stream cut.
    go_on = threading.Event()
    server.reply(chunked_head() + b"5\r\nhello\r\n", go_on, b"5\r\nworld\r\n0\r\n\r\n")
    b = backend_for(server.url, timeout=0.3)
    pieces = iter_body(client.send(b, post(server.url + "/x")), b)
    assert next(pieces) == b"hello"
    time.sleep(0.8)  # well past the timeout, not waiting in a read
    go_on.set()
    assert b"".join(pieces) == b"world"


def test_the_stall_watch_shuts_down_only_connections_waiting_too_long():
    from app.upstream.http import _Conn, _StallWatch

    watch = _StallWatch()
    pairs = [socket.socketpair() for _ in range(3)]
    waiting_long, waiting_short, not_waiting = (_Conn(a, ("b", "http://h", 80)) for a, _ in pairs)
    try:
        watch._conns.update({id(c): c for c in (waiting_long, waiting_short, not_waiting)})
        for c in (waiting_long, waiting_short, not_waiting):
            c.timeout = 5.0
        waiting_long.waiting_since, waiting_short.waiting_since = 100.0, 103.0
        watch.sweep(now=105.5)
        assert (waiting_long.stalled, waiting_short.stalled, not_waiting.stalled) == (True, False, False)
        assert list(watch._conns) == [id(waiting_short), id(not_waiting)]
        with pytest.raises(TimeoutError):  # the shut-down socket's read reports the stall
            waiting_long.recv()
        pairs[1][1].sendall(b"x")
        assert waiting_short.recv() == b"x"
    finally:
        for a, b_ in pairs:
            a.close()
            b_.close()


def test_close_mid_chunked_body_is_incomplete_read(server, client):
    server.reply(chunked_head() + b"5\r\nhello\r\n3\r\nab", CLOSE)
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (IncompleteRead).",
                 read_body, resp, b)


def test_close_mid_content_length_body_is_incomplete_read(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", CLOSE)
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (IncompleteRead).",
                 read_body, resp, b)


def test_invalid_chunk_size_is_bad_gateway(server, client):
    server.reply(chunked_head() + b"zz\r\nhello\r\n0\r\n\r\n").reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (InvalidChunkLength).",
                 read_body, resp, b)
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


@pytest.mark.parametrize("reply", [b"HTTP/1.1 OK\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"ICY 200 OK\r\n\r\n",
                                   b"garbage\r\n\r\n", b"HTTP/1.1 2\xb20 OK\r\n\r\n"])
def test_bad_status_line_is_bad_gateway(server, client, reply):
    server.reply(reply)
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (BadStatusLine).",
                 client.send, b, post(server.url + "/x"))
    assert server.conns[0].closed.wait(2)  # our end was closed, not leaked


@pytest.mark.parametrize("value", [b"ten", b"-1", b"+5", b"", b"0x10"])
def test_bad_content_length_is_bad_gateway(server, client, value):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n")
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (InvalidHeader).",
                 client.send, b, post(server.url + "/x"))
    assert server.conns[0].closed.wait(2)


def test_superscript_digit_in_content_length_is_bad_gateway(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\xb2\r\n\r\n")
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (InvalidHeader).",
                 client.send, b, post(server.url + "/x"))
    assert server.conns[0].closed.wait(2)


def test_oversized_head_is_bad_gateway(server, client):
    # over 64 KiB of head with its end not yet in sight
    server.reply(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 70000, HANG)
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (LineTooLong).",
                 client.send, b, post(server.url + "/x"))


def test_reply_over_the_limit_is_bad_gateway_and_connection_dropped(server, client):
    rest_may_go = threading.Event()
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789", rest_may_go, b"abcdefghij")
    server.reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    try:
        expect_error(ErrorKind.bad_gateway, "Backend 'b' reply exceeds 8 bytes.", read_body, resp, b, limit=8)
    finally:
        rest_may_go.set()
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


def test_reply_over_the_limit_read_to_its_end_is_still_not_reused(server, client):
    server.reply(ok(b"0123456789")).reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    expect_error(ErrorKind.bad_gateway, "Backend 'b' reply exceeds 8 bytes.", read_body, resp, b, limit=8)
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


def test_conflicting_content_lengths_are_bad_gateway(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!")
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (InvalidHeader).",
                 client.send, backend_for(server.url), post(server.url + "/x"))


def test_repeated_equal_content_lengths_are_one(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    assert fetch(client, backend_for(server.url)) == b"hello"


def test_head_with_bare_lf_line_ends(server, client):
    server.reply(b"HTTP/1.1 200 OK\nContent-Length: 8\nX-A: 1\n\nab\r\n\r\ncd")
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    assert resp.headers["x-a"] == "1"
    assert read_body(resp, b) == b"ab\r\n\r\ncd"


def test_head_over_64_kib_in_one_read_is_bad_gateway(server, client):
    server.reply(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok")
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (LineTooLong).",
                 client.send, backend_for(server.url), post(server.url + "/x"))


def test_reply_at_the_limit_is_fine(server, client):
    server.reply(ok(b"12345678"))
    b = backend_for(server.url)
    assert fetch(client, b, limit=8) == b"12345678"


def test_limit_counts_decoded_bytes(server, client):
    server.reply(ok(gzip.compress(b"a" * 1000), b"Content-Encoding: gzip\r\n"))
    b = backend_for(server.url)
    expect_error(ErrorKind.bad_gateway, "Backend 'b' reply exceeds 500 bytes.", fetch, client, b, limit=500)


def test_closing_a_streamed_reply_early_drops_the_connection(server, client):
    server.reply(chunked_head() + b"5\r\nfirst\r\n", HANG).reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    for piece in iter_body(resp, b):
        assert piece == b"first"
        break
    resp.close()
    resp.close()  # idempotent
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2
    assert server.conns[0].closed.wait(2)  # the server saw us hang up


def test_closing_an_unread_reply_drops_the_connection(server, client):
    server.reply(ok(b"never read")).reply(ok(b"next"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    resp.close()
    assert fetch(client, b) == b"next"
    assert len(server.conns) == 2


def test_body_of_a_closed_reply_cannot_be_read(server, client):
    server.reply(ok(b"body"))
    b = backend_for(server.url)
    resp = client.send(b, post(server.url + "/x"))
    resp.close()
    expect_error(ErrorKind.bad_gateway, "Connection to backend 'b' broke mid-response (ConnectionError).",
                 read_body, resp, b)


def test_two_backends_on_one_origin_keep_separate_pools(server, client):
    server.reply(ok(b"a1")).reply(ok(b"b1")).reply(ok(b"a2")).reply(ok(b"b2"))
    a, b = backend_for(server.url, name="a"), backend_for(server.url, name="b")
    assert fetch(client, a) == b"a1"
    assert fetch(client, b) == b"b1"  # a's idle connection is not b's
    assert fetch(client, a) == b"a2"
    assert fetch(client, b) == b"b2"
    assert [len(c.requests) for c in server.conns] == [2, 2]


def test_client_close_closes_idle_connections(server, client):
    server.reply(ok(b"one")).reply(ok(b"two"))
    b = backend_for(server.url)
    assert fetch(client, b) == b"one"
    client.close()
    assert server.conns[0].closed.wait(2)
    assert fetch(client, b) == b"two"  # still usable: opens a new connection
    assert len(server.conns) == 2


def test_a_held_connection_carries_a_run_of_requests_outside_the_pool(server, client):
    """A queued job's polls: one connection, kept by its holder between them, while another
    call meanwhile opens its own; released, it goes to the pool (or is closed)."""
    for body in (b"p1", b"other", b"p2", b"pooled", b"h1"):
        server.reply(ok(body))
    b = backend_for(server.url)
    held = HeldConnection(client)
    assert read_body(client.send(b, post(server.url + "/x"), hold=held), b) == b"p1"
    assert fetch(client, b) == b"other"  # not on the held connection
    assert read_body(client.send(b, post(server.url + "/x"), hold=held), b) == b"p2"
    assert [len(c.requests) for c in server.conns] == [2, 1]
    held.release()
    assert fetch(client, b) == b"pooled"  # the pool's last checked-in: the held one
    assert [len(c.requests) for c in server.conns] == [3, 1]
    again = HeldConnection(client)
    assert read_body(client.send(b, post(server.url + "/x"), hold=again), b) == b"h1"
    again.release(reuse=False)
    assert server.conns[0].closed.wait(2)


# ================================================================ TLS


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip("openssl could not make a certificate: " + done.stderr.decode(errors="replace")[-300:])
    return cert, key


@pytest.fixture
def tls_server(self_signed):
    cert, key = self_signed
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    s = ScriptedServer(tls=ctx)
    s.url = s.url.replace("http://", "https://")
    yield s
    s.stop()
    assert not s.errors, s.errors


def test_tls_with_our_ca_file(tls_server, self_signed):
    tls_server.reply(ok(b"secure")).reply(ok(b"again"))
    client = UpstreamClient(ca_file=str(self_signed[0]))
    try:
        b = backend_for(tls_server.url)
        assert fetch(client, b) == b"secure"
        assert fetch(client, b) == b"again"
        assert len(tls_server.conns) == 1
        assert tls_server.requests[0].startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % tls_server.port)
    finally:
        client.close()


def test_tls_untrusted_certificate_is_bad_gateway(tls_server, client):
    tls_server.reply(ok(b"must not be reached"))
    b = backend_for(tls_server.url)
    expect_error(ErrorKind.bad_gateway, "Could not reach backend 'b' (SSLError).", client.send, b,
                 post(tls_server.url + "/x"))
    assert tls_server.requests == []
