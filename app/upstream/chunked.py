"""HTTP/1.1 chunked transfer coding, decoded incrementally (RFC 9112 §7.1).

A small state machine fed whatever the socket returned: it hands back all the
payload those bytes completed or started, so a burst of stream frames that
arrived in one read goes on as one piece. Nothing here knows about sockets.
"""
from __future__ import annotations

_MAX_LINE = 4096  # a chunk-size line or trailer field longer than this is not HTTP we accept


class ChunkedError(Exception):
    """The bytes broke the chunked coding; the message says where."""


class ChunkedDecoder:
    """`feed(data) -> payload`; `done` once the last chunk and trailers are in.
    Bytes after the end of the body are kept in `rest` (they belong to the
    connection, not to this reply)."""

    __slots__ = ("_buf", "_left", "_state", "done", "rest")

    def __init__(self) -> None:
        self._buf = b""  # an unfinished size, CRLF or trailer line
        self._left = 0  # payload bytes of the current chunk still to come
        self._state = "size"  # size | data | crlf | trailer
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.rest += data
            return b""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._state == "data":
                take = min(self._left, n - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._state = "crlf"
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                pending = n - pos - (1 if data.endswith(b"\r") else 0)  # a CR may be half of the line end
                if pending > _MAX_LINE:
                    raise ChunkedError("a chunk-size or trailer line is too long")
                self._buf = data[pos:]
                break
            line = data[pos:end]
            pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > _MAX_LINE:  # the same limit whether the line came in one read or many
                raise ChunkedError("a chunk-size or trailer line is too long")
            if self._state == "size":
                self._size_line(line)
            elif self._state == "crlf":
                if line:
                    raise ChunkedError("a chunk's data does not end with CRLF")
                self._state = "size"
            elif not line:  # the empty line after the trailer fields: the body is complete
                self.done = True
                self.rest = data[pos:]
                break
        return out[0] if len(out) == 1 else b"".join(out)

    def _size_line(self, line: bytes) -> None:
        digits = line.split(b";", 1)[0].strip()  # chunk extensions are ignored, as the RFC allows
        if not digits or len(digits) > 16 or digits.lstrip(b"0123456789abcdefABCDEF"):
            raise ChunkedError(f"bad chunk-size line {line[:40]!r}")
        size = int(digits, 16)
        if size:
            self._left, self._state = size, "data"
        else:
            self._state = "trailer"
