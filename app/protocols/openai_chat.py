"""OpenAI Chat Completions (`POST /v1/chat/completions`), both directions.

Frontend: clients speaking OpenAI Chat are parsed into the IR and answered in
`chat.completion` / `chat.completion.chunk` form. Backend: the IR is sent to
an OpenAI-compatible provider and its replies, streams and errors are read
back into the IR.

Policy choices (each one a deliberate answer to a known conversion hazard):
- Requests are validated as strictly as OpenAI does, so a client gets a 400
  naming the field from us instead of an odd error from another provider.
  Unknown tool-call ids in `tool` messages and unanswered assistant tool calls
  are rejected (results cannot be paired otherwise).
- Tool-call `arguments` stay the raw string both ways (byte-exact round trips).
- Reasoning text goes to clients only as the non-standard `reasoning_content`
  field, and only when the client asked for reasoning (`reasoning_effort`).
- A turn the model failed (`FinishReason.error`) is never reported as a clean
  stop: `format_response` raises a bad_gateway ProxyError and the stream
  formatter ends with an in-stream error.
- Upstream streams always request usage; clients get the usage chunk only when
  they asked for it (strict clients index `choices[0]`).
- The stream parser keeps a tool call open from its first fragment to the
  finish chunk, and holds back whatever arrives meanwhile (further calls,
  text) until then: OpenAI does not forbid interleaved tool fragments, and a
  closed IR part cannot be reopened. Calls are emitted in arrival order.
- Tool-call ids longer than OpenAI's 40 characters are replaced by a
  deterministic hash (same for the call and its result), so the stateless
  proxy maps every turn of a history the same way.
- What OpenAI defines but the IR cannot model (user `input_audio` / `file`
  parts, `custom` tools and their calls in history) is kept as `ir.Opaque` in
  place: re-sent unchanged to an OpenAI backend, refused with a 400 naming the
  client's field by any other.
- Another protocol's request fields with no IR meaning (`ir.Extra`: Anthropic
  context_management, cache_control, mcp_servers) are dropped when they only
  tune serving and refused with a 400 naming the field when they change the
  answer (base.extras_to_send, the same rule for every backend).
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any, Iterable, Mapping

from app import errors, ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.logfields import log_field
from app.model_ids import check_model_id
from app.protocols.base import extras_to_send, ModelInfo, opaque_out, Target
from app.upstream.framing import Frame, encode_sse

PROTOCOL = "openai"  # the registry name (app/protocols/__init__.py MODULES)
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
# A data URL needs a media type; OpenAI sniffs the bytes itself, so a generic one is honest.
_UNKNOWN_IMAGE = "application/octet-stream"
RESPONSE_MODEL_FIELD = "model"

_ROLES = ("system", "developer", "user", "assistant", "tool")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_STOP = 4
_MAX_CALL_ID = 40  # OpenAI rejects longer tool-call ids
_OPAQUE_PARTS = ("input_audio", "file")  # user content parts with no IR form

_FINISH_TO_WIRE = {
    ir.FinishReason.stop: "stop",
    ir.FinishReason.length: "length",
    ir.FinishReason.tool_calls: "tool_calls",
    ir.FinishReason.content_filter: "content_filter",
}
_FINISH_FROM_WIRE = {
    "stop": ir.FinishReason.stop,
    "length": ir.FinishReason.length,
    "tool_calls": ir.FinishReason.tool_calls,
    "function_call": ir.FinishReason.tool_calls,
    "content_filter": ir.FinishReason.content_filter,
    "error": ir.FinishReason.error,  # OpenRouter: the upstream model failed mid-turn
}


KEEPALIVE_COMMENT = b": keep-alive\n\n"


def _now() -> int:
    return int(time.time())


# ====================================================================
# Frontend: parse a client's request
# ====================================================================


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


# ====================================================================
# Frontend: render replies
# ====================================================================


def _completion_id(upstream_id: str | None) -> str:
    if upstream_id and upstream_id.startswith("chatcmpl-"):
        return upstream_id
    return "chatcmpl-" + (upstream_id or uuid.uuid4().hex)


def _usage_to_wire(usage: ir.Usage) -> dict:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _model_failed(raw_reason: str | None) -> ProxyError:
    detail = f" ({raw_reason})" if raw_reason else ""
    return ProxyError(ErrorKind.bad_gateway, f"The model failed to produce a valid response{detail}.",
                      code="model_error")


def _wire_tool_call(call: ir.ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def format_response(resp: ir.Response, req: ir.Request) -> dict:
    """A `chat.completion` object for one IR response. Raises ProxyError when the model failed."""
    if resp.finish_reason is ir.FinishReason.error:
        raise _model_failed(resp.raw_finish_reason)
    texts = [p.text for p in resp.parts if isinstance(p, ir.Text)]
    refusals = [p.text for p in resp.parts if isinstance(p, ir.Refusal)]
    calls = [_wire_tool_call(p) for p in resp.parts if isinstance(p, ir.ToolCall)]
    # content is null for a pure tool-call or refusal turn, as OpenAI sends it;
    # "" for an empty completion, which naive clients handle better than null.
    content = "".join(texts) if texts else (None if calls or refusals else "")
    message: dict[str, Any] = {"role": "assistant", "content": content,
                               "refusal": "".join(refusals) if refusals else None}
    if calls:
        message["tool_calls"] = calls
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ir.Thinking))
    if req.reasoning is not None and thinking:
        message["reasoning_content"] = thinking
    return {
        "id": _completion_id(resp.id),
        "object": "chat.completion",
        "created": _now(),
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH_TO_WIRE[resp.finish_reason]}],
        "usage": _usage_to_wire(resp.usage),
    }


class StreamFormatter:
    """IR events -> `chat.completion.chunk` SSE bytes for one client stream.

    Wire option `created` fixes the timestamp (tests); others are ignored.
    """

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._created = wire_options.get("created") or _now()
        self._head: bytes | None = None  # serialized id/object/created/model, shared by every chunk
        self._role_sent = False
        self._done = False
        self._tool_ordinal: dict[int, int] = {}  # IR part index -> OpenAI tool_calls[].index

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, ir.MessageStart):
            self._start(event.id, event.model)
            return b""
        if isinstance(event, ir.PartStart):
            return self._part_start(event)
        if isinstance(event, ir.TextDelta):
            return self._delta({"content": event.text}) if event.text else b""
        if isinstance(event, ir.ToolArgumentsDelta):
            if not event.json or event.index not in self._tool_ordinal:
                return b""
            k = self._tool_ordinal[event.index]
            return self._delta({"tool_calls": [{"index": k, "function": {"arguments": event.json}}]})
        if isinstance(event, ir.ThinkingDelta):
            if self._req.reasoning is None or not event.text:
                return b""
            return self._delta({"reasoning_content": event.text})
        if isinstance(event, ir.RefusalDelta):
            return self._delta({"refusal": event.text}) if event.text else b""
        if isinstance(event, ir.MessageStop):
            return self._stop(event)
        if isinstance(event, ir.StreamError):
            self._done = True
            return encode_sse(_error_body(event.error))
        return b""  # PartStop, SignatureDelta: OpenAI Chat has no slot for them

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough of one upstream frame (`[DONE]` included), except a
        chunk that carries nothing a Chat client reads (`annotation_only`)."""
        if _EMPTY_CHOICES in frame.data and annotation_only(frame.data):
            return b""
        if "\n" not in frame.data:
            return b"data: " + frame.data.encode() + b"\n\n"
        lines = frame.data.split("\n")
        return b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"

    def finish(self) -> bytes:
        return b""  # [DONE] comes from MessageStop; after an error nothing follows

    def keepalive(self) -> bytes:
        return KEEPALIVE_COMMENT  # SSE readers skip comment lines

    # -------------------------------------------------------------- internals

    def _start(self, upstream_id: str | None, model: str | None) -> None:
        self._head = (b'{"id":' + dumps(_completion_id(upstream_id)) + b',"object":"chat.completion.chunk"'
                      + b',"created":' + str(int(self._created)).encode()
                      + b',"model":' + dumps(model or self._req.model) + b",")

    def _chunk(self, choices: list, usage: dict | None = None) -> bytes:
        if self._head is None:
            self._start(None, None)
        tail = b',"usage":' + dumps(usage) if usage is not None else b""
        return encode_sse(self._head + b'"choices":' + dumps(choices) + tail + b"}")

    def _delta(self, delta: dict) -> bytes:
        return self._role_chunk("text") + self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])

    def _role_chunk(self, first_kind: str) -> bytes:
        # OpenAI's first chunk: content "" before text, null before tool calls/refusals.
        if self._role_sent:
            return b""
        self._role_sent = True
        content = None if first_kind in ("tool_call", "refusal") else ""
        return self._chunk([{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}])

    def _part_start(self, event: ir.PartStart) -> bytes:
        out = self._role_chunk(event.kind)
        if event.kind != "tool_call":
            return out
        k = len(self._tool_ordinal)
        self._tool_ordinal[event.index] = k
        opening = {"index": k, "id": event.id, "type": "function",
                   "function": {"name": event.name, "arguments": ""}}
        return out + self._chunk([{"index": 0, "delta": {"tool_calls": [opening]}, "finish_reason": None}])

    def _stop(self, event: ir.MessageStop) -> bytes:
        self._done = True
        if event.finish_reason is ir.FinishReason.error:
            return encode_sse(_error_body(_model_failed(event.raw_finish_reason)))
        out = [self._role_chunk("text"),
               self._chunk([{"index": 0, "delta": {}, "finish_reason": _FINISH_TO_WIRE[event.finish_reason]}])]
        if self._req.include_usage:
            out.append(self._chunk([], _usage_to_wire(event.usage)))
        out.append(encode_sse("[DONE]"))
        return b"".join(out)


