"""app.http_head: request heads in, the framing the server will use (or the
status it refuses with) out."""
from __future__ import annotations

import io

import pytest

from app.http_head import MAX_FIELDS, HeadError, read_head


def head(text: bytes):
    """Parse a head given whole (request line first, blank line last)."""
    stream = io.BytesIO(text)
    return read_head(stream.readline(8193), stream.readline)


def refused(text: bytes) -> HeadError:
    with pytest.raises(HeadError) as e:
        head(text)
    return e.value


def test_a_plain_post():
    h = head(b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: proxy:9001\r\nContent-Type: application/json\r\n"
             b"Content-Length: 12\r\nX-Api-Key:  k \t\r\n\r\n")
    assert (h.method, h.target, h.version) == ("POST", "/v1/messages?beta=true", "HTTP/1.1")
    assert (h.content_length, h.chunked, h.close) == (12, False, False)
    assert list(h.headers.headers) == ["Host: proxy:9001\r\n", "Content-Type: application/json\r\n",
                                       "Content-Length: 12\r\n", "X-Api-Key: k\r\n"]
    assert h.headers.get("x-api-key") == "k" and h.headers.typeheader == "application/json"


def test_the_first_of_repeated_fields_is_what_get_answers():
    h = head(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert h.headers.get("X-A") == "1"
    assert list(h.headers.headers)[1:] == ["X-A: 1\r\n", "x-a: 2\r\n"]


def test_chunked():
    h = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n")
    assert (h.content_length, h.chunked) == (None, True)


def test_a_repeated_equal_length_becomes_one_field():
    h = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nX: y\r\nContent-Length: 7, 7\r\n\r\n")
    assert h.content_length == 7
    assert h.headers.get("content-length") == "7"
    assert [line for line in h.headers.headers if line.lower().startswith("content-length")] == \
        ["Content-Length: 7\r\n"]


@pytest.mark.parametrize("version,connection,close", [
    ("1.1", None, False), ("1.1", "keep-alive", False), ("1.1", "close", True), ("1.1", "Keep-Alive, Close", True),
    ("1.1", "TE,close", True), ("1.1", "closed", False), ("1.0", None, True), ("1.0", "keep-alive", False),
    ("1.0", "keep-alive, close", True),
])
def test_connection_options(version, connection, close):
    text = f"GET / HTTP/{version}\r\nHost: x\r\n" + (f"Connection: {connection}\r\n" if connection else "") + "\r\n"
    assert head(text.encode()).close is close


@pytest.mark.parametrize("text,status", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nN: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nN: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nN: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nN\x7f: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nN: " + b"a" * 65536 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"N: a\r\n" * MAX_FIELDS + b"\r\n", 431),
    (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    (b"GET /\r\n\r\n", 400),
    (b"GET / x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400),
])
def test_refused_heads(text, status):
    assert refused(text).status == status


def test_one_field_fewer_than_the_limit_is_taken():
    h = head(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"N: a\r\n" * (MAX_FIELDS - 1) + b"\r\n")
    assert len(list(h.headers.headers)) == MAX_FIELDS


@pytest.mark.parametrize("text", [b"GET / HTTP/1.1", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\nHost: x"])
def test_a_head_cut_short_is_none(text):
    assert head(text) is None


def test_a_field_value_keeps_inner_whitespace_and_obs_text():
    h = head(b"GET / HTTP/1.1\r\nHost: x\r\nN: \t a \t b \t\r\nL: caf\xe9\r\n\r\n")
    assert h.headers.get("n") == "a \t b" and h.headers.get("l") == "caf\u00e9"
