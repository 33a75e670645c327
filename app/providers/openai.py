"""OpenAI (and any OpenAI-compatible server): `{base}/chat/completions`, a Bearer key."""
from __future__ import annotations

from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, json_request
from app.upstream.urls import upstream_url


class OpenAI(Provider):
    kind = "openai"
    wire = "openai"

    def prepare(self, call: Call) -> UpstreamRequest:
        key = self.backend.resolve_api_key()
        return json_request(upstream_url(self.backend.url, "/chat/completions"),
                            {"Authorization": "Bearer " + key}, call)
