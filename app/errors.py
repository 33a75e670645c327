"""Error kinds. Backends turn upstream failures into a `ProxyError`; every
frontend renders a `ProxyError` in its own envelope with its own status for
the kind (Anthropic says 529 where OpenAI says 503 for overload)."""
from __future__ import annotations

import re
from enum import Enum
from typing import Iterable


class ErrorKind(str, Enum):
    invalid_request = "invalid_request"  # 400: the client's request is wrong
    authentication = "authentication"  # 401
    permission = "permission"  # 403
    not_found = "not_found"  # 404: unknown model or path
    request_too_large = "request_too_large"  # 413
    rate_limit = "rate_limit"  # 429
    api_error = "api_error"  # 500: upstream internal error
    bad_gateway = "bad_gateway"  # 502: upstream unreachable, malformed reply, model failure
    overloaded = "overloaded"  # 503 / Anthropic 529
    timeout = "timeout"  # 504
    configuration = "configuration"  # 500: the proxy is misconfigured (missing API key, ...)


# Status a kind gets unless a frontend's table says otherwise.
DEFAULT_STATUS = {
    ErrorKind.invalid_request: 400,
    ErrorKind.authentication: 401,
    ErrorKind.permission: 403,
    ErrorKind.not_found: 404,
    ErrorKind.request_too_large: 413,
    ErrorKind.rate_limit: 429,
    ErrorKind.api_error: 500,
    ErrorKind.bad_gateway: 502,
    ErrorKind.overloaded: 503,
    ErrorKind.timeout: 504,
    ErrorKind.configuration: 500,
}


def kind_for_status(status: int) -> ErrorKind:
    """Best kind for an upstream HTTP status when the body says nothing better."""
    if status == 400 or status == 422:
        return ErrorKind.invalid_request
    if status == 401:
        return ErrorKind.authentication
    if status == 403:
        return ErrorKind.permission
    if status == 404:
        return ErrorKind.not_found
    if status == 413:
        return ErrorKind.request_too_large
    if status == 429:
        return ErrorKind.rate_limit
    if status in (503, 529):
        return ErrorKind.overloaded
    if status == 504 or status == 408:
        return ErrorKind.timeout
    if status == 502:
        return ErrorKind.bad_gateway
    if status >= 500:
        return ErrorKind.api_error
    return ErrorKind.invalid_request


class ProxyError(Exception):
    """A failure to report to the client, in the client's protocol.

    `param` names the offending field (OpenAI `param`); `code` is a
    machine-readable code (`model_not_found`, `configuration_error`, ...);
    `retry_after` is seconds, passed on as the Retry-After header.
    """

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None,
                 param: str | None = None, code: str | None = None,
                 retry_after: str | None = None, provider: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else DEFAULT_STATUS[kind]
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.provider = provider

    def __repr__(self) -> str:
        return f"ProxyError({self.kind.value}, {self.status}, {self.message!r}, param={self.param!r})"


def invalid(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    """The client's request is wrong: 400 naming the field."""
    return ProxyError(ErrorKind.invalid_request, message, param=param, code=code)


# ------------------------------------------------------------- redaction

# Key-shaped strings: OpenAI-style `sk-…` (providers echo them masked with `*`) and Google `AIza…`.
_KEYISH = re.compile(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-*]{4,}|(AIza[0-9A-Za-z_\-]{4})[0-9A-Za-z_\-]{8,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove configured secrets and key-shaped strings from text bound for a client or a log."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[REDACTED]")
    return _KEYISH.sub(lambda m: (m.group(1) or m.group(2)) + "…[REDACTED]", text)


def redact_url(url: str) -> str:
    """A URL as a message may show it: without its query (where some providers
    take keys) and without user:password."""
    url = url.partition("?")[0]
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return scheme + sep + netloc + slash + path
