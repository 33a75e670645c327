"""Which headers transparent mode (app/transparent.py) passes each way.

Allowlists, both ways: a header goes on only when it is named here (or, to the
upstream, in the instance backend's own `forward_headers`), so a header nobody thought
of stays behind. Never, whatever an allowlist says:

- to the upstream: a client credential or a request-signing header (Host,
  Authorization, Proxy-*, Cookie, api-key, x-api-key, x-goog-api-key, X-Amz-*:
  app.providers.base.NEVER_FORWARDED and the prefixes below), the instance's own
  credential is added by its provider afterwards; Content-Length (the upstream client
  frames the body it sends) and Accept-Encoding (the upstream client reads identity
  or decodes, and the client gets identity);
- to the client: Set-Cookie, or a framing header of the upstream's (the server
  frames the reply it sends);
- either way: the hop-by-hop fields of RFC 9110 §7.6.1: Connection and every name
  it lists, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer.

A value holding CR, LF or another control character never goes upstream (the
server refuses such a head before this runs, app/http_head.py; this is the second
wall, and the upstream client refuses one too).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from app.errors import retry_after_seconds
from app.providers.base import NEVER_FORWARDED

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade",
                        "trailer"})

# What native clients send that their provider reads: the body's type, what they accept,
# the protocol's version and feature headers.
REQUEST_HEADERS = frozenset({
    "content-type", "accept",
    "anthropic-version", "anthropic-beta",  # Anthropic (and Claude on Vertex / Bedrock)
    "openai-beta",  # OpenAI (Assistants, Realtime betas)
    "x-amzn-bedrock-trace", "x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-guardrailversion",
    "x-amzn-bedrock-performanceconfig-latency",  # Bedrock InvokeModel's header parameters
})
_NEVER_UP_PREFIXES = ("x-amz-", "proxy-")
_NEVER_UP = NEVER_FORWARDED | {"content-length", "accept-encoding"}

# What native clients read of a reply: its type, request ids, rate limits and retry advice,
# AWS's error type and Bedrock's invocation metrics.
RESPONSE_HEADERS = frozenset({
    "content-type", "retry-after", "retry-after-ms",
    "x-request-id", "request-id", "x-amzn-requestid", "x-amz-request-id", "apim-request-id",
    "x-amzn-errortype", "x-should-retry", "openai-processing-ms", "openai-version",
})
_RESPONSE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "x-amzn-bedrock-")
_NEVER_DOWN = frozenset({"set-cookie", "set-cookie2", "content-length", "content-encoding"})

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in a value


def listed_in_connection(pairs: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The names a Connection header lists (lower-cased): hop-by-hop for this message."""
    names: set[str] = set()
    for name, value in pairs:
        if name.lower() == "connection":
            names.update(n.strip().lower() for n in value.split(","))
    return frozenset(names)


def upstream_headers(pairs: list[tuple[str, str]], forward: Iterable[str] = ()) -> dict[str, str]:
    """The client's header fields that go upstream: allowlisted (REQUEST_HEADERS plus the
    backend's `forward_headers`), never a credential, a framing or a hop-by-hop field, nor a
    value with a control character. A repeated field is joined with ", "."""
    allowed = REQUEST_HEADERS | {h.lower() for h in forward}
    dropped = HOP_BY_HOP | listed_in_connection(pairs)
    out: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        low = name.lower()
        if low not in allowed or low in dropped or low in _NEVER_UP or low.startswith(_NEVER_UP_PREFIXES):
            continue
        if _CONTROL.search(value):
            continue
        key = spelling.setdefault(low, name)
        out[key] = value if key not in out else out[key] + ", " + value
    return out


def client_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The upstream reply's header fields that go to the client: allowlisted, never a
    cookie, a framing or a hop-by-hop field, nor a value with a control character; a
    Retry-After only when it is a number of seconds or a date."""
    dropped = HOP_BY_HOP | listed_in_connection(headers.items())
    out = []
    for name, value in headers.items():
        low = name.lower()
        if low in dropped or low in _NEVER_DOWN or _CONTROL.search(value):
            continue
        if low in ("retry-after", "retry-after-ms") and retry_after_seconds(value) is None:
            continue  # advice only when it is advice: seconds or an HTTP date
        if low in RESPONSE_HEADERS or low.startswith(_RESPONSE_PREFIXES):
            out.append((name, value))
    return out
