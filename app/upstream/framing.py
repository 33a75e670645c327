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
    dropped; comment lines ignored). `keepalive` is set when a comment line was read
    (a provider's keep-alive, OpenRouter's `: OPENROUTER PROCESSING`); the reader clears it."""

    __slots__ = ("_tail", "_event", "_data", "_raw", "keepalive")

    def __init__(self) -> None:
        # The unfinished last line, in pieces: a long line arriving in many
        # chunks is joined once when its line end comes, never re-copied and
        # re-scanned on every chunk.
        self._tail: list[bytes] = []
        self._event: str | None = None
        self._data: list[bytes] = []
        self._raw: list[bytes] = []
        self.keepalive = False

    def feed(self, chunk: bytes) -> list[Frame]:
        tail = self._tail
        if not tail and chunk.endswith(b"\n\n") and b"\r" not in chunk and not self._data \
                and not self._raw and self._event is None:
            return self._whole_events(chunk)
        if b"\n" not in chunk and b"\r" not in chunk and not (tail and tail[-1].endswith(b"\r")):
            if chunk:
                tail.append(chunk)  # still inside the same line
            return []
        if tail:
            tail.append(chunk)
            buf = b"".join(tail)
        else:
            buf = chunk
        frames: list[Frame] = []
        if b"\r" in buf:
            # Slow path: normalise line ends, but keep a trailing \r until we
            # know whether \n follows in the next chunk.
            keep = b""
            if buf.endswith(b"\r"):
                buf, keep = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            rest = lines.pop() + keep
        else:
            lines = buf.split(b"\n")
            rest = lines.pop()
        self._tail = [rest] if rest else []
        for line in lines:
            self._line(line, frames)
        return frames

    def _whole_events(self, chunk: bytes) -> list[Frame]:
        """The usual case, a chunk of whole events (`data: ...` or `event: ...`
        then `data: ...`) and nothing pending: one split per event instead of
        a call per line. Any other event shape goes through the line rules."""
        frames: list[Frame] = []
        for block in chunk[:-2].split(b"\n\n"):
            frame = _simple_event(block)
            if frame is not None:
                frames.append(frame)
                continue
            for line in block.split(b"\n"):
                self._line(line, frames)
            self._dispatch(frames)
        return frames

    def close(self) -> list[Frame]:
        """End of stream: dispatch what is pending (a last event without its blank line)."""
        frames: list[Frame] = []
        if self._tail:
            rest = b"".join(self._tail).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._tail = []
            for line in rest.split(b"\n"):
                self._line(line, frames)
        self._dispatch(frames)
        return frames

    def _line(self, line: bytes, frames: list[Frame]) -> None:
        if not line:
            self._dispatch(frames)
            return
        if line[0:1] == b":":
            self.keepalive = True
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


def _simple_event(block: bytes) -> Frame | None:
    """`data: X` or `event: E` + `data: X` (one data line) as a Frame, exactly as
    the line rules read it; None for anything else."""
    if block.startswith(b"data:"):
        if b"\n" in block:
            return None
        value = block[5:]
        if value[:1] == b" ":
            value = value[1:]
        return Frame(None, value.decode("utf-8", "replace"))
    if block.startswith(b"event:"):
        nl = block.find(b"\n")
        if nl < 0:
            return None
        rest = block[nl + 1:]
        if not rest.startswith(b"data:") or b"\n" in rest:
            return None
        event = block[6:nl]
        if event[:1] == b" ":
            event = event[1:]
        value = rest[5:]
        if value[:1] == b" ":
            value = value[1:]
        return Frame(event.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return None


def encode_sse(data: str | bytes, event: str | None = None) -> bytes:
    """One SSE event. `data` must be a single line (JSON from a compact serializer is)."""
    if isinstance(data, str):
        data = data.encode()
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def framer(name: str):
    """A new framer for a provider's declared stream framing ("sse", "aws-eventstream", "ndjson")."""
    if name == "sse":
        return SSEFramer()
    if name == "ndjson":
        from app.upstream.ndjson import NDJSONFramer  # imports this module: loaded on first use
        return NDJSONFramer()
    if name == "aws-eventstream":
        from app.upstream.eventstream import EventStreamFramer  # botocore: only where a provider uses it
        return EventStreamFramer()
    raise ValueError(f"unknown stream framing {name!r}")


FRAMINGS = ("sse", "aws-eventstream", "ndjson")
