"""Writing the AWS event stream (`application/vnd.amazon.eventstream`) for real:
prelude (total length, headers length, prelude CRC32), string headers,
payload, message CRC32. botocore only decodes, so the mock encodes here."""
from __future__ import annotations

import binascii
import struct

_STRING = 7  # header value type: UTF-8 string with a 2-byte length


def encode_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One message; headers are written in the order given (Bedrock's own order matters to no parser,
    but keeping it makes captures comparable)."""
    encoded = b"".join(_header(name, value) for name, value in headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def encode_event(event_type: str, payload: bytes) -> bytes:
    """An event, with the headers in the order Bedrock sends them (live capture)."""
    return encode_message([(":event-type", event_type), (":content-type", "application/json"),
                           (":message-type", "event")], payload)


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    """A mid-stream exception (`:exception-type` is the lowerCamel union member name)."""
    return encode_message([(":message-type", "exception"), (":exception-type", exception_type),
                           (":content-type", "application/json")], payload)


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value
