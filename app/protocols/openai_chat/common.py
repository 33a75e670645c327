"""OpenAI Chat wire names, and the tool-call shape both halves of the module write."""
from __future__ import annotations

from app import ir


PROTOCOL = "openai"  # the registry name (app/protocols/__init__.py MODULES)
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
RESPONSE_MODEL_FIELD = "model"
# An SSE comment: every SSE reader skips it, so it keeps an idle stream alive.
KEEPALIVE_COMMENT = b": keep-alive\n\n"


def _wire_tool_call(call: ir.ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
