"""A client's request head (request line and header fields), read and checked
as RFC 9112 asks of a server before it trusts the message framing.

Refused, each with the status to answer before the connection is closed
(`HeadError`): a request line that is not `METHOD SP target SP HTTP/1.x`
(400; 414 when longer than MAX_REQUEST_LINE; 505 for another version); a
field line that is not `token ":" value` without control characters (no
colon, whitespace before the colon, obsolete line folding, NUL/CR/other
controls: 400); more than MAX_FIELDS fields or a field line longer than
MAX_FIELD_LINE (431); an HTTP/1.1 request without exactly one Host (400);
Content-Length beside Transfer-Encoding, two different lengths, a length that
is not plain digits (400); a Transfer-Encoding whose final coding is not
`chunked`, or any on HTTP/1.0 (400); another coding before `chunked` (501).

The parse is on the hot path: one regex match per line, one dict of the
fields, and the framing fields looked at only when present.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

MAX_REQUEST_LINE = 8192  # gevent's limit; clients send paths far shorter
MAX_FIELD_LINE = 65536  # http.client's
MAX_FIELDS = 100  # http.client's
_MAX_LENGTH_DIGITS = 18  # a Content-Length that fits in 64 bits

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_REQUEST_LINE = re.compile(rb"([" + _TCHAR + rb"]+) ([!-~\x80-\xff]+) HTTP/([0-9])\.([0-9])\r?\n")
# The value may hold HTAB, SP, visible characters and obs-text; the optional
# whitespace around it is stripped afterwards (a regex for it would backtrack).
_FIELD_LINE = re.compile(rb"([" + _TCHAR + rb"]+):([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")
_TOKEN = re.compile(rb"[" + _TCHAR + rb"]+")
_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*")
_FRAMING_FIELDS = frozenset(("host", "content-length", "transfer-encoding", "connection"))

STATUS_TEXT = {400: "Bad Request", 414: "URI Too Long",
               431: "Request Header Fields Too Large", 501: "Not Implemented",
               505: "HTTP Version Not Supported"}


class HeadError(Exception):
    """The request head cannot be served: answer `status` and close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class RequestHeaders:
    """The header fields as gevent's WSGI handler reads them (`get`,
    `getheader`, `typeheader`, `headers`, `status`), as its email-parser based
    message answers them, without the email parser."""

    __slots__ = ("_pairs", "_first", "status")

    def __init__(self, pairs: list[tuple[str, str]], first: dict[str, str]):
        self._pairs = pairs
        self._first = first  # lower-cased name -> first value
        self.status = ""

    def get(self, name: str, default=None):
        return self._first.get(name.lower(), default)

    getheader = get

    @property
    def headers(self) -> Iterator[str]:
        for key, value in self._pairs:
            yield f"{key}: {value}\r\n"

    @property
    def typeheader(self) -> str | None:
        return self._first.get("content-type")


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: RequestHeaders
    content_length: int | None  # None: no Content-Length (chunked, or no body)
    chunked: bool
    close: bool  # the client asked for the connection to be closed after the reply


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """(method, target, version) of a request line read with its line end."""
    if len(line) > MAX_REQUEST_LINE:
        raise HeadError(414, f"The request line exceeds {MAX_REQUEST_LINE} bytes.")
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise HeadError(400, "Malformed request line; expected 'METHOD /path HTTP/1.1'.")
    major, minor = m.group(3), m.group(4)
    if major != b"1" or minor not in (b"0", b"1"):
        raise HeadError(505, f"HTTP/{major.decode()}.{minor.decode()} is not supported; use HTTP/1.1.")
    return m.group(1).decode("ascii"), m.group(2).decode("latin-1"), "HTTP/1." + minor.decode()


