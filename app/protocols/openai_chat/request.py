"""Frontend: a Chat Completions request body validated and parsed into the IR."""
from __future__ import annotations

import re
from typing import Any, Mapping

from app import errors, ir
from app.logfields import log_field
from app.model_ids import check_model_id
from app.protocols.openai_chat.common import PROTOCOL


_ROLES = ("system", "developer", "user", "assistant", "tool")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPAQUE_PARTS = ("input_audio", "file")  # user content parts with no IR form


def parse_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ir.Request:
    """Validate an OpenAI Chat request body and turn it into the IR."""
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    model = model if model is not None else body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise errors.invalid("'model' is required and must be a non-empty string.", "model")
    check_model_id(model)
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise errors.invalid(f"'{legacy}' is deprecated and not supported; use 'tools' / 'tool_choice'.", legacy)

    body_stream = _optional(body, "stream", bool, "a boolean")
    stream_options = _optional(body, "stream_options", dict, "an object")
    if stream_options is not None and not body_stream:
        raise errors.invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                             "stream_options")
    include_usage = False
    if stream_options is not None:
        include_usage = bool(_optional(stream_options, "include_usage", bool, "a boolean",
                                       param="stream_options.include_usage"))

    messages = _parse_messages(body.get("messages"))
    tools = _parse_tools(body.get("tools"))
    tools, tool_choice = _parse_tool_choice(body.get("tool_choice"), tools)

    max_tokens = _optional_int(body, "max_completion_tokens", minimum=1)
    legacy_max_tokens = _optional_int(body, "max_tokens", minimum=1)  # checked even when the newer one wins
    if max_tokens is None:
        max_tokens = legacy_max_tokens
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise errors.invalid(f"'reasoning_effort' must be one of {', '.join(_EFFORTS)}.", "reasoning_effort")

    return ir.Request(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=bool(body_stream) if stream is None else stream,
        include_usage=include_usage,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool, "a boolean"),
        max_tokens=max_tokens,
        temperature=_optional_number(body, "temperature", 0, 2),
        top_p=_optional_number(body, "top_p", 0, 1),
        stop=_parse_stop(body.get("stop")),
        seed=_optional_int(body, "seed", minimum=_INT64[0], maximum=_INT64[1]),
        n=_optional_int(body, "n", minimum=1, maximum=128) or 1,
        reasoning=ir.Reasoning(effort=effort) if effort is not None else None,
        response_format=_parse_response_format(body.get("response_format")),
        user=_optional(body, "user", str, "a string"),
        raw=body,
    )


# ---------------------------------------------------------- field checks


def _optional(obj: Mapping[str, Any], key: str, kind: type, what: str, *, param: str | None = None) -> Any:
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise errors.invalid(f"'{param or key}' must be {what}.", param or key)
    return value


_INT32_MAX = 2**31 - 1  # above any real token count or n; what other backends' int fields take
_INT64 = (-2**63, 2**63 - 1)  # seed


def _optional_int(obj: Mapping[str, Any], key: str, *, minimum: int = -_INT32_MAX - 1,
                  maximum: int = _INT32_MAX) -> int | None:
    value = _optional(obj, key, int, "an integer")
    if value is None:
        return None
    if not minimum <= value <= maximum:
        raise errors.invalid(f"'{key}' must be between {minimum} and {maximum}; got {value}.", key)
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


def _parse_stop(value: Any) -> tuple[str, ...]:
    # The 4-sequence limit is OpenAI's: it is enforced in build_request, where
    # OpenAI is the target, not here (another target may accept more).
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise errors.invalid("'stop' must be a string or an array of strings.", "stop")


