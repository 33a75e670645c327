"""The client protocols the matrix drives, by name, in table order."""
from __future__ import annotations

from scripts.matrix.anthropic import AnthropicClient
from scripts.matrix.frontend import Frontend
from scripts.matrix.gemini import GeminiClient
from scripts.matrix.openai_chat import OpenAIClient
from scripts.matrix.openai_responses import ResponsesClient

FRONTENDS: dict[str, Frontend] = {c.name: c() for c in (OpenAIClient, AnthropicClient, GeminiClient, ResponsesClient)}
