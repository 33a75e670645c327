"""Vertex AI (protocols §3.12, §4.9): Gemini and Claude at Google Cloud's
project/location URLs, with a Google OAuth2 bearer token (google_auth.py).

- Gemini (`kind = "vertex_gemini"`, the Gemini wire format):
  `{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
  (or `:streamGenerateContent?alt=sse`); token counting at `…/models/{model}:countTokens`.
- Claude (`kind = "vertex_anthropic"`, the Messages wire format):
  `…/publishers/anthropic/models/{model}:rawPredict` (or `:streamRawPredict`), the body without
  `model` and with `anthropic_version`; token counting at `…/models/count-tokens:rawPredict`.

The base is `https://{location}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com`
for `global`), unless `url` says otherwise (a private endpoint, the mock). Likewise `token_uri`
replaces the token endpoint a service-account key names (config-mock.toml points the test key
at the mock that is running).
"""
from __future__ import annotations

import re
from typing import Any

from app.base_url import BaseUrl
from app.protocols.base import UpstreamRequest
from app.providers.base import (COUNT_TOKENS, GENERATE, Call, FetchedTokenProvider, Setting, base_before,
                                json_request)
from app.providers.google_auth import GoogleToken
from app.upstream.urls import upstream_url

ANTHROPIC_VERSION = "vertex-2023-10-16"
_MODEL_PATH = "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}"
# What users paste after the host: the API version, or a whole model endpoint.
_WRITTEN_TAIL = re.compile(r"/(?:v1|v1beta1)(?:/projects(?:/.*)?)?$")

_SETTINGS = {
    "project": Setting(str, required=True, help="the Google Cloud project id"),
    "location": Setting(str, required=True, help="a region (us-east5), a multi-region (us, eu) or global"),
    "credentials_file": Setting(str, help="a service-account JSON key; default: GCP_ACCESS_TOKEN, else "
                                          "application-default credentials"),
    "access_token": Setting(str, help="a static OAuth2 token (e.g. \"${GCP_ACCESS_TOKEN}\")"),
    "token_uri": Setting(str, help="the OAuth2 token endpoint, instead of the one the credentials name "
                                   "(a private endpoint, the mock)"),
}


def default_url(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


class _Vertex(FetchedTokenProvider):
    settings = _SETTINGS
    url_required = False
    uses_api_key = False
    native_path_chars = frozenset("@")  # publishers/anthropic/models/claude-…@20250929:rawPredict

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._project = self.setting("project")
        self._location = self.setting("location")
        self._base = backend.url or default_url(self._location)
        self._token = GoogleToken(backend.name, self.setting("credentials_file"), self.setting("access_token"),
                                  self.setting("token_uri"))

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The host (and any gateway prefix): a pasted `/v1` or `/v1/projects/…` endpoint is dropped,
        since project, location and model come from settings and model_mapping."""
        return base_before(url, _WRITTEN_TAIL, "requests go to {base}/v1/projects/{project}/locations/{location}/"
                                               "publishers/…: project and location from their settings, the model "
                                               "from model_mapping")

    def _url(self, publisher: str, model: str, method: str, query: dict | None = None) -> str:
        # `@` stays as Google documents it and the anthropic SDK sends it (`claude-…@20250929`).
        return upstream_url(self._base, _MODEL_PATH, project=self._project, location=self._location,
                            publisher=publisher, model=model, method=method, query=query, keep="@")

    def native_base(self) -> str:
        return self._base

    def secrets(self) -> tuple[str, ...]:
        token = self._token.current()
        return (token,) if token else ()


class VertexGemini(_Vertex):
    kind = "vertex_gemini"
    wire = "gemini"
    actions = frozenset({GENERATE, COUNT_TOKENS})

    def prepare(self, call: Call) -> UpstreamRequest:
        model = call.model.removeprefix("models/")
        if call.action == COUNT_TOKENS:
            url = self._url("google", model, "countTokens")
        elif call.stream:
            url = self._url("google", model, "streamGenerateContent", {"alt": "sse"})
        else:
            url = self._url("google", model, "generateContent")
        return self.authorise(json_request(url, {}, call))


class VertexAnthropic(_Vertex):
    kind = "vertex_anthropic"
    wire = "anthropic"
    actions = frozenset({GENERATE, COUNT_TOKENS})

    def prepare(self, call: Call) -> UpstreamRequest:
        body: dict[str, Any] = dict(call.body)
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)  # every rawPredict body, the counter's too
        if call.action == COUNT_TOKENS:  # the counter keeps the model in the body
            return self.authorise(json_request(self._url("anthropic", "count-tokens", "rawPredict"), {}, call, body))
        body.pop("model", None)  # it is in the URL
        url = self._url("anthropic", call.model, "streamRawPredict" if call.stream else "rawPredict")
        return self.authorise(json_request(url, {}, call, body))
