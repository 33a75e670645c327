"""OpenAI Responses (`POST /v1/responses`), both directions.

Frontend: clients speaking Responses (the SDK's `client.responses`, Codex) are
parsed into the IR and answered with a `response` object or its event stream.
Backend: the IR is sent to a Responses provider (OpenAI, Azure) and its replies,
event streams and errors are read back into the IR.

Policy choices (each one a deliberate answer to a known conversion hazard):
- Requests are validated as strictly as OpenAI does; Chat-only fields
  (`messages`, `max_tokens`, `stop`, `n`) get a 400 naming them, not silence.
- Input items pair by `call_id`: a `function_call_output` must answer a
  `function_call` earlier in `input` (unless `previous_response_id` is set: its
  calls are in the stored response) and every call in `input` must be answered.
- `instructions` becomes the first system message. `previous_response_id` and
  `store` are carried in the IR for the pipeline's state store; nothing here
  resolves them.
- Codex's tools: a `custom` tool (free-form input, e.g. apply_patch's grammar)
  is an IR function of one string argument `input` (`ir.Tool.kind == "custom"`)
  and its calls go back to the client as `custom_tool_call` with the raw input;
  a `namespace` group is flattened to `<namespace>__<name>` functions and the
  calls are restored to `{namespace, name}` by looking the flattened name up
  in the request's tools (never by splitting strings).
- Hosted tools ride as `ir.Opaque` tools: sent unchanged to a Responses
  backend. `web_search*` and `tool_search` are droppable (the pipeline leaves
  them out for other wires, `ir.tools_for`: the client works without them); every other
  hosted tool (file_search, mcp, code_interpreter, ...) is refused by other
  writers with a 400 naming `tools[i]`.
- Reasoning items become `ir.Thinking` (summary text, `encrypted_content` as the
  signature, provider this protocol); encrypted content goes back only to a
  Responses backend, and to clients only when it came from one. OpenAI and
  Azure are one family here, deliberately: the blob's format is the same on
  both, and what really binds it is the account that made it (an OpenAI
  organisation, an Azure resource), which no wire-level tag could tell apart
  either (two Azure resources differ as much as Azure and OpenAI). The proxy
  routes a client model name to one backend, so a conversation's reasoning
  goes back where it was made; a blob moved elsewhere is the provider's 400,
  relayed to the client as an invalid request.
- Streams carry `event:` lines equal to the JSON `type`, a `sequence_number`
  on every event, every `.done` event, and end with the terminal event
  (`response.completed` / `.incomplete` / `.failed`), never `[DONE]`
  (known-gateway-bugs 17, 21).
- Error envelopes are OpenAI's (protocols §2.7): the Chat module's are reused.
"""
from __future__ import annotations

import dataclasses
import re
import time
import uuid
from typing import Any, Iterable, Mapping

from app import errors, ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.protocols.base import opaque_out, Target
# The Responses API shares Chat's error envelope, model list and tool-call id
# rule; the helpers live there once.
from app.protocols.openai_chat import (KEEPALIVE_COMMENT, _reasoning_effort, format_error, format_models, parse_error,
                                       wire_call_id)
from app.upstream.framing import Frame, encode_sse

PROTOCOL = "openai_responses"  # the registry name (app/protocols/__init__.py MODULES)
RESPONSE_MODEL_FIELD = "model"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
NAMESPACE_SEPARATOR = "__"

__all__ = ["PROTOCOL", "RESPONSE_MODEL_FIELD", "FORWARDED_CLIENT_HEADERS", "parse_request", "format_response",
           "StreamFormatter", "format_error", "format_models", "build_body", "passthrough_body",
           "parse_response", "StreamParser", "parse_error", "is_content_frame", "custom_input_schema"]

_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_SUMMARIES = ("auto", "concise", "detailed")
_VERBOSITY = ("low", "medium", "high")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MIN_OUTPUT_TOKENS = 16  # the API's minimum max_output_tokens
# Chat Completions fields a Responses request must not carry (the real API refuses them).
_CHAT_ONLY = {"messages": "input", "max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
              "stop": None, "n": None, "response_format": "text.format", "functions": "tools"}
_DROPPABLE_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                    "tool_search")
_HOSTED_TOOLS = _DROPPABLE_TOOLS + ("file_search", "code_interpreter", "image_generation", "computer_use_preview",
                                    "computer", "mcp", "local_shell", "shell", "apply_patch")
_USER_PARTS = ("input_text", "input_image", "input_file")
_ASSISTANT_PARTS = ("output_text", "refusal")


def _now() -> int:
    return int(time.time())


def custom_input_schema(fmt: Mapping[str, Any] | None) -> dict:
    """The one-string-argument schema a custom tool gets on targets without custom tools.
    A grammar is given to the model in the argument's description (it is the tool's syntax)."""
    description = "The tool's raw free-form input, exactly as the tool expects it (not JSON)."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        description += f" It must follow this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
    return {"type": "object", "properties": {"input": {"type": "string", "description": description}},
            "required": ["input"], "additionalProperties": False}


# ====================================================================
# Frontend: parse a client's request
# ====================================================================


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ir.Request:
    """Validate a Responses request body and turn it into the IR."""
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    model = model if model is not None else body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise errors.invalid("'model' is required and must be a non-empty string.", "model")
    for key, instead in _CHAT_ONLY.items():
        if body.get(key) is not None:
            hint = f" Use '{instead}' instead." if instead else ""
            raise errors.invalid(f"Unsupported parameter: '{key}' is not supported by the Responses API.{hint}", key)
    previous = _optional(body, "previous_response_id", str, "a string")
    if body.get("conversation") is not None:
        if previous is not None:
            raise errors.invalid("'previous_response_id' cannot be used together with 'conversation'.",
                                 "conversation")
        raise errors.invalid("'conversation' is not supported; use 'previous_response_id' or send the items.",
                             "conversation")
    if body.get("background") is True:
        raise errors.invalid("'background' responses are not supported.", "background")

    tools = _parse_tools(body.get("tools"))
    tools, tool_choice = _parse_tool_choice(body.get("tool_choice"), tools)
    messages = _parse_input(body.get("input"), previous is not None, tools)
    instructions = _optional(body, "instructions", str, "a string")
    if instructions and instructions.strip():
        messages = (ir.Message("system", (ir.Text(instructions),)),) + messages
    if not messages and previous is None:
        raise errors.invalid("'input' is required and must not be empty.", "input")

    _check_include(body.get("include"))
    _check_metadata(body.get("metadata"))
    _optional(body, "prompt_cache_key", str, "a string")
    truncation = body.get("truncation")
    if truncation is not None and truncation not in ("auto", "disabled"):
        raise errors.invalid("'truncation' must be 'auto' or 'disabled'.", "truncation")
    body_stream = _optional(body, "stream", bool, "a boolean")
    if body.get("stream_options") is not None and not body_stream:
        raise errors.invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                             "stream_options")
    return ir.Request(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=bool(body_stream) if stream is None else stream,
        include_usage=True,  # Responses always reports usage in the terminal event
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool, "a boolean"),
        max_tokens=_optional_int(body, "max_output_tokens", minimum=1),
        temperature=_optional_number(body, "temperature", 0, 2),
        top_p=_optional_number(body, "top_p", 0, 1),
        reasoning=_parse_reasoning(body.get("reasoning")),
        response_format=_parse_text(body.get("text")),
        user=_optional(body, "user", str, "a string"),
        previous_response_id=previous,
        store=_optional(body, "store", bool, "a boolean"),
        raw=body,
    )


