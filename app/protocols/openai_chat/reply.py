"""Backend: a `chat.completion` reply read back into the IR."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.protocols.base import token_count
from app.protocols.openai_chat.common import PROTOCOL
from app.protocols.openai_chat.errors import _error_from_envelope


_FINISH_FROM_WIRE = {
    "stop": ir.FinishReason.stop,
    "length": ir.FinishReason.length,
    "tool_calls": ir.FinishReason.tool_calls,
    "function_call": ir.FinishReason.tool_calls,
    "content_filter": ir.FinishReason.content_filter,
    "error": ir.FinishReason.error,  # OpenRouter: the upstream model failed mid-turn
}


def _usage_from_wire(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return ir.Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),  # cached tokens are already included
        output_tokens=token_count(usage.get("completion_tokens")),  # reasoning tokens are already included
        reasoning_tokens=token_count(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
        cache_read_tokens=token_count(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        cache_write_tokens=token_count(prompt.get("cache_write_tokens")) if isinstance(prompt, dict) else 0,
    )


def _finish_from_wire(raw: Any, has_tool_calls: bool) -> ir.FinishReason:
    finish = _FINISH_FROM_WIRE.get(raw, ir.FinishReason.stop)
    # Some OpenAI-compatible servers say "stop" for a tool-call turn (known bug #7).
    if has_tool_calls and finish is ir.FinishReason.stop:
        return ir.FinishReason.tool_calls
    return finish


def _synthetic_call_id(*seed: Any) -> str:
    return "call_" + hashlib.sha256(":".join(map(str, seed)).encode()).hexdigest()[:24]


def _arguments_text(value: Any) -> str:
    """Arguments as the raw string; a few compatible servers send an object."""
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()


def _reasoning_text(obj: Mapping[str, Any]) -> str:
    # Non-standard but common (DeepSeek, vLLM: reasoning_content; OpenRouter: reasoning).
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


# OpenRouter's reasoning_details item type -> (IR part kind, the field holding its content).
_REASONING_DETAILS = {"reasoning.text": ("thinking", "text"), "reasoning.summary": ("thinking", "summary"),
                      "reasoning.encrypted": ("redacted_thinking", "data")}


def _reasoning_pieces(obj: Mapping[str, Any]) -> list[tuple[str, str]] | tuple[()]:
    """A message's or delta's reasoning as ("thinking", text) / ("redacted_thinking", data)
    pieces. OpenRouter's structured `reasoning_details` (reasoning.text, .summary,
    .encrypted) when present, since its `reasoning` string repeats the same text;
    otherwise the plain `reasoning_content` / `reasoning` string."""
    details = obj.get("reasoning_details")
    if not isinstance(details, list) or not details:
        text = _reasoning_text(obj)
        return [("thinking", text)] if text else ()
    pieces: list[tuple[str, str]] = []
    for item in details:
        known = _REASONING_DETAILS.get(item.get("type")) if isinstance(item, dict) else None
        if known is not None:
            value = item.get(known[1])
            if isinstance(value, str) and value:
                pieces.append((known[0], value))
    return pieces


def _malformed(what: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, f"Upstream returned a malformed chat completion: {what}.")


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A non-streamed `chat.completion` body -> IR response (choice 0)."""
    try:
        doc = loads(body)
    except ValueError:
        raise _malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the body is not a JSON object")
    if doc.get("error") is not None:
        raise _error_from_envelope(doc, None)
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed("no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _malformed("choices[0].message is missing")
    parts = _message_parts(message, doc.get("id"))
    has_calls = any(isinstance(p, ir.ToolCall) for p in parts)
    raw_finish = choices[0].get("finish_reason")
    return ir.Response(
        id=doc.get("id") or "",
        model=doc.get("model") or req.model,
        parts=tuple(parts),
        finish_reason=_finish_from_wire(raw_finish, has_calls),
        usage=_usage_from_wire(doc.get("usage")),
        raw_finish_reason=raw_finish,
    )


def _message_parts(message: dict, response_id: Any) -> list[ir.Part]:
    parts: list[ir.Part] = []
    thinking: list[str] = []
    for kind, value in _reasoning_pieces(message):
        if kind == "thinking":
            thinking.append(value)
            continue
        if thinking:
            parts.append(ir.Thinking("".join(thinking)))
            thinking = []
        parts.append(ir.Thinking(redacted=value, origin=PROTOCOL))
    if thinking:
        parts.append(ir.Thinking("".join(thinking)))
    content = message.get("content")
    if isinstance(content, list):  # a few servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str) and content.strip():
        parts.append(ir.Text(content))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(ir.Refusal(refusal))
    for k, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise _malformed(f"tool_calls[{k}] has no function")
        fn = call["function"]
        parts.append(ir.ToolCall(id=call.get("id") or _synthetic_call_id(response_id, k),
                                 name=fn.get("name") or "",
                                 arguments=_arguments_text(fn.get("arguments"))))
    return parts