# ------------------------------------------------------------------ errors

# kind -> (type, default code). OpenAI's own quirks: a bad key is an
# invalid_request_error with code invalid_api_key; rate limits have type "requests".
_ERROR_WIRE = {
    ErrorKind.invalid_request: ("invalid_request_error", None),
    ErrorKind.authentication: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.permission: ("request_forbidden", None),
    ErrorKind.not_found: ("invalid_request_error", None),
    ErrorKind.request_too_large: ("invalid_request_error", "request_too_large"),
    ErrorKind.rate_limit: ("requests", "rate_limit_exceeded"),
    ErrorKind.api_error: ("server_error", None),
    ErrorKind.bad_gateway: ("server_error", None),
    ErrorKind.overloaded: ("service_unavailable_error", None),
    ErrorKind.timeout: ("timeout_error", None),
    ErrorKind.configuration: ("configuration_error", "configuration_error"),
}


def _error_body(err: ProxyError) -> bytes:
    err_type, default_code = _ERROR_WIRE[err.kind]
    if err.code == "insufficient_quota":
        err_type = "insufficient_quota"  # OpenAI's quota errors carry it as the type too
    return dumps({"error": {"message": err.message, "type": err_type, "param": err.param,
                            "code": err.code or default_code}})


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """OpenAI error envelope. Overload is 503 whatever the upstream said (529 means nothing here)."""
    status = 503 if err.kind is ErrorKind.overloaded else err.status
    headers = {"Content-Type": "application/json"}
    if err.retry_after:
        headers["Retry-After"] = str(err.retry_after)
    return status, headers, _error_body(err)


