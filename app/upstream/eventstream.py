"""The AWS event stream framing (`application/vnd.amazon.eventstream`): bytes
in, whole messages out as `Frame`s, whatever the chunk boundaries.

The binary layout and its CRCs are decoded by botocore's own parser
(`botocore.eventstream.EventStreamBuffer`), the one every AWS SDK for Python
uses; this module only turns its messages into the `Frame` shape the SSE
framer yields, so protocol stream parsers are fed frames either way:

- an event (`:message-type: event`): `Frame(<:event-type>, <payload as text>)`;
- an exception (`:message-type: exception`): `Frame("exception:" + <:exception-type>,
  <payload>)`, e.g. `exception:throttlingException` with `{"message": ...}`;
- a generic error (`:message-type: error`, no payload): `Frame("error:" + <:error-code>,
  <:error-message>)`.

A corrupted message (CRC mismatch, impossible lengths, a bad header) and a
stream that ends inside a message are a `ProxyError` (bad gateway): the relay
turns it into the client's in-stream error.
"""
from __future__ import annotations

import struct

from botocore.eventstream import EventStreamBuffer, ParserError

from app.errors import ErrorKind, ProxyError
from app.upstream.framing import Frame

CONTENT_TYPE = "application/vnd.amazon.eventstream"
EXCEPTION_PREFIX = "exception:"
ERROR_PREFIX = "error:"


def is_exception(frame: Frame) -> bool:
    """An exception or error message rather than an event."""
    event = frame.event or ""
    return event.startswith(EXCEPTION_PREFIX) or event.startswith(ERROR_PREFIX)


class EventStreamFramer:
    """Incremental event-stream decoder with the SSEFramer's interface
    (`feed(chunk) -> frames`, `close() -> frames`, `keepalive`)."""

    __slots__ = ("_buffer", "_pending", "_failed", "keepalive")

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._pending = 0  # bytes fed that are not yet part of a whole message
        self._failed = False
        self.keepalive = False  # the event stream has no keep-alive message: never set

    def feed(self, chunk: bytes) -> list[Frame]:
        if self._failed or not chunk:
            return []
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        frames: list[Frame] = []
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                frames.append(_frame(message.headers, message.payload))
        except (ParserError, struct.error, KeyError, IndexError, ValueError) as exc:
            # ValueError covers a header value that is not UTF-8; KeyError an unknown header type.
            self._failed = True
            raise ProxyError(ErrorKind.bad_gateway,
                             f"upstream sent a corrupted event stream message ({type(exc).__name__})") from None
        return frames

    def close(self) -> list[Frame]:
        """End of stream: nothing is pending in a well-formed stream."""
        if self._pending and not self._failed:
            self._failed = True
            raise ProxyError(ErrorKind.bad_gateway,
                             f"upstream event stream ended inside a message ({self._pending} bytes of it received)")
        return []


def _frame(headers: dict, payload: bytes) -> Frame:
    message_type = headers.get(":message-type", "event")
    if message_type == "exception":
        return Frame(EXCEPTION_PREFIX + str(headers.get(":exception-type", "")), payload.decode("utf-8", "replace"))
    if message_type == "error":
        return Frame(ERROR_PREFIX + str(headers.get(":error-code", "")), str(headers.get(":error-message", "")))
    return Frame(str(headers.get(":event-type", "")), payload.decode("utf-8", "replace"))
