"""Upstream URLs: a backend's base URL + a path template + values, each value
percent-encoded as one path segment. Every protocol and provider builds its
URLs here, so no value (a model id above all: clients choose it) can add a
path segment, a query, a fragment or a line to the request it goes into.

    upstream_url("https://generativelanguage.googleapis.com",
                 "/v1beta/models/{model}:streamGenerateContent", model="gemini-2.5-flash",
                 query={"alt": "sse"})
    -> "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"

    upstream_url(base, "/model/{model}/converse", model="anthropic.claude-3-sonnet-20240229-v1:0")
    -> base + "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse"

The template is the provider's fixed path, written by us: literal `/` and
`:` in it stay as they are (Gemini's `{model}:generateContent`). A value keeps
only RFC 3986's unreserved characters (letters, digits, `-._~`); everything
else, `/ ? # % :` and every control character included, is percent-encoded
(UTF-8). A value that is empty, `.` or `..` is refused (ValueError): those
would name a different path however they are encoded.
"""
from __future__ import annotations

import functools
from typing import Mapping
from urllib.parse import quote


# Characters a segment may keep as they are when a provider's own clients send
# them so (`@` in Vertex's `claude-sonnet-4-5@20250929`): RFC 3986 lets a path
# segment hold them, and none of them can end a segment, a path or a line.
_KEEPABLE = frozenset("@:!$&'()*+,;=")


@functools.lru_cache(maxsize=512)  # the same few model ids, request after request
def segment(value: str, keep: str = "") -> str:
    """`value` as one percent-encoded path segment; `keep`: characters of _KEEPABLE left as they are."""
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be a URL path segment")
    if not _KEEPABLE.issuperset(keep):
        raise ValueError(f"{keep!r}: only {''.join(sorted(_KEEPABLE))} may stay unencoded in a path segment")
    return quote(value, safe=keep)


def query_string(params: Mapping[str, str]) -> str:
    """`k=v&...`, keys and values percent-encoded the same way (space as %20)."""
    return "&".join(quote(k, safe="") + "=" + quote(v, safe="") for k, v in params.items())


def upstream_url(base_url: str, template: str, *, query: Mapping[str, str] | None = None, keep: str = "",
                 **values: str) -> str:
    """base URL (trailing slashes dropped) + `template` with each `{name}`
    replaced by `segment(values[name], keep)` + `?query` when given."""
    path = template.format_map({name: segment(value, keep) for name, value in values.items()}) if values else template
    url = base_url.rstrip("/") + path
    return url + "?" + query_string(query) if query else url
