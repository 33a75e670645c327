"""Frontend: a Messages API request body parsed into the IR."""
from __future__ import annotations

import re
from typing import Any, Mapping

from app import ir
from app.errors import invalid
from app.jsonutil import dumps_str
from app.model_ids import check_model_id
from app.protocols.anthropic.common import (
    IMAGE_MEDIA_TYPES, MAX_INT, MIN_THINKING_BUDGET, PROTOCOL, _is_int, opaque_from_client)


OUTPUT_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
# Block types the IR models; any other well-formed block becomes an ir.Opaque.
_IR_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
                        "mid_conv_system"})
# Top-level fields the IR has no meaning for, kept as ir.Extra. True = optional:
# it only tunes how the provider serves the request, so another backend drops it;
# False = it changes what the answer may be, so another backend refuses it.
_EXTRA_FIELDS = {
    "context_management": True,  # server-side clearing of old thinking / tool results
    "cache_control": True,  # automatic prompt caching (OpenAI and Gemini cache prefixes themselves)
    "service_tier": True,  # a capacity preference
    "container": False,  # code-execution state kept on Anthropic's side
    "mcp_servers": False,  # tools that Anthropic runs
    "inference_geo": False,  # where the request may be processed: never silently ignored
}


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ir.Request:
    """A Messages request body -> IR. Raises a 400 ProxyError naming the field."""
    if not isinstance(body, dict):
        raise invalid("Input should be a JSON object")
    model_name = _model_name(body, model)
    max_tokens = _max_tokens(body)
    system = _system_message(body.get("system"))
    messages = _conversation(body.get("messages"))
    tool_choice, parallel = _tool_choice_from_wire(body.get("tool_choice"))
    output_config = _optional_object(body, "output_config")
    return ir.Request(
        model=model_name,
        messages=tuple(([system] if system else []) + messages),
        protocol=PROTOCOL,
        stream=_stream_flag(body, stream),
        tools=_tools_from_wire(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=_optional_number(body, "temperature", 0.0, 1.0),
        top_p=_optional_number(body, "top_p", 0.0, 1.0),
        top_k=_optional_int(body, "top_k", minimum=0),
        stop=_stop_sequences(body.get("stop_sequences")),
        reasoning=_reasoning_from_wire(body.get("thinking"), output_config),
        response_format=_output_format(output_config),
        user=_metadata_user(body.get("metadata")),
        extras=_extras(body),
        # Another family's thinking (tagged, see the module docstring) must not reach an
        # Anthropic backend in the client's bytes: such a request is written afresh.
        raw=None if _carries_other_families_thinking(messages) else body,
    )


def _carries_other_families_thinking(messages: list[ir.Message]) -> bool:
    return any(isinstance(part, ir.Thinking) and part.origin != PROTOCOL
               for message in messages if message.role == "assistant" for part in message.parts)


def _extras(body: dict) -> tuple[ir.Extra, ...]:
    extras = []
    for name, optional in _EXTRA_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        if name in ("context_management", "cache_control"):
            _optional_object(body, name)
        extras.append(ir.Extra(PROTOCOL, name, value, optional))
    return tuple(extras)


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > MAX_INT


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _model_name(body: dict, url_model: str | None) -> str:
    value = body.get("model", url_model)
    if value is None:
        raise invalid("Field required", param="model")
    if not isinstance(value, str) or not value:
        raise invalid("Input should be a non-empty string", param="model")
    return check_model_id(value)


def _max_tokens(body: dict) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise invalid("Field required", param="max_tokens")
    if _too_big(value):
        raise invalid(f"Input should be less than or equal to {MAX_INT}", param="max_tokens")
    if not _is_int(value):
        raise invalid("Input should be a valid integer", param="max_tokens")
    if value < 1:
        raise invalid("Input should be greater than or equal to 1", param="max_tokens")
    return value


def _stream_flag(body: dict, url_stream: bool | None) -> bool:
    if url_stream is not None:
        return url_stream
    value = body.get("stream", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid("Input should be a valid boolean", param="stream")
    return value


def _optional_object(body: dict, key: str) -> dict | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise invalid("Input should be an object", param=key)
    return value


def _optional_number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise invalid("Input should be a valid number", param=key)
    if not low <= value <= high:
        raise invalid(f"Input should be between {low:g} and {high:g}", param=key)
    return value


def _optional_int(body: dict, key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if _too_big(value):
        raise invalid(f"Input should be less than or equal to {MAX_INT}", param=key)
    if not _is_int(value):
        raise invalid("Input should be a valid integer", param=key)
    if value < minimum:
        raise invalid(f"Input should be greater than or equal to {minimum}", param=key)
    return value


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("Input should be a valid list", param="stop_sequences")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid("Input should be a valid string", param=f"stop_sequences.{i}")
    return tuple(value)


def _metadata_user(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("Input should be an object", param="metadata")
    user = value.get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid("Input should be a valid string", param="metadata.user_id")
    return user or None


def _system_message(value: Any) -> ir.Message | None:
    """Top-level `system` (string or text blocks) -> a leading system Message."""
    if value is None:
        return None
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        texts = [_text_of(block, f"system.{i}", allowed="text") for i, block in enumerate(value)]
    else:
        raise invalid("Input should be a valid string or a list of text blocks", param="system")
    parts = tuple(ir.Text(t) for t in texts if t.strip())
    return ir.Message("system", parts) if parts else None


def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise invalid("Input should be an object", param=where)
    block_type = block.get("type")
    if not isinstance(block_type, str):
        raise invalid("Field required", param=f"{where}.type")
    return block_type


def _text_of(block: Any, where: str, allowed: str) -> str:
    block_type = _block_type(block, where)
    if block_type != "text":
        raise invalid(f"Input tag '{block_type}' found using 'type' does not match the expected tag: '{allowed}'",
                      param=f"{where}.type")
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid("Input should be a valid string", param=f"{where}.text")
    return text


def _conversation(value: Any) -> list[ir.Message]:
    if value is None:
        raise invalid("Field required", param="messages")
    if not isinstance(value, list):
        raise invalid("Input should be a valid list", param="messages")
    if not value:
        raise invalid("at least one message is required", param="messages")
    messages: list[ir.Message] = []
    # Tool results must answer the latest assistant turn; its calls give their names.
    calls: dict[str, str] = {}
    for i, message in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid("Input should be an object", param=where)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid(f"Input should be 'user', 'assistant' or 'system', not {role!r}", param=f"{where}.role")
        blocks = _content_blocks(message.get("content"), f"{where}.content")
        if role == "system":
            system = _system_turn(blocks, where)
            if system:
                messages.append(system)
            continue
        for run in _split_at_system_blocks(blocks, where):
            if isinstance(run, ir.Message):
                messages.append(run)
            elif role == "assistant":
                turn = _assistant_message(run, where)
                calls = ir.tool_names_by_id((turn,)) if turn else {}
                if turn:
                    messages.append(turn)
            else:
                messages.extend(_user_messages(run, where, calls))
    if messages and all(m.role == "system" for m in messages):
        raise invalid("at least one user or assistant message is required", param="messages")
    return messages


def _system_turn(blocks: list[dict], where: str) -> ir.Message | None:
    """A `role: "system"` message (text blocks only) -> an IR system message in place."""
    texts = [_text_of(block, f"{where}.content.{j}", allowed="text") for j, block in enumerate(blocks)]
    parts = tuple(ir.Text(t) for t in texts if t.strip())
    return ir.Message("system", parts) if parts else None


def _split_at_system_blocks(blocks: list[dict], where: str) -> list[list[tuple[int, dict]] | ir.Message]:
    """A turn's blocks (with their indices) cut at each `mid_conv_system` block,
    which becomes an IR system message between the pieces it separates."""
    runs: list[list[tuple[int, dict]] | ir.Message] = []
    current: list[tuple[int, dict]] = []
    for j, block in enumerate(blocks):
        if block["type"] != "mid_conv_system":
            current.append((j, block))
            continue
        at = f"{where}.content.{j}"
        content = block.get("content")
        if not isinstance(content, list):
            raise invalid("Input should be a valid list of text blocks", param=f"{at}.content")
        system = _system_turn(content, at)
        if system is None:
            continue
        if current:
            runs.append(current)
            current = []
        runs.append(system)
    if current or not runs:
        runs.append(current)
    return runs


def _content_blocks(value: Any, where: str) -> list[dict]:
    if value is None:
        raise invalid("Field required", param=where)
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise invalid("Input should be a valid string or a list of content blocks", param=where)
    for j, block in enumerate(value):
        _block_type(block, f"{where}.{j}")
    return value


def _user_messages(blocks: list[tuple[int, dict]], where: str, calls: Mapping[str, str]) -> list[ir.Message]:
    """One user turn -> a tool Message with all its results, then a user Message with the rest."""
    results: list[ir.ToolResult] = []
    rest: list[ir.Part] = []
    for j, block in blocks:
        at = f"{where}.content.{j}"
        block_type = block["type"]
        if block_type == "tool_result":
            results.append(_tool_result(block, at, calls))
        elif block_type == "text":
            text = _text_of(block, at, allowed="text")
            if text.strip():
                rest.append(ir.Text(text))
        elif block_type == "image":
            rest.append(_image_from_wire(block, at))
        elif block_type not in _IR_BLOCKS:
            rest.append(ir.Opaque(PROTOCOL, f"{block_type} block", block, at))
        else:
            raise invalid(f"content block type '{block_type}' is not allowed in user messages",
                          param=f"{at}.type")
    messages = []
    if results:
        messages.append(ir.Message("tool", tuple(results)))
    if rest:
        messages.append(ir.Message("user", tuple(rest)))
    return messages


def _tool_result(block: dict, at: str, calls: Mapping[str, str]) -> ir.ToolResult:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid("Field required", param=f"{at}.tool_use_id")
    if call_id not in calls:
        raise invalid(f"unexpected `tool_use_id` found in `tool_result` blocks: {call_id}. Each `tool_result` "
                      "block must have a corresponding `tool_use` block in the previous message.",
                      param=f"{at}.tool_use_id")
    is_error = block.get("is_error", False)
    if is_error is not None and not isinstance(is_error, bool):
        raise invalid("Input should be a valid boolean", param=f"{at}.is_error")
    content = _tool_result_content(block.get("content"), f"{at}.content")
    return ir.ToolResult(call_id, content, name=calls[call_id], is_error=bool(is_error))


def _tool_result_content(value: Any, where: str) -> tuple[ir.Text | ir.Image | ir.Opaque, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (ir.Text(value),) if value.strip() else ()
    if not isinstance(value, list):
        raise invalid("Input should be a valid string or a list of content blocks", param=where)
    parts: list[ir.Text | ir.Image | ir.Opaque] = []
    for k, block in enumerate(value):
        at = f"{where}.{k}"
        block_type = _block_type(block, at)
        if block_type == "text":
            text = _text_of(block, at, allowed="text")
            if text.strip():
                parts.append(ir.Text(text))
        elif block_type == "image":
            parts.append(_image_from_wire(block, at))
        elif block_type not in _IR_BLOCKS:  # search_result, document
            parts.append(ir.Opaque(PROTOCOL, f"{block_type} block", block, at))
        else:
            raise invalid(f"content block type '{block_type}' is not allowed in tool results",
                          param=f"{at}.type")
    return tuple(parts)


def _image_from_wire(block: dict, at: str) -> ir.Image:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid("Field required", param=f"{at}.source")
    source_type = source.get("type")
    if source_type == "base64":
        media_type = source.get("media_type")
        if not isinstance(media_type, str) or media_type not in IMAGE_MEDIA_TYPES:
            raise invalid("Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                          param=f"{at}.source.media_type")
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise invalid("Field required", param=f"{at}.source.data")
        return ir.Image(data=data, media_type=media_type)
    if source_type == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise invalid("Field required", param=f"{at}.source.url")
        return ir.Image(url=url)
    raise invalid("Input should be 'base64' or 'url'", param=f"{at}.source.type")


def _assistant_message(blocks: list[tuple[int, dict]], where: str) -> ir.Message | None:
    parts: list[ir.Part] = []
    for j, block in blocks:
        at = f"{where}.content.{j}"
        part = _assistant_part(block, at)
        if part is not None:
            parts.append(part)
    return ir.Message("assistant", tuple(parts)) if parts else None


def _assistant_part(block: dict, at: str) -> ir.Part | None:
    block_type = block["type"]
    if block_type == "text":
        text = _text_of(block, at, allowed="text")
        return ir.Text(text) if text.strip() else None
    if block_type == "tool_use":
        return _tool_call_from_wire(block, at)
    if block_type == "thinking":
        return _thinking_from_wire(block, at)
    if block_type == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            raise invalid("Field required", param=f"{at}.data")
        data, family = opaque_from_client(data)
        return ir.Thinking(redacted=data, origin=family)
    if block_type not in _IR_BLOCKS:  # server_tool_use, web_search_tool_result, ...
        return ir.Opaque(PROTOCOL, f"{block_type} block", block, at)
    raise invalid(f"content block type '{block_type}' is not allowed in assistant messages",
                  param=f"{at}.type")


def _tool_call_from_wire(block: dict, at: str) -> ir.ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise invalid("Field required", param=f"{at}.id")
    if not isinstance(name, str) or not name:
        raise invalid("Field required", param=f"{at}.name")
    if not isinstance(arguments, dict):
        raise invalid("Input should be a valid dictionary", param=f"{at}.input")
    return ir.ToolCall(call_id, name, dumps_str(arguments))


def _thinking_from_wire(block: dict, at: str) -> ir.Thinking | None:
    text = block.get("thinking", "")
    signature = block.get("signature")
    if not isinstance(text, str):
        raise invalid("Input should be a valid string", param=f"{at}.thinking")
    if signature is not None and not isinstance(signature, str):
        raise invalid("Input should be a valid string", param=f"{at}.signature")
    # Signature-only blocks (empty text) are the normal shape for recent models:
    # keep them, the signature is what the API needs back (known-gateway-bugs #8).
    if not text and not signature:
        return None
    if not signature:
        return ir.Thinking(text, None, origin=PROTOCOL)
    signature, family = opaque_from_client(signature)
    return ir.Thinking(text, signature, origin=family)


def _tools_from_wire(value: Any) -> tuple[ir.Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("Input should be a valid list", param="tools")
    return tuple(_tool_from_wire(tool, f"tools.{k}") for k, tool in enumerate(value))


def _tool_from_wire(tool: Any, where: str) -> ir.Tool:
    if not isinstance(tool, dict):
        raise invalid("Input should be an object", param=where)
    tool_type = tool.get("type")
    if tool_type not in (None, "custom"):
        # Server/versioned tools (web_search_2025..., bash_...) run inside Anthropic:
        # kept as sent, only an Anthropic backend can serve them (hazard 24).
        if not isinstance(tool_type, str) or not tool_type:
            raise invalid("Input should be a valid string", param=f"{where}.type")
        name = tool.get("name")
        return ir.Tool(name if isinstance(name, str) and name else tool_type,
                       native=ir.Opaque(PROTOCOL, f"{tool_type} tool", tool, where))
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid("String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", param=f"{where}.name")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid("Input should be a valid string", param=f"{where}.description")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise invalid("Field required" if schema is None else "Input should be an object",
                      param=f"{where}.input_schema")
    strict = tool.get("strict")
    return ir.Tool(name, description, schema, strict if isinstance(strict, bool) else None)


def _tool_choice_from_wire(value: Any) -> tuple[ir.ToolChoice | None, bool | None]:
    """-> (tool choice, parallel_tool_calls): `disable_parallel_tool_use` lives inside tool_choice here."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise invalid("Input should be an object", param="tool_choice")
    choice_type = value.get("type")
    if choice_type == "auto":
        choice = ir.ToolChoice("auto")
    elif choice_type == "any":
        choice = ir.ToolChoice("required")
    elif choice_type == "none":
        choice = ir.ToolChoice("none")
    elif choice_type == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("Field required", param="tool_choice.name")
        choice = ir.ToolChoice("tool", name)
    else:
        raise invalid("Input should be 'auto', 'any', 'tool' or 'none'", param="tool_choice.type")
    disable_parallel = value.get("disable_parallel_tool_use")
    if disable_parallel is not None and not isinstance(disable_parallel, bool):
        raise invalid("Input should be a valid boolean", param="tool_choice.disable_parallel_tool_use")
    return choice, (False if disable_parallel else None)


def _reasoning_from_wire(thinking: Any, output_config: dict | None) -> ir.Reasoning | None:
    effort = (output_config or {}).get("effort")
    if effort is not None and effort not in OUTPUT_EFFORTS:
        raise invalid("Input should be 'low', 'medium', 'high', 'xhigh' or 'max'", param="output_config.effort")
    if thinking is None:
        return ir.Reasoning(effort=effort) if effort else None
    if not isinstance(thinking, dict):
        raise invalid("Input should be an object", param="thinking")
    include_thoughts = thinking.get("display") != "omitted"
    thinking_type = thinking.get("type")
    if thinking_type == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_int(budget):
            raise invalid("Field required" if budget is None else "Input should be a valid integer",
                          param="thinking.budget_tokens")
        if budget < MIN_THINKING_BUDGET:
            raise invalid(f"Input should be greater than or equal to {MIN_THINKING_BUDGET}",
                          param="thinking.budget_tokens")
        return ir.Reasoning(effort=effort, budget_tokens=budget, include_thoughts=include_thoughts)
    if thinking_type == "adaptive":
        return ir.Reasoning(effort=effort or "medium", include_thoughts=include_thoughts, optional=True)
    if thinking_type == "disabled":
        return None
    raise invalid("Input should be 'enabled', 'disabled' or 'adaptive'", param="thinking.type")


def _output_format(output_config: dict | None) -> ir.ResponseFormat | None:
    fmt = (output_config or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid("Input should be 'json_schema'", param="output_config.format.type")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid("Field required", param="output_config.format.schema")
    return ir.ResponseFormat("json_schema", schema=schema)
