"""Vertex AI: Gemini and Claude at Google Cloud's project/location URLs, with
OAuth2 bearer tokens from the mock's token endpoint (mocks/google_oauth.py)
checked on every call (protocols §3.12 and §4.9).

- Gemini: `POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
  and `:streamGenerateContent` (`?alt=sse`); the Gemini wire format, fixtures and rules.
- Claude: `POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict` and
  `:streamRawPredict`; the Messages body without `model` (it is in the URL, `@` version suffix)
  and with `"anthropic_version": "vertex-2023-10-16"` (or an API version date, which the current
  SDK sends); `stream` in the body matches the method. Token counting: `POST …/publishers/anthropic/
  models/count-tokens:rawPredict`, the count_tokens body with `model` (it is not in the URL) and
  `anthropic_version`; Gemini's: `…/publishers/google/models/{m}:countTokens`, Vertex's own
  CountTokensRequest (`contents`, `systemInstruction`, `tools`, `generationConfig` at the top level; no
  `generateContentRequest` wrapper, which is the Gemini API's), answered with `totalTokens`,
  `totalBillableCharacters` and `promptTokensDetails`.

Google's front end rejects a missing, unknown or expired token with 401 UNAUTHENTICATED in the
google.rpc.Status envelope, for both publishers; past it, each speaks its own errors.
"""
from __future__ import annotations

import re

from flask import Response

from mocks.anthropic import AnthropicProvider, invalid
from mocks.gemini import MODELS as GEMINI_MODELS
from mocks.gemini import GeminiProvider, check_request, estimate_tokens, parse_request
from mocks.gemini import error as google_error
from mocks.google_oauth import TokenIssuer
from mocks.provider import Call

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
# The documented Vertex value, or an Anthropic API version date: the current
# anthropic SDK (2.x) sends its own API version (e.g. "2026-10-21") here.
_API_DATE = re.compile(r"^20[0-9]{2}-[01][0-9]-[0-3][0-9]$")
# Regions, multi-regions and `global`, as Vertex names locations.
LOCATION = re.compile(r"^(global|us|eu|[a-z]+-[a-z]+[0-9]+)$")


def _bearer_check(call: Call, tokens: TokenIssuer) -> None:
    scheme, _, token = (call.header("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not tokens.valid(token.strip()):
        raise google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential. See "
                                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                           [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_EXPIRED"
                             if token else "CREDENTIALS_MISSING", "domain": "googleapis.com",
                             "metadata": {"service": "aiplatform.googleapis.com"}}])


def _location_check(call: Call) -> None:
    location = call.notes.get("location", "")
    if not LOCATION.match(location):
        raise google_error(400, f"Location {location!r} is not a valid Vertex AI location.")


def _check_version(body: dict) -> None:
    version = body.get("anthropic_version")
    if version is None:
        raise invalid("anthropic_version: Field required")
    if version != VERTEX_ANTHROPIC_VERSION and not (isinstance(version, str) and _API_DATE.match(version)):
        raise invalid(f"anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}' or an API version date")


class VertexGeminiProvider(GeminiProvider):
    name = "vertex_gemini"
    scenario_set = "gemini"

    def __init__(self, tokens: TokenIssuer):
        self.tokens = tokens

    def authenticate(self, call: Call) -> None:
        _bearer_check(call, self.tokens)
        _location_check(call)

    def count_tokens(self, call: Call) -> Response:
        request = parse_request(call.body, "VertexCountTokensRequest")
        if call.model not in GEMINI_MODELS:
            raise self.model_not_found(call, "countTokens")
        check_request(request, call.model, "CountTokensRequest")
        total = estimate_tokens(request)
        characters = sum(len(p.get("text", "")) for c in [*request.get("contents", []),
                                                          request.get("systemInstruction", {})]
                         for p in c.get("parts", []))
        return self._json({"totalTokens": total, "totalBillableCharacters": characters,
                           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}, call)


class VertexAnthropicProvider(AnthropicProvider):
    name = "vertex_anthropic"
    scenario_set = "anthropic"

    def __init__(self, tokens: TokenIssuer):
        self.tokens = tokens

    def authenticate(self, call: Call) -> None:
        # No x-api-key and no anthropic-version header on Vertex: the token, and the version in the body.
        _bearer_check(call, self.tokens)
        _location_check(call)

    def count_tokens(self, call: Call) -> Response:
        body = call.body
        _check_version(body)
        if not isinstance(body.get("model"), str):
            raise invalid("model: Field required")
        call.body = {k: v for k, v in body.items() if k != "anthropic_version"}
        call.body["model"] = body["model"].replace("@", "-")
        try:
            return super().count_tokens(call)
        finally:
            call.body = body

    def validate(self, call: Call) -> None:
        body = call.body
        if "model" in body:
            raise invalid("model: Extra inputs are not permitted")
        _check_version(body)
        streaming_method = call.notes["method"] == "streamRawPredict"
        if (body.get("stream") is True) != streaming_method:
            raise invalid("stream: must be true for streamRawPredict and absent or false for rawPredict")
        # Past those, the Messages API's own rules, for the model the URL names.
        messages_body = {k: v for k, v in body.items() if k != "anthropic_version"}
        call.body = {"model": call.notes["model"].replace("@", "-"), **messages_body}
        try:
            super().validate(call)
        finally:
            call.body = body
        call.model = call.notes["model"]
