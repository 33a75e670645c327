"""Responses failures both ways: an error kind as a failed response's `error.code`, and a failure read back.
The error envelope, the model list and upstream HTTP errors are Chat's."""
from __future__ import annotations

from typing import Any

from app import errors
from app.errors import ErrorKind, ProxyError
# The Responses API shares Chat's error envelope and model list; the helpers live there once.
from app.protocols.openai_chat import format_error, format_models, parse_error


# Error kind -> Responses `error.code` for a failed response (response.failed).
_FAILED_CODE = {
    ErrorKind.rate_limit: "rate_limit_exceeded",
    ErrorKind.overloaded: "server_is_overloaded",
    ErrorKind.invalid_request: "invalid_prompt",
}


# Responses `error.code` (failed responses, error events) -> error kind.
_KIND_BY_CODE = {
    "server_error": ErrorKind.api_error,
    "rate_limit_exceeded": ErrorKind.rate_limit,
    "insufficient_quota": ErrorKind.rate_limit,
    "server_is_overloaded": ErrorKind.overloaded,
    "slow_down": ErrorKind.overloaded,
    "vector_store_timeout": ErrorKind.timeout,
    "context_length_exceeded": ErrorKind.invalid_request,
    "invalid_prompt": ErrorKind.invalid_request,
    "bio_policy": ErrorKind.invalid_request,
}


def _failure(error: Any, fallback: str) -> ProxyError:
    """`{code, message, param?}` from a failed response or an error event -> ProxyError."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # the nested form seen in live traffic
    if not isinstance(error, dict):
        return ProxyError(ErrorKind.bad_gateway, fallback)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    kind = _KIND_BY_CODE.get(code or "")
    if kind is None:
        kind = ErrorKind.invalid_request if code and code.startswith(("invalid_", "image_")) else ErrorKind.api_error
    message = error.get("message") if isinstance(error.get("message"), str) and error.get("message") else fallback
    param = error.get("param") if isinstance(error.get("param"), str) else None
    return ProxyError(kind, errors.redact(message), code=code, param=param)