def _parse_response_format(value: Any) -> ir.ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid("'response_format' must be an object.", "response_format")
    kind = value.get("type")
    if kind in ("text", "json_object"):
        return ir.ResponseFormat(type=kind)
    if kind != "json_schema":
        raise errors.invalid("'response_format.type' must be one of text, json_object, json_schema.",
                             "response_format.type")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise errors.invalid("'response_format.json_schema' must be an object.", "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise errors.invalid("'response_format.json_schema.name' must match ^[a-zA-Z0-9_-]{1,64}$.",
                             "response_format.json_schema.name")
    schema = _optional(spec, "schema", dict, "an object", param="response_format.json_schema.schema")
    strict = _optional(spec, "strict", bool, "a boolean", param="response_format.json_schema.strict")
    return ir.ResponseFormat(type="json_schema", schema=schema, name=name, strict=strict)


# ------------------------------------------------------------- messages


def _parse_messages(value: Any) -> tuple[ir.Message, ...]:
    if not isinstance(value, list) or not value:
        raise errors.invalid("'messages' is required and must be a non-empty array.", "messages")
    out: list[ir.Message] = []
    names_by_id: dict[str, str] = {}  # tool-call id -> name, from earlier assistant turns
    unanswered: dict[str, int] = {}  # call id -> index of the assistant message that made it
    for i, raw in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(raw, dict):
            raise errors.invalid(f"'{where}' must be an object.", where)
        role = raw.get("role")
        if role not in _ROLES:
            raise errors.invalid(f"'{where}.role' must be one of {', '.join(_ROLES)}; got {role!r}.",
                                 f"{where}.role")
        if role != "tool" and unanswered:
            _raise_unanswered(unanswered)
        name = _optional(raw, "name", str, "a string", param=f"{where}.name")
        if role == "tool":
            result = _parse_tool_message(raw, where, names_by_id)
            unanswered.pop(result.call_id, None)
            _append_tool_result(out, result)
            continue
        if role == "assistant":
            parts = _parse_assistant(raw, where)
            for p in parts:
                if isinstance(p, ir.ToolCall):
                    names_by_id[p.id] = p.name
                    unanswered[p.id] = i
                elif isinstance(p, ir.Opaque):  # a custom tool call: its result pairs by id too
                    names_by_id[p.data["id"]] = p.data["custom"]["name"]
                    unanswered[p.data["id"]] = i
        elif role == "user":
            parts = _parse_content(raw, where, allowed=("text", "image_url") + _OPAQUE_PARTS)
        else:
            parts = _parse_content(raw, where, allowed=("text",))
        if parts:  # turns that end up empty are dropped (hazard 11)
            out.append(ir.Message(role, tuple(parts), name))
    if unanswered:
        _raise_unanswered(unanswered)
    return tuple(out)


def _raise_unanswered(unanswered: dict[str, int]) -> None:
    index = min(unanswered.values())
    ids = ", ".join(cid for cid, i in unanswered.items() if i == index)
    raise errors.invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {ids}",
        f"messages[{index}].tool_calls")


def _append_tool_result(out: list[ir.Message], result: ir.ToolResult) -> None:
    # Consecutive tool messages answer one assistant turn: keep them together.
    if out and out[-1].role == "tool":
        out[-1] = ir.Message("tool", out[-1].parts + (result,))
    else:
        out.append(ir.Message("tool", (result,)))


def _parse_tool_message(raw: dict, where: str, names_by_id: dict[str, str]) -> ir.ToolResult:
    call_id = raw.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise errors.invalid(f"'{where}.tool_call_id' is required and must be a string.", f"{where}.tool_call_id")
    if call_id not in names_by_id:
        raise errors.invalid(f"'{where}.tool_call_id' {call_id!r} does not answer a tool call of an earlier "
                             "assistant message.", f"{where}.tool_call_id")
    content = tuple(_parse_content(raw, where, allowed=("text",)))
    return ir.ToolResult(call_id=call_id, content=content, name=names_by_id[call_id])


