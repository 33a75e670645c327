"""Frontend: a Responses request body validated and parsed into the IR, and a stored conversation continued."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from app import errors, ir
from app.jsonutil import dumps
# OpenAI's field checks, effort names and tool-name rule, the same on both of its APIs: kept in Chat once.
from app.protocols.openai_chat.request import _EFFORTS, _optional, _optional_number, _TOOL_NAME
from app.protocols.openai_responses.common import PROTOCOL, _flat_name


_SUMMARIES = ("auto", "concise", "detailed")
_VERBOSITY = ("low", "medium", "high")
# Chat Completions fields a Responses request must not carry (the real API refuses them).
_CHAT_ONLY = {"messages": "input", "max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
              "stop": None, "n": None, "response_format": "text.format", "functions": "tools"}
_DROPPABLE_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                    "tool_search")
_HOSTED_TOOLS = _DROPPABLE_TOOLS + ("file_search", "code_interpreter", "image_generation", "computer_use_preview",
                                    "computer", "mcp", "local_shell", "shell", "apply_patch")
_USER_PARTS = ("input_text", "input_image", "input_file")
_ASSISTANT_PARTS = ("output_text", "refusal")


def custom_input_schema(fmt: Mapping[str, Any] | None) -> dict:
    """The one-string-argument schema a custom tool gets on targets without custom tools.
    A grammar is given to the model in the argument's description (it is the tool's syntax)."""
    description = "The tool's raw free-form input, exactly as the tool expects it (not JSON)."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        description += f" It must follow this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
    return {"type": "object", "properties": {"input": {"type": "string", "description": description}},
            "required": ["input"], "additionalProperties": False}


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


def _optional_int(obj: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = _optional(obj, key, int, "an integer")
    if value is not None and value < minimum:
        raise errors.invalid(f"'{key}' must be at least {minimum}; got {value}.", key)
    return value


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
    return ir.Thinking(text=text, signature=encrypted, origin=PROTOCOL if encrypted else None)