def format_models(models: list[ModelInfo]) -> dict:
    return {"object": "list",
            "data": [{"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by} for m in models]}


# ====================================================================
# Backend: build upstream requests
# ====================================================================


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


# ====================================================================
# Backend: read upstream replies
# ====================================================================


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_from_wire(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return ir.Usage(
        input_tokens=_int(usage.get("prompt_tokens")),  # cached tokens are already included
        output_tokens=_int(usage.get("completion_tokens")),  # reasoning tokens are already included
        reasoning_tokens=_int(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
        cache_read_tokens=_int(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        cache_write_tokens=_int(prompt.get("cache_write_tokens")) if isinstance(prompt, dict) else 0,
    )


def _finish_from_wire(raw: Any, has_tool_calls: bool) -> ir.FinishReason:
    finish = _FINISH_FROM_WIRE.get(raw, ir.FinishReason.stop)
    # Some OpenAI-compatible servers say "stop" for a tool-call turn (known bug #7).
    if has_tool_calls and finish is ir.FinishReason.stop:
        return ir.FinishReason.tool_calls
    return finish


def _synthetic_call_id(*seed: Any) -> str:
    return "call_" + hashlib.sha256(":".join(map(str, seed)).encode()).hexdigest()[:24]


def _arguments_text(value: Any) -> str:
    """Arguments as the raw string; a few compatible servers send an object."""
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()


def _reasoning_text(obj: Mapping[str, Any]) -> str:
    # Non-standard but common (DeepSeek, vLLM: reasoning_content; OpenRouter: reasoning).
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


# OpenRouter's reasoning_details item type -> (IR part kind, the field holding its content).
_REASONING_DETAILS = {"reasoning.text": ("thinking", "text"), "reasoning.summary": ("thinking", "summary"),
                      "reasoning.encrypted": ("redacted_thinking", "data")}


def _reasoning_pieces(obj: Mapping[str, Any]) -> list[tuple[str, str]] | tuple[()]:
    """A message's or delta's reasoning as ("thinking", text) / ("redacted_thinking", data)
    pieces. OpenRouter's structured `reasoning_details` (reasoning.text, .summary,
    .encrypted) when present, since its `reasoning` string repeats the same text;
    otherwise the plain `reasoning_content` / `reasoning` string."""
    details = obj.get("reasoning_details")
    if not isinstance(details, list) or not details:
        text = _reasoning_text(obj)
        return [("thinking", text)] if text else ()
    pieces: list[tuple[str, str]] = []
    for item in details:
        known = _REASONING_DETAILS.get(item.get("type")) if isinstance(item, dict) else None
        if known is not None:
            value = item.get(known[1])
            if isinstance(value, str) and value:
                pieces.append((known[0], value))
    return pieces


def _malformed(what: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, f"Upstream returned a malformed chat completion: {what}.")


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A non-streamed `chat.completion` body -> IR response (choice 0)."""
    try:
        doc = loads(body)
    except ValueError:
        raise _malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the body is not a JSON object")
    if doc.get("error") is not None:
        raise _error_from_envelope(doc, None)
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed("no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _malformed("choices[0].message is missing")
    parts = _message_parts(message, doc.get("id"))
    has_calls = any(isinstance(p, ir.ToolCall) for p in parts)
    raw_finish = choices[0].get("finish_reason")
    return ir.Response(
        id=doc.get("id") or "",
        model=doc.get("model") or req.model,
        parts=tuple(parts),
        finish_reason=_finish_from_wire(raw_finish, has_calls),
        usage=_usage_from_wire(doc.get("usage")),
        raw_finish_reason=raw_finish,
    )


def _message_parts(message: dict, response_id: Any) -> list[ir.Part]:
    parts: list[ir.Part] = []
    thinking: list[str] = []
    for kind, value in _reasoning_pieces(message):
        if kind == "thinking":
            thinking.append(value)
            continue
        if thinking:
            parts.append(ir.Thinking("".join(thinking)))
            thinking = []
        parts.append(ir.Thinking(redacted=value, provider=PROTOCOL))
    if thinking:
        parts.append(ir.Thinking("".join(thinking)))
    content = message.get("content")
    if isinstance(content, list):  # a few servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str) and content.strip():
        parts.append(ir.Text(content))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(ir.Refusal(refusal))
    for k, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise _malformed(f"tool_calls[{k}] has no function")
        fn = call["function"]
        parts.append(ir.ToolCall(id=call.get("id") or _synthetic_call_id(response_id, k),
                                 name=fn.get("name") or "",
                                 arguments=_arguments_text(fn.get("arguments"))))
    return parts


# ------------------------------------------------------------------ errors

_KIND_BY_CODE = {
    "invalid_api_key": ErrorKind.authentication,
    "model_not_found": ErrorKind.not_found,
    "insufficient_quota": ErrorKind.rate_limit,
    "rate_limit_exceeded": ErrorKind.rate_limit,
    "context_length_exceeded": ErrorKind.invalid_request,
    "server_is_overloaded": ErrorKind.overloaded,
}
# Only used when there is no HTTP status to go by (an error inside a 200 stream).
_KIND_BY_TYPE = {
    "invalid_request_error": ErrorKind.invalid_request,
    "authentication_error": ErrorKind.authentication,
    "permission_error": ErrorKind.permission,
    "request_forbidden": ErrorKind.permission,
    "not_found_error": ErrorKind.not_found,
    "requests": ErrorKind.rate_limit,
    "tokens": ErrorKind.rate_limit,
    "insufficient_quota": ErrorKind.rate_limit,
    "rate_limit_error": ErrorKind.rate_limit,
    "server_error": ErrorKind.api_error,
    "service_unavailable_error": ErrorKind.overloaded,
    "overloaded_error": ErrorKind.overloaded,
    "timeout_error": ErrorKind.timeout,
}


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return errors.redact(value if isinstance(value, str) else str(value))


def _error_from_envelope(doc: Any, status: int | None, *, retry_after: str | None = None,
                         fallback: str = "") -> ProxyError:
    """`{"error":{message,type,param,code}}` (or a looser shape) -> ProxyError."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        message, err_type, param, code = err.get("message"), err.get("type"), err.get("param"), err.get("code")
    else:
        loose = err if isinstance(err, str) else (doc.get("message") or doc.get("detail")
                                                   if isinstance(doc, dict) else None)
        message, err_type, param, code = loose, None, None, None
    if isinstance(code, int) and not isinstance(code, bool):
        # OpenRouter: the HTTP status as an integer code (also inside a 200 stream), the
        # category in metadata.error_type.
        meta = err.get("metadata") if isinstance(err, dict) else None
        error_type = meta.get("error_type") if isinstance(meta, dict) else None
        if status is None or status < 400:
            status = code
        code = error_type if isinstance(error_type, str) else None
    code = _text_or_none(code)
    if status == 402:  # out of credits: OpenAI's name for an exhausted account
        kind, code = ErrorKind.rate_limit, "insufficient_quota"
    elif code in _KIND_BY_CODE:
        kind = _KIND_BY_CODE[code]
    elif status is not None and status >= 400:
        kind = errors.kind_for_status(status)
    else:
        kind = _KIND_BY_TYPE.get(err_type, ErrorKind.api_error)
    if not isinstance(message, str) or not message:
        message = fallback or "Upstream reported an error without a message."
    return ProxyError(kind, errors.redact(message), param=_text_or_none(param), code=code,
                      retry_after=retry_after)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error reply -> ProxyError (message kept, keys redacted)."""
    retry = errors.retry_after_from_headers(headers)
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    fallback = f"Upstream returned HTTP {status}" + (f": {text.strip()[:300]}" if text.strip() else ".")
    try:
        doc = loads(body) if text.strip() else None
    except ValueError:
        doc = None
    return _error_from_envelope(doc, status, retry_after=retry, fallback=fallback)


# ------------------------------------------------------------------ streams


_EMPTY_CHOICES = '"choices":[]'


def annotation_only(data: str) -> bool:
    """A chunk with `choices: []` and neither usage nor an error: Azure's first stream chunk
    (empty id, model and object, `prompt_filter_results`). Clients that read `choices[0]` of
    every chunk or check the id fail on it (protocols §1.8), so a relay leaves it out; the
    usage chunk, which also has `choices: []`, stays."""
    try:
        chunk = loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and not chunk.get("usage") \
        and "error" not in chunk


def is_content_frame(frame: Frame) -> bool:
    """A chunk that only carries content: every choice's finish_reason null,
    no usage, no error. A passthrough relay, which parses frames only to
    notice the end, errors and usage, may leave it unparsed. Only compact
    JSON is recognised (as OpenAI writes it); anything else is parsed."""
    d = frame.data
    return (frame.event is None and d.startswith('{"') and '"error"' not in d
            and d.count('"finish_reason"') == d.count('"finish_reason":null') > 0
            and d.count('"usage"') == d.count('"usage":null'))


class _ToolCallState:
    __slots__ = ("id", "name", "arguments", "emitted")

    def __init__(self, call_id: str, name: str | None) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []  # fragments held back until the call is emitted
        self.emitted = False


class StreamParser:
    """`chat.completion.chunk` frames -> IR events (choice 0 only).

    One part is open at a time. Text, reasoning and refusal stream live and
    switch freely (a switch closes one part and opens the next). The first
    tool call streams live and stays open until the finish chunk; any part
    that starts while it is open (another call, text) is held back and
    emitted whole at the finish, in arrival order. Fragments are keyed by
    `tool_calls[].index`, never by arrival order.
    """

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._finished = False  # finish_reason seen
        self._done = False  # terminal event emitted
        self._response_id = ""
        self._next_index = 0
        self._open_kind: str | None = None  # kind of the one open part, if any
        self._open_key: Any = None  # its tool key when it is a tool call
        self._open_index = -1  # its IR part index
        self._tools: dict[Any, _ToolCallState] = {}
        self._queue: list[list] = []  # held-back parts: ["tool_call", key] or [kind, [texts]]
        self._blank: tuple[str, str] | None = None  # (kind, whitespace) not yet worth a part
        self._any_tool = False
        self._finish: ir.FinishReason | None = None
        self._raw_finish: str | None = None
        self._usage = ir.Usage()

    # ------------------------------------------------------------ public

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done:
            return []
        data = frame.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self._terminate()
        try:
            chunk = loads(data)
        except ValueError:
            if frame.event == "raw":  # stray non-SSE text: nothing we can use
                return []
            return self._fail(_malformed("a stream chunk is not JSON"))
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            return self._fail(_error_from_envelope(chunk, None))
        if frame.event == "raw":
            return []
        return self._chunk(chunk)

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        if self._finished:  # some servers omit [DONE]
            return self._terminate()
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    # ------------------------------------------------------------ chunks

    def _chunk(self, chunk: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        choices = chunk.get("choices") or []
        # Azure's prompt-filter chunk (choices [], empty id) does not start the message.
        if not self._started and (chunk.get("id") or choices):
            self._start(chunk, events)
        if isinstance(chunk.get("usage"), dict):
            self._usage = _usage_from_wire(chunk["usage"])
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        return events

    def _start(self, chunk: dict, events: list[ir.Event]) -> None:
        self._started = True
        self._response_id = chunk.get("id") or ""
        events.append(ir.MessageStart(id=self._response_id, model=chunk.get("model") or self._req.model))

    def _choice(self, choice: dict, events: list[ir.Event]) -> None:
        delta = choice.get("delta")  # absent in Azure content-filter chunks
        if isinstance(delta, dict):
            for kind, value in _reasoning_pieces(delta):
                if kind == "thinking":
                    self._text("thinking", value, events)
                else:
                    self._redacted(value, events)
            content = delta.get("content")
            self._text("text", content if isinstance(content, str) else "", events)
            refusal = delta.get("refusal")
            self._text("refusal", refusal if isinstance(refusal, str) else "", events)
            # `tool_calls: []` beside text must not open anything (known bug #1).
            for fragment in delta.get("tool_calls") or ():
                if isinstance(fragment, dict):
                    self._tool_fragment(fragment, events)
        raw_finish = choice.get("finish_reason")
        if raw_finish is not None:
            self._raw_finish = raw_finish
            self._finish = _FINISH_FROM_WIRE.get(raw_finish, ir.FinishReason.stop)
            self._finished = True
            self._close_all(events)

    def _text(self, kind: str, text: str, events: list[ir.Event]) -> None:
        if not text:
            return  # OpenAI's opening `content: ""` must not become an empty part
        if self._open_kind == kind:
            events.append(_delta_event(kind, self._open_index, text))
            return
        if self._open_kind == "tool_call":
            self._hold_text(kind, text)
            return
        # Whitespace alone (a "\n\n" before tool calls) must not open a part
        # (IR convention, hazard 11): keep it until real text of its kind follows.
        if self._blank is not None and self._blank[0] == kind:
            text = self._blank[1] + text
        if not text.strip():
            self._blank = (kind, text)
            return
        self._blank = None
        self._close_open(events)
        self._open_part(kind, None, None, events)
        events.append(_delta_event(kind, self._open_index, text))

    def _redacted(self, data: str, events: list[ir.Event]) -> None:
        """Encrypted reasoning arrives whole: a part of its own, opened and closed at once."""
        if self._open_kind == "tool_call":
            self._queue.append(["redacted_thinking", [data]])
            return
        self._blank = None
        self._close_open(events)
        self._open_part("redacted_thinking", None, None, events, data=data)
        self._close_open(events)

    def _hold_text(self, kind: str, text: str) -> None:
        if self._queue and self._queue[-1][0] == kind:
            self._queue[-1][1].append(text)
        else:
            self._queue.append([kind, [text]])

    def _tool_fragment(self, fragment: dict, events: list[ir.Event]) -> None:
        self._any_tool = True
        key = self._tool_key(fragment)
        fn = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        args = _arguments_text(fn.get("arguments"))
        state = self._tools.get(key)
        if state is None:
            call_id = fragment.get("id") or _synthetic_call_id(self._response_id, key)
            state = self._tools[key] = _ToolCallState(call_id, fn.get("name") or None)
            self._begin_tool(key, state, events)
        elif not state.name and fn.get("name"):
            state.name = fn["name"]
        if not args:
            return
        if self._open_kind == "tool_call" and self._open_key == key:
            events.append(ir.ToolArgumentsDelta(self._open_index, args))
        elif not state.emitted:
            state.arguments.append(args)
        # else: a fragment after the call was emitted (only possible after the
        # finish chunk); nothing can carry it.

    def _tool_key(self, fragment: dict) -> Any:
        index = fragment.get("index")
        if not isinstance(index, int):
            # Servers that omit `index`: a fragment with an id starts a call,
            # one without continues the latest.
            if fragment.get("id") or not self._tools:
                return ("noindex", len(self._tools))
            return next(reversed(self._tools))
        state = self._tools.get(index)
        new_id = fragment.get("id")
        if state is not None and new_id and new_id != state.id:
            # Same index, different id: a server that numbers every call 0.
            return (index, new_id)
        return index

    def _begin_tool(self, key: Any, state: _ToolCallState, events: list[ir.Event]) -> None:
        # Live only if nothing is held back (keeps calls in order) and the name is known.
        if self._open_kind == "tool_call" or self._queue or not state.name:
            self._queue.append(["tool_call", key])
            return
        self._close_open(events)
        self._blank = None
        self._open_part("tool_call", state.id, state.name, events)
        self._open_key = key
        state.emitted = True

    # ------------------------------------------------------------ parts

    def _open_part(self, kind: str, call_id: str | None, name: str | None, events: list[ir.Event],
                   data: str | None = None) -> int:
        index = self._next_index
        self._next_index += 1
        events.append(ir.PartStart(index=index, kind=kind, id=call_id, name=name, data=data))
        self._open_kind, self._open_key, self._open_index = kind, None, index
        return index

    def _close_open(self, events: list[ir.Event]) -> None:
        if self._open_kind is not None:
            events.append(ir.PartStop(self._open_index))
            self._open_kind = self._open_key = None

    def _close_all(self, events: list[ir.Event]) -> None:
        self._close_open(events)
        for kind, payload in self._queue:
            if kind == "tool_call":
                state = self._tools[payload]
                index = self._open_part("tool_call", state.id, state.name or "", events)
                state.emitted = True
                if state.arguments:
                    events.append(ir.ToolArgumentsDelta(index, "".join(state.arguments)))
                    state.arguments = []
            elif kind == "redacted_thinking":
                self._open_part(kind, None, None, events, data=payload[0])
            else:
                text = "".join(payload)
                if not text.strip():
                    continue
                index = self._open_part(kind, None, None, events)
                events.append(_delta_event(kind, index, text))
            self._close_open(events)
        self._queue = []

    # ------------------------------------------------------------ endings

    def _terminate(self) -> list[ir.Event]:
        events: list[ir.Event] = []
        if not self._started:
            events.append(ir.MessageStart(id="", model=self._req.model))
            self._started = True
        self._close_all(events)
        finish = self._finish or ir.FinishReason.stop
        if self._any_tool and finish is ir.FinishReason.stop:
            finish = ir.FinishReason.tool_calls  # known bug #7: tool-call turns reported as "stop"
        events.append(ir.MessageStop(finish_reason=finish, usage=self._usage, raw_finish_reason=self._raw_finish))
        self._done = True
        return events

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(err)]


def _delta_event(kind: str, index: int, text: str) -> ir.Event:
    if kind == "thinking":
        return ir.ThinkingDelta(index, text)
    if kind == "refusal":
        return ir.RefusalDelta(index, text)
    return ir.TextDelta(index, text)