def input_items(body: Mapping[str, Any]) -> list:
    """The request's `input` as a list of items (a plain string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value.strip() else []
    return list(value) if isinstance(value, list) else []


def continue_request(req: ir.Request, history: list) -> ir.Request:
    """`req` (which names a previous_response_id) with that response's history,
    as stored items, ahead of its own input. Instructions are the request's
    own: a previous response's are not carried over (as on the API). The raw
    body becomes the whole conversation, without the id, so a Responses
    backend that never saw the id gets everything too."""
    raw = req.raw or {}
    items = history + input_items(raw)
    messages = _parse_input(items, False, req.tools)
    instructions = raw.get("instructions")
    if isinstance(instructions, str) and instructions.strip():
        messages = (ir.Message("system", (ir.Text(instructions),)),) + messages
    body = {k: v for k, v in raw.items() if k != "previous_response_id"}
    body["input"] = items
    return dataclasses.replace(req, messages=messages, raw=body)


# ---------------------------------------------------------- field checks


def _optional(obj: Mapping[str, Any], key: str, kind: type, what: str, *, param: str | None = None) -> Any:
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise errors.invalid(f"'{param or key}' must be {what}.", param or key)
    return value


def _optional_int(obj: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = _optional(obj, key, int, "an integer")
    if value is not None and value < minimum:
        raise errors.invalid(f"'{key}' must be at least {minimum}; got {value}.", key)
    return value


def _optional_number(obj: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.invalid(f"'{key}' must be a number.", key)
    if not low <= value <= high:
        raise errors.invalid(f"'{key}' must be between {low} and {high}; got {value}.", key)
    return float(value)


def _check_include(value: Any) -> None:
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise errors.invalid("'include' must be an array of strings.", "include")


def _check_metadata(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.invalid("'metadata' must be an object with string values.", "metadata")
    if len(value) > 16:
        raise errors.invalid("'metadata' may have at most 16 properties.", "metadata")


def _parse_reasoning(value: Any) -> ir.Reasoning | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid("'reasoning' must be an object.", "reasoning")
    effort = value.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise errors.invalid(f"'reasoning.effort' must be one of {', '.join(_EFFORTS)}.", "reasoning.effort")
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in _SUMMARIES:
        raise errors.invalid(f"'reasoning.summary' must be one of {', '.join(_SUMMARIES)}.", "reasoning.summary")
    if effort is None and summary is None:
        return None
    # A summary level has no IR form beyond "show the reasoning": writers ask for "auto".
    # A summary alone (Codex's default for models it does not know) asks for no reasoning,
    # only to see it when there is some: a backend without thinking serves it without.
    return ir.Reasoning(effort=effort, include_thoughts=True if summary is not None else None,
                        optional=effort is None)


def _parse_text(value: Any) -> ir.ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid("'text' must be an object.", "text")
    verbosity = value.get("verbosity")
    if verbosity is not None and verbosity not in _VERBOSITY:
        raise errors.invalid(f"'text.verbosity' must be one of {', '.join(_VERBOSITY)}.", "text.verbosity")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise errors.invalid("'text.format' must be an object.", "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ir.ResponseFormat(type=kind)
    if kind != "json_schema":
        raise errors.invalid("'text.format.type' must be one of text, json_object, json_schema.", "text.format.type")
    name = fmt.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise errors.invalid("'text.format.name' must match ^[a-zA-Z0-9_-]{1,64}$.", "text.format.name")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise errors.invalid("'text.format.schema' is required and must be an object.", "text.format.schema")
    strict = _optional(fmt, "strict", bool, "a boolean", param="text.format.strict")
    return ir.ResponseFormat(type="json_schema", schema=schema, name=name, strict=strict)


# ---------------------------------------------------------------- tools


def _parse_tools(value: Any) -> tuple[ir.Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise errors.invalid("'tools' must be an array.", "tools")
    tools: list[ir.Tool] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(value):
        where = f"tools[{i}]"
        for tool in _parse_tool(raw, where):
            if tool.native is None:
                if tool.name in seen:
                    raise errors.invalid(f"'{where}': the tool name {tool.name!r} is already used by "
                                         f"{seen[tool.name]}.", f"{where}.name")
                seen[tool.name] = where
            tools.append(tool)
    return tuple(tools)


def _parse_tool(tool: Any, where: str) -> list[ir.Tool]:
    if not isinstance(tool, dict):
        raise errors.invalid(f"'{where}' must be an object.", where)
    kind = tool.get("type")
    if kind == "function":
        return [_parse_function(tool, where, None)]
    if kind == "custom":
        return [_parse_custom(tool, where, None)]
    if kind == "namespace":
        return _parse_namespace(tool, where)
    if kind in _HOSTED_TOOLS:
        return [ir.Tool(name=kind, native=ir.Opaque(PROTOCOL, f"{kind} tool", tool, where,
                                                    droppable=kind in _DROPPABLE_TOOLS))]
    if isinstance(tool.get("function"), dict):
        raise errors.invalid(f"'{where}': Responses function tools are flat "
                             "({\"type\": \"function\", \"name\": ...}), not nested under 'function'.",
                             f"{where}.function")
    raise errors.invalid(f"'{where}.type' {kind!r} is not a supported tool type.", f"{where}.type")


def _tool_name(tool: dict, where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise errors.invalid(f"'{where}.name' must match ^[a-zA-Z0-9_-]{{1,64}}$.", f"{where}.name")
    return name


def _flat_name(namespace: str | None, name: str) -> str:
    return name if namespace is None else namespace + NAMESPACE_SEPARATOR + name


def _parse_function(tool: dict, where: str, namespace: str | None) -> ir.Tool:
    if isinstance(tool.get("function"), dict):
        raise errors.invalid(f"'{where}': Responses function tools are flat, not nested under 'function'.",
                             f"{where}.function")
    return ir.Tool(
        name=_flat_name(namespace, _tool_name(tool, where)),
        description=_optional(tool, "description", str, "a string", param=f"{where}.description"),
        parameters=_optional(tool, "parameters", dict, "an object", param=f"{where}.parameters"),
        strict=_optional(tool, "strict", bool, "a boolean", param=f"{where}.strict"),
        namespace=namespace,
    )


def _parse_custom(tool: dict, where: str, namespace: str | None) -> ir.Tool:
    fmt = tool.get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar")):
        raise errors.invalid(f"'{where}.format' must be an object of type text or grammar.", f"{where}.format")
    return ir.Tool(
        name=_flat_name(namespace, _tool_name(tool, where)),
        description=_optional(tool, "description", str, "a string", param=f"{where}.description"),
        parameters=custom_input_schema(fmt),
        kind="custom",
        input_format=fmt,
        namespace=namespace,
    )


def _parse_namespace(tool: dict, where: str) -> list[ir.Tool]:
    namespace = _tool_name(tool, where)
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        raise errors.invalid(f"'{where}.tools' must be a non-empty array.", f"{where}.tools")
    out = []
    for j, member in enumerate(members):
        here = f"{where}.tools[{j}]"
        kind = member.get("type") if isinstance(member, dict) else None
        if kind == "function":
            out.append(_parse_function(member, here, namespace))
        elif kind == "custom":
            out.append(_parse_custom(member, here, namespace))
        else:
            raise errors.invalid(f"'{here}.type' must be 'function' or 'custom'.", f"{here}.type")
    return out


def _parse_tool_choice(value: Any, tools: tuple[ir.Tool, ...]) -> tuple[tuple[ir.Tool, ...], ir.ToolChoice | None]:
    if value is None:
        return tools, None
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise errors.invalid("'tool_choice' is 'required' but no 'tools' are specified.", "tool_choice")
        return tools, ir.ToolChoice(mode=value)
    if not isinstance(value, dict):
        raise errors.invalid("'tool_choice' must be 'auto', 'none', 'required' or an object.", "tool_choice")
    kind = value.get("type")
    names = {t.name: t for t in tools if t.native is None}
    if kind in ("function", "custom"):
        name = _flat_name(value.get("namespace") if isinstance(value.get("namespace"), str) else None,
                          value.get("name") if isinstance(value.get("name"), str) else "")
        tool = names.get(name)
        if tool is None or tool.kind != kind:
            raise errors.invalid(f"'tool_choice.name' {value.get('name')!r} is not one of the specified {kind} tools.",
                                 "tool_choice.name")
        return tools, ir.ToolChoice(mode="tool", name=name)
    if kind == "allowed_tools":
        mode, refs = value.get("mode"), value.get("tools")
        if mode not in ("auto", "required") or not isinstance(refs, list):
            raise errors.invalid("'tool_choice' allowed_tools needs a mode (auto|required) and a tools array.",
                                 "tool_choice")
        allowed = set()
        for j, ref in enumerate(refs):
            name = ref.get("name") if isinstance(ref, dict) else None
            if name not in names:
                raise errors.invalid(f"'tool_choice.tools[{j}]' does not name a specified function tool.",
                                     f"tool_choice.tools[{j}]")
            allowed.add(name)
        return tuple(t for t in tools if t.name in allowed), ir.ToolChoice(mode=mode)
    raise errors.invalid(f"'tool_choice.type' {kind!r} is not supported; use auto, none, required, "
                         "a function, a custom tool or allowed_tools.", "tool_choice.type")


# ---------------------------------------------------------------- input items


class _InputBuilder:
    """Input items -> IR messages. Consecutive model-side items (assistant
    messages, calls, reasoning) form one assistant turn; consecutive outputs one
    tool turn. Calls and outputs pair by `call_id`."""

    def __init__(self, continues: bool, tools: tuple[ir.Tool, ...]) -> None:
        self.continues = continues  # previous_response_id: earlier calls live in the stored response
        self.tools = {t.name: t for t in tools if t.native is None}
        self.messages: list[ir.Message] = []
        self.calls: dict[str, str] = {}  # call_id -> flattened tool name
        self.unanswered: dict[str, str] = {}  # call_id -> where

    def add(self, role: str, part: ir.Part) -> None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == role and role in ("assistant", "tool"):
            self.messages[-1] = ir.Message(role, last.parts + (part,))
        else:
            self.messages.append(ir.Message(role, (part,)))

    def call(self, item: dict, where: str, custom: bool) -> None:
        call_id = _call_id(item, where)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise errors.invalid(f"'{where}.name' is required and must be a string.", f"{where}.name")
        namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        name = _flat_name(namespace, name)
        if custom:
            text = item.get("input")
            if not isinstance(text, str):
                raise errors.invalid(f"'{where}.input' must be a string.", f"{where}.input")
            arguments = dumps({"input": text}).decode()
        else:
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                raise errors.invalid(f"'{where}.arguments' must be a string of JSON.", f"{where}.arguments")
        self.calls[call_id] = name
        self.unanswered[call_id] = where
        self.add("assistant", ir.ToolCall(call_id, name, arguments))

    def output(self, item: dict, where: str) -> None:
        call_id = _call_id(item, where)
        if call_id not in self.calls and not self.continues:
            raise errors.invalid(f"No tool call found for {item.get('type')} with call_id {call_id!r}: "
                                 "it must answer a call earlier in 'input'.", f"{where}.call_id")
        self.unanswered.pop(call_id, None)
        content = _output_content(item.get("output"), where)
        self.add("tool", ir.ToolResult(call_id=call_id, content=content, name=self.calls.get(call_id)))


def _call_id(item: dict, where: str) -> str:
    call_id = item.get("call_id")
    # No length cap (OpenAI's is 64): the ids are the ones this proxy issued, and a Gemini
    # call's id carries its thought signature (hazard 25); a Responses writer shortens them.
    if not isinstance(call_id, str) or not call_id:
        raise errors.invalid(f"'{where}.call_id' is required and must be a non-empty string.", f"{where}.call_id")
    return call_id


def _parse_input(value: Any, continues: bool, tools: tuple[ir.Tool, ...]) -> tuple[ir.Message, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (ir.Message("user", (ir.Text(value),)),) if value.strip() else ()
    if not isinstance(value, list):
        raise errors.invalid("'input' must be a string or an array of input items.", "input")
    b = _InputBuilder(continues, tools)
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise errors.invalid(f"'{where}' must be an object.", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _message_item(b, item, where)
        elif kind in ("function_call", "custom_tool_call"):
            b.call(item, where, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            b.output(item, where)
        elif kind == "reasoning":
            thinking = _reasoning_item(item, where)
            if thinking is not None:
                b.add("assistant", thinking)
        elif kind == "item_reference":
            raise errors.invalid(f"'{where}': item references are not supported; send the item itself.", where)
        elif isinstance(kind, str) and kind:
            # A hosted-tool call or output (web_search_call, tool_search_output, ...):
            # no IR meaning, re-sent in place to a Responses backend only.
            b.add("assistant" if kind.endswith("_call") else "user", ir.Opaque(PROTOCOL, f"{kind} item", item, where))
        else:
            raise errors.invalid(f"'{where}.type' is required.", f"{where}.type")
    if b.unanswered:
        call_id, where = next(iter(b.unanswered.items()))
        raise errors.invalid(f"No tool output found for the call with call_id {call_id!r}.", where)
    return tuple(b.messages)


def _message_item(b: _InputBuilder, item: dict, where: str) -> None:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise errors.invalid(f"'{where}.role' must be one of user, assistant, system, developer; got {role!r}.",
                             f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        if not content.strip():
            return
        if role == "assistant":
            b.add(role, ir.Text(content))
        else:
            b.messages.append(ir.Message(role, (ir.Text(content),)))
        return
    if not isinstance(content, list):
        raise errors.invalid(f"'{where}.content' must be a string or an array of content parts.", f"{where}.content")
    allowed = _ASSISTANT_PARTS if role == "assistant" else _USER_PARTS if role == "user" else ("input_text",)
    parts: list[ir.Part] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            supported = " and ".join(f"'{a}'" for a in allowed)
            raise errors.invalid(f"Invalid value: {kind!r}. Supported values for a {role} message are: {supported}.",
                                 here)
        if kind == "input_image":
            parts.append(_image(part, here))
        elif kind == "input_file":
            parts.append(ir.Opaque(PROTOCOL, "input_file part", part, here))
        else:
            key = "refusal" if kind == "refusal" else "text"
            text = part.get(key)
            if not isinstance(text, str):
                raise errors.invalid(f"'{here}.{key}' must be a string.", f"{here}.{key}")
            if text.strip():
                parts.append(ir.Refusal(text) if kind == "refusal" else ir.Text(text))
    if role == "assistant":
        for p in parts:
            b.add("assistant", p)
    elif parts:
        b.messages.append(ir.Message(role, tuple(parts)))


def _image(part: dict, where: str) -> ir.Image | ir.Opaque:
    detail = _optional(part, "detail", str, "a string", param=f"{where}.detail")
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        return ir.Opaque(PROTOCOL, "input_image file_id part", part, where)
    if not isinstance(url, str):
        raise errors.invalid(f"'{where}.image_url' is required and must be a string.", f"{where}.image_url")
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if not comma or not header.endswith(";base64") or not data:
            raise errors.invalid(f"'{where}.image_url' must be a base64 data URL.", f"{where}.image_url")
        return ir.Image(data=data, media_type=header[5:].split(";", 1)[0] or "image/png", detail=detail)
    if url.startswith(("http://", "https://")):
        return ir.Image(url=url, detail=detail)
    raise errors.invalid(f"'{where}.image_url' must be an http(s) URL or a base64 data URL.", f"{where}.image_url")


def _output_content(value: Any, where: str) -> tuple[ir.Text | ir.Image | ir.Opaque, ...]:
    if isinstance(value, str):
        return (ir.Text(value),) if value else ()
    if not isinstance(value, list):
        raise errors.invalid(f"'{where}.output' must be a string or an array of content parts.", f"{where}.output")
    parts: list[ir.Text | ir.Image | ir.Opaque] = []
    for j, part in enumerate(value):
        here = f"{where}.output[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text":
            if not isinstance(part.get("text"), str):
                raise errors.invalid(f"'{here}.text' must be a string.", f"{here}.text")
            if part["text"]:
                parts.append(ir.Text(part["text"]))
        elif kind == "input_image":
            parts.append(_image(part, here))
        elif kind == "input_file":
            parts.append(ir.Opaque(PROTOCOL, "input_file part", part, here))
        else:
            raise errors.invalid(f"'{here}.type' must be one of input_text, input_image, input_file.", f"{here}.type")
    return tuple(parts)


def _reasoning_item(item: dict, where: str) -> ir.Thinking | None:
    summary = item.get("summary", [])
    if not isinstance(summary, list):
        raise errors.invalid(f"'{where}.summary' must be an array.", f"{where}.summary")
    texts = []
    for j, s in enumerate(summary):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str):
            raise errors.invalid(f"'{where}.summary[{j}].text' must be a string.", f"{where}.summary[{j}].text")
        texts.append(s["text"])
    encrypted = _optional(item, "encrypted_content", str, "a string", param=f"{where}.encrypted_content")
    text = "\n\n".join(t for t in texts if t)
    if not text and not encrypted:
        return None  # an id-only reference to a stored item: nothing any backend could use
    return ir.Thinking(text=text, signature=encrypted, provider=PROTOCOL if encrypted else None)


# ====================================================================
# Frontend: render replies
# ====================================================================


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


def _model_failed(raw_reason: str | None) -> ProxyError:
    detail = f" ({raw_reason})" if raw_reason else ""
    return ProxyError(ErrorKind.bad_gateway, f"The model failed to produce a valid response{detail}.",
                      code="model_error")


def _shows_summary(req: ir.Request) -> bool:
    return req.reasoning is not None and bool(req.reasoning.include_thoughts)


def _client_call(req: ir.Request, name: str) -> tuple[str, str | None, bool]:
    """A flattened IR tool name -> (client name, namespace, is custom), from the request's tools."""
    for tool in req.tools:
        if tool.name == name and tool.native is None:
            short = name[len(tool.namespace) + len(NAMESPACE_SEPARATOR):] if tool.namespace else name
            return short, tool.namespace, tool.kind == "custom"
    return name, None, False


