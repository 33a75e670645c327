"""Anthropic Messages (`POST /v1/messages`), both directions.

Frontend: a client speaking the Messages API is parsed into the IR, and IR
responses, stream events, errors and model lists are rendered the way
api.anthropic.com renders them (event order, block indices, error envelope,
529 for overload, `x-should-retry`).
Backend: the IR is written as a Messages request, and replies, SSE streams and
error envelopes (including the Google envelope of Vertex fronts) are read back.

Policy choices, each one a place where the wire formats disagree:
- Tool results. A user turn holding tool_result blocks becomes one IR `tool`
  message with every result in order, then a user message with the turn's
  other text/images. Writing, consecutive IR tool messages become one user turn
  that starts with all the results, and the user message that follows is merged
  in after them (the API's "results first, in one message" rule).
- A tool_result whose id is not a tool_use of the previous assistant turn is
  refused (400), as the real API does: other backends need the tool name.
- Thinking. Signatures and redacted data are valid only for Anthropic: parts
  from another provider are dropped when writing a request, and rendered
  without a signature in responses. Signature-only blocks (empty text, the
  default for recent models) are kept and re-sent byte-exact.
- Thinking requested while the last assistant turn calls tools without its
  thinking block (the client's protocol could not carry it): the request goes
  out without thinking rather than failing with the API's 400. With thinking
  on, forced tool_choice becomes auto and temperature/top_k are not sent.
- Tool-call ids from other providers are rewritten to the API's charset by a
  pure function, so a call and its result always get the same id.
- Tool history without tool definitions (the API refuses it): placeholder
  definitions are declared from the names in history, with tool_choice none.
- response_format (structured output) and n > 1 cannot be honoured: 400 naming
  the field, never a silent drop.
- Replies carry the IR's model name (the pipeline puts the client's there),
  else `req.model`.
- `FinishReason.error` (the model failed) is never rendered as a clean stop:
  format_response raises bad_gateway, the stream formatter ends with `error`
  (the pipeline normally turns it into an error before it gets here).
- Mid-conversation system messages (`role: "system"` in `messages`, and the
  `mid_conv_system` block inside a turn, which splits the turn there) become
  IR system messages at their position. Writing, a later system message goes
  out as a user turn marked "System: " (every model takes it), or as a
  `role: "system"` message when the backend's option `mid_conversation_system`
  says its models take them (others answer 400 "role 'system' is not supported
  on this model"). Same-wire passthrough sends the client's messages as they are.
- Top-level fields with no IR meaning (`context_management`, `cache_control`,
  `mcp_servers`, ...) ride as `ir.Extra`, marked optional or not in
  `_EXTRA_FIELDS`; an Anthropic writer re-sends them, others drop or refuse them
  by one rule (base.extras_to_send). Block-level `cache_control` marks have no
  IR form: other backends never see them (OpenAI and Gemini cache prefixes on
  their own); passthrough keeps them.
- Blocks and tools the IR has no form for (document/search_result blocks, server
  tools and their server_tool_use/…_tool_result history blocks, any newer type)
  are kept as `ir.Opaque` in place: re-sent unchanged to an Anthropic backend,
  refused with a 400 naming the client's field by any other. IR block types in
  the wrong place (tool_use in a user turn) are still the client's error.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError, invalid, kind_for_status, redact, retry_after_from_headers
from app.jsonutil import dumps, dumps_str, loads
from app.model_ids import check_model_id
from app.protocols.base import extras_to_send, ModelInfo, opaque_out, Target
from app.upstream.framing import Frame, encode_sse

PROTOCOL = "anthropic"
RESPONSE_MODEL_FIELD = "model"

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = ir.MIN_THINKING_BUDGET
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
OUTPUT_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_ID_INVALID_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
# Block types the IR models; any other well-formed block becomes an ir.Opaque.
_IR_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
                        "mid_conv_system"})
# Client headers an Anthropic backend takes as they came: the betas enable the
# fields (context_management, mid-conversation system, effort) the body carries.
FORWARDED_CLIENT_HEADERS = ("anthropic-beta",)
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

# Wire error.type -> (IR kind, the status the API sends it with).
_ERROR_TYPES: dict[str, tuple[ErrorKind, int]] = {
    "invalid_request_error": (ErrorKind.invalid_request, 400),
    "authentication_error": (ErrorKind.authentication, 401),
    "billing_error": (ErrorKind.permission, 402),  # not retriable, unlike a rate limit
    "permission_error": (ErrorKind.permission, 403),
    "not_found_error": (ErrorKind.not_found, 404),
    "request_too_large": (ErrorKind.request_too_large, 413),
    "rate_limit_error": (ErrorKind.rate_limit, 429),
    "api_error": (ErrorKind.api_error, 500),
    "timeout_error": (ErrorKind.timeout, 504),
    "overloaded_error": (ErrorKind.overloaded, 529),
}

# Google envelope `error.status` (Vertex fronts) -> IR kind.
_GOOGLE_STATUSES = {
    "INVALID_ARGUMENT": ErrorKind.invalid_request,
    "FAILED_PRECONDITION": ErrorKind.invalid_request,
    "UNAUTHENTICATED": ErrorKind.authentication,
    "PERMISSION_DENIED": ErrorKind.permission,
    "NOT_FOUND": ErrorKind.not_found,
    "RESOURCE_EXHAUSTED": ErrorKind.rate_limit,
    "INTERNAL": ErrorKind.api_error,
    "UNAVAILABLE": ErrorKind.overloaded,
    "DEADLINE_EXCEEDED": ErrorKind.timeout,
}

# IR kind -> (status, error.type) as the real API renders it to its clients.
_ERROR_RENDERING: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.invalid_request: (400, "invalid_request_error"),
    ErrorKind.authentication: (401, "authentication_error"),
    ErrorKind.permission: (403, "permission_error"),
    ErrorKind.not_found: (404, "not_found_error"),
    ErrorKind.request_too_large: (413, "request_too_large"),
    ErrorKind.rate_limit: (429, "rate_limit_error"),
    ErrorKind.api_error: (500, "api_error"),
    ErrorKind.bad_gateway: (502, "api_error"),
    ErrorKind.overloaded: (529, "overloaded_error"),
    ErrorKind.timeout: (504, "timeout_error"),
    ErrorKind.configuration: (500, "api_error"),
}

_FINISH_BY_STOP_REASON = {
    "end_turn": ir.FinishReason.stop,
    "stop_sequence": ir.FinishReason.stop,
    "pause_turn": ir.FinishReason.stop,
    "max_tokens": ir.FinishReason.length,
    "model_context_window_exceeded": ir.FinishReason.length,
    "tool_use": ir.FinishReason.tool_calls,
    "refusal": ir.FinishReason.content_filter,
}

_STOP_REASON_BY_FINISH = {
    ir.FinishReason.stop: "end_turn",
    ir.FinishReason.length: "max_tokens",
    ir.FinishReason.tool_calls: "tool_use",
    ir.FinishReason.content_filter: "refusal",
}


# =================================================================== frontend
# ------------------------------------------------------------ parse_request


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
        raw=body,
    )


MAX_INT = 2**31 - 1  # int fields (max_tokens, top_k, budget_tokens) stay far below; bigger ones break other backends


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INT - 1 <= value <= MAX_INT


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
        return ir.Thinking(redacted=data, provider=PROTOCOL)
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
    return ir.Thinking(text, signature or None, provider=PROTOCOL)


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


# ---------------------------------------------------------- format_response


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


def _signature_for_client(part: ir.Thinking) -> str:
    """A signature is only worth showing when Anthropic made it: another provider's
    would come back in the next request and fail there."""
    return part.signature if part.signature and part.provider == PROTOCOL else ""


def _is_anthropic_redaction(part: ir.Thinking) -> bool:
    # redacted_thinking exists only in this protocol, so an unlabelled one is Anthropic's.
    return bool(part.redacted) and part.provider in (None, PROTOCOL)


def _response_block(part: ir.Part) -> dict | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": _arguments_or_empty(part)}
    if isinstance(part, ir.Thinking):
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted} if _is_anthropic_redaction(part) else None
        signature = _signature_for_client(part)
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


# ----------------------------------------------------------- StreamFormatter


class _ClientBlock:
    """The IR part being rendered and, once opened, its Anthropic block index."""

    __slots__ = ("ir_index", "kind", "call_id", "name", "data", "index", "signature")

    def __init__(self, ir_index: int, kind: str, call_id: str | None = None, name: str | None = None,
                 data: str | None = None):
        self.ir_index = ir_index
        self.kind = kind
        self.call_id = call_id
        self.name = name
        self.data = data
        self.index: int | None = None
        self.signature: list[str] = []


def _event(payload: dict) -> bytes:
    return encode_sse(dumps(payload), payload["type"])


class StreamFormatter:
    """IR events -> the Messages SSE stream: message_start, ping, blocks opened
    lazily with indices 0,1,2…, message_delta with full usage, message_stop."""

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._started = False
        self._done = False
        self._next_index = 0
        self._block: _ClientBlock | None = None
        self._start_usage: ir.Usage | None = None
        self._handlers: dict[type, Callable[[Any], list[bytes]]] = {
            ir.MessageStart: self._message_start,
            ir.PartStart: self._part_start,
            ir.TextDelta: self._text_delta,
            ir.RefusalDelta: self._text_delta,
            ir.ToolArgumentsDelta: self._arguments_delta,
            ir.ThinkingDelta: self._thinking_delta,
            ir.SignatureDelta: self._signature_delta,
            ir.PartStop: self._part_stop,
            ir.MessageStop: self._message_stop,
            ir.StreamError: self._stream_error,
        }

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        frames: list[bytes] = []
        if not self._started and not isinstance(event, (ir.MessageStart, ir.StreamError)):
            # A client cannot read blocks before message_start: open the message ourselves.
            frames += self._message_start(ir.MessageStart(id="", model=self._req.model))
        handler = self._handlers.get(type(event))
        if handler is not None:
            frames += handler(event)
        return b"".join(frames)

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough: the upstream frame re-encoded as it came, except
        a tool_use start that carries the whole input (gateways that do not stream
        arguments): clients read input only from input_json_delta, so it goes out as
        a start with `input: {}` and one delta holding the input (known-gateway-bugs #20)."""
        if frame.event == "content_block_start" and '"tool_use"' in frame.data:
            split = _split_tool_start(frame.data)
            if split is not None:
                return b"".join(_event(payload) for payload in split)
        return _encode_frame(frame)

    def finish(self) -> bytes:
        return b""  # message_stop (or error) already ended the stream

    # -------------------------------------------------------- message level

    def _message_start(self, event: ir.MessageStart) -> list[bytes]:
        self._started = True
        self._start_usage = event.usage
        usage = _usage_to_wire(event.usage or ir.Usage())
        # The API sends a small output placeholder here; the final count comes in message_delta.
        usage["output_tokens"] = event.usage.output_tokens if event.usage and event.usage.output_tokens else 1
        message = {
            "id": message_id(event.id), "type": "message", "role": "assistant",
            "model": event.model or self._req.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
        }
        return [_event({"type": "message_start", "message": message}), _event({"type": "ping"})]

    def _message_stop(self, event: ir.MessageStop) -> list[bytes]:
        frames = self._close_block()
        self._done = True
        if event.finish_reason is ir.FinishReason.error:
            return frames + [_error_event(_model_failure(event.raw_finish_reason, event.finish_message))]
        stop_reason, stop_sequence = _stop_reason(event.finish_reason, event.stop_sequence)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                 "usage": _usage_to_wire(self._final_usage(event.usage))}
        return frames + [_event(delta), _event({"type": "message_stop"})]

    def _final_usage(self, usage: ir.Usage) -> ir.Usage:
        """Newer servers repeat prompt counts in message_delta; keep them when the stop event lacks them."""
        start = self._start_usage
        if usage.input_tokens or start is None:
            return usage
        return ir.Usage(start.input_tokens, usage.output_tokens, usage.reasoning_tokens,
                        start.cache_read_tokens, start.cache_write_tokens)

    def _stream_error(self, event: ir.StreamError) -> list[bytes]:
        self._done = True
        return [_error_event(event.error)]

    # ---------------------------------------------------------- block level

    def _part_start(self, event: ir.PartStart) -> list[bytes]:
        frames = self._close_block()
        self._block = _ClientBlock(event.index, event.kind, event.id, event.name, event.data)
        # Calls and redactions carry their content in the start; text/thinking wait for a delta.
        if event.kind in ("tool_call", "redacted_thinking"):
            frames += self._open(self._block)
        return frames

    def _text_delta(self, event: ir.TextDelta | ir.RefusalDelta) -> list[bytes]:
        if not event.text:
            return []  # an empty delta must not open an empty text block (known-gateway-bugs #1)
        frames, block = self._current(event.index, "text")
        frames += self._open(block)
        return frames + [self._delta(block, {"type": "text_delta", "text": event.text})]

    def _arguments_delta(self, event: ir.ToolArgumentsDelta) -> list[bytes]:
        block = self._block
        if not event.json or block is None or block.ir_index != event.index or block.kind != "tool_call":
            return []
        return [self._delta(block, {"type": "input_json_delta", "partial_json": event.json})]

    def _thinking_delta(self, event: ir.ThinkingDelta) -> list[bytes]:
        if not event.text:
            return []
        frames, block = self._current(event.index, "thinking")
        frames += self._open(block)
        return frames + [self._delta(block, {"type": "thinking_delta", "thinking": event.text})]

    def _signature_delta(self, event: ir.SignatureDelta) -> list[bytes]:
        if not event.signature or event.provider != PROTOCOL:
            return []  # other providers' signatures (Gemini on tool calls) mean nothing here
        frames, block = self._current(event.index, "thinking")
        if block.kind != "thinking":
            return frames
        frames += self._open(block)  # a signature-only block is still a block (known-gateway-bugs #8)
        block.signature.append(event.signature)
        return frames

    def _part_stop(self, event: ir.PartStop) -> list[bytes]:
        if self._block is None or self._block.ir_index != event.index:
            return []
        return self._close_block()

    def _current(self, ir_index: int, kind: str) -> tuple[list[bytes], _ClientBlock]:
        """The open part for a delta; a delta without its PartStart starts one implicitly."""
        if self._block is not None and self._block.ir_index == ir_index:
            return [], self._block
        frames = self._close_block()
        self._block = _ClientBlock(ir_index, kind)
        return frames, self._block

    def _open(self, block: _ClientBlock) -> list[bytes]:
        if block.index is not None:
            return []
        block.index = self._next_index
        self._next_index += 1
        return [_event({"type": "content_block_start", "index": block.index,
                        "content_block": _opening_block(block)})]

    def _delta(self, block: _ClientBlock, delta: dict) -> bytes:
        return _event({"type": "content_block_delta", "index": block.index, "delta": delta})

    def _close_block(self) -> list[bytes]:
        block, self._block = self._block, None
        if block is None or block.index is None:
            return []
        frames = []
        if block.signature:
            # One signature_delta, right before the stop, as the API sends it.
            frames.append(self._delta(block, {"type": "signature_delta", "signature": "".join(block.signature)}))
        frames.append(_event({"type": "content_block_stop", "index": block.index}))
        return frames


