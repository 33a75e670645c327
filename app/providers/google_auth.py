"""Google OAuth2 access tokens for Vertex AI, with google-auth (protocols,
Google OAuth2 section): a service-account key file, application-default
credentials, or a static token. A fetched token is kept until google-auth
calls it stale (a few minutes before it expires) and then refreshed once,
however many requests are waiting for it; one the upstream refuses before then
(revoked) is dropped with `forget()`, and the next request fetches another."""
from __future__ import annotations

import os
import threading

from app.errors import ErrorKind, ProxyError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_TIMEOUT = 10.0  # seconds for the token endpoint
STATIC_TOKEN_ENV = "GCP_ACCESS_TOKEN"


class GoogleToken:
    """The bearer token of one backend. `credentials_file` (a service-account
    JSON key) or `static_token` when given; else GCP_ACCESS_TOKEN when set;
    else application-default credentials. `token_uri` replaces the token
    endpoint the key names (a private endpoint; the mock in the demo config)."""

    def __init__(self, backend: str, credentials_file: str | None = None, static_token: str | None = None,
                 token_uri: str | None = None):
        self._backend = backend
        self._file = credentials_file
        self._token_uri = token_uri
        self._static = static_token or (None if credentials_file else os.environ.get(STATIC_TOKEN_ENV))
        self._credentials = None
        self._request = None
        self._lock = threading.Lock()

    def token(self) -> str:
        if self._static:
            return self._static
        with self._lock:  # one refresh for every request waiting on a stale token
            credentials = self._credentials or self._load()
            if not credentials.valid:
                self._refresh(credentials)
            return credentials.token

    def forget(self, refused: str | None) -> bool:
        """The upstream refused `refused`: drop it if it is still the fetched token in use, so
        the next `token()` fetches one (requests refused with it together share one renewal).
        True when a replay is worth it; a static token has nothing to renew."""
        if self._static or refused is None:
            return False
        with self._lock:
            if self._credentials is None:
                return False
            if self._credentials.token == refused:
                self._credentials.token = None  # google-auth calls credentials without a token invalid
            return True

    def current(self) -> str | None:
        """The token in use, if any (for redaction); never fetches."""
        return self._static or (self._credentials.token if self._credentials is not None else None)

    def _load(self):
        from google.auth import default
        from google.auth.exceptions import DefaultCredentialsError
        from google.oauth2 import service_account
        try:
            if self._file:
                credentials = service_account.Credentials.from_service_account_file(self._file, scopes=SCOPES)
            else:
                credentials, _project = default(scopes=SCOPES)
            if self._token_uri and hasattr(credentials, "with_token_uri"):
                credentials = credentials.with_token_uri(self._token_uri)
        except (OSError, ValueError, KeyError, DefaultCredentialsError) as e:
            where = f"the credentials_file {self._file}" if self._file else "application-default credentials"
            raise ProxyError(ErrorKind.configuration, f"Backend '{self._backend}' has no usable Google "
                             f"credentials: {where} could not be loaded ({type(e).__name__}).",
                             code="configuration_error") from None
        self._credentials = credentials
        return credentials

    def _refresh(self, credentials) -> None:
        import google.auth.transport.requests
        from google.auth.exceptions import GoogleAuthError
        if self._request is None:
            self._request = google.auth.transport.requests.Request()
        request = self._request

        def bounded(*args, **kwargs):
            kwargs["timeout"] = TOKEN_TIMEOUT
            return request(*args, **kwargs)
        try:
            credentials.refresh(bounded)
        except GoogleAuthError as e:
            raise ProxyError(ErrorKind.bad_gateway, f"Backend '{self._backend}' could not get a Google access "
                             f"token: {_reason(e)}. This is a problem with the proxy's credentials for that backend, "
                             "not with the client's request.", code="upstream_authentication_error") from None


def _reason(error) -> str:
    """Why a token fetch failed, in a few words: the token endpoint's own `error:
    description` (google-auth's first argument; no secret, the assertion is not
    echoed), or that it could not be reached (the transport error's type only)."""
    from google.auth.exceptions import TransportError
    first = error.args[0] if error.args else None
    if isinstance(error, TransportError) or not isinstance(first, str):
        cause = first if isinstance(first, BaseException) else error
        return f"the token endpoint could not be reached ({type(cause).__name__})"
    return "the token endpoint answered " + first.strip()[:200].rstrip(".")
