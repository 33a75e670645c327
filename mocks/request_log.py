"""The request log behind `GET/DELETE /_mock/requests`: what each provider
endpoint received, with credentials redacted, so tests can check what the
proxy actually sent upstream."""
from __future__ import annotations

import hashlib
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

REDACTED = "[REDACTED]"
SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "x-amz-security-token")
SECRET_QUERY = ("key",)
# Bodies above this size are logged as null (with their size) to bound memory.
MAX_LOGGED_BODY = 1024 * 1024


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased header names; credentials replaced (an auth scheme is kept
    so a test can still see *how* the caller authenticated)."""
    out = {}
    for name, value in headers.items():
        key = name.lower()
        if key in SECRET_HEADERS:
            scheme, _, rest = value.partition(" ")
            value = f"{scheme} {REDACTED}" if rest and key == "authorization" else REDACTED
        out[key] = value
    return out


_SIGV4_KEY_ID = re.compile(r"Credential=([A-Za-z0-9]+)/")


def credential_digests(headers: Mapping[str, str]) -> dict[str, str]:
    """What a test needs to tell whose credential arrived without the log holding it: per
    credential header, `sha256:` and the first 16 hex digits of its value's digest, and for a
    SigV4 Authorization the access key id it names (an id, not a secret)."""
    out = {}
    for name, value in headers.items():
        key = name.lower()
        if key in SECRET_HEADERS:
            out[key] = "sha256:" + hashlib.sha256(value.encode("latin-1", "replace")).hexdigest()[:16]
            if key == "authorization" and (m := _SIGV4_KEY_ID.search(value)):
                out["aws_access_key_id"] = m.group(1)
    return out


def redact_query(query: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k in SECRET_QUERY else v) for k, v in query.items()}


@dataclass
class LoggedRequest:
    provider: str | None
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    body_bytes: int
    scenario: str | None = None
    stream: bool = False
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)  # credential_digests of the headers

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "scenario": self.scenario, "status": self.status,
                "stream": self.stream, "method": self.method, "path": self.path, "query": self.query,
                "headers": self.headers, "credentials": self.credentials, "body": self.body,
                "body_bytes": self.body_bytes, **self.extra}


class RequestLog:
    """The last `capacity` requests, oldest first."""

    def __init__(self, capacity: int = 500):
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, provider: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._entries)
        return [e.to_json() for e in items if provider is None or e.provider == provider]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
