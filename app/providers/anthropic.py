"""Anthropic's API: `{base}/v1/messages` (and its token counter), `x-api-key`, `anthropic-version`."""
from __future__ import annotations

from app.protocols.anthropic import API_VERSION
from app.protocols.base import UpstreamRequest
from app.providers.base import COUNT_TOKENS, GENERATE, Call, Provider, json_request, with_credentials
from app.upstream.urls import upstream_url

_PATHS = {GENERATE: "/v1/messages", COUNT_TOKENS: "/v1/messages/count_tokens"}


class Anthropic(Provider):
    kind = "anthropic"
    wire = "anthropic"
    actions = frozenset(_PATHS)

    def prepare(self, call: Call) -> UpstreamRequest:
        version = str(self.backend.options.get("anthropic_version") or API_VERSION)
        own = {"content-type": "application/json", "anthropic-version": version}
        return self.authorise(json_request(upstream_url(self.backend.url, _PATHS[call.action]), own, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        # The proxy's key, never one the client sent.
        return with_credentials(request, {"x-api-key": self.backend.resolve_api_key()})
