"""Backend: a Messages API reply read back into the IR."""
from __future__ import annotations

from typing import Any

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps_str, loads_or_none
from app.protocols.anthropic.common import PROTOCOL, _is_int
from app.protocols.anthropic.errors import _error_from_payload


_FINISH_BY_STOP_REASON = {
    "end_turn": ir.FinishReason.stop,
    "stop_sequence": ir.FinishReason.stop,
    "pause_turn": ir.FinishReason.stop,
    "max_tokens": ir.FinishReason.length,
    "model_context_window_exceeded": ir.FinishReason.length,
    "tool_use": ir.FinishReason.tool_calls,
    "refusal": ir.FinishReason.content_filter,
}


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A `message` object -> IR. A body that is not one is a bad gateway."""
    data = loads_or_none(body)
    if isinstance(data, dict) and data.get("type") == "error":
        raise _error_from_payload(data, status=None)
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned a malformed Anthropic message")
    stop_reason = data.get("stop_reason")
    stop_sequence = data.get("stop_sequence")
    return ir.Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or req.model),
        parts=tuple(p for p in map(_part_from_block, data["content"]) if p is not None),
        finish_reason=_finish_reason(stop_reason),
        usage=_usage_from_wire(data.get("usage")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) and stop_sequence else None,
        raw_finish_reason=stop_reason,
    )


def _finish_reason(stop_reason: Any) -> ir.FinishReason:
    return _FINISH_BY_STOP_REASON.get(stop_reason, ir.FinishReason.stop)


def _part_from_block(block: Any) -> ir.Part | None:
    """One content block -> IR part; server tool blocks and unknown types are skipped."""
    if not isinstance(block, dict):
        return None
    block_type = block.get("type")
    if block_type == "text":
        text = block.get("text")
        return ir.Text(text) if isinstance(text, str) and text.strip() else None
    if block_type == "thinking":
        text = block.get("thinking") or ""
        signature = block.get("signature") or None
        return ir.Thinking(text, signature, origin=PROTOCOL) if text or signature else None
    if block_type == "redacted_thinking":
        data = block.get("data")
        return ir.Thinking(redacted=data, origin=PROTOCOL) if data else None
    if block_type == "tool_use":
        arguments = block.get("input")
        return ir.ToolCall(str(block.get("id") or ""), str(block.get("name") or ""),
                           dumps_str(arguments if isinstance(arguments, dict) else {}))
    return None


def _count(value: Any) -> int:
    return value if _is_int(value) and value > 0 else 0


def _usage_from_wire(usage: Any) -> ir.Usage:
    """The API's uncached `input_tokens` + cache counts -> the IR's whole-prompt count."""
    if not isinstance(usage, dict):
        return ir.Usage()
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return ir.Usage(
        input_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        output_tokens=_count(usage.get("output_tokens")),
        reasoning_tokens=thinking,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