def _custom_input(arguments: str) -> str:
    """The raw text of a custom tool call from its IR arguments `{"input": …}`;
    a model that answered without the wrapper gets its text passed on as is."""
    try:
        value = ir.parse_arguments(arguments).get("input")
    except ValueError:
        return arguments
    return value if isinstance(value, str) else arguments


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
            encrypted = part.signature if part.provider == PROTOCOL else None
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


# Error kind -> Responses `error.code` for a failed response (response.failed).
_FAILED_CODE = {
    ErrorKind.rate_limit: "rate_limit_exceeded",
    ErrorKind.overloaded: "server_is_overloaded",
    ErrorKind.invalid_request: "invalid_prompt",
}


class _OpenItem:
    __slots__ = ("index", "item", "kind", "texts", "part_open", "summary_open", "announced")

    def __init__(self, index: int, item: dict, kind: str) -> None:
        self.index = index  # output_index
        self.item = item  # the item as it will be in output_item.done
        self.kind = kind  # message | function_call | custom_tool_call | reasoning
        self.texts: list[str] = []  # the open part's text so far
        self.part_open: str | None = None  # message: the open content part kind; reasoning: "summary"
        self.summary_open = False
        self.announced = False  # output_item.added sent


_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})


class StreamFormatter:
    """IR events -> Responses SSE events for one client stream.

    Wire option `created` fixes the timestamp (tests). Consecutive text and
    refusal parts share one message item; each tool call and reasoning part is
    its own item. A custom tool call's input is sent whole when it ends (its IR
    arguments are the JSON `{"input": …}`, not the raw text).
    """

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._created = wire_options.get("created") or _now()
        self._seq = 0
        self._id: str | None = None
        self._model = req.model
        self._output: list[dict] = []  # finished items, by output_index
        self._item: _OpenItem | None = None  # the open output item
        self._ir_kind: str | None = None  # kind of the open IR part
        self._done = False
        self._show = _shows_summary(req)
        # The terminal response object the client got (completed or incomplete), for the state store.
        self.final: dict | None = None

    # ---------------------------------------------------------------- public

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        if isinstance(event, ir.MessageStart):
            self._begin(event.id, event.model, out)
        elif isinstance(event, ir.StreamError):
            self._begin(None, None, out)
            self._fail(event.error, out)
        elif isinstance(event, ir.MessageStop):
            self._begin(None, None, out)
            self._stop(event, out)
        else:
            self._begin(None, None, out)
            self._content(event, out)
        return b"".join(out)

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough of one upstream event; a `[DONE]` some servers add is dropped."""
        if frame.data.strip() == "[DONE]":
            return b""
        if frame.event in _FINAL_EVENTS or (frame.event in (None, "raw") and (
                '"response.completed"' in frame.data or '"response.incomplete"' in frame.data)):
            self._keep_final(frame.data)
        event = frame.event if frame.event not in (None, "raw") else None
        if "\n" not in frame.data:
            return encode_sse(frame.data, event)
        head = b"event: " + event.encode() + b"\n" if event else b""
        return head + b"".join(b"data: " + line.encode() + b"\n" for line in frame.data.split("\n")) + b"\n"

    def finish(self) -> bytes:
        return b""  # the terminal event comes from MessageStop / StreamError

    def keepalive(self) -> bytes:
        return KEEPALIVE_COMMENT  # SSE readers skip comment lines

    def _keep_final(self, data: str) -> None:
        try:
            event = loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("type") in _FINAL_EVENTS and isinstance(event.get("response"), dict):
            self.final = event["response"]

    # ---------------------------------------------------------------- events

    def _emit(self, out: list[bytes], payload: dict) -> None:
        payload["sequence_number"] = self._seq
        self._seq += 1
        out.append(encode_sse(dumps(payload), payload["type"]))

    def _snapshot(self, status: str, **kwargs: Any) -> dict:
        return _response_object(self._req, self._id, self._model, self._created, status=status, **kwargs)

    def _begin(self, upstream_id: str | None, model: str | None, out: list[bytes]) -> None:
        if self._id is not None:
            return
        self._id = _response_id(upstream_id)
        self._model = model or self._req.model
        snapshot = self._snapshot("in_progress", output=[], usage=None)
        self._emit(out, {"type": "response.created", "response": snapshot})
        self._emit(out, {"type": "response.in_progress", "response": snapshot})

    def _open_item(self, kind: str, item: dict, out: list[bytes], announce: bool = True) -> _OpenItem:
        opened = _OpenItem(len(self._output), item, kind)
        self._item = opened
        if announce:
            self._announce(opened, out)
        return opened

    def _announce(self, item: _OpenItem, out: list[bytes]) -> None:
        if item.announced:
            return
        item.announced = True
        added = dict(item.item)
        if item.kind == "message":
            added["content"] = []
        self._emit(out, {"type": "response.output_item.added", "output_index": item.index, "item": added})

    def _close_item(self, out: list[bytes], status: str = "completed") -> None:
        item = self._item
        if item is None:
            return
        self._item = None
        if not item.announced:
            # A reasoning part with nothing to show or carry gets no item (as format_response).
            if "encrypted_content" not in item.item:
                return
            self._announce(item, out)
        if item.kind == "message" and item.part_open:
            self._close_text_part(item, out)
        if item.kind == "reasoning" and item.summary_open:
            self._close_summary(item, out)
        if "status" in item.item:
            item.item["status"] = status
        self._output.append(item.item)
        self._emit(out, {"type": "response.output_item.done", "output_index": item.index, "item": item.item})

    def _content(self, event: ir.Event, out: list[bytes]) -> None:
        if isinstance(event, ir.PartStart):
            self._part_start(event, out)
        elif isinstance(event, (ir.TextDelta, ir.RefusalDelta)):
            item = self._item
            if item is None or item.kind != "message" or not event.text or item.part_open is None:
                return
            item.texts.append(event.text)
            kind = "response.output_text.delta" if item.part_open == "output_text" else "response.refusal.delta"
            payload = {"type": kind, "item_id": item.item["id"], "output_index": item.index,
                       "content_index": len(item.item["content"]), "delta": event.text}
            if item.part_open == "output_text":
                payload["logprobs"] = []
            self._emit(out, payload)
        elif isinstance(event, ir.ToolArgumentsDelta):
            item = self._item
            if item is None or item.kind not in ("function_call", "custom_tool_call") or not event.json:
                return
            item.texts.append(event.json)
            if item.kind == "function_call":
                self._emit(out, {"type": "response.function_call_arguments.delta", "item_id": item.item["id"],
                                 "output_index": item.index, "delta": event.json})
        elif isinstance(event, ir.ThinkingDelta):
            item = self._item
            if item is None or item.kind != "reasoning" or not event.text:
                return
            item.texts.append(event.text)
            if self._show:
                self._announce(item, out)
                if not item.summary_open:
                    item.summary_open = True
                    self._emit(out, {"type": "response.reasoning_summary_part.added", "item_id": item.item["id"],
                                     "output_index": item.index, "summary_index": 0,
                                     "part": {"type": "summary_text", "text": ""}})
                self._emit(out, {"type": "response.reasoning_summary_text.delta", "item_id": item.item["id"],
                                 "output_index": item.index, "summary_index": 0, "delta": event.text})
        elif isinstance(event, ir.SignatureDelta):
            item = self._item
            if item is not None and item.kind == "reasoning" and event.provider == PROTOCOL:
                item.item["encrypted_content"] = item.item.get("encrypted_content", "") + event.signature
        elif isinstance(event, ir.PartStop):
            self._part_stop(out)

    def _part_start(self, event: ir.PartStart, out: list[bytes]) -> None:
        self._ir_kind = event.kind
        if event.kind in ("text", "refusal"):
            item = self._item
            if item is None or item.kind != "message":
                self._close_item(out)
                item = self._open_item("message", {
                    "id": _item_id("msg", self._id, len(self._output)), "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}, out)
            item.part_open = "output_text" if event.kind == "text" else "refusal"
            item.texts = []
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []} \
                if event.kind == "text" else {"type": "refusal", "refusal": ""}
            self._emit(out, {"type": "response.content_part.added", "item_id": item.item["id"],
                             "output_index": item.index, "content_index": len(item.item["content"]), "part": part})
            return
        self._close_item(out)
        if event.kind == "tool_call":
            call = ir.ToolCall(event.id or "", event.name or "", "")
            custom = _client_call(self._req, call.name)[2]
            item = _call_item(self._req, call, _item_id("ctc" if custom else "fc", self._id, len(self._output)),
                              status="in_progress")
            self._open_item(item["type"], item, out)
        elif event.kind == "thinking":
            item = {"id": _item_id("rs", self._id, len(self._output)), "type": "reasoning", "summary": []}
            self._open_item("reasoning", item, out, announce=False)  # announced by its first visible content
        # redacted_thinking has no Responses form: no item

    def _close_text_part(self, item: _OpenItem, out: list[bytes]) -> None:
        text = "".join(item.texts)
        index = len(item.item["content"])
        base = {"item_id": item.item["id"], "output_index": item.index, "content_index": index}
        if item.part_open == "output_text":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._emit(out, {"type": "response.output_text.done", **base, "text": text, "logprobs": []})
        else:
            part = {"type": "refusal", "refusal": text}
            self._emit(out, {"type": "response.refusal.done", **base, "refusal": text})
        self._emit(out, {"type": "response.content_part.done", **base, "part": part})
        item.item["content"].append(part)
        item.part_open = None
        item.texts = []

    def _close_summary(self, item: _OpenItem, out: list[bytes]) -> None:
        text = "".join(item.texts)
        base = {"item_id": item.item["id"], "output_index": item.index, "summary_index": 0}
        part = {"type": "summary_text", "text": text}
        self._emit(out, {"type": "response.reasoning_summary_text.done", **base, "text": text})
        self._emit(out, {"type": "response.reasoning_summary_part.done", **base, "part": part})
        item.item["summary"] = [part]
        item.summary_open = False

    def _part_stop(self, out: list[bytes]) -> None:
        kind, self._ir_kind = self._ir_kind, None
        item = self._item
        if item is None:
            return
        if item.kind == "message" and kind in ("text", "refusal") and item.part_open:
            self._close_text_part(item, out)
        elif item.kind == "function_call":
            arguments = "".join(item.texts)
            item.item["arguments"] = arguments
            self._emit(out, {"type": "response.function_call_arguments.done", "item_id": item.item["id"],
                             "output_index": item.index, "name": item.item["name"], "arguments": arguments})
            self._close_item(out)
        elif item.kind == "custom_tool_call":
            text = _custom_input("".join(item.texts))
            item.item["input"] = text
            base = {"item_id": item.item["id"], "output_index": item.index}
            if text:
                self._emit(out, {"type": "response.custom_tool_call_input.delta", **base, "delta": text})
            self._emit(out, {"type": "response.custom_tool_call_input.done", **base, "input": text})
            self._close_item(out)
        elif item.kind == "reasoning":
            self._close_item(out)

    def _stop(self, event: ir.MessageStop, out: list[bytes]) -> None:
        if event.finish_reason is ir.FinishReason.error:
            self._fail(_model_failed(event.raw_finish_reason), out)
            return
        incomplete = _INCOMPLETE_REASON.get(event.finish_reason)
        self._close_item(out, "incomplete" if incomplete else "completed")
        self._done = True
        snapshot = self._snapshot("incomplete" if incomplete else "completed", output=self._output,
                                  usage=_usage_to_wire(event.usage), incomplete=incomplete)
        self.final = snapshot
        self._emit(out, {"type": "response.incomplete" if incomplete else "response.completed",
                         "response": snapshot})

    def _fail(self, err: ProxyError, out: list[bytes]) -> None:
        self._close_item(out, "incomplete")
        self._done = True
        code = err.code or _FAILED_CODE.get(err.kind, "server_error")
        self._emit(out, {"type": "error", "code": code, "message": err.message, "param": err.param})
        snapshot = self._snapshot("failed", output=self._output, usage=None,
                                  error={"code": code, "message": err.message})
        self._emit(out, {"type": "response.failed", "response": snapshot})


# ====================================================================
# Backend: build upstream requests
# ====================================================================


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
            if p.provider == PROTOCOL and p.signature:
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


# ====================================================================
# Backend: read upstream replies
# ====================================================================


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_from_wire(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    inp = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), dict) else {}
    out = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), dict) else {}
    return ir.Usage(input_tokens=_int(usage.get("input_tokens")), output_tokens=_int(usage.get("output_tokens")),
                    reasoning_tokens=_int(out.get("reasoning_tokens")),
                    cache_read_tokens=_int(inp.get("cached_tokens")),
                    cache_write_tokens=_int(inp.get("cache_write_tokens")))


def _malformed(what: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, f"Upstream returned a malformed Responses reply: {what}.")


# Responses `error.code` (failed responses, error events) -> error kind.
_KIND_BY_CODE = {
    "server_error": ErrorKind.api_error,
    "rate_limit_exceeded": ErrorKind.rate_limit,
    "insufficient_quota": ErrorKind.rate_limit,
    "server_is_overloaded": ErrorKind.overloaded,
    "slow_down": ErrorKind.overloaded,
    "vector_store_timeout": ErrorKind.timeout,
    "context_length_exceeded": ErrorKind.invalid_request,
    "invalid_prompt": ErrorKind.invalid_request,
    "bio_policy": ErrorKind.invalid_request,
}


def _failure(error: Any, fallback: str) -> ProxyError:
    """`{code, message, param?}` from a failed response or an error event -> ProxyError."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # the nested form seen in live traffic
    if not isinstance(error, dict):
        return ProxyError(ErrorKind.bad_gateway, fallback)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    kind = _KIND_BY_CODE.get(code or "")
    if kind is None:
        kind = ErrorKind.invalid_request if code and code.startswith(("invalid_", "image_")) else ErrorKind.api_error
    message = error.get("message") if isinstance(error.get("message"), str) and error.get("message") else fallback
    param = error.get("param") if isinstance(error.get("param"), str) else None
    return ProxyError(kind, errors.redact(message), code=code, param=param)


