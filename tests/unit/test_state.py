"""The state store: both implementations to one specification (get/put/delete,
per-namespace TTL, the entry cap evicting the oldest-written), and two store
objects on one SQLite file or one Redis behaving as two workers."""
from __future__ import annotations

import time

import pytest

from app.config import StateConfig
from app.state import SETTINGS, LazyStore, RedisStore, SQLiteStore, default_path, get_json, open_store, put_json


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sqlite_pair(tmp_path, clock, **kw):
    path = tmp_path / "sub" / "state.sqlite3"  # the data directory is created
    kw.setdefault("ttl_seconds", 60)
    kw.setdefault("max_entries", 100)
    return SQLiteStore(path, clock=clock, **kw), SQLiteStore(path, clock=clock, **kw)


@pytest.fixture(params=["sqlite", "redis"])
def pair(request, tmp_path):
    """Two store objects on one backing store (two workers), cap 3, TTL 60 s."""
    if request.param == "sqlite":
        a, b = sqlite_pair(tmp_path, FakeClock(), max_entries=3)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test-{time.monotonic_ns()}:"  # each test its own keys on the session's server
        a, b = (RedisStore(url, ttl_seconds=60, max_entries=3, prefix=prefix) for _ in range(2))
    yield a, b
    a.close()
    b.close()


def test_put_on_one_get_on_the_other(pair):
    a, b = pair
    assert b.get("responses", "r1") is None
    a.put("responses", "r1", b"one")
    assert b.get("responses", "r1") == b"one"
    b.put("responses", "r1", b"uno")  # a put replaces
    assert a.get("responses", "r1") == b"uno"
    assert a.get("other", "r1") is None  # namespaces are apart


def test_json_helpers(pair):
    a, b = pair
    put_json(a, "responses", "r", {"id": "r", "output": [1, "x"]})
    assert get_json(b, "responses", "r") == {"id": "r", "output": [1, "x"]}
    assert get_json(b, "responses", "missing") is None


def test_delete_says_whether_there_was_one(pair):
    a, b = pair
    a.put("responses", "r", b"x")
    assert b.delete("responses", "r") is True
    assert a.get("responses", "r") is None
    assert a.delete("responses", "r") is False


def test_the_cap_evicts_the_oldest_written(pair):
    a, b = pair
    for i, store in enumerate([a, b, a]):
        store.put("responses", f"r{i}", b"%d" % i)
        time.sleep(0.002)  # distinct write times on the Redis clock (ms)
    a.put("other", "o", b"o")  # another namespace: its own cap
    b.put("responses", "r3", b"3")
    assert [a.get("responses", f"r{i}") for i in range(4)] == [None, b"1", b"2", b"3"]
    assert a.get("other", "o") == b"o"


def test_sqlite_ttl_per_namespace(tmp_path):
    clock = FakeClock()
    a, b = sqlite_pair(tmp_path, clock, ttl_seconds=60, ttls={"switch": 5})
    a.put("responses", "r", b"x")
    a.put("switch", "s", b"y")
    clock.now += 5
    assert b.get("switch", "s") is None  # expired at exactly its TTL
    assert b.get("responses", "r") == b"x"
    clock.now += 55
    assert b.get("responses", "r") is None
    assert b.delete("responses", "r") is False  # an expired entry is not there to delete


def test_sqlite_expired_entries_do_not_count_against_the_cap(tmp_path):
    clock = FakeClock()
    a, b = sqlite_pair(tmp_path, clock, ttl_seconds=10, max_entries=2)
    a.put("responses", "old1", b"1")
    a.put("responses", "old2", b"2")
    clock.now += 10
    b.put("responses", "new1", b"3")
    b.put("responses", "new2", b"4")
    assert [a.get("responses", k) for k in ("new1", "new2")] == [b"3", b"4"]


def test_redis_ttl(redis_url):
    store = RedisStore(redis_url, ttl_seconds=0.3, max_entries=10, prefix=f"ttl-{time.monotonic_ns()}:")
    store.put("responses", "r", b"x")
    assert store.get("responses", "r") == b"x"
    time.sleep(0.4)
    assert store.get("responses", "r") is None


def test_open_store_picks_by_config(tmp_path, redis_url, monkeypatch):
    sqlite = open_store(StateConfig(path=str(tmp_path / "s.db")))
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == tmp_path / "s.db"
    assert isinstance(open_store(StateConfig(url=redis_url)), RedisStore)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "interchange" / "state.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "interchange" / "state.sqlite3"


def test_the_lazy_store_opens_nothing_until_used(tmp_path):
    path = tmp_path / "lazy" / "state.sqlite3"
    lazy = LazyStore(StateConfig(path=str(path)))
    assert not path.parent.exists()
    assert lazy.get() is lazy.get()
    assert path.exists()


def test_replacing_and_deleting_keep_the_count_right(pair):
    a, b = pair
    for _ in range(5):
        a.put("responses", "same", b"x")  # one entry, however often written
    b.put("responses", "r1", b"1")
    b.put("responses", "gone", b"g")
    assert a.delete("responses", "gone")
    a.put("responses", "r2", b"2")  # 3 live entries: at the cap, nothing evicted
    assert [b.get("responses", k) for k in ("same", "r1", "r2")] == [b"x", b"1", b"2"]


def test_the_settings_namespace_is_never_evicted(pair):
    a, b = pair  # cap 3
    for i in range(5):
        a.put(SETTINGS, f"s{i}", b"%d" % i)
        b.put("responses", f"r{i}", b"x")
    assert [b.get(SETTINGS, f"s{i}") for i in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
    assert sum(a.get("responses", f"r{i}") is not None for i in range(5)) == 3  # the others' cap holds
    assert b.delete(SETTINGS, "s0") is True and a.get(SETTINGS, "s0") is None


def test_sqlite_settings_never_expire(tmp_path):
    clock = FakeClock()
    a, b = sqlite_pair(tmp_path, clock, ttl_seconds=5, ttls={SETTINGS: 5})  # even a TTL named for it
    a.put(SETTINGS, "default_provider", b"openrouter")
    a.put("responses", "r", b"x")
    clock.now += 10 ** 9
    assert b.get(SETTINGS, "default_provider") == b"openrouter"
    assert b.get("responses", "r") is None


def test_redis_settings_have_no_ttl(redis_url):
    import redis

    prefix = f"perm-{time.monotonic_ns()}:"
    store = RedisStore(redis_url, ttl_seconds=0.3, max_entries=1, prefix=prefix)
    store.put(SETTINGS, "default_provider", b"openrouter")
    store.put("responses", "r", b"x")
    raw = redis.Redis.from_url(redis_url)
    assert raw.ttl(f"{prefix}{SETTINGS}:default_provider") == -1  # no expiry
    assert raw.pttl(f"{prefix}responses:r") > 0
    assert not raw.exists(prefix + SETTINGS)  # no eviction index for it
