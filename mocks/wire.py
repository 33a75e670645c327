"""What every emulated provider shares on the wire: deterministic ids, the
three JSON spellings real providers use, request-body reading with a size
cap, and the error type that carries an already-shaped provider envelope."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import socket
from typing import Any, Mapping

import orjson

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def stable_id(seed: bytes, salt: str = "", length: int = 24) -> str:
    """A base62 id derived from `seed` (the request) and `salt` (which id it is):
    the same request always gets the same ids, different salts differ."""
    digest = hashlib.sha512(salt.encode() + b"\0" + seed).digest()
    return "".join(_BASE62[byte % 62] for byte in digest[:length])


def compact_json(obj: Any) -> str:
    """OpenAI/Anthropic style: no whitespace."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def google_sse_json(obj: Any) -> str:
    """Gemini SSE chunk style as recorded: a space after colons, none after commas."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ": "))


def pretty_json(obj: Any, indent: int = 2) -> str:
    """Indented bodies (OpenAI non-streamed replies, every Google JSON body)."""
    return json.dumps(obj, ensure_ascii=False, indent=indent)


def json_type_name(value: Any) -> str:
    """The JSON type of a parsed value, named the way validation messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, valid UTF-8); raises ValueError."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_\-]*={0,2}$")


def decode_base64(text: str) -> bytes | None:
    """Standard or URL-safe base64 with optional padding (what Google and
    Anthropic accept); None when it is not base64."""
    if not isinstance(text, str) or not _B64_CHARS.match(text):
        return None
    cleaned = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(cleaned) % 4 == 1:
        return None
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes) -> str | None:
    """Media type from the first bytes, for the 'image does not match' checks."""
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ApiError(Exception):
    """A rejection already shaped as the provider's own envelope.

    Validation code raises it anywhere; the provider turns it into bytes with
    its own JSON spelling and headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


# The largest body any emulated API accepts (Anthropic: 32 MB, enforced by
# Cloudflare in front of it). Bodies beyond DRAIN_LIMIT are not even read.
MAX_BODY_BYTES = 32 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024


def read_body(stream: Any, content_length: int | None, limit: int = MAX_BODY_BYTES) -> tuple[bytes, bool]:
    """Read a request body, keeping at most `limit` bytes.

    Returns (body, too_large). An oversized body is still drained (up to
    DRAIN_LIMIT) so the client can read our error instead of a reset."""
    if content_length is not None and content_length > DRAIN_LIMIT:
        return b"", True
    chunks: list[bytes] = []
    total = 0
    too_large = False
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            too_large = True
            chunks = []
            if total > DRAIN_LIMIT:
                break
        elif not too_large:
            chunks.append(chunk)
    return b"".join(chunks), too_large


def drop_connection(sock: socket.socket | None) -> None:
    """Close the TCP connection under a response that is still being written,
    so the client sees a truncated body (no terminal chunk), as on a real cut."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
