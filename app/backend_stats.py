"""Per-backend request and error counts and the last error, for the admin API and
page (app/admin.py). This worker's, since it started: Prometheus's counters
(app/metrics.py) are the ones to sum across workers and hosts; these carry what a
counter cannot (the last error's message and time).

An error is a reply of HTTP 400 or more to a request routed to the backend (its
own refusal or the proxy's); a stream that fails after its 200 is not counted here
(interchange_upstream_errors_total counts what the backend sent)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from app.default_provider import utc_now

MAX_MESSAGE = 500  # characters of the last error's message kept


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    last_error: dict | None = None


@dataclass
class BackendStats:
    _by_backend: dict[str, _Counts] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, backend: str, status: int, message: str | None = None) -> None:
        """One reply to a request routed to `backend`; `message` is the client's error text (redacted)."""
        with self._lock:
            counts = self._by_backend.get(backend)
            if counts is None:
                counts = self._by_backend[backend] = _Counts()
            counts.requests += 1
            if status >= 400:
                counts.errors += 1
                counts.last_error = {"status": status, "message": (message or "")[:MAX_MESSAGE], "at": utc_now()}

    def of(self, backend: str) -> dict:
        """{"requests", "errors", "last_error"} of one backend (zeros when it has served none)."""
        with self._lock:
            counts = self._by_backend.get(backend) or _Counts()
            return {"requests": counts.requests, "errors": counts.errors,
                    "last_error": dict(counts.last_error) if counts.last_error else None}
