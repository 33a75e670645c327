"""OpenAI (and any OpenAI-compatible server): a Bearer key, Chat Completions at
`{base}/chat/completions` or Responses at `{base}/responses`."""
from __future__ import annotations

from typing import ClassVar

from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, json_request, with_credentials
from app.upstream.urls import upstream_url


class OpenAI(Provider):
    kind = "openai"
    wire = "openai"
    endpoint: ClassVar[str] = "/chat/completions"

    def prepare(self, call: Call) -> UpstreamRequest:
        return self.authorise(json_request(upstream_url(self.backend.url, self.endpoint), {}, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"Authorization": "Bearer " + self.backend.resolve_api_key()})


class OpenAIResponses(OpenAI):
    kind = "openai_responses"
    wire = "openai_responses"
    endpoint = "/responses"
