"""Who may use the admin API and page: the holder of the admin key, which is not a
client key (app/service_auth.py) and is never accepted as one.

Two ways in:
  * `Authorization: Bearer <admin key>` on any admin request (scripts, curl);
  * the page's session: the login form trades the key for a session cookie
    (HttpOnly, SameSite=Strict, Path=/admin). A request that changes something
    (any method but GET/HEAD) on a session must also carry the session's CSRF
    token in `X-CSRF-Token` (or the form field `csrf_token`), which only a page we
    served can have read.

Sessions are signed, not stored: a cookie is `<expiry>.<nonce>.<mac>`, its MAC
keyed by a secret derived from the admin key, so every worker, host and restart
accepts it without sharing state, and changing the admin key ends them all. No
admin key configured: the admin API is off (every admin route a 401).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Mapping

COOKIE = "interchange_admin"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 8 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class AdminAuth:
    def __init__(self, key: str | None, session_seconds: float = SESSION_SECONDS):
        self._key = key.encode() if key else None
        # Distinct from the key itself: a leaked cookie MAC says nothing about the key.
        self._secret = hashlib.sha256(b"interchange admin session\0" + self._key).digest() if self._key else b""
        self.session_seconds = session_seconds

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def key_matches(self, candidate: str | None) -> bool:
        """Constant-time: the time taken says nothing of how much of the key matched."""
        if self._key is None or candidate is None:
            return False
        return hmac.compare_digest(hashlib.sha256(candidate.encode()).digest(),
                                   hashlib.sha256(self._key).digest())

    def bearer_ok(self, headers: Mapping[str, str]) -> bool:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and self.key_matches(token.strip())

    # ------------------------------------------------------------- sessions

    def new_session(self, now: float | None = None) -> str:
        """The cookie value for a session that has just logged in."""
        expiry = int((time.time() if now is None else now) + self.session_seconds)
        body = f"{expiry}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def session_ok(self, cookie: str | None, now: float | None = None) -> bool:
        if not self.enabled or not cookie or cookie.count(".") != 2:
            return False
        body, _, mac = cookie.rpartition(".")
        if not _same(mac, self._mac(body)):
            return False
        expiry = body.partition(".")[0]
        return expiry.isdigit() and int(expiry) > (time.time() if now is None else now)

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of a (valid) session: a page we served gets it, a foreign page cannot."""
        return self._mac("csrf:" + cookie)

    def admits(self, method: str, headers: Mapping[str, str], cookie: str | None,
               form_token: str | None = None) -> bool:
        """May this admin request go on: the bearer key, or a session (plus its CSRF
        token when the method changes something)."""
        if not self.enabled:
            return False
        if self.bearer_ok(headers):
            return True
        if not self.session_ok(cookie):
            return False
        if method.upper() in _SAFE_METHODS:
            return True
        sent = headers.get(CSRF_HEADER) or form_token or ""
        return _same(sent, self.csrf_token(cookie))

    def _mac(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()


def _same(sent: str, expected: str) -> bool:
    """Constant-time equality of a text a client sent (any characters) and ours (hex)."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode())
