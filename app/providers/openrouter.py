"""OpenRouter (protocols B §4): the OpenAI Chat wire at `{url}/api/v1/chat/completions`,
a Bearer key, and OpenRouter's own extras.

- `url` is the site (`https://openrouter.ai`); a pasted `…/api/v1` (the SDKs' base URL) or
  `…/api/v1/chat/completions` is understood as it.
- Attribution: the `http_referer` and `title` settings go out as `HTTP-Referer` / `X-Title`.
- Routing defaults, sent unless the request carries its own (an OpenAI client's body goes on
  as it came, OpenRouter fields included): `provider` (routing preferences), `models`
  (fallbacks), `transforms`, `route`.
- Reasoning: the wire writes OpenRouter's `reasoning` object (`effort`, or the client's token
  budget as `max_tokens`) instead of `reasoning_effort` (wire option `reasoning_object`).
- Replies are OpenAI's plus `reasoning` / `reasoning_details`, integer error codes (402: no
  credits), in-stream errors with `finish_reason: "error"`, and `: OPENROUTER PROCESSING`
  comments while the model is queued: the wire's parsers and the SSE framing read those.
"""
from __future__ import annotations

import re
from typing import Any, ClassVar, Mapping

from app.base_url import BaseUrl
from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, Setting, base_before, json_request, with_credentials
from app.upstream.urls import upstream_url

ENDPOINT = "/api/v1/chat/completions"
_PASTED = re.compile(r"/api/v1(?:/chat/completions)?/?$")
# Body fields a backend may set by default; the request's own value wins.
ROUTING_DEFAULTS = ("provider", "models", "transforms", "route")


class OpenRouter(Provider):
    kind = "openrouter"
    wire = "openai"
    wire_options: ClassVar[Mapping[str, Any]] = {"reasoning_object": True}
    settings = {
        "http_referer": Setting(str, help="your site's URL, sent as HTTP-Referer (OpenRouter's app attribution)"),
        "title": Setting(str, help="your app's name, sent as X-Title"),
        "provider": Setting(dict, help="default provider routing preferences (order, allow_fallbacks, sort, ...)"),
        "models": Setting(list, help="default fallback models, tried in order after the mapped one"),
        "transforms": Setting(list, help='default prompt transforms (e.g. ["middle-out"])'),
        "route": Setting(str, help='default routing strategy (e.g. "fallback")'),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        headers = {}
        if referer := self.setting("http_referer"):
            headers["HTTP-Referer"] = referer
        if title := self.setting("title"):
            headers["X-Title"] = title
        self._headers = headers
        self._defaults = {k: self.setting(k) for k in ROUTING_DEFAULTS if self.setting(k) is not None}
        self._url = upstream_url(backend.url, ENDPOINT)

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        return base_before(url, _PASTED, "requests go to {base}" + ENDPOINT)

    def prepare(self, call: Call) -> UpstreamRequest:
        body = None
        if self._defaults:
            missing = {k: v for k, v in self._defaults.items() if k not in call.body}
            if missing:
                body = {**call.body, **missing}
        return self.authorise(json_request(self._url, self._headers, call, body))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"Authorization": "Bearer " + self.backend.resolve_api_key()})