def _split_tool_start(data: str) -> tuple[dict, dict] | None:
    """A content_block_start whose tool_use input is not empty -> (the start with
    `input: {}`, an input_json_delta with the input); None for any other frame."""
    payload = _json_or_none(data)
    block = payload.get("content_block") if isinstance(payload, dict) else None
    if not isinstance(block, dict) or block.get("type") != "tool_use" or not block.get("input"):
        return None
    if not isinstance(block["input"], dict) or not _is_int(payload.get("index")):
        return None
    start = {**payload, "content_block": {**block, "input": {}}}
    delta = {"type": "content_block_delta", "index": payload["index"],
             "delta": {"type": "input_json_delta", "partial_json": dumps_str(block["input"])}}
    return start, delta


def _opening_block(block: _ClientBlock) -> dict:
    if block.kind == "tool_call":
        return {"type": "tool_use", "id": block.call_id or f"toolu_{block.ir_index}", "name": block.name or "",
                "input": {}}
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block.kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data or ""}
    return {"type": "text", "text": ""}


def _error_event(err: ProxyError) -> bytes:
    _, error_type = _ERROR_RENDERING.get(err.kind, (500, "api_error"))
    return _event({"type": "error", "error": {"type": error_type, "message": err.message}})


def _encode_frame(frame: Frame) -> bytes:
    if "\n" not in frame.data:
        return encode_sse(frame.data, frame.event)
    # Multi-line data goes back out as one `data:` line per line.
    head = b"" if frame.event is None else b"event: " + frame.event.encode() + b"\n"
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in frame.data.split("\n"))
    return head + lines + b"\n"


