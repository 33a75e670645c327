"""Anthropic errors both ways (the client's error envelope, upstream envelopes read back) and the model list."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from app.errors import ErrorKind, ProxyError, kind_for_status, redact, retry_after_from_headers
from app.jsonutil import dumps, loads_or_none
from app.protocols.base import ModelInfo
from app.protocols.anthropic.common import _ERROR_RENDERING


# Wire error.type -> (IR kind, the status the API sends it with).
_ERROR_TYPES: dict[str, tuple[ErrorKind, int]] = {
    "invalid_request_error": (ErrorKind.invalid_request, 400),
    "authentication_error": (ErrorKind.authentication, 401),
    "billing_error": (ErrorKind.permission, 402),  # not retriable, unlike a rate limit
    "permission_error": (ErrorKind.permission, 403),
    "not_found_error": (ErrorKind.not_found, 404),
    "request_too_large": (ErrorKind.request_too_large, 413),
    "rate_limit_error": (ErrorKind.rate_limit, 429),
    "api_error": (ErrorKind.api_error, 500),
    "timeout_error": (ErrorKind.timeout, 504),
    "overloaded_error": (ErrorKind.overloaded, 529),
}
# Google envelope `error.status` (Vertex fronts) -> IR kind.
_GOOGLE_STATUSES = {
    "INVALID_ARGUMENT": ErrorKind.invalid_request,
    "FAILED_PRECONDITION": ErrorKind.invalid_request,
    "UNAUTHENTICATED": ErrorKind.authentication,
    "PERMISSION_DENIED": ErrorKind.permission,
    "NOT_FOUND": ErrorKind.not_found,
    "RESOURCE_EXHAUSTED": ErrorKind.rate_limit,
    "INTERNAL": ErrorKind.api_error,
    "UNAVAILABLE": ErrorKind.overloaded,
    "DEADLINE_EXCEEDED": ErrorKind.timeout,
}


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """A ProxyError in the API's envelope, with its status and retry headers."""
    status, error_type = _ERROR_RENDERING.get(err.kind, (500, "api_error"))
    message = err.message
    if err.param and not message.startswith(err.param + ":"):
        message = f"{err.param}: {message}"  # the API names the field first: "max_tokens: Field required"
    headers = {"content-type": "application/json",
               "x-should-retry": "true" if status == 429 or status >= 500 else "false"}
    if err.retry_after:
        headers["retry-after"] = str(err.retry_after)
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return status, headers, dumps(body)


def format_models(models: list[ModelInfo]) -> dict:
    data = [{"type": "model", "id": m.id, "display_name": m.id, "created_at": _rfc3339(m.created)} for m in models]
    return {"data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def _rfc3339(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream error reply -> ProxyError. Reads the Anthropic envelope, the Google
    envelope of Vertex fronts (with an Anthropic one embedded in its message), or text."""
    err = _error_from_payload(loads_or_none(body), status=status)
    if err.message == "":
        err.message = redact(_body_text(body) or f"upstream returned HTTP {status}")
    err.retry_after = retry_after_from_headers(headers)
    return err


def _error_from_payload(payload: Any, status: int | None) -> ProxyError:
    """Error envelope (either family) -> ProxyError; `status` None = inside a 200 stream."""
    error_type, message = _error_fields(payload)
    if error_type in _ERROR_TYPES:
        kind, wire_status = _ERROR_TYPES[error_type]
    elif error_type in _GOOGLE_STATUSES:
        kind, wire_status = _GOOGLE_STATUSES[error_type], None
    elif status is not None and status >= 400:
        kind, wire_status = kind_for_status(status), None
    else:
        kind, wire_status = ErrorKind.api_error, None
    if status is not None and status >= 400:
        wire_status = status
    return ProxyError(kind, redact(message), status=wire_status)


def _error_fields(payload: Any) -> tuple[str | None, str]:
    """-> (error.type or Google status, message) from whatever envelope the body has."""
    if isinstance(payload, list) and payload:
        payload = payload[0]  # some Google fronts wrap the envelope in a list
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, ""
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    if isinstance(error.get("type"), str):
        return error["type"], message
    embedded = loads_or_none(message) if message.startswith("{") else None
    if isinstance(embedded, dict) and isinstance(embedded.get("error"), dict):
        return _error_fields(embedded)
    status = error.get("status")
    return (status if isinstance(status, str) else None), message


def _body_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()[:500]
