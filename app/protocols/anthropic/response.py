"""Frontend: an IR response rendered as a Messages API reply."""
from __future__ import annotations

import hashlib
import uuid

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols.anthropic.common import opaque_for_client


_STOP_REASON_BY_FINISH = {
    ir.FinishReason.stop: "end_turn",
    ir.FinishReason.length: "max_tokens",
    ir.FinishReason.tool_calls: "tool_use",
    ir.FinishReason.content_filter: "refusal",
}


def message_id(upstream_id: str) -> str:
    """A `msg_` id for the client: the upstream's when it is one, else derived from it
    (deterministic, so a stream and its retries agree) (known-gateway-bugs #17)."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    if upstream_id:
        return "msg_" + hashlib.sha256(upstream_id.encode()).hexdigest()[:24]
    return "msg_" + uuid.uuid4().hex[:24]


def format_response(resp: ir.Response, req: ir.Request) -> dict:
    """IR response -> a Messages `message` object."""
    if resp.finish_reason is ir.FinishReason.error:
        raise _model_failure(resp.raw_finish_reason, resp.finish_message)
    stop_reason, stop_sequence = _stop_reason(resp.finish_reason, resp.stop_sequence)
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model or req.model,
        "content": [block for block in map(_response_block, resp.parts) if block is not None],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage_to_wire(resp.usage),
    }


def _model_failure(raw_reason: str | None, explanation: str | None) -> ProxyError:
    message = f"the upstream model failed to produce a response ({raw_reason or 'error'})"
    return ProxyError(ErrorKind.bad_gateway, f"{message}: {explanation}" if explanation else message)


def _stop_reason(finish: ir.FinishReason, stop_sequence: str | None) -> tuple[str, str | None]:
    if finish is ir.FinishReason.stop and stop_sequence:
        return "stop_sequence", stop_sequence
    return _STOP_REASON_BY_FINISH.get(finish, "end_turn"), None


def _usage_to_wire(usage: ir.Usage) -> dict:
    """The API counts only uncached input in `input_tokens`; the IR counts the whole prompt."""
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    return {
        "input_tokens": max(uncached, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def _response_block(part: ir.Part) -> dict | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": _arguments_or_empty(part)}
    if isinstance(part, ir.Thinking):
        if part.redacted:
            return {"type": "redacted_thinking", "data": opaque_for_client(part.redacted, part.origin)}
        signature = opaque_for_client(part.signature, part.origin) if part.signature else ""
        if not part.text and not signature:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": signature}
    return None  # images/results have no slot in an assistant reply


def _arguments_or_empty(call: ir.ToolCall) -> dict:
    """`input` must be an object; arguments cut short (max_tokens) cannot be one."""
    try:
        return call.arguments_object()
    except ValueError:
        return {}
