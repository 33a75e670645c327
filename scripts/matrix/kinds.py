"""Which reader and fixtures serve each backend kind, and which mock calls are generation calls."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from scripts.matrix.upstream import (AnthropicUpstream, AzureUpstream, BedrockUpstream, GeminiUpstream, OpenAIUpstream,
                                     VertexAnthropicUpstream, VertexGeminiUpstream)
from scripts.matrix.upstream_ollama import OllamaOpenAIUpstream, OllamaUpstream
from scripts.matrix.upstream_oci import OCICohereUpstream
from scripts.matrix.upstream_openrouter import OpenRouterUpstream
from scripts.matrix.upstream_responses import AzureResponsesUpstream, ResponsesUpstream
from scripts.matrix.upstream_runpod import RunPodOpenAIUpstream, RunPodUpstream
from scripts.matrix.upstream_watsonx import WatsonxUpstream


@dataclass(frozen=True)
class UpstreamKind:
    """What the matrix knows of a backend kind: the provider name the mock logs its
    calls under, the scenario fixtures it replays, and the reader of its requests."""
    mock_provider: str
    scenarios: str  # scenarios/<folder>
    reader: Any  # an *Upstream with view(body, path, query) -> UpstreamView
    unsupported: Mapping[str, str] = field(default_factory=dict)  # capability -> why the wire cannot carry it
    # Reasoning text comes back only when the client asked to see it (a Responses summary),
    # not whenever thinking is on: a client that cannot ask (Chat) gets none.
    thoughts_on_request: bool = False


# The proxy refuses `stop` for a Responses backend (app/protocols/openai_responses.build_body).
_NO_STOP = {"stop_sequence": "the Responses API has no stop sequences (the proxy refuses `stop` with a 400)"}


UPSTREAM_KINDS: dict[str, UpstreamKind] = {
    "openai": UpstreamKind("openai", "openai", OpenAIUpstream()),
    "anthropic": UpstreamKind("anthropic", "anthropic", AnthropicUpstream()),
    "gemini": UpstreamKind("gemini", "gemini", GeminiUpstream()),
    "azure_openai": UpstreamKind("azure_openai", "openai", AzureUpstream()),
    "vertex_gemini": UpstreamKind("vertex_gemini", "gemini", VertexGeminiUpstream()),
    "vertex_anthropic": UpstreamKind("vertex_anthropic", "anthropic", VertexAnthropicUpstream()),
    "bedrock_converse": UpstreamKind("bedrock", "bedrock", BedrockUpstream()),
    "openai_responses": UpstreamKind("openai_responses", "openai_responses", ResponsesUpstream(), _NO_STOP, True),
    "azure_responses": UpstreamKind("azure_openai_responses", "openai_responses", AzureResponsesUpstream(), _NO_STOP,
                                    True),
    "ollama": UpstreamKind("ollama", "ollama", OllamaUpstream()),
    "ollama_openai": UpstreamKind("ollama_openai", "openai", OllamaOpenAIUpstream()),
    "oci_cohere": UpstreamKind("oci", "oci", OCICohereUpstream()),
    "openrouter": UpstreamKind("openrouter", "openrouter", OpenRouterUpstream()),
    "runpod": UpstreamKind("runpod", "openai", RunPodUpstream()),
    "runpod_openai": UpstreamKind("runpod_openai", "openai", RunPodOpenAIUpstream()),
    "watsonx": UpstreamKind("watsonx", "openai", WatsonxUpstream()),
}
# The endpoints that generate, in every provider's URL layout: a cell checks exactly one
# call to one of them. Anything else the proxy calls on the way (a Google token fetch at
# /token, a model listing, count_tokens, a RunPod job's /status and /stream polls and its
# /cancel) is part of the exchange, not a second request.
_GENERATION_PATH = re.compile(r".*(/chat/completions|/responses|/messages|/converse(-stream)?|/api/chat|/actions/chat"
                              r"|/ml/v1/text/\w+"
                              r"|:(generateContent|streamGenerateContent|rawPredict|streamRawPredict)"
                              r"|/v2/[^/]+/run(sync)?)")


def is_generation_call(entry: Mapping[str, Any]) -> bool:
    """Whether a mock request-log entry is a generation call (the one a cell counts)."""
    return entry.get("method") == "POST" and _GENERATION_PATH.fullmatch(str(entry.get("path") or "")) is not None
