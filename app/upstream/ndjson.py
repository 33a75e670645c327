"""The NDJSON stream framing (`application/x-ndjson`, Ollama's native streams):
bytes in, one `Frame(None, <line>)` per JSON line out, whatever the chunk
boundaries, so protocol stream parsers are fed frames as with SSE.

Lines end with `\\n` (a `\\r` before it is dropped); blank lines carry nothing.
A last line without its line end is dispatched at close: the parser, not the
framing, judges whether the stream ended where it should. Lines are decoded
as UTF-8 once they are whole, so a character split across chunks survives.
"""
from __future__ import annotations

from app.upstream.framing import Frame

CONTENT_TYPE = "application/x-ndjson"


class NDJSONFramer:
    """Incremental NDJSON decoder with the SSEFramer's interface
    (`feed(chunk) -> frames`, `close() -> frames`, `keepalive`)."""

    __slots__ = ("_tail", "keepalive")

    def __init__(self) -> None:
        self.keepalive = False  # NDJSON has no keep-alive line: never set
        # The unfinished last line, in pieces: joined once when its line end comes.
        self._tail: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Frame]:
        if b"\n" not in chunk:
            if chunk:
                self._tail.append(chunk)
            return []
        if self._tail:
            self._tail.append(chunk)
            chunk = b"".join(self._tail)
        lines = chunk.split(b"\n")
        rest = lines.pop()
        self._tail = [rest] if rest else []
        return [frame for line in lines if (frame := _frame(line)) is not None]

    def close(self) -> list[Frame]:
        """End of stream: a last line without its line end, if any."""
        rest, self._tail = b"".join(self._tail), []
        frame = _frame(rest)
        return [] if frame is None else [frame]


def _frame(line: bytes) -> Frame | None:
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        return None
    return Frame(None, line.decode("utf-8", "replace"))
