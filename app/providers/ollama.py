"""Ollama (protocols B §5): the native chat API at `{base}/api/chat`, streamed
as NDJSON; or its OpenAI-compatible Chat Completions at `{base}/v1/chat/completions`
over the OpenAI wire. The base defaults to a local server, http://127.0.0.1:11434.

A local Ollama takes no credential: with no `api_key` (nor `api_key_env`)
configured nothing is sent. A key, when one is configured (ollama.com, or a
server behind an authenticating gateway), goes as `Authorization: Bearer`.
"""
from __future__ import annotations

import re
from typing import ClassVar

from app.base_url import BaseUrl
from app.errors import invalid
from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, base_before, json_request, with_credentials
from app.upstream.urls import upstream_url

DEFAULT_URL = "http://127.0.0.1:11434"  # where `ollama serve` listens
_NATIVE_TAIL = re.compile(r"/api(?:/chat)?$")  # a pasted `/api` or `/api/chat`


class Ollama(Provider):
    kind = "ollama"
    wire = "ollama"
    framing = "ndjson"
    url_required = False
    api_key_optional = True

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The server (and any prefix): a pasted `/api/chat` or `/api` is dropped."""
        return base_before(url, _NATIVE_TAIL, "requests go to {base}/api/chat")

    def prepare(self, call: Call) -> UpstreamRequest:
        return self.authorise(json_request(upstream_url(self.native_base(), "/api/chat"), {}, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, bearer(self.backend))

    def native_base(self) -> str:
        return self.backend.url or DEFAULT_URL


class OllamaOpenAI(Provider):
    """The OpenAI-compatible route: the OpenAI wire's body with what Ollama reads
    differently from OpenAI: the token limit as `max_tokens` (it reads no
    `max_completion_tokens`), and no `tool_choice` (it has none and ignores it):
    `none` leaves the tools out, a forced choice is refused (400 naming it)
    rather than silently not forced, as on the native route."""

    kind = "ollama_openai"
    wire = "openai"
    url_required = False
    api_key_optional = True
    endpoint: ClassVar[str] = "/chat/completions"  # under `…/v1`, the OpenAI wire's base (a bare host gets /v1)

    def prepare(self, call: Call) -> UpstreamRequest:
        body = call.body
        if "max_completion_tokens" in body or "tool_choice" in body:
            body = {k: v for k, v in body.items() if k not in ("max_completion_tokens", "tool_choice")}
            if "max_completion_tokens" in call.body:
                body["max_tokens"] = call.body["max_completion_tokens"]
            choice = call.body.get("tool_choice")
            if choice == "none":
                body.pop("tools", None)
            elif choice not in (None, "auto") and body.get("tools"):
                raise invalid("Ollama has no tool choice: it cannot be made to call a tool; send tool_choice "
                              "auto or none", param="tool_choice")
        url = upstream_url(self.native_base(), self.endpoint)
        return self.authorise(json_request(url, {}, call, body))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, bearer(self.backend))

    def native_base(self) -> str:
        return self.backend.url or DEFAULT_URL + "/v1"


def bearer(backend) -> dict[str, str]:
    """`Authorization: Bearer <key>` when the backend configures a key, else nothing."""
    if backend.api_key is None and backend.api_key_env is None:
        return {}
    return {"Authorization": "Bearer " + backend.resolve_api_key()}
