"""The state store every worker shares: stored Responses (previous_response_id,
GET/DELETE /v1/responses/{id}), the runtime default provider (app/default_provider.py),
and later per-key budgets.

A store maps (namespace, key) to bytes. Each namespace has a TTL (an entry is
gone once it is older than that) and the store holds at most `max_entries`
live entries per namespace. Eviction rule: after a put that takes a
namespace over the cap, its oldest-written entries are removed until it is
back at the cap (expired ones first, as they are the oldest by definition).
A permanent namespace (SETTINGS: what an operator set) has neither: its
entries stay until deleted, whatever the TTL and cap.

Two implementations, chosen by `[state]` in the config:
- SQLite (default; no server): one file under a data directory, WAL mode, so
  several worker processes on one host share it safely. A short busy timeout
  covers a concurrent writer; each call is one short statement, so under
  gevent it holds the hub for well under a millisecond.
- Redis (`url = "redis://host:port/db"`): for workers on several hosts, all
  pointed at the same Redis. TTLs are Redis's own (PX); the cap is kept with
  one sorted set per namespace (key -> write time).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from app.config import StateConfig
from app.jsonutil import dumps, loads

log = logging.getLogger("interchange.state")

RESPONSES = "responses"  # namespace of stored Responses API responses
SETTINGS = "settings"  # namespace of runtime settings an operator made (the default provider)
PERMANENT: frozenset[str] = frozenset({SETTINGS})  # namespaces that neither expire nor are evicted


def default_path() -> Path:
    """`$XDG_DATA_HOME/interchange/state.sqlite3`, else `~/.local/share/interchange/state.sqlite3`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "interchange" / "state.sqlite3"


class Store(Protocol):
    def get(self, namespace: str, key: str) -> bytes | None: ...
    def put(self, namespace: str, key: str, value: bytes) -> None: ...
    def delete(self, namespace: str, key: str) -> bool: ...
    def close(self) -> None: ...


def get_json(store: Store, namespace: str, key: str) -> Any:
    """The JSON value stored under key, or None when there is none (or it expired)."""
    data = store.get(namespace, key)
    return None if data is None else loads(data)


def put_json(store: Store, namespace: str, key: str, value: Any) -> None:
    store.put(namespace, key, dumps(value))


class _Limits:
    def __init__(self, ttl_seconds: float, max_entries: int, ttls: Mapping[str, float] | None,
                 permanent: frozenset[str] = PERMANENT):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.ttls = dict(ttls or {})
        self.permanent = permanent

    def ttl(self, namespace: str) -> float:
        """Seconds an entry of `namespace` lives (inf: a permanent namespace)."""
        if namespace in self.permanent:
            return float("inf")
        return self.ttls.get(namespace, self.ttl_seconds)


# The live-entry count per namespace is kept by triggers, so the cap needs no COUNT(*).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    written REAL NOT NULL, expires REAL NOT NULL, PRIMARY KEY (namespace, key));
CREATE INDEX IF NOT EXISTS entries_written ON entries (namespace, written);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (namespace, expires);
CREATE TABLE IF NOT EXISTS counts (namespace TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    INSERT INTO counts VALUES (NEW.namespace, 1) ON CONFLICT (namespace) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    UPDATE counts SET n = n - 1 WHERE namespace = OLD.namespace;
END;
"""


class SQLiteStore:
    """The store in one SQLite file; safe for several processes (WAL) and greenlets (one lock)."""

    def __init__(self, path: str | os.PathLike, *, ttl_seconds: float, max_entries: int,
                 ttls: Mapping[str, float] | None = None, clock: Callable[[], float] = time.time,
                 permanent: frozenset[str] = PERMANENT):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._limits = _Limits(ttl_seconds, max_entries, ttls, permanent)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        self._db.executescript(_SCHEMA)

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM entries WHERE namespace=? AND key=? AND expires>?",
                                   (namespace, key, self._clock())).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, namespace: str, key: str, value: bytes) -> None:
        # Every statement here walks an index (never the table): a put stays well under
        # a millisecond however many entries there are.
        now = self._clock()
        permanent = namespace in self._limits.permanent
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                # A permanent entry expires at +inf (SQLite's REAL holds it): `expires > now` always.
                db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE "
                           "SET value=excluded.value, written=excluded.written, expires=excluded.expires",
                           (namespace, key, value, now, now + self._limits.ttl(namespace)))
                if permanent:
                    db.execute("COMMIT")
                    return
                db.execute("DELETE FROM entries WHERE namespace=? AND expires<=?", (namespace, now))
                (count,) = db.execute("SELECT n FROM counts WHERE namespace=?", (namespace,)).fetchone()
                excess = count - self._limits.max_entries
                if excess > 0:
                    db.execute("DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries WHERE namespace=? "
                               "ORDER BY written, rowid LIMIT ?)", (namespace, excess))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM entries WHERE namespace=? AND key=? AND expires>?",
                                   (namespace, key, self._clock()))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """The store in Redis: `{prefix}{namespace}:{key}` strings with PX TTLs, plus a sorted
    set `{prefix}{namespace}` (key -> write time in ms) that keeps the cap."""

    def __init__(self, url: str, *, ttl_seconds: float, max_entries: int,
                 ttls: Mapping[str, float] | None = None, prefix: str = "interchange:",
                 permanent: frozenset[str] = PERMANENT):
        import redis  # only a Redis-backed deployment needs the module loaded

        self._redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._limits = _Limits(ttl_seconds, max_entries, ttls, permanent)
        self._prefix = prefix

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}{namespace}:{key}"

    def get(self, namespace: str, key: str) -> bytes | None:
        return self._redis.get(self._key(namespace, key))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        if namespace in self._limits.permanent:
            # No PX and no index entry: a permanent key is never expired nor evicted (a Redis
            # run with an LRU maxmemory-policy may still evict it: use noeviction or volatile-*).
            self._redis.set(self._key(namespace, key), value)
            return
        ttl_ms = max(1, int(self._limits.ttl(namespace) * 1000))
        index = self._prefix + namespace
        now_ms = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key(namespace, key), value, px=ttl_ms)
        pipe.zadd(index, {key: now_ms})
        pipe.zremrangebyscore(index, "-inf", now_ms - ttl_ms)  # members whose value has expired
        pipe.zcard(index)
        count = pipe.execute()[-1]
        excess = count - self._limits.max_entries
        if excess > 0:
            oldest = [m.decode() for m, _ in self._redis.zpopmin(index, excess)]
            if oldest:
                self._redis.delete(*(self._key(namespace, k) for k in oldest))

    def delete(self, namespace: str, key: str) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key(namespace, key))
        pipe.zrem(self._prefix + namespace, key)
        return pipe.execute()[0] > 0

    def close(self) -> None:
        self._redis.close()


def open_store(config: StateConfig) -> Store:
    """The store `[state]` configures: Redis when `url` is set, else SQLite at `path` (or default_path())."""
    if config.url:
        return RedisStore(config.url, ttl_seconds=config.ttl_seconds, max_entries=config.max_entries)
    path = Path(config.path) if config.path else default_path()
    return SQLiteStore(path, ttl_seconds=config.ttl_seconds, max_entries=config.max_entries)


class LazyStore:
    """Opens the configured store on first use: a proxy whose clients never use
    stored state never creates a file or a Redis connection."""

    def __init__(self, config: StateConfig):
        self._config = config
        self._store: Store | None = None
        self._lock = threading.Lock()

    def get(self) -> Store:
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self._config)
                store = self._store
        return store