def read_head(request_line: bytes, readline: Callable[[int], bytes]) -> RequestHead | None:
    """The head whose request line (with its line end) was read; the fields are
    read with `readline(limit)`. None when the connection ended mid-head."""
    if not request_line.endswith(b"\n") and len(request_line) <= MAX_REQUEST_LINE:
        return None
    method, target, version = parse_request_line(request_line)
    pairs: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    framing: list[tuple[str, str]] | None = None
    while True:
        line = readline(MAX_FIELD_LINE + 1)
        if line == b"\r\n" or line == b"\n":
            break
        if not line.endswith(b"\n"):
            if len(line) > MAX_FIELD_LINE:
                raise HeadError(431, f"A header line exceeds {MAX_FIELD_LINE} bytes.")
            return None  # the connection ended mid-head
        if len(pairs) == MAX_FIELDS:
            raise HeadError(431, f"More than {MAX_FIELDS} header fields.")
        m = _FIELD_LINE.fullmatch(line)
        if m is None:
            raise HeadError(400, _field_line_problem(line))
        name = m.group(1).decode("ascii")
        value = m.group(2).decode("latin-1").strip(" \t")
        pairs.append((name, value))
        key = name.lower()
        if key in _FRAMING_FIELDS:
            if framing is None:
                framing = []
            framing.append((key, value))
        if key not in first:
            first[key] = value
    length, chunked, close = _framing(version, framing or (), first, pairs)
    return RequestHead(method, target, version, RequestHeaders(pairs, first), length, chunked, close)


def _framing(version: str, fields, first: dict[str, str],
             pairs: list[tuple[str, str]]) -> tuple[int | None, bool, bool]:
    """(Content-Length, chunked, close) from the framing fields, or a HeadError."""
    hosts: list[str] = []
    lengths: list[str] = []
    codings: list[str] = []
    options: list[str] = []
    for key, value in fields:
        if key == "host":
            hosts.append(value)
        elif key == "content-length":
            lengths += value.split(",")
        elif key == "transfer-encoding":
            codings += value.split(",")
        else:
            options += value.lower().split(",")
    if len(hosts) > 1:
        raise HeadError(400, "More than one Host header.")
    if not hosts and version == "HTTP/1.1":
        raise HeadError(400, "An HTTP/1.1 request needs a Host header.")
    if hosts and _HOST.fullmatch(hosts[0]) is None:
        raise HeadError(400, "The Host header is not a host name.")
    length = None
    if lengths:
        values = {v.strip(" \t") for v in lengths}
        if len(values) > 1:
            raise HeadError(400, "Content-Length is given more than once with different values.")
        (text,) = values
        if not (text.isascii() and text.isdigit()) or len(text) > _MAX_LENGTH_DIGITS:
            raise HeadError(400, "Content-Length must be a decimal number of bytes.")
        length = int(text)
        if len(lengths) > 1:  # the same value repeated: one field with it, as RFC 9110 8.6 allows
            first["content-length"] = text
            pairs[:] = [(k, v) for k, v in pairs if k.lower() != "content-length"] + [("Content-Length", text)]
    chunked = False
    if codings:
        if version == "HTTP/1.0":
            raise HeadError(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request.")
        if lengths:
            raise HeadError(400, "Content-Length and Transfer-Encoding must not be sent together.")
        codings = [c.strip(" \t").lower() for c in codings]
        if codings[-1] != "chunked" or "" in codings or codings.count("chunked") > 1:
            raise HeadError(400, "Transfer-Encoding must end with chunked, applied once.")
        if len(codings) > 1:
            raise HeadError(501, "Only the chunked transfer coding is supported.")
        chunked = True
    options = [o.strip(" \t") for o in options]
    if version == "HTTP/1.1":
        close = "close" in options
    else:
        close = "close" in options or "keep-alive" not in options
    return length, chunked, close


def _field_line_problem(line: bytes) -> str:
    """Why a field line is refused (the slow path: only for a refused line)."""
    if line[:1] in (b" ", b"\t"):
        return "Obsolete line folding (a header line starting with whitespace) is not accepted."
    name, colon, _ = line.partition(b":")
    if not colon:
        return "A header line without a colon."
    if name != name.rstrip(b" \t"):
        return "Whitespace between a header name and its colon."
    if _TOKEN.fullmatch(name) is None:
        return "A header name with a character outside the token characters."
    return "A control character in a header value."
