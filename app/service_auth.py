"""SERVICE_API_KEY: the key clients must present to use the proxy at all (seed 002).

When set, every client endpoint but /health asks for it; the admin routes (/admin...)
ask for the admin key instead (app/admin_auth.py), and this key does not open them. A client sends it the
way its own SDK sends a key, so each SDK works with only its key setting changed:
`Authorization: Bearer <key>` (OpenAI; accepted on every path), `x-api-key`
(Anthropic), `x-goog-api-key` or `?key=` (Gemini). Any one of them matching is
enough, whatever the path. A transparent-mode client (app/transparent.py) carries its
provider's own credentials in those headers (boto3's SigV4 Authorization), so it sends
the service key as `Proxy-Authorization: Bearer <key>`, the header HTTP has for
credentials meant for an intermediary (RFC 9110 §11.7.2); any client may. The compare is constant-time; the key is never logged,
and none of these headers is ever forwarded upstream (providers.base.NEVER_FORWARDED).
"""
from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

OPEN_PATHS = frozenset({"/health"})
ADMIN_PREFIX = "/admin"  # the admin routes ask for the admin key instead (app/admin_auth.py)


class ServiceKey:
    __slots__ = ("_key", "_bearer")

    def __init__(self, key: str):
        self._key = key.encode()
        self._bearer = b"Bearer " + self._key

    def admits(self, environ) -> bool:
        """True when the request carries the service key (or needs none)."""
        path = environ.get("PATH_INFO") or ""
        if path in OPEN_PATHS or is_admin_path(path):
            return True
        for header, expected in (("HTTP_AUTHORIZATION", self._bearer), ("HTTP_X_API_KEY", self._key),
                                 ("HTTP_X_GOOG_API_KEY", self._key), ("HTTP_PROXY_AUTHORIZATION", self._bearer)):
            value = environ.get(header)
            if value is not None and hmac.compare_digest(value.encode("latin-1"), expected):
                return True
        query = environ.get("QUERY_STRING")
        if query and "key=" in query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if name == "key" and hmac.compare_digest(value.encode("utf-8", "replace"), self._key):
                    return True
        return False

    def __repr__(self) -> str:  # never the key
        return "ServiceKey([REDACTED])"


def is_admin_path(path: str) -> bool:
    """/admin and everything under it: not a client endpoint, so not this key's to check."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
