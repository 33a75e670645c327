"""The admin key's check (app/admin_auth.py): the bearer key, signed session cookies that every
worker accepts, the CSRF token a changing request on a session must carry, and no key = off."""
from __future__ import annotations

import pytest

from app.admin_auth import CSRF_HEADER, SESSION_SECONDS, AdminAuth

KEY = "mock-admin-key"
NOW = 1_800_000_000.0


def test_no_key_turns_everything_off():
    off = AdminAuth(None)
    assert not off.enabled and not AdminAuth("").enabled
    assert off.bearer_ok({"Authorization": "Bearer "}) is False
    assert off.session_ok(AdminAuth(KEY).new_session()) is False
    assert off.admits("GET", {"Authorization": f"Bearer {KEY}"}, None) is False


@pytest.mark.parametrize("value, ok", [
    (f"Bearer {KEY}", True), (f"bearer {KEY}", True), (f"Bearer  {KEY} ", True),
    (KEY, False), (f"Bearer {KEY}x", False), (f"Bearer {KEY[:-1]}", False), ("Bearer ", False), ("", False),
    (f"Basic {KEY}", False), ("Bearer ké", False),
])
def test_bearer(value, ok):
    assert AdminAuth(KEY).bearer_ok({"Authorization": value}) is ok


def test_a_session_is_accepted_by_every_worker_until_it_expires():
    one, other = AdminAuth(KEY), AdminAuth(KEY)  # two workers: nothing shared but the key
    cookie = one.new_session(now=NOW)
    assert other.session_ok(cookie, now=NOW + 1)
    assert other.session_ok(cookie, now=NOW + SESSION_SECONDS - 1)
    assert not other.session_ok(cookie, now=NOW + SESSION_SECONDS)
    assert one.csrf_token(cookie) == other.csrf_token(cookie)
    assert one.csrf_token(cookie) != one.csrf_token(one.new_session(now=NOW))  # a token per session


@pytest.mark.parametrize("tamper", [
    lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # the MAC
    lambda c: str(int(c.split(".")[0]) + 3600) + c[c.index("."):],  # a later expiry
    lambda c: c + ".x", lambda c: "", lambda c: "a.b.c", lambda c: "1.2.é", lambda c: c.replace(".", "", 1),
])
def test_a_forged_or_broken_cookie_is_refused(tamper):
    auth = AdminAuth(KEY)
    assert auth.session_ok(tamper(auth.new_session(now=NOW)), now=NOW) is False


def test_another_admin_key_ends_every_session():
    cookie = AdminAuth(KEY).new_session()
    assert AdminAuth("another-key").session_ok(cookie) is False


def test_admits():
    auth = AdminAuth(KEY)
    cookie = auth.new_session()
    token = auth.csrf_token(cookie)
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert auth.admits("PUT", bearer, None)  # a script: the key, no session, no token
    assert auth.admits("GET", {}, cookie) and auth.admits("HEAD", {}, cookie)
    assert not auth.admits("PUT", {}, cookie)  # a foreign page can send the cookie, not the token
    assert auth.admits("PUT", {CSRF_HEADER: token}, cookie)
    assert auth.admits("POST", {}, cookie, form_token=token)
    assert not auth.admits("PUT", {CSRF_HEADER: token + "0"}, cookie)
    assert not auth.admits("PUT", {CSRF_HEADER: "é" * 64}, cookie)  # any text: refused, never an error
    assert not auth.admits("PUT", {CSRF_HEADER: token}, None)
    assert not auth.admits("GET", {}, None)
    assert not auth.admits("GET", {"Authorization": "Bearer wrong"}, "1.2.3")
