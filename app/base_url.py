"""A backend's `url` as its users write it -> the base its requests are built on (once, at config load).

Users copy a provider's URL from wherever they found it: the bare host, the SDK's base URL with the
API version, or a whole endpoint with the model in it. Each provider's request paths are fixed
facts (../shared/protocols/chat-openai-anthropic-gemini.md), so every such form names one base:

| protocol  | requests go to                        | the base keeps                    | written forms accepted |
|-----------|---------------------------------------|-----------------------------------|------------------------|
| openai    | {base}/chat/completions               | the API version (`/v1`, or an OpenAI-compatible server's own prefix: `/api/v1`, `/openai/v1`, `/v1beta/openai`) | bare host (`/v1` added), `…/v1`, `…/chat/completions` |
| openai_responses | {base}/responses               | as openai                         | bare host (`/v1` added), `…/v1`, `…/responses` |
| anthropic | {base}/v1/messages                    | host and any gateway prefix       | bare host, `…/v1`, `…/v1/messages` |
| gemini    | {base}/v1beta/models/{model}:{method} | host and any gateway prefix       | bare host, `…/v1beta` or `…/v1`, `…/v1beta/models/{model}[:method]` (the model comes from model_mapping) |
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import redact_url

_GEMINI_VERSION = "v1beta"  # the version the Gemini request builder speaks
_GEMINI_TAIL = re.compile(r"/(v1beta|v1alpha|v1)(?:/models(?:/[^/]*)?)?$|/models(?:/[^/]*)?$")
_ANTHROPIC_TAIL = re.compile(r"/v1(?:/messages)?$")
_OPENAI_TAILS = {"openai": "/chat/completions", "openai_responses": "/responses"}  # protocol -> endpoint


@dataclass(frozen=True, slots=True)
class BaseUrl:
    base: str  # what the protocol's request builder appends its paths to; no trailing slash
    note: str | None = None  # how a written URL that differs from `base` was understood


class BaseUrlError(ValueError):
    """The URL cannot be a base (the message says why, without secrets)."""


def normalise_base_url(protocol: str, url: str) -> BaseUrl:
    """The base for `protocol` from a URL written any of the ways in the module docstring."""
    written = url
    if "?" in url or "#" in url:
        raise BaseUrlError("must not carry a query or fragment (?… / #…): give the key as api_key or api_key_env")
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/")
    origin = f"{scheme}://{host}"
    if protocol in _OPENAI_TAILS:
        base, why = _openai(path, _OPENAI_TAILS[protocol])
    elif protocol == "anthropic":
        base, why = _anthropic(path)
    elif protocol == "gemini":
        base, why = _gemini(path)
    else:
        return BaseUrl(written.rstrip("/"))
    base = origin + base
    if why is None:
        return BaseUrl(base)
    return BaseUrl(base, f"{redact_url(written)} understood as base {redact_url(base)} ({why})")


def _openai(path: str, tail: str) -> tuple[str, str | None]:
    if path.endswith(tail):
        path = path[: -len(tail)]
        why = "the endpoint path is dropped: requests go to {base}" + tail
        if not path:
            return "/v1", why + "; a bare host gets the API version /v1"
        return path, why
    if not path:
        return "/v1", "a bare host gets the API version /v1: requests go to {base}" + tail
    return path, None


def _anthropic(path: str) -> tuple[str, str | None]:
    m = _ANTHROPIC_TAIL.search(path)
    if m is None:
        return path, None
    return path[: m.start()], f"{m.group(0)} dropped: requests go to {{base}}/v1/messages"


def _gemini(path: str) -> tuple[str, str | None]:
    m = _GEMINI_TAIL.search(path)
    if m is None:
        return path, None
    version = m.group(1)
    parts = []
    if version and version != _GEMINI_VERSION:
        parts.append(f"API {version} written; requests use {_GEMINI_VERSION}")
    else:
        parts.append(f"API {_GEMINI_VERSION}")
    if "/models" in m.group(0):
        parts.append("the model path is ignored: models come from model_mapping")
    return path[: m.start()], "; ".join(parts)
