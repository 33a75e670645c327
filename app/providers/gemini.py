"""Google's Gemini API: `{base}/v1beta/models/{model}:generateContent` (or
`:streamGenerateContent?alt=sse`), the key in `x-goog-api-key`."""
from __future__ import annotations

from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, json_request, with_credentials
from app.upstream.urls import upstream_url


class Gemini(Provider):
    kind = "gemini"
    wire = "gemini"

    def prepare(self, call: Call) -> UpstreamRequest:
        model = call.model.removeprefix("models/")
        if call.stream:
            url = upstream_url(self.backend.url, "/v1beta/models/{model}:streamGenerateContent", model=model,
                               query={"alt": "sse"})
        else:
            url = upstream_url(self.backend.url, "/v1beta/models/{model}:generateContent", model=model)
        return self.authorise(json_request(url, {}, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"x-goog-api-key": self.backend.resolve_api_key()})
