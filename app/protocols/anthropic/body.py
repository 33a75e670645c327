"""Backend: the IR written as a Messages API request body."""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError, invalid
from app.jsonutil import loads
from app.protocols.base import extras_to_send, opaque_out, Target, tool_input
from app.protocols.anthropic.common import (
    IMAGE_MEDIA_TYPES, MIN_THINKING_BUDGET, PROTOCOL, _is_anthropic_redaction, _is_int)


DEFAULT_MAX_TOKENS = 4096
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_ID_INVALID_CHAR = re.compile(r"[^a-zA-Z0-9_-]")


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """IR request -> a Messages body."""
    _refuse_unsupported(req)
    system, conversation = ir.split_system(req.messages,
                                           keep_later=bool(target.options.get("mid_conversation_system")))
    positions = {id(m): i for i, m in enumerate(req.messages)}
    turns = _turns(conversation, positions)
    if not turns:
        raise invalid("at least one user or assistant message is required", param="messages")

    budget = ir.thinking_budget(req.reasoning)
    if budget is not None and not _history_allows_thinking(turns):
        budget = None  # the API would refuse the request; answering without thinking is the lesser loss
    thinking = budget is not None
    max_tokens = req.max_tokens or int(target.options.get("max_tokens", DEFAULT_MAX_TOKENS))
    if thinking and max_tokens <= budget:
        max_tokens = budget + MIN_THINKING_BUDGET

    body: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens}
    if system:
        body["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": t} for t in system]
    body["messages"] = turns
    _add_tools(body, req, turns, thinking)
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    _add_sampling(body, req, thinking)
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.stream:
        body["stream"] = True
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.response_format is not None and req.response_format.type == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": dict(req.response_format.schema or {})}}
    body.update(extras_to_send(req, PROTOCOL, "an Anthropic backend"))
    return body


def passthrough_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """Anthropic client to Anthropic backend: the client's body with only the model swapped."""
    if req.raw is None:
        return build_body(req, target)
    return {**req.raw, "model": target.model}


def count_tokens_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """An Anthropic client's count_tokens body, sent on to the backend's own counter (written
    afresh when the client's cannot go as it is: it holds another family's thinking)."""
    source = req.raw if req.raw is not None else build_body(req, target)
    body = {k: v for k, v in source.items() if k not in ("max_tokens", "stream")}
    body["model"] = target.model
    return body


def parse_count_tokens(body: bytes) -> int:
    """`{"input_tokens": N}` -> N."""
    try:
        count = loads(body)["input_tokens"]
    except (ValueError, KeyError, TypeError):
        raise ProxyError(ErrorKind.bad_gateway, "The backend's count_tokens reply could not be read.") from None
    if not _is_int(count):
        raise ProxyError(ErrorKind.bad_gateway, "The backend's count_tokens reply has no integer input_tokens.")
    return count


def _refuse_unsupported(req: ir.Request) -> None:
    if req.n > 1:
        raise invalid("Anthropic returns one completion per request; n must be 1", param="n")
    if req.response_format is not None and req.response_format.type == "json_object":
        # output_config.format needs a schema; "any JSON object" has no form here.
        raise invalid("response_format 'json_object' is not supported by this Anthropic backend; "
                      "send a json_schema", param="response_format")


def wire_tool_id(call_id: str) -> str:
    """A tool-call id the API accepts (^[a-zA-Z0-9_-]+$). Pure, so a call and its
    result map alike; the digest keeps ids that differ only in bad characters apart."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:8]
    cleaned = _TOOL_ID_INVALID_CHAR.sub("_", call_id) or "toolu"
    return f"{cleaned}_{digest}"


def _turns(conversation: list[ir.Message], positions: Mapping[int, int]) -> list[dict]:
    turns: list[dict] = []
    for m in conversation:
        where = f"messages.{positions.get(id(m), '?')}"
        if m.role == "system":  # a later one, kept in place (split_system with keep_later)
            turns.append({"role": "system", "content": [{"type": "text", "text": m.parts[0].text}]})
            continue
        results, content = _message_blocks(m, where)
        if results:
            _append_turn(turns, "user", results, results=True)
        if content:
            _append_turn(turns, "assistant" if m.role == "assistant" else "user", content, results=False)
    _trim_prefill(turns)
    return turns


def _append_turn(turns: list[dict], role: str, blocks: list[dict], *, results: bool) -> None:
    """Merge adjacent same-role turns, except that tool results only join a turn made
    of results: they must stay at the start of their user message (hazard 6, 12)."""
    previous = turns[-1] if turns else None
    if previous is not None and previous["role"] == role:
        if not results or all(b["type"] == "tool_result" for b in previous["content"]):
            previous["content"].extend(blocks)
            return
    turns.append({"role": role, "content": list(blocks)})


def _trim_prefill(turns: list[dict]) -> None:
    """A final assistant turn is a prefill; the API refuses one ending in whitespace."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    content = turns[-1]["content"]
    if content[-1]["type"] == "text":
        text = content[-1]["text"].rstrip()
        if text:
            content[-1] = {"type": "text", "text": text}
        else:
            content.pop()
    if not content:
        turns.pop()


