"""Providers: how each kind of backend is reached (see base.py). A backend =
a wire protocol (app/protocols/) + a provider; config names the kind.

The registry is checked when imported: every kind names a wire format that
exists and implements every piece of the Provider shape, so a missing piece
fails at start-up."""
from __future__ import annotations

import inspect

from app.protocols import MODULES
from app.upstream.framing import FRAMINGS
from app.providers.anthropic import Anthropic
from app.providers.azure_openai import AzureOpenAI, AzureResponses
from app.providers.base import Provider
from app.providers.bedrock import BedrockConverse
from app.providers.gemini import Gemini
from app.providers.ollama import Ollama, OllamaOpenAI
from app.providers.oci import OCIGenerativeAI
from app.providers.openai import OpenAI, OpenAIResponses
from app.providers.openrouter import OpenRouter
from app.providers.runpod import RunPod, RunPodOpenAI
from app.providers.vertex import VertexAnthropic, VertexGemini
from app.providers.watsonx import Watsonx

KINDS: dict[str, type[Provider]] = {cls.kind: cls for cls in (
    OpenAI, Anthropic, Gemini, AzureOpenAI, VertexGemini, VertexAnthropic, BedrockConverse, OpenAIResponses,
    AzureResponses, Ollama, OllamaOpenAI, OCIGenerativeAI, OpenRouter,
    RunPod, RunPodOpenAI, Watsonx)}


def _check(kinds: dict[str, type[Provider]]) -> None:
    for kind, cls in kinds.items():
        if inspect.isabstract(cls):
            raise TypeError(f"provider {kind}: {cls.__name__} does not implement {sorted(cls.__abstractmethods__)}")
        if cls.wire not in MODULES:
            raise TypeError(f"provider {kind}: unknown wire protocol {cls.wire!r}")
        if cls.framing not in FRAMINGS:
            raise TypeError(f"provider {kind}: unknown stream framing {cls.framing!r}")


_check(KINDS)


def provider_class(kind: str) -> type[Provider]:
    return KINDS[kind]
