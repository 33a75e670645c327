"""Frontend: an IR response rendered as a `chat.completion` object."""
from __future__ import annotations

import time
import uuid
from typing import Any

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols.openai_chat.common import _wire_tool_call


_FINISH_TO_WIRE = {
    ir.FinishReason.stop: "stop",
    ir.FinishReason.length: "length",
    ir.FinishReason.tool_calls: "tool_calls",
    ir.FinishReason.content_filter: "content_filter",
}


def _now() -> int:
    return int(time.time())


def _completion_id(upstream_id: str | None) -> str:
    if upstream_id and upstream_id.startswith("chatcmpl-"):
        return upstream_id
    return "chatcmpl-" + (upstream_id or uuid.uuid4().hex)


def _usage_to_wire(usage: ir.Usage) -> dict:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _model_failed(raw_reason: str | None) -> ProxyError:
    detail = f" ({raw_reason})" if raw_reason else ""
    return ProxyError(ErrorKind.bad_gateway, f"The model failed to produce a valid response{detail}.",
                      code="model_error")


def format_response(resp: ir.Response, req: ir.Request) -> dict:
    """A `chat.completion` object for one IR response. Raises ProxyError when the model failed."""
    if resp.finish_reason is ir.FinishReason.error:
        raise _model_failed(resp.raw_finish_reason)
    texts = [p.text for p in resp.parts if isinstance(p, ir.Text)]
    refusals = [p.text for p in resp.parts if isinstance(p, ir.Refusal)]
    calls = [_wire_tool_call(p) for p in resp.parts if isinstance(p, ir.ToolCall)]
    # content is null for a pure tool-call or refusal turn, as OpenAI sends it;
    # "" for an empty completion, which naive clients handle better than null.
    content = "".join(texts) if texts else (None if calls or refusals else "")
    message: dict[str, Any] = {"role": "assistant", "content": content,
                               "refusal": "".join(refusals) if refusals else None}
    if calls:
        message["tool_calls"] = calls
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ir.Thinking))
    if req.reasoning is not None and thinking:
        message["reasoning_content"] = thinking
    return {
        "id": _completion_id(resp.id),
        "object": "chat.completion",
        "created": _now(),
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH_TO_WIRE[resp.finish_reason]}],
        "usage": _usage_to_wire(resp.usage),
    }
