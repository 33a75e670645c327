"""The path a transparent-mode client asks for, checked before it goes upstream.

Transparent mode (app/transparent.py) sends the rest of the client's path, after the
instance's endpoint path, under the instance's fixed base URL. It works on the raw
request target, still percent-encoded (what the client sent and, for SigV4, what the
signature must cover), never on a decoded PATH_INFO, and refuses anything that could
make the upstream see a path outside that base or a request other than the one asked:

- characters a request target may not hold unencoded (RFC 3986 pchar): spaces, non-ASCII,
  quotes, `\\` (a backslash is a separator on some servers), control characters;
- a `%` not followed by two hex digits;
- at every level of percent-decoding (repeated until nothing changes, so `%252e` is seen
  as `%2e` and then as `.`; more than MAX_DECODINGS levels is refused): a `..` or `.`
  segment, an empty segment (`//`, which also starts a network-path reference), a
  backslash, a control character (`%0d%0a` would end a header line), `@` (userinfo) or
  `://` (an absolute URL). An encoded slash (`%2F`) is accepted only where, decoded, it
  makes none of those: Bedrock's model ARNs hold one (`…:inference-profile%2Fus.anthropic…`).
  An encoded backslash (`%5C`) is always refused.

Normalised: a raw `.` segment is dropped (`/a/./b` is `/a/b`, as RFC 3986 §5.2.4 and
AWS's own SigV4 normalisation read it); everything else goes on exactly as written.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

MAX_DECODINGS = 3  # levels of percent-encoding looked through; more is refused

# RFC 3986 pchar / "/": unreserved, pct-encoded, sub-delims, ":" and "@" (checked below).
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")  # RFC 3986 query
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_BACKSLASH = re.compile(r"%5[Cc]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PathRefused(Exception):
    """The client's path cannot be sent upstream; the message says what is wrong with it."""


def checked_rest(rest: str, allowed: frozenset[str] = frozenset()) -> str:
    """`rest` (the raw path after the endpoint path: "" or "/…", still percent-encoded) as it
    goes upstream, or PathRefused naming what is wrong. `allowed`: characters the provider's
    native paths hold that are otherwise refused (Vertex's `@`)."""
    if rest and not rest.startswith("/"):
        raise PathRefused("The path must continue the endpoint path with '/'.")
    if "\\" in rest:
        raise PathRefused("The path contains a backslash.")
    if _CONTROL.search(rest):
        raise PathRefused("The path contains a control character.")
    if _PATH_CHARS.fullmatch(rest) is None:
        raise PathRefused("The path contains a character that must be percent-encoded (a space, a quote, "
                          "non-ASCII text...).")
    if _BAD_PERCENT.search(rest):
        raise PathRefused("The path has a '%' that is not followed by two hex digits.")
    if _ENCODED_BACKSLASH.search(rest):
        raise PathRefused("The path contains an encoded backslash (%5C).")
    rest = "/".join(s for s in rest.split("/") if s != ".")  # raw "." segments dropped
    level, data = 0, rest.encode("ascii")
    while True:
        _check_level(data.decode("latin-1"), level, allowed)
        decoded = unquote_to_bytes(data)  # bytes in, bytes out: encoded UTF-8 stays bytes
        if decoded == data:
            return rest
        level += 1
        if level > MAX_DECODINGS:
            raise PathRefused(f"The path is percent-encoded more than {MAX_DECODINGS} times over.")
        data = decoded


def checked_query(query: str) -> str:
    """The raw query string (after `?`), relayed as written when it holds only what a query may
    hold unencoded (the signature covers it as written); else PathRefused."""
    if _QUERY_CHARS.fullmatch(query) is None:
        raise PathRefused("The query string contains a character that must be percent-encoded.")
    if _BAD_PERCENT.search(query):
        raise PathRefused("The query string has a '%' that is not followed by two hex digits.")
    return query


def _check_level(text: str, level: int, allowed: frozenset[str]) -> None:
    """One decoding level of the path (0: as sent): refused when it reaches outside its base."""
    where = "" if level == 0 else f" once percent-decoded{'' if level == 1 else f' {level} times'}"
    if level:
        if "\\" in text:
            raise PathRefused(f"The path holds a backslash{where} (an encoded '\\\\').")
        if _CONTROL.search(text):
            raise PathRefused(f"The path holds a control character{where}.")
    if "://" in text:
        raise PathRefused(f"The path holds an absolute URL (a scheme and '://'){where}; only a path under "
                          "the endpoint is relayed.")
    if "@" in text and "@" not in allowed:
        raise PathRefused(f"The path holds '@'{where} (userinfo); it is not relayed.")
    segments = text.split("/")[1:]
    for i, segment in enumerate(segments):
        if segment in ("..", "."):
            raise PathRefused(f"The path has a '{segment}' segment{where}; it may not leave the endpoint's base.")
        if segment == "" and i < len(segments) - 1:
            raise PathRefused(f"The path has an empty segment ('//'){where}.")
