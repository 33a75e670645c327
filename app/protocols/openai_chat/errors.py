"""OpenAI errors both ways (the client's error envelope, upstream envelopes read back) and the model list."""
from __future__ import annotations

from typing import Any, Mapping

from app import errors
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads_or_none
from app.protocols.base import ModelInfo


# kind -> (type, default code). OpenAI's own quirks: a bad key is an
# invalid_request_error with code invalid_api_key; rate limits have type "requests".
_ERROR_WIRE = {
    ErrorKind.invalid_request: ("invalid_request_error", None),
    ErrorKind.authentication: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.permission: ("request_forbidden", None),
    ErrorKind.not_found: ("invalid_request_error", None),
    ErrorKind.request_too_large: ("invalid_request_error", "request_too_large"),
    ErrorKind.rate_limit: ("requests", "rate_limit_exceeded"),
    ErrorKind.api_error: ("server_error", None),
    ErrorKind.bad_gateway: ("server_error", None),
    ErrorKind.overloaded: ("service_unavailable_error", None),
    ErrorKind.timeout: ("timeout_error", None),
    ErrorKind.configuration: ("configuration_error", "configuration_error"),
}


def _error_body(err: ProxyError) -> bytes:
    err_type, default_code = _ERROR_WIRE[err.kind]
    if err.code == "insufficient_quota":
        err_type = "insufficient_quota"  # OpenAI's quota errors carry it as the type too
    return dumps({"error": {"message": err.message, "type": err_type, "param": err.param,
                            "code": err.code or default_code}})


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """OpenAI error envelope. Overload is 503 whatever the upstream said (529 means nothing here)."""
    status = 503 if err.kind is ErrorKind.overloaded else err.status
    headers = {"Content-Type": "application/json"}
    if err.retry_after:
        headers["Retry-After"] = str(err.retry_after)
    return status, headers, _error_body(err)


def format_models(models: list[ModelInfo]) -> dict:
    return {"object": "list",
            "data": [{"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by} for m in models]}


_KIND_BY_CODE = {
    "invalid_api_key": ErrorKind.authentication,
    "model_not_found": ErrorKind.not_found,
    "insufficient_quota": ErrorKind.rate_limit,
    "rate_limit_exceeded": ErrorKind.rate_limit,
    "context_length_exceeded": ErrorKind.invalid_request,
    "server_is_overloaded": ErrorKind.overloaded,
}
# Only used when there is no HTTP status to go by (an error inside a 200 stream).
_KIND_BY_TYPE = {
    "invalid_request_error": ErrorKind.invalid_request,
    "authentication_error": ErrorKind.authentication,
    "permission_error": ErrorKind.permission,
    "request_forbidden": ErrorKind.permission,
    "not_found_error": ErrorKind.not_found,
    "requests": ErrorKind.rate_limit,
    "tokens": ErrorKind.rate_limit,
    "insufficient_quota": ErrorKind.rate_limit,
    "rate_limit_error": ErrorKind.rate_limit,
    "server_error": ErrorKind.api_error,
    "service_unavailable_error": ErrorKind.overloaded,
    "overloaded_error": ErrorKind.overloaded,
    "timeout_error": ErrorKind.timeout,
}


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return errors.redact(value if isinstance(value, str) else str(value))


def _error_from_envelope(doc: Any, status: int | None, *, retry_after: str | None = None,
                         fallback: str = "") -> ProxyError:
    """`{"error":{message,type,param,code}}` (or a looser shape) -> ProxyError."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        message, err_type, param, code = err.get("message"), err.get("type"), err.get("param"), err.get("code")
    else:
        loose = err if isinstance(err, str) else (doc.get("message") or doc.get("detail")
                                                   if isinstance(doc, dict) else None)
        message, err_type, param, code = loose, None, None, None
    if isinstance(code, int) and not isinstance(code, bool):
        # OpenRouter: the HTTP status as an integer code (also inside a 200 stream), the
        # category in metadata.error_type.
        meta = err.get("metadata") if isinstance(err, dict) else None
        error_type = meta.get("error_type") if isinstance(meta, dict) else None
        if status is None or status < 400:
            status = code
        code = error_type if isinstance(error_type, str) else None
    code = _text_or_none(code)
    if status == 402:  # out of credits: OpenAI's name for an exhausted account
        kind, code = ErrorKind.rate_limit, "insufficient_quota"
    elif code in _KIND_BY_CODE:
        kind = _KIND_BY_CODE[code]
    elif status is not None and status >= 400:
        kind = errors.kind_for_status(status)
    else:
        kind = _KIND_BY_TYPE.get(err_type, ErrorKind.api_error)
    if not isinstance(message, str) or not message:
        message = fallback or "Upstream reported an error without a message."
    return ProxyError(kind, errors.redact(message), param=_text_or_none(param), code=code,
                      retry_after=retry_after)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error reply -> ProxyError (message kept, keys redacted)."""
    retry = errors.retry_after_from_headers(headers)
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    fallback = f"Upstream returned HTTP {status}" + (f": {text.strip()[:300]}" if text.strip() else ".")
    doc = loads_or_none(body) if text.strip() else None
    return _error_from_envelope(doc, status, retry_after=retry, fallback=fallback)