def _parse_assistant(raw: dict, where: str) -> list[ir.Part]:
    tool_calls = raw.get("tool_calls")
    if "content" not in raw and not tool_calls and raw.get("refusal") is None:
        raise errors.invalid(f"'{where}.content' is required unless 'tool_calls' is specified.", f"{where}.content")
    parts = _parse_content(raw, where, allowed=("text", "refusal"))
    refusal = _optional(raw, "refusal", str, "a string", param=f"{where}.refusal")
    if refusal:
        parts.append(ir.Refusal(refusal))
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise errors.invalid(f"'{where}.tool_calls' must be an array.", f"{where}.tool_calls")
        parts.extend(_parse_tool_call(tc, f"{where}.tool_calls[{j}]") for j, tc in enumerate(tool_calls))
    return parts


def _parse_tool_call(tc: Any, where: str) -> ir.ToolCall | ir.Opaque:
    if not isinstance(tc, dict):
        raise errors.invalid(f"'{where}' must be an object.", where)
    if tc.get("type") not in ("function", "custom"):
        raise errors.invalid(f"'{where}.type' must be 'function' or 'custom'.", f"{where}.type")
    call_id = tc.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise errors.invalid(f"'{where}.id' is required and must be a string.", f"{where}.id")
    if tc["type"] == "custom":
        custom = tc.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("name"), str) or not custom["name"]:
            raise errors.invalid(f"'{where}.custom.name' is required and must be a string.", f"{where}.custom.name")
        if not isinstance(custom.get("input"), str):
            raise errors.invalid(f"'{where}.custom.input' must be a string.", f"{where}.custom.input")
        return ir.Opaque(PROTOCOL, "custom tool call", tc, where)
    fn = tc.get("function")
    if not isinstance(fn, dict):
        raise errors.invalid(f"'{where}.function' must be an object.", f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise errors.invalid(f"'{where}.function.name' is required and must be a string.", f"{where}.function.name")
    arguments = fn.get("arguments")
    if not isinstance(arguments, str):
        raise errors.invalid(f"'{where}.function.arguments' must be a string of JSON.", f"{where}.function.arguments")
    return ir.ToolCall(id=call_id, name=name, arguments=arguments)


def _parse_content(raw: dict, where: str, *, allowed: tuple[str, ...]) -> list[ir.Part]:
    content = raw.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [ir.Text(content)] if content.strip() else []
    if not isinstance(content, list):
        raise errors.invalid(f"'{where}.content' must be a string or an array of content parts.",
                             f"{where}.content")
    parts: list[ir.Part] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise errors.invalid(f"'{here}.type' must be one of {', '.join(allowed)} for a "
                                 f"{raw.get('role')} message; got {kind!r}.", f"{here}.type")
        if kind == "image_url":
            parts.append(_parse_image(part.get("image_url"), here))
            continue
        if kind in _OPAQUE_PARTS:
            parts.append(ir.Opaque(PROTOCOL, f"{kind} part", part, here))
            continue
        text = part.get(kind)  # {"type":"text","text":…} / {"type":"refusal","refusal":…}
        if not isinstance(text, str):
            raise errors.invalid(f"'{here}.{kind}' must be a string.", f"{here}.{kind}")
        if text.strip():
            parts.append(ir.Text(text) if kind == "text" else ir.Refusal(text))
    return parts


def _parse_image(spec: Any, where: str) -> ir.Image:
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise errors.invalid(f"'{where}.image_url.url' is required and must be a string.", f"{where}.image_url.url")
    detail = _optional(spec, "detail", str, "a string", param=f"{where}.image_url.detail")
    url = spec["url"]
    if url.startswith("data:"):
        media_type, data = _split_data_url(url, f"{where}.image_url.url")
        return ir.Image(data=data, media_type=media_type, detail=detail)
    if url.startswith(("http://", "https://")):
        return ir.Image(url=url, detail=detail)
    raise errors.invalid(f"'{where}.image_url.url' must be an http(s) URL or a base64 data URL.",
                         f"{where}.image_url.url")


def _split_data_url(url: str, param: str) -> tuple[str, str]:
    """`data:image/png;base64,AAA` -> ("image/png", "AAA")."""
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64") or not data:
        raise errors.invalid(f"'{param}' must be a base64 data URL (data:<media type>;base64,<data>).", param)
    media_type = header[len("data:"):].split(";", 1)[0] or "application/octet-stream"
    return media_type, data


# ---------------------------------------------------------------- tools


def _parse_tools(value: Any) -> tuple[ir.Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise errors.invalid("'tools' must be an array.", "tools")
    return tuple(_parse_tool(t, f"tools[{i}]") for i, t in enumerate(value))


def _parse_tool(tool: Any, where: str) -> ir.Tool:
    if not isinstance(tool, dict):
        raise errors.invalid(f"'{where}' must be an object.", where)
    if tool.get("type") == "custom":  # free-form input: no IR form, kept as sent
        custom = tool.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("name"), str) \
                or not _TOOL_NAME.match(custom["name"]):
            raise errors.invalid(f"'{where}.custom.name' must match ^[a-zA-Z0-9_-]{{1,64}}$.", f"{where}.custom.name")
        return ir.Tool(name=custom["name"], native=ir.Opaque(PROTOCOL, "custom tool", tool, where))
    if tool.get("type") != "function":
        raise errors.invalid(f"'{where}.type' must be 'function' or 'custom'.", f"{where}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise errors.invalid(f"'{where}.function' must be an object.", f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise errors.invalid(f"'{where}.function.name' must match ^[a-zA-Z0-9_-]{{1,64}}$.",
                             f"{where}.function.name")
    return ir.Tool(
        name=name,
        description=_optional(fn, "description", str, "a string", param=f"{where}.function.description"),
        parameters=_optional(fn, "parameters", dict, "an object", param=f"{where}.function.parameters"),
        strict=_optional(fn, "strict", bool, "a boolean", param=f"{where}.function.strict"),
    )


def _parse_tool_choice(value: Any, tools: tuple[ir.Tool, ...]) -> tuple[tuple[ir.Tool, ...], ir.ToolChoice | None]:
    """Returns the (possibly narrowed) tools and the choice. `allowed_tools` has
    no IR form: it becomes the subset of tools plus auto/required."""
    if value is None:
        return tools, None
    names = {t.name for t in tools}
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise errors.invalid("'tool_choice' is 'required' but no 'tools' are specified.", "tool_choice")
        return tools, ir.ToolChoice(mode=value)
    if not isinstance(value, dict):
        raise errors.invalid("'tool_choice' must be 'auto', 'none', 'required' or an object.", "tool_choice")
    kind = value.get("type")
    if kind == "function":
        name = (value.get("function") or {}).get("name") if isinstance(value.get("function"), dict) else None
        if not isinstance(name, str) or name not in names:
            raise errors.invalid(f"'tool_choice.function.name' {log_field(name)} is not one of the specified tools.",
                                 "tool_choice.function.name")
        return tools, ir.ToolChoice(mode="tool", name=name)
    if kind == "allowed_tools":
        return _parse_allowed_tools(value.get("allowed_tools"), tools)
    raise errors.invalid("'tool_choice.type' must be 'function' or 'allowed_tools'.", "tool_choice.type")


def _parse_allowed_tools(spec: Any, tools: tuple[ir.Tool, ...]) -> tuple[tuple[ir.Tool, ...], ir.ToolChoice]:
    if not isinstance(spec, dict) or spec.get("mode") not in ("auto", "required") \
            or not isinstance(spec.get("tools"), list):
        raise errors.invalid("'tool_choice.allowed_tools' must have a mode (auto|required) and a tools array.",
                             "tool_choice.allowed_tools")
    allowed = set()
    for j, ref in enumerate(spec["tools"]):
        fn = ref.get("function") if isinstance(ref, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in {t.name for t in tools}:
            raise errors.invalid(f"'tool_choice.allowed_tools.tools[{j}]' does not name a specified function tool.",
                                 f"tool_choice.allowed_tools.tools[{j}]")
        allowed.add(name)
    return tuple(t for t in tools if t.name in allowed), ir.ToolChoice(mode=spec["mode"])
