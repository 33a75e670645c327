"""Messages wire tables and small helpers both halves of the Anthropic module use."""
from __future__ import annotations

import re
from typing import Any

from app import ir
from app.errors import ErrorKind


PROTOCOL = "anthropic"
RESPONSE_MODEL_FIELD = "model"
API_VERSION = "2023-06-01"
MIN_THINKING_BUDGET = ir.MIN_THINKING_BUDGET
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Client headers an Anthropic backend takes as they came: the betas enable the
# fields (context_management, mid-conversation system, effort) the body carries.
FORWARDED_CLIENT_HEADERS = ("anthropic-beta",)
# IR kind -> (status, error.type) as the real API renders it to its clients.
_ERROR_RENDERING: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.invalid_request: (400, "invalid_request_error"),
    ErrorKind.authentication: (401, "authentication_error"),
    ErrorKind.permission: (403, "permission_error"),
    ErrorKind.not_found: (404, "not_found_error"),
    ErrorKind.request_too_large: (413, "request_too_large"),
    ErrorKind.rate_limit: (429, "rate_limit_error"),
    ErrorKind.api_error: (500, "api_error"),
    ErrorKind.bad_gateway: (502, "api_error"),
    ErrorKind.overloaded: (529, "overloaded_error"),
    ErrorKind.timeout: (504, "timeout_error"),
    ErrorKind.configuration: (500, "api_error"),
}
MAX_INT = 2**31 - 1  # int fields (max_tokens, top_k, budget_tokens) stay far below; bigger ones break other backends


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INT - 1 <= value <= MAX_INT


def _is_anthropic_redaction(part: ir.Thinking) -> bool:
    # redacted_thinking exists only in this protocol, so an unlabelled one is Anthropic's.
    return bool(part.redacted) and part.origin in (None, PROTOCOL)


# Another family's opaque thinking data as this protocol's clients carry it: `<family>:<data>`.
# Anthropic's signatures and redacted data are base64, which has no colon.
_FAMILY_TAG = re.compile(r"([a-z][a-z0-9_]*):(.+)", re.DOTALL)


def opaque_for_client(data: str, origin: str | None) -> str:
    """A signature or redacted payload as a client of this protocol gets it: Anthropic's (or an
    unlabelled one) as it is, another family's tagged with that family."""
    return data if origin in (None, PROTOCOL) else f"{origin}:{data}"


def opaque_from_client(data: str) -> tuple[str, str]:
    """(data, family) of a signature or redacted payload a client sent back: the inverse of
    `opaque_for_client`; untagged data is Anthropic's."""
    tagged = _FAMILY_TAG.fullmatch(data)
    if tagged is None or tagged.group(1) == PROTOCOL:
        return data, PROTOCOL
    return tagged.group(2), tagged.group(1)
