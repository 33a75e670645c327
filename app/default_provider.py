"""The default provider: the backend a model nobody maps goes to (routing decision
`default`), as configured (server.default_provider, or --backend) or as an admin
switched it at runtime (PUT /admin/provider-settings, app/admin.py).

A switch is kept in the state store's permanent SETTINGS namespace (app/state.py:
SQLite on one host, Redis across hosts), so every worker, every host sharing the
store and the next start all route by it. Each worker reads it when a request
reaches the `default` step (one primary-key read; no other request pays anything),
so the request after a switch already follows it, whichever worker serves it.

What can go wrong never fails a request:
  * the store cannot be read: the configured default, one warning (until it reads
    again), and the store is left alone for RETRY_SECONDS, so an unreachable Redis
    costs one request its connect timeout, not every request;
  * the stored name is no backend of this config (removed since the switch): the
    configured default, one warning.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from app.config import BackendConfig
from app.jsonutil import dumps, loads
from app.logfields import log_field
from app.state import SETTINGS, LazyStore

log = logging.getLogger("interchange.default_provider")

KEY = "default_provider"  # its key in the SETTINGS namespace
RETRY_SECONDS = 1.0  # after a failed read, the configured default is used this long without asking the store


@dataclass(frozen=True, slots=True)
class Switch:
    """What a PUT changed (for the log line and the caller)."""
    old: str | None
    new: str
    by: str


class UnknownBackend(ValueError):
    """The name given is no configured backend."""


class DefaultProvider:
    def __init__(self, backends: Mapping[str, BackendConfig], configured: str | None, state: LazyStore,
                 clock: Callable[[], float] = time.monotonic):
        self.backends = backends
        self.configured = configured  # the config's (or --backend's) default; None: none
        self._state = state
        self._clock = clock
        self._retry_at = 0.0  # until then the store is not asked (it failed)
        self._seen = configured  # the default this worker last routed by, to log a change once
        self._warned: str | None = None  # the last problem logged, so each is logged once
        self._lock = threading.Lock()  # one switch at a time in this worker (read, write, log)

    def current(self) -> str | None:
        """The backend unmapped models go to now; None when there is none."""
        if self._clock() < self._retry_at:
            return self.configured
        try:
            data = self._state.get().get(SETTINGS, KEY)
        except Exception as e:  # the type only: a message could name a host or path
            self._retry_at = self._clock() + RETRY_SECONDS
            self._warn(f"state store unreadable ({type(e).__name__}); default provider "
                       f"{self.configured or 'none'} (as configured) until it reads again")
            return self.configured
        name = _stored_name(data)
        if data is not None and name is None:
            self._warn(f"the stored default provider cannot be read; using {self.configured or 'none'} "
                       "(as configured) until an admin sets it again")
        elif name is not None and name not in self.backends:
            self._warn(f"the stored default provider '{log_field(name)}' is not a backend of this config; "
                       f"using {self.configured or 'none'} (as configured)")
            name = None
        else:
            self._warned = None
        chosen = self.configured if name is None else name
        if chosen != self._seen:
            log.info("default provider is now %s (was %s; read from the state store)",
                     chosen or "none", self._seen or "none")
            self._seen = chosen
        return chosen

    def switch(self, name: str, by: str = "admin") -> Switch:
        """Make `name` the default for every worker sharing the store; raises UnknownBackend
        (nothing changed) or the store's error (nothing changed either)."""
        if name not in self.backends:
            raise UnknownBackend(name)
        with self._lock:
            old = self.current()
            record = {"backend": name, "by": by, "at": utc_now()}
            self._state.get().put(SETTINGS, KEY, dumps(record))
            self._retry_at = 0.0
            self._seen = name
            log.info("default provider %s -> %s (by %s)", old or "none", name, by)
        return Switch(old, name, by)

    def _warn(self, problem: str) -> None:
        if problem != self._warned:
            log.warning("%s", problem)
            self._warned = problem


def _stored_name(data: bytes | None) -> str | None:
    """The backend name a stored record holds; None for none (or a record this version cannot read)."""
    if data is None:
        return None
    try:
        record = loads(data)
    except ValueError:
        return None
    name = record.get("backend") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def utc_now() -> str:
    """RFC 3339 UTC to the second: 2026-12-02T17:00:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
