"""The default provider (app/default_provider.py): configured, switched in the store and read
by every instance sharing it, and what a broken store or a stale name does (the configured
default, one warning each, never an error)."""
from __future__ import annotations

import logging

import pytest

from app.config import BackendConfig
from app.default_provider import KEY, RETRY_SECONDS, DefaultProvider, UnknownBackend
from app.state import SETTINGS, SQLiteStore

BACKENDS = {name: BackendConfig(name=name, protocol="openai", url="http://127.0.0.1:1", api_key="k")
            for name in ("runpod", "openrouter", "ollama")}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lazy:
    """A LazyStore stand-in: `get()` gives the store, or raises what `fail` says."""

    def __init__(self, store=None):
        self.store = store
        self.fail: Exception | None = None
        self.opened = 0

    def get(self):
        self.opened += 1
        if self.fail is not None:
            raise self.fail
        return self.store


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "state.sqlite3", ttl_seconds=60, max_entries=2)
    yield s
    s.close()


def test_configured_until_switched_then_every_instance_follows(store, caplog):
    caplog.set_level(logging.INFO, logger="interchange")
    a, b = DefaultProvider(BACKENDS, "runpod", Lazy(store)), DefaultProvider(BACKENDS, "runpod", Lazy(store))
    assert (a.current(), b.current()) == ("runpod", "runpod")
    change = a.switch("openrouter")
    assert (change.old, change.new, change.by) == ("runpod", "openrouter", "admin")
    assert b.current() == "openrouter" and b.current() == "openrouter"
    assert caplog.messages == ["default provider runpod -> openrouter (by admin)",
                               "default provider is now openrouter (was runpod; read from the state store)"]
    assert DefaultProvider(BACKENDS, "runpod", Lazy(store)).current() == "openrouter"  # a restart


def test_no_configured_default_but_a_switched_one(store):
    a = DefaultProvider(BACKENDS, None, Lazy(store))
    assert a.current() is None
    a.switch("ollama")
    assert DefaultProvider(BACKENDS, None, Lazy(store)).current() == "ollama"


def test_an_unknown_name_is_refused_and_nothing_is_stored(store):
    a = DefaultProvider(BACKENDS, "runpod", Lazy(store))
    with pytest.raises(UnknownBackend):
        a.switch("ghost")
    assert store.get(SETTINGS, KEY) is None


def test_the_setting_survives_the_store_s_cap_and_ttl(tmp_path):
    clock = Clock()
    store = SQLiteStore(tmp_path / "s.sqlite3", ttl_seconds=1, max_entries=1, clock=clock)
    DefaultProvider(BACKENDS, "runpod", Lazy(store)).switch("openrouter")
    for i in range(5):
        store.put("responses", f"r{i}", b"x")
        store.put(SETTINGS, f"other{i}", b"y")
    clock.now += 10 ** 9
    assert DefaultProvider(BACKENDS, "runpod", Lazy(store)).current() == "openrouter"


def test_a_stored_name_no_longer_configured_is_ignored_with_one_warning(store, caplog):
    DefaultProvider(BACKENDS, "runpod", Lazy(store)).switch("ollama")
    fewer = {k: v for k, v in BACKENDS.items() if k != "ollama"}  # the config changed since
    d = DefaultProvider(fewer, "runpod", Lazy(store))
    with caplog.at_level(logging.WARNING, logger="interchange"):
        assert [d.current() for _ in range(3)] == ["runpod"] * 3
    assert caplog.messages == ["the stored default provider 'ollama' is not a backend of this config; "
                               "using runpod (as configured)"]


def test_an_unreadable_record_is_ignored_with_one_warning(store, caplog):
    store.put(SETTINGS, KEY, b"{not json")
    d = DefaultProvider(BACKENDS, "runpod", Lazy(store))
    with caplog.at_level(logging.WARNING, logger="interchange"):
        assert d.current() == "runpod" and d.current() == "runpod"
    assert len(caplog.messages) == 1 and "cannot be read" in caplog.messages[0]


def test_a_failing_store_falls_back_with_one_warning_and_is_left_alone_a_while(store, caplog):
    lazy, clock = Lazy(store), Clock()
    d = DefaultProvider(BACKENDS, "runpod", lazy, clock=clock)
    d.switch("openrouter")
    lazy.fail = ConnectionError("redis://secret-host:6379 refused")
    with caplog.at_level(logging.WARNING, logger="interchange"):
        opened = lazy.opened
        assert [d.current() for _ in range(5)] == ["runpod"] * 5
        assert lazy.opened == opened + 1  # asked once; the others within RETRY_SECONDS use the configured one
        clock.now += RETRY_SECONDS
        assert d.current() == "runpod"  # asked again, failed again: no second warning
        assert lazy.opened == opened + 2
    assert caplog.messages == ["state store unreadable (ConnectionError); default provider runpod (as configured) "
                               "until it reads again"]
    assert "secret-host" not in caplog.text
    lazy.fail = None
    clock.now += RETRY_SECONDS
    assert d.current() == "openrouter"  # it reads again


def test_a_failing_store_refuses_the_switch(store):
    lazy = Lazy(store)
    d = DefaultProvider(BACKENDS, "runpod", lazy)
    lazy.fail = OSError("disk")
    with pytest.raises(OSError):
        d.switch("openrouter")
    assert store.get(SETTINGS, KEY) is None
