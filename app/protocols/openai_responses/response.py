"""Frontend: an IR response rendered as a Responses `response` object."""
from __future__ import annotations

import time
import uuid
from typing import Any

from app import ir
# A failed turn is the same OpenAI error as on Chat, made there once.
from app.protocols.openai_chat.response import _model_failed
from app.protocols.openai_responses.common import NAMESPACE_SEPARATOR, PROTOCOL, _custom_input


def _now() -> int:
    return int(time.time())


def _response_id(upstream_id: str | None) -> str:
    if upstream_id and upstream_id.startswith("resp_"):
        return upstream_id
    return "resp_" + (upstream_id or uuid.uuid4().hex)


def _item_id(prefix: str, response_id: str, index: int) -> str:
    """Item ids derived from the response id and the output index: unique, stable."""
    return f"{prefix}_{response_id[5:]}_{index}"


def _usage_to_wire(usage: ir.Usage) -> dict:
    details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return {"input_tokens": usage.input_tokens, "input_tokens_details": details,
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


def _shows_summary(req: ir.Request) -> bool:
    return req.reasoning is not None and bool(req.reasoning.include_thoughts)


def _client_call(req: ir.Request, name: str) -> tuple[str, str | None, bool]:
    """A flattened IR tool name -> (client name, namespace, is custom), from the request's tools."""
    for tool in req.tools:
        if tool.name == name and tool.native is None:
            short = name[len(tool.namespace) + len(NAMESPACE_SEPARATOR):] if tool.namespace else name
            return short, tool.namespace, tool.kind == "custom"
    return name, None, False


def _call_item(req: ir.Request, call: ir.ToolCall, item_id: str, status: str = "completed") -> dict:
    name, namespace, custom = _client_call(req, call.name)
    if custom:
        item = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call.id, "name": name,
                "input": _custom_input(call.arguments)}
    else:
        item = {"id": item_id, "type": "function_call", "status": status, "call_id": call.id, "name": name,
                "arguments": call.arguments}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _reasoning_out(item_id: str, text: str, encrypted: str | None, show: bool) -> dict:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if show and text else []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def _text_part(part: ir.Text | ir.Refusal) -> dict:
    if isinstance(part, ir.Refusal):
        return {"type": "refusal", "refusal": part.text}
    return {"type": "output_text", "text": part.text, "annotations": [], "logprobs": []}


def _output_items(resp: ir.Response, req: ir.Request, response_id: str, incomplete: bool) -> list[dict]:
    items: list[dict] = []
    show = _shows_summary(req)
    message: dict | None = None
    for part in resp.parts:
        if isinstance(part, (ir.Text, ir.Refusal)):
            if message is None:
                message = {"id": _item_id("msg", response_id, len(items)), "type": "message", "status": "completed",
                           "role": "assistant", "content": []}
                items.append(message)
            message["content"].append(_text_part(part))
            continue
        message = None
        if isinstance(part, ir.ToolCall):
            prefix = "ctc" if _client_call(req, part.name)[2] else "fc"
            items.append(_call_item(req, part, _item_id(prefix, response_id, len(items))))
        elif isinstance(part, ir.Thinking):
            encrypted = part.signature if part.origin == PROTOCOL else None
            if (show and part.text) or encrypted:
                items.append(_reasoning_out(_item_id("rs", response_id, len(items)), part.text, encrypted, show))
    if incomplete and items and items[-1]["type"] == "message":
        items[-1]["status"] = "incomplete"
    return items


def _tool_choice_to_wire(req: ir.Request) -> Any:
    raw = (req.raw or {}).get("tool_choice")
    if raw is not None:
        return raw
    return "auto"


def _response_object(req: ir.Request, response_id: str, model: str, created: int, *, status: str,
                     output: list[dict], usage: dict | None, incomplete: str | None = None,
                     error: dict | None = None) -> dict:
    """The `response` object; request settings echoed as the real API does."""
    raw = req.raw or {}
    reasoning = raw.get("reasoning") if isinstance(raw.get("reasoning"), dict) else {}
    text = dict(raw["text"]) if isinstance(raw.get("text"), dict) else {}
    text.setdefault("format", {"type": "text"})
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": _now() if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": raw.get("instructions"),
        "max_output_tokens": req.max_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": raw.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": req.store if req.store is not None else True,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": text,
        "tool_choice": _tool_choice_to_wire(req),
        "tools": list(raw.get("tools") or []),
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": raw.get("truncation") or "disabled",
        "usage": usage,
        "user": req.user,
        "metadata": raw.get("metadata") or {},
    }


_INCOMPLETE_REASON = {ir.FinishReason.length: "max_output_tokens",
                      ir.FinishReason.content_filter: "content_filter"}


def format_response(resp: ir.Response, req: ir.Request, *, created: int | None = None) -> dict:
    """A `response` object for one IR response. Raises ProxyError when the model failed."""
    if resp.finish_reason is ir.FinishReason.error:
        raise _model_failed(resp.raw_finish_reason)
    response_id = _response_id(resp.id)
    incomplete = _INCOMPLETE_REASON.get(resp.finish_reason)
    output = _output_items(resp, req, response_id, incomplete is not None)
    return _response_object(req, response_id, resp.model or req.model, created or _now(),
                            status="incomplete" if incomplete else "completed", output=output,
                            usage=_usage_to_wire(resp.usage), incomplete=incomplete)