def _finish(status: Any, incomplete: Any, has_calls: bool) -> tuple[ir.FinishReason, str | None]:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        finish = ir.FinishReason.content_filter if reason == "content_filter" else ir.FinishReason.length
        return finish, reason or "incomplete"
    return (ir.FinishReason.tool_calls if has_calls else ir.FinishReason.stop), status


def _reasoning_text(item: dict) -> str:
    texts = [s.get("text") for s in item.get("summary") or () if isinstance(s, dict)]
    if not any(texts):
        texts = [c.get("text") for c in item.get("content") or () if isinstance(c, dict)]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t)


def _flat_call_name(item: dict) -> str:
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    return _flat_name(namespace, item.get("name") or "")


def _item_parts(item: Any) -> list[ir.Part]:
    if not isinstance(item, dict):
        return []
    kind = item.get("type")
    if kind == "message":
        parts: list[ir.Part] = []
        for c in item.get("content") or ():
            if not isinstance(c, dict):
                continue
            if c.get("type") == "output_text" and isinstance(c.get("text"), str) and c["text"].strip():
                parts.append(ir.Text(c["text"]))
            elif c.get("type") == "refusal" and isinstance(c.get("refusal"), str) and c["refusal"]:
                parts.append(ir.Refusal(c["refusal"]))
        return parts
    if kind == "function_call":
        arguments = item.get("arguments")
        return [ir.ToolCall(item.get("call_id") or item.get("id") or "", _flat_call_name(item),
                            arguments if isinstance(arguments, str) and arguments else "{}")]
    if kind == "custom_tool_call":
        text = item.get("input") if isinstance(item.get("input"), str) else ""
        return [ir.ToolCall(item.get("call_id") or item.get("id") or "", _flat_call_name(item),
                            dumps({"input": text}).decode())]
    if kind == "reasoning":
        text = _reasoning_text(item)
        encrypted = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None
        if text or encrypted:
            return [ir.Thinking(text=text, signature=encrypted, provider=PROTOCOL if encrypted else None)]
    return []  # hosted-tool calls (web_search_call, ...) have no IR form


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A non-streamed `response` object -> IR response."""
    try:
        doc = loads(body)
    except ValueError:
        raise _malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the body is not a JSON object")
    status = doc.get("status")
    if status == "failed" or (doc.get("error") is not None and doc.get("object") != "response"):
        raise _failure(doc.get("error"), "Upstream reported a failed response.")
    if status not in ("completed", "incomplete", None):
        raise _malformed(f"status {status!r} is not a finished response")
    if not isinstance(doc.get("output"), list):
        raise _malformed("no output")
    parts = [p for item in doc["output"] for p in _item_parts(item)]
    finish, raw = _finish(status, doc.get("incomplete_details"), any(isinstance(p, ir.ToolCall) for p in parts))
    return ir.Response(id=doc.get("id") or "", model=doc.get("model") or req.model, parts=tuple(parts),
                       finish_reason=finish, usage=_usage_from_wire(doc.get("usage")), raw_finish_reason=raw)


# ------------------------------------------------------------------ streams

# Events that only carry content: a passthrough relay may leave them unparsed.
_CONTENT_EVENTS = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
    "response.custom_tool_call_input.delta", "response.output_text.done", "response.content_part.added",
    "response.content_part.done", "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done", "response.function_call_arguments.done",
})


def is_content_frame(frame: Frame) -> bool:
    """An event that only carries content (by its `event:` line, which Responses always sends)."""
    return frame.event in _CONTENT_EVENTS


class _StreamItem:
    __slots__ = ("kind", "index", "call_id", "name", "started", "streamed", "blank", "summaries")

    def __init__(self, kind: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind  # message | function_call | custom_tool_call | reasoning | other
        self.index = -1  # IR part index of the open part, when started
        self.call_id = call_id
        self.name = name
        self.started = False  # an IR part is open for it
        self.streamed: list[str] = []  # call arguments / custom input received as deltas
        self.blank = ""  # whitespace not yet worth a text part
        self.summaries = 0  # reasoning summary parts seen


class StreamParser:
    """Responses stream events -> IR events.

    Items are keyed by `item_id` (delta events carry no call_id: it comes from
    `output_item.added`). One IR part is open at a time: a part that starts while
    another is open closes it first. Text parts open at their first non-blank
    delta (no empty parts); a custom tool call's input is gathered and emitted
    as the IR arguments `{"input": …}` when the item ends; reasoning becomes a
    thinking part (summary text, encrypted content as its signature).
    """

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._done = False
        self._items: dict[str, _StreamItem] = {}
        self._open: _StreamItem | None = None  # the item whose IR part is open
        self._open_kind: str | None = None  # text | refusal | tool_call | thinking
        self._next_index = 0
        self._any_call = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done:
            return []
        data = frame.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self.close()
        try:
            event = loads(data)
        except ValueError:
            if frame.event == "raw":
                return []
            return self._fail(_malformed("a stream event is not JSON"))
        if not isinstance(event, dict):
            return []
        kind = event.get("type") or frame.event
        events: list[ir.Event] = []
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event, events)
        elif kind == "error":
            return self._fail(_failure(event, "Upstream reported an error mid-stream."))
        return events

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before response.completed"))

    # ---------------------------------------------------------------- helpers

    def _start(self, event: dict, events: list[ir.Event]) -> None:
        if self._started:
            return
        self._started = True
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        events.append(ir.MessageStart(id=response.get("id") or "", model=response.get("model") or self._req.model))

    def _item(self, event: dict) -> _StreamItem | None:
        return self._items.get(event.get("item_id") or "")

    def _open_part(self, item: _StreamItem, kind: str, events: list[ir.Event], call_id: str | None = None,
                   name: str | None = None) -> None:
        self._close_open(events)
        item.index = self._next_index
        self._next_index += 1
        item.started = True
        self._open, self._open_kind = item, kind
        events.append(ir.PartStart(index=item.index, kind=kind, id=call_id, name=name))

    def _close_open(self, events: list[ir.Event]) -> None:
        if self._open is not None:
            events.append(ir.PartStop(self._open.index))
            self._open.started = False
            self._open = self._open_kind = None

    def _is_open(self, item: _StreamItem, kind: str) -> bool:
        return self._open is item and self._open_kind == kind

    # ---------------------------------------------------------------- handlers

    def _on_created(self, event: dict, events: list[ir.Event]) -> None:
        self._start(event, events)

    def _on_item_added(self, event: dict, events: list[ir.Event]) -> None:
        self._start({}, events)
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        kind = item.get("type")
        key = item.get("id") or f"#{event.get('output_index')}"
        if kind in ("function_call", "custom_tool_call"):
            state = _StreamItem(kind, item.get("call_id") or item.get("id") or "", _flat_call_name(item))
            self._items[key] = state
            self._any_call = True
            self._open_part(state, "tool_call", events, state.call_id, state.name)
        elif kind in ("message", "reasoning"):
            self._items[key] = _StreamItem(kind)
        else:
            self._items[key] = _StreamItem("other")

    def _on_text_delta(self, event: dict, events: list[ir.Event], kind: str = "text") -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind != "message" or not isinstance(delta, str) or not delta:
            return
        item.streamed.append(delta)
        if self._is_open(item, kind):
            events.append(ir.TextDelta(item.index, delta) if kind == "text" else ir.RefusalDelta(item.index, delta))
            return
        text = item.blank + delta
        if not text.strip():
            item.blank = text
            return
        item.blank = ""
        self._open_part(item, kind, events)
        events.append(ir.TextDelta(item.index, text) if kind == "text" else ir.RefusalDelta(item.index, text))

    def _on_refusal_delta(self, event: dict, events: list[ir.Event]) -> None:
        self._on_text_delta(event, events, "refusal")

    def _on_text_done(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is None or item.kind != "message":
            return
        if self._open is item:
            self._close_open(events)
        else:
            # Nothing streamed (a server that sends only .done): take the final text.
            part = event.get("part") if isinstance(event.get("part"), dict) else event
            text = part.get("text") if part.get("type", "output_text") == "output_text" else None
            refusal = part.get("refusal")
            if isinstance(text, str) and text.strip() and not item.streamed:
                self._open_part(item, "text", events)
                events.append(ir.TextDelta(item.index, text))
                self._close_open(events)
            elif isinstance(refusal, str) and refusal and not item.streamed:
                self._open_part(item, "refusal", events)
                events.append(ir.RefusalDelta(item.index, refusal))
                self._close_open(events)
        item.blank = ""
        item.streamed = ["done"]  # this content part is finished; a later part starts afresh

    def _on_part_added(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "message":
            item.streamed = []

    def _on_arguments_delta(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind not in ("function_call", "custom_tool_call") or not isinstance(delta, str):
            return
        item.streamed.append(delta)
        if item.kind == "function_call" and self._is_open(item, "tool_call") and delta:
            events.append(ir.ToolArgumentsDelta(item.index, delta))

    def _on_summary_part(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "reasoning":
            item.summaries += 1

    def _on_thinking_delta(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind != "reasoning" or not isinstance(delta, str) or not delta:
            return
        if not self._is_open(item, "thinking"):
            self._open_part(item, "thinking", events)
        elif item.summaries > 1 and not item.streamed:
            events.append(ir.ThinkingDelta(item.index, "\n\n"))  # between summary parts
        item.streamed.append(delta)
        events.append(ir.ThinkingDelta(item.index, delta))

    def _on_summary_done(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "reasoning":
            item.streamed = []  # the next summary part gets a separator

    def _on_item_done(self, event: dict, events: list[ir.Event]) -> None:
        done = event.get("item") if isinstance(event.get("item"), dict) else {}
        item = self._items.get(done.get("id") or f"#{event.get('output_index')}")
        if item is None:
            return
        if item.kind == "function_call":
            if self._is_open(item, "tool_call") and not "".join(item.streamed):
                arguments = done.get("arguments")
                if isinstance(arguments, str) and arguments:
                    events.append(ir.ToolArgumentsDelta(item.index, arguments))
        elif item.kind == "custom_tool_call":
            if self._is_open(item, "tool_call"):
                text = "".join(item.streamed) or (done.get("input") if isinstance(done.get("input"), str) else "")
                events.append(ir.ToolArgumentsDelta(item.index, dumps({"input": text}).decode()))
        elif item.kind == "reasoning":
            encrypted = done.get("encrypted_content")
            if not self._is_open(item, "thinking"):
                text = _reasoning_text(done)
                if not text and not isinstance(encrypted, str):
                    return
                self._open_part(item, "thinking", events)
                if text:
                    events.append(ir.ThinkingDelta(item.index, text))
            if isinstance(encrypted, str) and encrypted:
                events.append(ir.SignatureDelta(item.index, encrypted, PROTOCOL))
        elif item.kind == "message" and self._open is not item and not item.streamed:
            for part in _item_parts(done):  # nothing streamed for this message
                kind = "text" if isinstance(part, ir.Text) else "refusal"
                self._open_part(item, kind, events)
                events.append(ir.TextDelta(item.index, part.text) if kind == "text"
                              else ir.RefusalDelta(item.index, part.text))
        if self._open is item:
            self._close_open(events)

    def _on_terminal(self, event: dict, events: list[ir.Event]) -> None:
        self._start(event, events)
        self._close_open(events)
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        if event.get("type") == "response.failed":
            self._done = True
            events.append(ir.StreamError(_failure(response.get("error"), "Upstream reported a failed response.")))
            return
        status = "incomplete" if event.get("type") == "response.incomplete" else "completed"
        finish, raw = _finish(status, response.get("incomplete_details"), self._any_call)
        events.append(ir.MessageStop(finish_reason=finish, usage=_usage_from_wire(response.get("usage")),
                                     raw_finish_reason=raw))
        self._done = True

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(err)]


_HANDLERS = {
    "response.created": StreamParser._on_created,
    "response.in_progress": StreamParser._on_created,
    "response.queued": StreamParser._on_created,
    "response.output_item.added": StreamParser._on_item_added,
    "response.content_part.added": StreamParser._on_part_added,
    "response.output_text.delta": StreamParser._on_text_delta,
    "response.refusal.delta": StreamParser._on_refusal_delta,
    "response.content_part.done": StreamParser._on_text_done,
    "response.function_call_arguments.delta": StreamParser._on_arguments_delta,
    "response.custom_tool_call_input.delta": StreamParser._on_arguments_delta,
    "response.reasoning_summary_part.added": StreamParser._on_summary_part,
    "response.reasoning_summary_text.delta": StreamParser._on_thinking_delta,
    "response.reasoning_text.delta": StreamParser._on_thinking_delta,
    "response.reasoning_summary_part.done": StreamParser._on_summary_done,
    "response.output_item.done": StreamParser._on_item_done,
    "response.completed": StreamParser._on_terminal,
    "response.incomplete": StreamParser._on_terminal,
    "response.failed": StreamParser._on_terminal,
}
