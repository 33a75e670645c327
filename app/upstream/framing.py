"""Stream framings: bytes in, whole frames out, whatever the chunk boundaries.

Protocol stream parsers are fed frames, never raw bytes, so splitting at any
byte (inside a UTF-8 sequence, between `\\r` and `\\n`) is handled here once.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched SSE event. `event` is None when the stream has no `event:` lines.

    Lines that are not SSE fields (a provider writing raw JSON into an event
    stream, as Gemini does for some mid-stream errors) are collected into a
    frame whose `event` is "raw" and whose `data` is those lines joined.
    """
    event: str | None
    data: str


_FIELDS = (b"data", b"event", b"id", b"retry")


class SSEFramer:
    """Incremental Server-Sent Events decoder (WHATWG rules: `\\n`, `\\r\\n` or `\\r`
    line ends; multi-line `data:` joined with `\\n`; one space after the colon
    dropped; comment lines ignored)."""

    __slots__ = ("_buf", "_event", "_data", "_raw")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._raw: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buf + chunk if self._buf else chunk
        frames: list[Frame] = []
        if b"\r" in buf:
            # Slow path: normalise line ends, but keep a trailing \r until we
            # know whether \n follows in the next chunk.
            keep = b""
            if buf.endswith(b"\r"):
                buf, keep = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            self._buf = lines.pop() + keep
        else:
            lines = buf.split(b"\n")
            self._buf = lines.pop()
        for line in lines:
            self._line(line, frames)
        return frames

    def close(self) -> list[Frame]:
        """End of stream: dispatch what is pending (a last event without its blank line)."""
        frames: list[Frame] = []
        if self._buf:
            rest = self._buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._buf = b""
            for line in rest.split(b"\n"):
                self._line(line, frames)
        self._dispatch(frames)
        return frames

    def _line(self, line: bytes, frames: list[Frame]) -> None:
        if not line:
            self._dispatch(frames)
            return
        if line[0:1] == b":":
            return
        colon = line.find(b":")
        name = line if colon < 0 else line[:colon]
        if name not in _FIELDS:
            self._raw.append(line)
            return
        value = b"" if colon < 0 else line[colon + 1:]
        if value[0:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _dispatch(self, frames: list[Frame]) -> None:
        if self._raw:
            frames.append(Frame("raw", b"\n".join(self._raw).decode("utf-8", "replace")))
            self._raw = []
        if self._data:
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            frames.append(Frame(self._event, data.decode("utf-8", "replace")))
        self._data = []
        self._event = None


def encode_sse(data: str | bytes, event: str | None = None) -> bytes:
    """One SSE event. `data` must be a single line (JSON from a compact serializer is)."""
    if isinstance(data, str):
        data = data.encode()
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