# -------------------------------------------------------- errors and models


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """A ProxyError in the API's envelope, with its status and retry headers."""
    status, error_type = _ERROR_RENDERING.get(err.kind, (500, "api_error"))
    message = err.message
    if err.param and not message.startswith(err.param + ":"):
        message = f"{err.param}: {message}"  # the API names the field first: "max_tokens: Field required"
    headers = {"content-type": "application/json",
               "x-should-retry": "true" if status == 429 or status >= 500 else "false"}
    if err.retry_after:
        headers["retry-after"] = str(err.retry_after)
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return status, headers, dumps(body)


def format_models(models: list[ModelInfo]) -> dict:
    data = [{"type": "model", "id": m.id, "display_name": m.id, "created_at": _rfc3339(m.created)} for m in models]
    return {"data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def _rfc3339(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ==================================================================== backend
# ------------------------------------------------------------ build_request


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
    """An Anthropic client's count_tokens body, sent on to the backend's own counter."""
    body = {k: v for k, v in (req.raw or {}).items() if k not in ("max_tokens", "stream")}
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
                            "input": _arguments_for_wire(part, at)})
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
    if part.provider != PROTOCOL or not part.signature:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _arguments_for_wire(call: ir.ToolCall, at: str) -> dict:
    try:
        return call.arguments_object()
    except ValueError:
        raise invalid(f"tool call {call.id} ({call.name}) has arguments that are not a JSON object; "
                      "Anthropic needs tool input as an object", param=at) from None


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


