"""Tool-call identity: synthesized ids for Gemini calls without one, and the thoughtSignature carried inside them."""
from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any


_SYNTHESIZED_ID = re.compile(r"call_[0-9a-f]{20}")
_SIGNATURE_MARK = "_ts_"
_BASE64_ANY_ALPHABET = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_BASE64_URLSAFE_UNPADDED = re.compile(r"[A-Za-z0-9_-]+")


def synthesize_call_id(*seed: object) -> str:
    """A deterministic id for a call Gemini sent without one: same seed, same id."""
    digest = hashlib.sha256("\x1f".join(map(str, seed)).encode()).hexdigest()
    return "call_" + digest[:20]


def encode_signature_in_id(call_id: str, signature: str) -> str:
    """Carry a thoughtSignature inside a tool-call id, in the characters every
    protocol's id field accepts (Anthropic: `[a-zA-Z0-9_-]`)."""
    if not signature or not _BASE64_ANY_ALPHABET.fullmatch(signature):
        return call_id  # not base64: it cannot ride in an id unchanged
    urlsafe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return call_id + _SIGNATURE_MARK + urlsafe


def split_signature_id(call_id: str) -> tuple[str, str | None]:
    """(id without the signature, the signature in the standard alphabet with
    its padding restored) — the inverse of `encode_signature_in_id`."""
    base, mark, encoded = call_id.partition(_SIGNATURE_MARK)
    if not mark or not _BASE64_URLSAFE_UNPADDED.fullmatch(encoded):
        return call_id, None
    standard = encoded.replace("-", "+").replace("_", "/")
    return base, standard + "=" * (-len(standard) % 4)


def is_synthesized_id(call_id: str) -> bool:
    """Whether the id was made up by this module (and so must not be sent to Gemini)."""
    return _SYNTHESIZED_ID.fullmatch(split_signature_id(call_id)[0]) is not None


class _CallIds:
    """Ids for the calls of one Gemini response, in order. Seeded by responseId
    so re-parsing gives the same ids; a random seed when there is none, so two
    responses never share ids."""

    def __init__(self, response_id: str | None):
        self._seed = response_id or uuid.uuid4().hex
        self._count = 0

    def make(self, gemini_id: Any, name: str, signature: str | None) -> str:
        base = gemini_id if isinstance(gemini_id, str) and gemini_id else synthesize_call_id(self._seed, self._count, name)
        self._count += 1
        return encode_signature_in_id(base, signature) if signature else base