def _message_blocks(m: ir.Message, where: str) -> tuple[list[dict], list[dict]]:
    """-> (tool_result blocks, other blocks) of one IR message, empty text dropped."""
    results: list[dict] = []
    content: list[dict] = []
    assistant = m.role == "assistant"
    for j, part in enumerate(m.parts):
        at = f"{where}.content.{j}"
        if isinstance(part, ir.ToolResult):
            results.append(_tool_result_block(part, at))
        elif isinstance(part, ir.Text | ir.Refusal):
            if part.text.strip():
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ir.Image):
            if not assistant:  # assistant turns have no image slot (hazard 38)
                content.append(_image_block(part, at))
        elif isinstance(part, ir.ToolCall):
            content.append({"type": "tool_use", "id": wire_tool_id(part.id), "name": part.name,
                            "input": tool_input(part, at, "Anthropic")})
        elif isinstance(part, ir.Thinking):
            block = _thinking_block(part)
            if block is not None:
                content.append(block)
        elif isinstance(part, ir.Opaque):
            content.append(opaque_out(part, PROTOCOL, "an Anthropic backend"))
    return results, content


def _thinking_block(part: ir.Thinking) -> dict | None:
    """Anthropic's own thinking goes back byte-exact; anything else cannot be verified."""
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.redacted} if _is_anthropic_redaction(part) else None
    if part.origin != PROTOCOL or not part.signature:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _tool_result_block(result: ir.ToolResult, at: str) -> dict:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": wire_tool_id(result.call_id)}
    content: list[dict] = []
    for k, part in enumerate(result.content):
        if isinstance(part, ir.Image):
            content.append(_image_block(part, f"{at}.content.{k}"))
        elif isinstance(part, ir.Opaque):
            content.append(opaque_out(part, PROTOCOL, "an Anthropic backend"))
        elif part.text.strip():
            content.append({"type": "text", "text": part.text})
    if len(content) == 1 and content[0]["type"] == "text":
        block["content"] = content[0]["text"]
    elif content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def _image_block(image: ir.Image, at: str) -> dict:
    if image.data:
        media_type = _normal_media_type(image.media_type)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise invalid(f"image media type {image.media_type!r} is not supported by Anthropic "
                          "(image/jpeg, image/png, image/gif, image/webp)", param=at)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": image.data}}
    if image.url and image.url.startswith("data:"):
        return _image_block(_image_from_data_url(image.url, at), at)
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    raise invalid("image has neither data nor url", param=at)


def _normal_media_type(media_type: str | None) -> str | None:
    if media_type is None:
        return None
    media_type = media_type.strip().lower()
    return "image/jpeg" if media_type == "image/jpg" else media_type


def _image_from_data_url(url: str, at: str) -> ir.Image:
    header, _, data = url.partition(",")
    media_type, _, encoding = header[len("data:"):].partition(";")
    if encoding != "base64" or not data:
        raise invalid("image data URLs must be base64-encoded", param=at)
    return ir.Image(data=data, media_type=media_type)


def _history_allows_thinking(turns: list[dict]) -> bool:
    """With thinking on, the API requires the last assistant turn, if it calls tools,
    to start with its thinking block."""
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any(b["type"] == "tool_use" for b in last["content"]):
        return True
    return last["content"][0]["type"] in ("thinking", "redacted_thinking")


def _add_tools(body: dict, req: ir.Request, turns: list[dict], thinking: bool) -> None:
    if req.tools:
        body["tools"] = [_tool_definition(t) for t in req.tools]
        choice = _tool_choice_to_wire(req.tool_choice, req.parallel_tool_calls, thinking)
        if choice is not None:
            body["tool_choice"] = choice
        return
    names = _history_tool_names(turns)
    if names:
        # The API refuses tool_use/tool_result history without tool definitions.
        body["tools"] = [{"name": n, "description": "Declared by the proxy for the conversation history.",
                          "input_schema": {"type": "object", "properties": {}}} for n in names]
        body["tool_choice"] = {"type": "none"}


def _history_tool_names(turns: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for turn in turns:
        for block in turn["content"]:
            if block["type"] == "tool_use":
                names[block["name"]] = None
    return list(names)


def _tool_definition(tool: ir.Tool) -> dict:
    if tool.native is not None:
        return opaque_out(tool.native, PROTOCOL, "an Anthropic backend")
    schema = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
    if "type" not in schema:
        schema = {"type": "object", **schema}
    definition: dict[str, Any] = {"name": tool.name}
    if tool.description:
        definition["description"] = tool.description
    definition["input_schema"] = schema
    return definition


def _tool_choice_to_wire(choice: ir.ToolChoice | None, parallel: bool | None, thinking: bool) -> dict | None:
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice else "auto"
    if mode == "none":
        return {"type": "none"}
    if thinking and mode in ("required", "tool"):
        mode = "auto"  # the API refuses forced tool use with thinking on (hazard 27)
    if mode == "required":
        wire: dict[str, Any] = {"type": "any"}
    elif mode == "tool":
        if not choice.name:
            raise invalid("tool_choice of type 'tool' needs a tool name", param="tool_choice")
        wire = {"type": "tool", "name": choice.name}
    else:
        wire = {"type": "auto"}
    if parallel is False:
        wire["disable_parallel_tool_use"] = True
    return wire


def _add_sampling(body: dict, req: ir.Request, thinking: bool) -> None:
    # With thinking on the API refuses changed temperature/top_k and top_p below 0.95.
    if req.temperature is not None and not thinking:
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)  # clamp, never rescale (hazard 34)
    if req.top_p is not None and (not thinking or req.top_p >= 0.95):
        body["top_p"] = req.top_p
    if req.top_k is not None and not thinking:
        body["top_k"] = req.top_k
