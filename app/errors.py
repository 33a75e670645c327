"""Error kinds. Backends turn upstream failures into a `ProxyError`; every
frontend renders a `ProxyError` in its own envelope with its own status for
the kind (Anthropic says 529 where OpenAI says 503 for overload)."""
from __future__ import annotations

import email.utils
import functools
import math
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Iterable, Mapping


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
                 retry_after: str | None = None, backend: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else DEFAULT_STATUS[kind]
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.backend = backend

    @property
    def retry_after(self) -> str | None:
        return self._retry_after

    @retry_after.setter
    def retry_after(self, value: str | int | None) -> None:
        # Rendered into a response header by every frontend: only ever a
        # number of seconds, whatever an upstream or a parser put here.
        self._retry_after = retry_after_seconds(value)

    def __repr__(self) -> str:
        return f"ProxyError({self.kind.value}, {self.status}, {self.message!r}, param={self.param!r})"


def invalid(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    """The client's request is wrong: 400 naming the field."""
    return ProxyError(ErrorKind.invalid_request, message, param=param, code=code)


# ------------------------------------------------------------- Retry-After

_MAX_RETRY_AFTER = 86400  # a day: anything longer is a broken upstream, not advice


def retry_after_seconds(value: str | int | float | None) -> str | None:
    """A Retry-After value as whole seconds (RFC 9110 10.2.3: delta-seconds or
    an HTTP date), or None when it is neither. Every frontend renders this
    into a header, so an upstream can never put anything else there."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not 0 <= value < float("inf"):  # negative, infinite or NaN
            return None
        seconds = float(value)
    else:
        text = value.strip()
        if not text.isascii() or len(text) > 40:
            return None
        if text.isdigit():
            seconds = float(text)
        else:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                return None
            seconds = max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
    return str(min(math.ceil(seconds), _MAX_RETRY_AFTER))


def retry_after_from_headers(headers: Mapping[str, str]) -> str | None:
    """Seconds to wait from an upstream reply's `Retry-After` (or the
    `retry-after-ms` some providers send), None when absent or unreadable."""
    retry_after = retry_after_ms = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "retry-after":
            retry_after = value
        elif lowered == "retry-after-ms":
            retry_after_ms = value
    seconds = retry_after_seconds(retry_after)
    if seconds is None and retry_after_ms is not None:
        text = str(retry_after_ms).strip()
        if text.isascii() and text.replace(".", "", 1).isdigit() and len(text) <= 13:
            seconds = retry_after_seconds(math.ceil(float(text) / 1000))
    return seconds


# ------------------------------------------------------------- redaction

# Shorter "secrets" (test placeholders like "k") are not masked: replacing
# them would mangle ordinary text, and no real credential is that short.
MIN_SECRET_LENGTH = 8

# Key-shaped strings: OpenAI-style `sk-…` (providers echo them masked with `*`) and Google `AIza…`.
_KEYISH = re.compile(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-*]{4,}|(AIza[0-9A-Za-z_\-]{4})[0-9A-Za-z_\-]{8,}")
_MASK = r"(?:\.{2,}|…|\*{2,}|x{3,}|#{3,})"  # how providers elide the middle of a key they echo


@functools.lru_cache(maxsize=256)
def _masked_form(secret: str) -> re.Pattern | None:
    """A key as providers echo it masked: at least three characters of its
    head, an elision, at least four of its tail (`sk-ab...7890`,
    `ABCD****7890`). Secrets too short for that are only matched whole."""
    if len(secret) < 12:
        return None
    head = ""  # more of the head, optionally: (?:c3(?:c4(?:…)?)?)?
    for c in reversed(secret[3:8]):
        head = f"(?:{re.escape(c)}{head})?"
    tail = ""  # more of the tail, optionally: (?:(?:c-8)?c-7)?…
    for c in secret[-8:-4]:
        tail = f"(?:{tail}{re.escape(c)})?"
    return re.compile(re.escape(secret[:3]) + head + r"\s*" + _MASK + r"\s*" + tail + re.escape(secret[-4:]))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove configured secrets (whole or in a masked echo) and key-shaped
    strings from text bound for a client or a log."""
    for s in secrets:
        if s and len(s) >= MIN_SECRET_LENGTH:
            if s in text:
                text = text.replace(s, "[REDACTED]")
            masked = _masked_form(s)
            if masked is not None and _maybe_masked(text, s):
                text = masked.sub("[REDACTED]", text)
    return _KEYISH.sub(lambda m: (m.group(1) or m.group(2)) + "…[REDACTED]", text)


def _maybe_masked(text: str, secret: str) -> bool:
    # A masked echo always keeps the last four characters: a cheap test before the regex.
    return secret[-4:] in text


def redact_error(err: "ProxyError", secrets: Iterable[str]) -> "ProxyError":
    """The error with every text it carries redacted (message, param, code)."""
    secrets = tuple(s for s in secrets if s)
    err.message = redact(err.message, secrets)
    if err.param is not None:
        err.param = redact(err.param, secrets)
    if err.code is not None:
        err.code = redact(err.code, secrets)
    return err


def redact_url(url: str) -> str:
    """A URL as a message may show it: without its query (where some providers
    take keys) and without user:password."""
    url = url.partition("?")[0]
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return scheme + sep + netloc + slash + path
