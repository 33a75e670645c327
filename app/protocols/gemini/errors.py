"""Gemini errors both ways (the client's Google error envelope, upstream envelopes read back) and the model list."""
from __future__ import annotations

import math
from typing import Any, Mapping

from app import errors
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads_or_none
from app.protocols.base import ModelInfo
from app.protocols.gemini.common import PROVIDER


_STATUS_BY_KIND: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.invalid_request: (400, "INVALID_ARGUMENT"),
    ErrorKind.authentication: (401, "UNAUTHENTICATED"),
    ErrorKind.permission: (403, "PERMISSION_DENIED"),
    ErrorKind.not_found: (404, "NOT_FOUND"),
    ErrorKind.request_too_large: (400, "INVALID_ARGUMENT"),  # Gemini has no 413
    ErrorKind.rate_limit: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.api_error: (500, "INTERNAL"),
    ErrorKind.bad_gateway: (502, "UNAVAILABLE"),
    ErrorKind.overloaded: (503, "UNAVAILABLE"),
    ErrorKind.timeout: (504, "DEADLINE_EXCEEDED"),
    ErrorKind.configuration: (500, "INTERNAL"),
}
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """ProxyError -> the google.rpc.Status envelope."""
    status, canonical = _STATUS_BY_KIND[err.kind]
    error: dict[str, Any] = {"code": status, "message": err.message, "status": canonical}
    details = []
    if err.param:
        details.append({"@type": _BAD_REQUEST_TYPE,
                        "fieldViolations": [{"field": err.param, "description": err.message}]})
    if err.retry_after and _seconds(err.retry_after) is not None:
        # Google clients (genai SDK, gemini-cli) read the delay from RetryInfo, not the header.
        details.append({"@type": _RETRY_INFO_TYPE, "retryDelay": f"{_seconds(err.retry_after)}s"})
    if details:
        error["details"] = details
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    if err.retry_after:
        headers["Retry-After"] = str(err.retry_after)
    return status, headers, dumps({"error": error})


def _seconds(value: str) -> int | None:
    try:
        return max(math.ceil(float(value)), 0)
    except (TypeError, ValueError):
        return None


def format_models(models: list[ModelInfo]) -> dict:
    return {"models": [{"name": "models/" + m.id.removeprefix("models/"),
                        "displayName": m.id.removeprefix("models/"),
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}
                       for m in models]}


_KIND_BY_CANONICAL = {
    "INVALID_ARGUMENT": ErrorKind.invalid_request,
    "FAILED_PRECONDITION": ErrorKind.invalid_request,
    "OUT_OF_RANGE": ErrorKind.invalid_request,
    "UNAUTHENTICATED": ErrorKind.authentication,
    "PERMISSION_DENIED": ErrorKind.permission,
    "NOT_FOUND": ErrorKind.not_found,
    "RESOURCE_EXHAUSTED": ErrorKind.rate_limit,
    "INTERNAL": ErrorKind.api_error,
    "UNKNOWN": ErrorKind.api_error,
    "UNAVAILABLE": ErrorKind.overloaded,
    "DEADLINE_EXCEEDED": ErrorKind.timeout,
}


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """A Gemini error reply (google.rpc.Status, or a one-element array of it) -> ProxyError."""
    data = loads_or_none(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return _error_from_status(error, status, headers)
    text = body.decode("utf-8", "replace").strip()[:500] or f"upstream returned HTTP {status}"
    return ProxyError(errors.kind_for_status(status), errors.redact(text),
                      retry_after=errors.retry_after_from_headers(headers), backend=PROVIDER)


def _error_from_status(error: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> ProxyError:
    code = status or (error.get("code") if isinstance(error.get("code"), int) else 502)
    details = [d for d in error.get("details") or () if isinstance(d, dict)]
    canonical = error.get("status")
    if any(d.get("reason") == "API_KEY_INVALID" for d in details):
        kind = ErrorKind.authentication  # Gemini says 400 INVALID_ARGUMENT for a bad key
    else:
        kind = _KIND_BY_CANONICAL.get(canonical) or errors.kind_for_status(code)
    message = str(error.get("message") or canonical or f"upstream returned HTTP {code}")
    return ProxyError(kind, errors.redact(message), param=_field_violation(details),
                      retry_after=_retry_delay(details) or errors.retry_after_from_headers(headers),
                      backend=PROVIDER)


def _retry_delay(details: list[dict]) -> str | None:
    """RetryInfo.retryDelay ("37s", "1.5s") -> whole seconds for Retry-After."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str):
            seconds = _seconds(delay.removesuffix("s"))
            if seconds is not None:
                return str(seconds)
    return None


def _field_violation(details: list[dict]) -> str | None:
    for detail in details:
        for violation in detail.get("fieldViolations") or ():
            if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                return violation["field"]
    return None
