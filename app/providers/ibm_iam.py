"""IBM Cloud IAM access tokens from an API key (protocols B §2.5): `POST {iam_url}/identity/token`,
form `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY`, answered with an access
token (a JWT) and its `expiration` (epoch seconds).

A token is kept until shortly before it expires (a fifth of its lifetime, at most a minute,
as IBM's SDKs renew early) and then fetched once, however many requests are waiting for it.
A token the service refuses before that (revoked) is forgotten once: requests that were
refused with it all get the one new token. The fetch is off the hot path (once a lifetime),
so it uses `requests`, as google-auth does for Vertex.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from app.errors import ErrorKind, ProxyError

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_IAM_URL = "https://iam.cloud.ibm.com"
TOKEN_PATH = "/identity/token"
TOKEN_TIMEOUT = 10.0  # seconds for the token endpoint
MAX_EARLY = 60.0  # renew at most this long before expiry


class IamToken:
    """The bearer token of one backend, fetched from `iam_url` with the key `api_key()` gives
    (it raises the configuration error naming what is missing)."""

    def __init__(self, backend: str, api_key: Callable[[], str], iam_url: str = DEFAULT_IAM_URL,
                 clock=time.time) -> None:
        self._backend = backend
        self._key = api_key
        self._url = iam_url.rstrip("/") + TOKEN_PATH
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self._session = None

    def token(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._renew_at:
            return token
        with self._lock:  # one fetch for every request waiting on a stale token
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            return self._token

    def current(self) -> str | None:
        """The token in use, if any (for redaction); never fetches."""
        return self._token

    def forget(self, refused: str | None) -> bool:
        """The service refused `refused`: drop it if it is still the one in use (requests refused
        with it together share one renewal). True when a replay is worth it: a token was refused,
        and the next `token()` is another one (fetched then, or already)."""
        if refused is None:
            return False
        with self._lock:
            if self._token == refused:
                self._token = None
        return True

    def _fetch(self) -> None:
        import requests
        key = self._key()
        if self._session is None:
            self._session = requests.Session()
        try:
            resp = self._session.post(self._url, data={"grant_type": GRANT_TYPE, "apikey": key},
                                      headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
        except requests.RequestException as e:
            raise self._failed(f"the token endpoint could not be reached ({type(e).__name__})") from None
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if resp.status_code != 200 or not isinstance(doc, dict):
            # IAM's own error text names the problem (`BXNIM0415E: Provided API key could not be
            # found`); the key itself is never in it.
            detail = ": ".join(str(doc[k])[:200] for k in ("errorCode", "errorMessage") if doc.get(k)) \
                if isinstance(doc, dict) else ""
            raise self._failed(f"the token endpoint answered HTTP {resp.status_code}" + (f" ({detail})" if detail else ""))
        token, expiration = doc.get("access_token"), doc.get("expiration")
        if not isinstance(token, str) or not token or not isinstance(expiration, (int, float)):
            raise self._failed("the token endpoint's reply has no access_token and expiration")
        now = self._clock()
        lifetime = max(expiration - now, 0.0)
        self._token = token
        self._renew_at = expiration - min(MAX_EARLY, lifetime / 5)

    def _failed(self, reason: str) -> ProxyError:
        return ProxyError(ErrorKind.bad_gateway, f"Backend '{self._backend}' could not get an IBM Cloud IAM token: "
                          f"{reason}. This is a problem with the proxy's credentials for that backend, not with the "
                          "client's request.", code="upstream_authentication_error", backend=self._backend)
