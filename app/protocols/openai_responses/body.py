"""Backend: the IR written as a Responses request body."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from app import errors, ir
from app.protocols.base import opaque_out, Target
# Chat's tool-call id rule and reasoning effort, kept there once.
from app.protocols.openai_chat import _reasoning_effort, wire_call_id
from app.protocols.openai_responses.common import PROTOCOL, _custom_input


MIN_OUTPUT_TOKENS = 16  # the API's minimum max_output_tokens


def _tools_by_name(req: ir.Request) -> dict[str, ir.Tool]:
    return {t.name: t for t in req.tools if t.native is None}


def _wire_tool(tool: ir.Tool) -> dict:
    if tool.native is not None:
        return opaque_out(tool.native, PROTOCOL, "an OpenAI Responses backend")
    if tool.kind == "custom":
        out: dict[str, Any] = {"type": "custom", "name": tool.name}
        if tool.description is not None:
            out["description"] = tool.description
        if tool.input_format is not None:
            out["format"] = tool.input_format
        return out
    out = {"type": "function", "name": tool.name,
           "parameters": tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}},
           # strict needs a strict-compatible schema, which foreign schemas rarely are (hazard 22)
           "strict": bool(tool.strict)}
    if tool.description is not None:
        out["description"] = tool.description
    return out


def _wire_tool_choice(choice: ir.ToolChoice, tools: Mapping[str, ir.Tool]) -> Any:
    if choice.mode == "tool":
        tool = tools.get(choice.name or "")
        return {"type": "custom" if tool is not None and tool.kind == "custom" else "function", "name": choice.name}
    return choice.mode


def _image_url(image: ir.Image) -> dict:
    if image.data is not None:
        url = f"data:{image.media_type or 'image/png'};base64,{image.data}"
    else:
        url = image.url or ""
    out = {"type": "input_image", "image_url": url}
    if image.detail is not None:
        out["detail"] = image.detail
    return out


def _input_parts(parts: Iterable[ir.Part]) -> list[dict]:
    out = []
    for p in parts:
        if isinstance(p, ir.Text):
            out.append({"type": "input_text", "text": p.text})
        elif isinstance(p, ir.Image):
            out.append(_image_url(p))
        elif isinstance(p, ir.Opaque):
            out.append(opaque_out(p, PROTOCOL, "an OpenAI Responses backend"))
    return out


def _result_output(result: ir.ToolResult) -> str | list:
    """A string when the result is text only: some Responses servers take nothing else
    (known-gateway-bugs 15); a parts list only when it carries images or files."""
    if all(isinstance(p, ir.Text) for p in result.content):
        return result.text()
    return _input_parts(result.content)


def _wire_input(req: ir.Request) -> list[dict]:
    tools = _tools_by_name(req)
    custom_calls: set[str] = set()
    items: list[dict] = []
    for m in req.messages:
        if m.role == "assistant":
            _assistant_items(m.parts, tools, custom_calls, items)
            continue
        results = [p for p in m.parts if isinstance(p, ir.ToolResult)]
        for r in results:
            call_id = wire_call_id(r.call_id)
            kind = "custom_tool_call_output" if call_id in custom_calls else "function_call_output"
            items.append({"type": kind, "call_id": call_id, "output": _result_output(r)})
        rest = [p for p in m.parts if not isinstance(p, ir.ToolResult)]
        opaque_items = [p for p in rest if isinstance(p, ir.Opaque) and p.kind.endswith(" item")]
        rest = [p for p in rest if p not in opaque_items]
        if m.role in ("system", "developer"):
            rest = [p for p in rest if isinstance(p, ir.Text)]
        content = _input_parts(rest)
        if content:
            role = "user" if m.role == "tool" else m.role
            items.append({"type": "message", "role": role, "content": content})
        items.extend(opaque_out(p, PROTOCOL, "an OpenAI Responses backend") for p in opaque_items)
    return items


def _assistant_items(parts: Iterable[ir.Part], tools: Mapping[str, ir.Tool], custom_calls: set[str],
                     items: list[dict]) -> None:
    content: list[dict] = []

    def flush() -> None:
        if content:
            items.append({"type": "message", "role": "assistant", "content": list(content)})
            content.clear()

    for p in parts:
        if isinstance(p, ir.Text):
            content.append({"type": "output_text", "text": p.text, "annotations": []})
        elif isinstance(p, ir.Refusal):
            content.append({"type": "refusal", "refusal": p.text})
        elif isinstance(p, ir.Thinking):
            # Encrypted reasoning only goes back to the protocol that made it; readable
            # reasoning of another provider has no input slot (never sent as text).
            if p.origin == PROTOCOL and p.signature:
                flush()
                summary = [{"type": "summary_text", "text": p.text}] if p.text else []
                items.append({"type": "reasoning", "summary": summary, "encrypted_content": p.signature})
        elif isinstance(p, ir.ToolCall):
            flush()
            tool = tools.get(p.name)
            call_id = wire_call_id(p.id)
            if tool is not None and tool.kind == "custom":
                custom_calls.add(call_id)
                items.append({"type": "custom_tool_call", "call_id": call_id, "name": p.name,
                              "input": _custom_input(p.arguments)})
            else:
                items.append({"type": "function_call", "call_id": call_id, "name": p.name, "arguments": p.arguments})
        elif isinstance(p, ir.Opaque):
            flush()
            items.append(opaque_out(p, PROTOCOL, "an OpenAI Responses backend"))
    flush()


def build_body(req: ir.Request, target: Target) -> dict:
    """The Responses request body for the IR request (uses only target.model)."""
    if req.stop:
        raise errors.invalid("This model does not support stop sequences (OpenAI Responses has no 'stop').", "stop")
    if req.n != 1:
        raise errors.invalid("This model returns one answer per request: 'n' must be 1.", "n")
    body: dict[str, Any] = {"model": target.model, "input": _wire_input(req)}
    if req.tools:
        body["tools"] = [_wire_tool(t) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _wire_tool_choice(req.tool_choice, _tools_by_name(req))
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        # The API refuses fewer than 16; a smaller client limit is raised rather than failed.
        body["max_output_tokens"] = max(req.max_tokens, MIN_OUTPUT_TOKENS)
    for key in ("temperature", "top_p", "user"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value
    effort = _reasoning_effort(req.reasoning)
    reasoning: dict[str, Any] = {}
    if effort is not None:
        reasoning["effort"] = effort
    if req.reasoning is not None and req.reasoning.include_thoughts:
        reasoning["summary"] = req.reasoning.summary or "auto"
    if reasoning:
        body["reasoning"] = reasoning
    if req.response_format is not None and req.response_format.type != "text":
        fmt = req.response_format
        if fmt.type == "json_object":
            body["text"] = {"format": {"type": "json_object"}}
        else:
            spec: dict[str, Any] = {"type": "json_schema", "name": fmt.name or "response",
                                    "schema": fmt.schema or {"type": "object"}}
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            body["text"] = {"format": spec}
    _apply_options(body, target)
    # The proxy keeps no state at the provider unless the client asked for it; reasoning
    # then round-trips as encrypted content.
    body["store"] = bool(req.store)
    if not req.store and effort not in (None, "none"):
        body["include"] = ["reasoning.encrypted_content"]
    if req.stream:
        body["stream"] = True
    return body


def passthrough_body(req: ir.Request, target: Target) -> dict:
    """Same-protocol hop: the client's body with only `model` swapped."""
    if req.raw is None:
        return build_body(req, target)
    body = dict(req.raw)
    body["model"] = target.model
    _apply_options(body, target)
    return body


def _apply_options(body: dict, target: Target) -> None:
    """The backend's or model's `verbosity` and `truncation` (config), where the body sets none."""
    options = target.options
    verbosity = options.get("verbosity")
    if verbosity is not None:
        text = body.get("text")
        if not isinstance(text, dict) or "verbosity" not in text:
            body["text"] = {**(text if isinstance(text, dict) else {}), "verbosity": verbosity}
    truncation = options.get("truncation")
    if truncation is not None:
        body.setdefault("truncation", truncation)