# ----------------------------------------------------------- parse_response


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A `message` object -> IR. A body that is not one is a bad gateway."""
    data = _json_or_none(body)
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
        return ir.Thinking(text, signature, provider=PROTOCOL) if text or signature else None
    if block_type == "redacted_thinking":
        data = block.get("data")
        return ir.Thinking(redacted=data, provider=PROTOCOL) if data else None
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


# ------------------------------------------------------------- StreamParser


class _UpstreamBlock:
    """The upstream content block being read. `kind` None = a block the IR has no
    part for (server tools): its deltas are skipped. `part` is the IR index once opened."""

    __slots__ = ("kind", "call_id", "name", "data", "part", "has_arguments", "start_input")

    def __init__(self, kind: str | None, call_id: str | None = None, name: str | None = None,
                 data: str | None = None, start_input: dict | None = None):
        self.kind = kind
        self.call_id = call_id
        self.name = name
        self.data = data
        self.part: int | None = None
        self.has_arguments = False
        self.start_input = start_input


def is_content_frame(frame: Frame) -> bool:
    """A `content_block_delta` or `ping`: content only, never an end, an error
    or usage. A passthrough relay, which parses frames only to notice those,
    may leave it unparsed."""
    if frame.event == "ping":
        return True
    return frame.event == "content_block_delta" and frame.data.startswith('{"type":"content_block_delta"')


class StreamParser:
    """Messages SSE frames -> IR events. Text and thinking parts open at their first
    non-empty delta, so placeholder blocks never become empty parts."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._next_part = 0
        self._block: _UpstreamBlock | None = None
        self._wire_usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._finished = False  # message_stop or an error was seen
        self._handlers: dict[str, Callable[[dict], list[ir.Event]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._finished or frame.event == "ping":
            return []
        data = _json_or_none(frame.data)
        if not isinstance(data, dict):
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream sent a malformed stream event"))
        handler = self._handlers.get(data.get("type") or frame.event)
        return handler(data) if handler else []  # ping and event types newer than this parser

    def close(self) -> list[ir.Event]:
        if self._finished:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._finished = True
        return [ir.StreamError(err)]

    # -------------------------------------------------------- message level

    def _message_start(self, data: dict) -> list[ir.Event]:
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        usage = message.get("usage")
        self._wire_usage = dict(usage) if isinstance(usage, dict) else {}
        return [ir.MessageStart(str(message.get("id") or ""), str(message.get("model") or self._req.model),
                                _usage_from_wire(self._wire_usage))]

    def _message_delta(self, data: dict) -> list[ir.Event]:
        # A block cut by max_tokens may have no content_block_stop: finish it here.
        events = self._close_block()
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("stop_reason"):
            self._stop_reason = delta["stop_reason"]
        if delta.get("stop_sequence"):
            self._stop_sequence = delta["stop_sequence"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            # Cumulative counts: the latest value of each field wins.
            self._wire_usage.update({k: v for k, v in usage.items() if v is not None})
        return events

    def _message_stop(self, data: dict) -> list[ir.Event]:
        events = self._close_block()
        self._finished = True
        return events + [ir.MessageStop(
            finish_reason=_finish_reason(self._stop_reason),
            usage=_usage_from_wire(self._wire_usage),
            stop_sequence=self._stop_sequence if self._stop_reason == "stop_sequence" else None,
            raw_finish_reason=self._stop_reason,
        )]

    def _error(self, data: dict) -> list[ir.Event]:
        return self._fail(_error_from_payload(data, status=None))

    # ---------------------------------------------------------- block level

    def _block_start(self, data: dict) -> list[ir.Event]:
        events = self._close_block()
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        block_type = block.get("type")
        if block_type == "text":
            self._block = _UpstreamBlock("text")
            return events + self._text(block.get("text"))
        if block_type == "thinking":
            self._block = _UpstreamBlock("thinking")
            return events + self._thinking(block.get("thinking")) + self._signature(block.get("signature"))
        if block_type == "tool_use":
            start_input = block.get("input")
            self._block = _UpstreamBlock("tool_call", str(block.get("id") or ""), str(block.get("name") or ""),
                                         start_input=start_input if isinstance(start_input, dict) else None)
            return events + self._open()
        if block_type == "redacted_thinking":
            self._block = _UpstreamBlock("redacted_thinking", data=str(block.get("data") or ""))
            return events + self._open()
        self._block = _UpstreamBlock(None)
        return events

    def _block_delta(self, data: dict) -> list[ir.Event]:
        if self._block is None or self._block.kind is None:
            return []
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            return self._text(delta.get("text"))
        if delta_type == "thinking_delta":
            return self._thinking(delta.get("thinking"))
        if delta_type == "signature_delta":
            return self._signature(delta.get("signature"))
        if delta_type == "input_json_delta":
            return self._arguments(delta.get("partial_json"))
        return []  # citations_delta and newer delta types carry nothing the IR keeps

    def _block_stop(self, data: dict) -> list[ir.Event]:
        return self._close_block()

    def _text(self, text: Any) -> list[ir.Event]:
        if not text or not isinstance(text, str) or self._block.kind != "text":
            return []
        return self._open() + [ir.TextDelta(self._block.part, text)]

    def _thinking(self, text: Any) -> list[ir.Event]:
        if not text or not isinstance(text, str) or self._block.kind != "thinking":
            return []
        return self._open() + [ir.ThinkingDelta(self._block.part, text)]

    def _signature(self, signature: Any) -> list[ir.Event]:
        if not signature or not isinstance(signature, str) or self._block.kind != "thinking":
            return []
        return self._open() + [ir.SignatureDelta(self._block.part, signature, provider=PROTOCOL)]

    def _arguments(self, fragment: Any) -> list[ir.Event]:
        if not fragment or not isinstance(fragment, str) or self._block.kind != "tool_call":
            return []
        self._block.has_arguments = True
        return [ir.ToolArgumentsDelta(self._block.part, fragment)]

    def _open(self) -> list[ir.Event]:
        block = self._block
        if block.part is not None:
            return []
        block.part = self._next_part
        self._next_part += 1
        return [ir.PartStart(block.part, block.kind, id=block.call_id, name=block.name, data=block.data)]

    def _close_block(self) -> list[ir.Event]:
        block, self._block = self._block, None
        if block is None or block.part is None:
            return []
        events: list[ir.Event] = []
        if block.kind == "tool_call" and not block.has_arguments and block.start_input:
            # The start's `input: {}` is a placeholder, but a gateway that sends the whole
            # input there and no deltas means it.
            events.append(ir.ToolArgumentsDelta(block.part, dumps_str(block.start_input)))
        events.append(ir.PartStop(block.part))
        return events


# -------------------------------------------------------------- parse_error


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream error reply -> ProxyError. Reads the Anthropic envelope, the Google
    envelope of Vertex fronts (with an Anthropic one embedded in its message), or text."""
    err = _error_from_payload(_json_or_none(body), status=status)
    if err.message == "":
        err.message = redact(_body_text(body) or f"upstream returned HTTP {status}")
    err.retry_after = retry_after_from_headers(headers)
    return err


def _error_from_payload(payload: Any, status: int | None) -> ProxyError:
    """Error envelope (either family) -> ProxyError; `status` None = inside a 200 stream."""
    error_type, message = _error_fields(payload)
    if error_type in _ERROR_TYPES:
        kind, wire_status = _ERROR_TYPES[error_type]
    elif error_type in _GOOGLE_STATUSES:
        kind, wire_status = _GOOGLE_STATUSES[error_type], None
    elif status is not None and status >= 400:
        kind, wire_status = kind_for_status(status), None
    else:
        kind, wire_status = ErrorKind.api_error, None
    if status is not None and status >= 400:
        wire_status = status
    return ProxyError(kind, redact(message), status=wire_status)


def _error_fields(payload: Any) -> tuple[str | None, str]:
    """-> (error.type or Google status, message) from whatever envelope the body has."""
    if isinstance(payload, list) and payload:
        payload = payload[0]  # some Google fronts wrap the envelope in a list
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, ""
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    if isinstance(error.get("type"), str):
        return error["type"], message
    embedded = _json_or_none(message) if message.startswith("{") else None
    if isinstance(embedded, dict) and isinstance(embedded.get("error"), dict):
        return _error_fields(embedded)
    status = error.get("status")
    return (status if isinstance(status, str) else None), message


def _json_or_none(data: bytes | str) -> Any:
    try:
        return loads(data)
    except ValueError:
        return None


def _body_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()[:500]
