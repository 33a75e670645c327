"""Backend: the IR written as a Chat Completions request body."""
from __future__ import annotations

import hashlib
from typing import Any, Iterable

from app import errors, ir
from app.protocols.base import extras_to_send, opaque_out, Target
from app.protocols.openai_chat.common import PROTOCOL, _wire_tool_call


# A data URL needs a media type; OpenAI sniffs the bytes itself, so a generic one is honest.
_UNKNOWN_IMAGE = "application/octet-stream"
_MAX_STOP = 4
_MAX_CALL_ID = 40  # OpenAI rejects longer tool-call ids


def wire_call_id(call_id: str) -> str:
    """The id sent to OpenAI for a tool call: unchanged if it fits, else a stable short hash."""
    if len(call_id) <= _MAX_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """The Chat Completions body for the IR request."""
    echo = bool(target.options.get("echo_reasoning_content"))
    body: dict[str, Any] = {"model": target.model, "messages": _wire_messages(req.messages, echo)}
    if req.tools:  # OpenAI rejects tool_choice / parallel_tool_calls without tools
        body["tools"] = [_wire_tool(t) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _wire_tool_choice(req.tool_choice)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens  # max_tokens is refused by reasoning models
    for key in ("temperature", "top_p", "seed", "user"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value
    if req.stop:
        if len(req.stop) > _MAX_STOP:
            raise errors.invalid(f"This model accepts at most {_MAX_STOP} stop sequences; got {len(req.stop)}.",
                                 "stop")
        body["stop"] = list(req.stop)
    if req.n != 1:
        body["n"] = req.n
    if target.options.get("reasoning_object"):
        reasoning = _reasoning_object(req.reasoning)
        if reasoning is not None:
            body["reasoning"] = reasoning
    else:
        effort = _reasoning_effort(req.reasoning)
        if effort is not None:
            body["reasoning_effort"] = effort
    if req.response_format is not None:
        body["response_format"] = _wire_response_format(req.response_format)
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # always: other frontends need usage
    body.update(extras_to_send(req, PROTOCOL, "an OpenAI backend"))
    return body


def passthrough_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """Same-protocol hop: the client's body with only `model` swapped."""
    if req.raw is None:
        return build_body(req, target)
    return {**req.raw, "model": target.model}


def _reasoning_effort(reasoning: ir.Reasoning | None) -> str | None:
    if reasoning is None:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens
    if budget is None or budget <= 0:
        return None  # 0 (off) / -1 (dynamic): leave the model's default, non-reasoning models reject the field
    if budget <= 1024:
        return "low"
    return "medium" if budget <= 8192 else "high"


def _reasoning_object(reasoning: ir.Reasoning | None) -> dict[str, Any] | None:
    """OpenRouter's `reasoning` object (wire option `reasoning_object`): an effort as
    `effort`, a token budget kept as `max_tokens`, a dynamic budget (-1) as `enabled`;
    thoughts the client does not want shown as `exclude`."""
    if reasoning is None:
        return None
    out: dict[str, Any] = {}
    budget = reasoning.budget_tokens
    if reasoning.effort is not None:
        out["effort"] = reasoning.effort
    elif budget is not None and budget > 0:
        out["max_tokens"] = budget
    elif budget == -1 or (budget is None and reasoning.include_thoughts):
        out["enabled"] = True
    else:
        return None  # 0 (off) or nothing asked: the model's default
    if reasoning.include_thoughts is False:
        out["exclude"] = True
    return out


def _wire_tool(tool: ir.Tool) -> dict:
    if tool.native is not None:
        return opaque_out(tool.native, PROTOCOL, "an OpenAI backend")
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        fn["description"] = tool.description
    if tool.parameters is not None:
        fn["parameters"] = tool.parameters
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


def _wire_tool_choice(choice: ir.ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _wire_response_format(fmt: ir.ResponseFormat) -> dict:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response"}  # name is required by OpenAI
    if fmt.schema is not None:
        spec["schema"] = fmt.schema
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def _image_url(image: ir.Image) -> dict:
    if image.data is not None:
        url = f"data:{image.media_type or ir.sniff_image_type(image.data) or _UNKNOWN_IMAGE};base64,{image.data}"
    else:
        url = image.url or ""
    out = {"url": url}
    if image.detail is not None:
        out["detail"] = image.detail
    return {"type": "image_url", "image_url": out}


def _wire_content(parts: Iterable[ir.Part]) -> str | list | None:
    """One text part -> a plain string (the common form); several, images or opaque parts -> a parts array."""
    wire = [{"type": "text", "text": p.text} if isinstance(p, ir.Text)
            else _image_url(p) if isinstance(p, ir.Image) else opaque_out(p, PROTOCOL, "an OpenAI backend")
            for p in parts if isinstance(p, (ir.Text, ir.Image, ir.Opaque))]
    if not wire:
        return None
    if len(wire) == 1 and wire[0]["type"] == "text":
        return wire[0]["text"]
    return wire


def _wire_messages(messages: Iterable[ir.Message], echo_reasoning: bool = False) -> list[dict]:
    out: list[dict] = []
    for m in messages:
        results = [p for p in m.parts if isinstance(p, ir.ToolResult)]
        rest = [p for p in m.parts if not isinstance(p, ir.ToolResult)]
        # Tool results become one `tool` message each; OpenAI tool messages are
        # text-only, so their images move to a user message right after (hazard 8).
        for r in results:
            out.append({"role": "tool", "tool_call_id": wire_call_id(r.call_id),
                        "content": _wire_content(p for p in r.content if not isinstance(p, ir.Image)) or ""})
        moved = [img for r in results for img in r.content if isinstance(img, ir.Image)]
        if m.role == "assistant":
            message = _wire_assistant(rest, echo_reasoning)
        elif m.role in ("user", "tool"):
            content = _wire_content(moved + rest)
            message = {"role": "user", "content": content} if content is not None else None
        else:
            # system / developer, in place and with the role they have: OpenAI takes any number of
            # either anywhere, and reasoning models read `system` as `developer` themselves, so a
            # mid-conversation system message from another protocol needs no model-name table.
            content = _wire_content(p for p in rest if isinstance(p, ir.Text))
            message = {"role": m.role, "content": content} if content is not None else None
        if message is not None:
            if m.name:
                message["name"] = m.name
            out.append(message)
    return out


def _wire_assistant(parts: list[ir.Part], echo_reasoning: bool = False) -> dict | None:
    """Text + refusal + tool_calls. Thinking has no slot in OpenAI Chat and is
    dropped, except for backends configured with `echo_reasoning_content`
    (DeepSeek-style servers answer 400 on the next turn unless their
    `reasoning_content` comes back, known-gateway-bugs #23; OpenAI itself
    refuses the field). An assistant Opaque goes with the calls: the only one
    this module makes is a custom tool call, and another protocol's is refused there."""
    content = _wire_content(p for p in parts if isinstance(p, ir.Text))
    calls = [p for p in parts if isinstance(p, (ir.ToolCall, ir.Opaque))]
    refusal = "".join(p.text for p in parts if isinstance(p, ir.Refusal))
    if content is None and not calls and not refusal:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": content}
    reasoning = "".join(p.text for p in parts if isinstance(p, ir.Thinking)) if echo_reasoning else ""
    if reasoning:
        message["reasoning_content"] = reasoning
    if refusal:
        message["refusal"] = refusal
    if calls:
        message["tool_calls"] = [opaque_out(c, PROTOCOL, "an OpenAI backend") if isinstance(c, ir.Opaque)
                                 else _wire_tool_call(ir.ToolCall(wire_call_id(c.id), c.name, c.arguments))
                                 for c in calls]
    return message
