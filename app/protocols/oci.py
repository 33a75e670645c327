"""OCI Generative AI inference chat (protocols B §3, §7), the backend direction:
the IR written as a ChatDetails `chatRequest`, and ChatResult replies, SSE
events and `{code, message}` errors read back. Nothing here knows URLs,
compartments, serving modes or signatures: the provider (app/providers/oci.py)
places `chatRequest` in ChatDetails beside `compartmentId` and `servingMode`.

One module for both request formats OCI has for chat, since they share the
envelope, the errors, the SSE stream and the vocabulary (upper-case enums,
camelCase): `apiFormat` COHERE (Cohere's v1 chat: the last user turn in
`message`, the rest in `chatHistory`, `preambleOverride`, tools as flat
`parameterDefinitions`, tool results as `{call, outputs}` with no call ids) and
GENERIC (an OpenAI-like `messages` list of content parts, for Llama, Grok,
OpenAI models on OCI). The format is `options.api_format` when configured,
else COHERE for a `cohere.` model id and GENERIC for any other.

Policy choices, each one a place where the formats disagree:
- COHERE calls have no ids: replies get ids derived from the call (name,
  arguments, position), and results are written back with their call's name
  and arguments, found by id in the history (the API pairs them by content).
- COHERE results are free-form objects: a result is `{"output": text}`, a
  failed one `{"error": text}` (the format has no error flag).
- COHERE cannot force a tool call: `tool_choice` required or a named tool is
  refused (400 naming it); `none` leaves the tools out. Images are refused:
  COHERE has no image slot (Cohere's command-r family is text-only).
- COHERE tools are flat per-parameter definitions: JSON-Schema types become
  Cohere's Python-style names and `enum` goes into the description; nested
  structure below the first level is described by its type only.
- The conversation must end with the user or with tool results (COHERE's
  `message` is the current user turn); a trailing assistant prefill is refused.
- The terminal COHERE stream event repeats the whole text (and the tool
  calls): it ends the message and adds only what was not streamed before.
- Stream usage is read from the terminal event when it carries one (the
  request asks with `streamOptions.isIncludeUsage`). Events the service
  separates by a single line end reach the parser as one multi-line SSE event:
  each line is read as an event of its own.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError, invalid, kind_for_status, redact
from app.jsonutil import dumps_str, loads
from app.protocols.base import Target, extras_to_send
from app.upstream.framing import Frame

PROTOCOL = "oci"
RESPONSE_MODEL_FIELD = "modelId"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
COHERE, GENERIC = "COHERE", "GENERIC"
API_FORMATS = (COHERE, GENERIC)
_LABEL = "an OCI Generative AI backend"

# JSON Schema type -> the Python-style type names Cohere's parameterDefinitions take.
_COHERE_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "array": "List",
                 "object": "Dict"}
_COHERE_FINISH = {
    "COMPLETE": ir.FinishReason.stop,
    "USER_CANCEL": ir.FinishReason.stop,
    "MAX_TOKENS": ir.FinishReason.length,
    "ERROR_LIMIT": ir.FinishReason.length,
    "ERROR_TOXIC": ir.FinishReason.content_filter,
    "ERROR": ir.FinishReason.error,
}
_GENERIC_FINISH = {
    "stop": ir.FinishReason.stop,
    "length": ir.FinishReason.length,
    "tool_calls": ir.FinishReason.tool_calls,
    "content_filter": ir.FinishReason.content_filter,
}
_EFFORTS = {"none": "NONE", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH",
            "max": "HIGH"}
# OCI service codes (the `code` of its error envelope) -> error kind.
_ERROR_CODES = {
    "InvalidParameter": ErrorKind.invalid_request,
    "MissingParameter": ErrorKind.invalid_request,
    "InvalidParameters": ErrorKind.invalid_request,
    "NotAuthenticated": ErrorKind.authentication,
    "NotAuthorized": ErrorKind.permission,
    "NotAuthorizedOrNotFound": ErrorKind.not_found,
    "NotFound": ErrorKind.not_found,
    "TooManyRequests": ErrorKind.rate_limit,
    "InternalServerError": ErrorKind.api_error,
    "ServiceUnavailable": ErrorKind.overloaded,
}


def api_format(target: Target) -> str:
    """The request format for this backend and model."""
    configured = target.options.get("api_format")
    if configured is None:
        return COHERE if target.model.startswith("cohere.") else GENERIC
    value = str(configured).upper()
    if value not in API_FORMATS:
        raise ProxyError(ErrorKind.configuration, f"Backend '{target.backend}': options.api_format must be one of "
                         f"{', '.join(API_FORMATS)} (got {configured!r}).", code="configuration_error")
    return value


# ================================================================ build_body


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """IR request -> `{"chatRequest": {...}}`, the part of ChatDetails the wire decides."""
    extras_to_send(req, PROTOCOL, _LABEL)  # refuses what another protocol cannot do without
    if req.n > 1:
        raise invalid("n must be 1 for this OCI backend", param="n")
    if api_format(target) == COHERE:
        return {"chatRequest": _cohere_request(req)}
    return {"chatRequest": _generic_request(req)}


def _common(chat: dict[str, Any], req: ir.Request) -> None:
    """Sampling fields both formats spell alike."""
    if req.max_tokens is not None:
        chat["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        chat["temperature"] = req.temperature
    if req.top_p is not None:
        chat["topP"] = req.top_p
    if req.top_k is not None:
        chat["topK"] = req.top_k
    if req.seed is not None:
        chat["seed"] = req.seed
    if req.stream:
        chat["isStream"] = True
        chat["streamOptions"] = {"isIncludeUsage": True}


def _where(positions: Mapping[int, int], m: ir.Message) -> str:
    return f"messages.{positions.get(id(m), '?')}"


def _text(m: ir.Message, where: str) -> str:
    """The message's text parts, joined; anything else a COHERE turn cannot carry is refused."""
    texts: list[str] = []
    for j, part in enumerate(m.parts):
        if isinstance(part, (ir.Text, ir.Refusal)):
            texts.append(part.text)
        elif isinstance(part, ir.Image):
            raise invalid("images cannot be sent to this OCI backend: the Cohere chat format (apiFormat COHERE) is "
                          "text-only", param=f"{where}.content.{j}")
        elif isinstance(part, ir.Opaque):
            raise invalid(f"{part.kind} cannot be sent to {_LABEL}", param=part.where)
    return "\n".join(texts)


# ------------------------------------------------------------------ COHERE


def _cohere_request(req: ir.Request) -> dict[str, Any]:
    system, conversation = ir.split_system(req.messages, keep_later=True)
    positions = {id(m): i for i, m in enumerate(req.messages)}
    # The current turn: what follows the last assistant message (tool results, the user's text).
    last_assistant = max((i for i, m in enumerate(conversation) if m.role == "assistant"), default=-1)
    past, current = conversation[:last_assistant + 1], conversation[last_assistant + 1:]
    if not any(m.role in ("user", "tool") for m in current):
        raise invalid("the conversation must end with a user message or tool results for this OCI Cohere backend "
                      "(it cannot continue an assistant turn)", param="messages")
    calls: dict[str, ir.ToolCall] = {}
    history: list[dict[str, Any]] = []
    for m in past:
        _history_entry(m, _where(positions, m), calls, history)
    message: list[str] = []
    results: list[dict[str, Any]] = []
    for m in current:
        where = _where(positions, m)
        if m.role == "tool":
            results += _tool_results(m, where, calls)
        elif m.role == "user":
            text = _text(m, where)
            if text:
                message.append(text)
        else:  # a later system message: its place is before the current turn
            history.append({"role": "SYSTEM", "message": _text(m, where)})
    chat: dict[str, Any] = {"apiFormat": COHERE, "message": "\n".join(message)}
    if history:
        chat["chatHistory"] = history
    if results:
        chat["toolResults"] = results
    elif not chat["message"]:
        raise invalid("the last user message has no text (the Cohere chat format needs one)", param="messages")
    if system:
        chat["preambleOverride"] = "\n\n".join(system)
    tools = _cohere_tools(req)
    if tools:
        chat["tools"] = tools
    _common(chat, req)
    stop = [s for s in req.stop if s]
    if stop:
        chat["stopSequences"] = stop
    if req.response_format is not None and req.response_format.type != "text":
        fmt: dict[str, Any] = {"type": "JSON_OBJECT"}
        if req.response_format.schema is not None:
            fmt["schema"] = dict(req.response_format.schema)
        chat["responseFormat"] = fmt
    return chat


def _history_entry(m: ir.Message, where: str, calls: dict[str, ir.ToolCall], history: list[dict]) -> None:
    if m.role == "tool":
        results = _tool_results(m, where, calls)
        if history and history[-1]["role"] == "TOOL":
            history[-1]["toolResults"] += results  # one TOOL entry per assistant turn
        else:
            history.append({"role": "TOOL", "toolResults": results})
        return
    if m.role == "assistant":
        entry: dict[str, Any] = {"role": "CHATBOT"}
        texts = [p.text for p in m.parts if isinstance(p, (ir.Text, ir.Refusal))]
        tool_calls = []
        for j, part in enumerate(m.parts):
            if isinstance(part, ir.ToolCall):
                calls[part.id] = part
                tool_calls.append({"name": part.name, "parameters": _arguments(part, f"{where}.content.{j}")})
            elif isinstance(part, ir.Opaque):
                raise invalid(f"{part.kind} cannot be sent to {_LABEL}", param=part.where)
        if "".join(texts).strip():
            entry["message"] = "".join(texts)
        if tool_calls:
            entry["toolCalls"] = tool_calls
        if len(entry) > 1:
            history.append(entry)
        return
    text = _text(m, where)
    if text:
        history.append({"role": "USER" if m.role == "user" else "SYSTEM", "message": text})


def _arguments(call: ir.ToolCall, where: str) -> dict:
    try:
        return call.arguments_object()
    except ValueError:
        raise invalid(f"tool call {call.id} ({call.name}) has arguments that are not a JSON object; the Cohere chat "
                      "format needs them as an object", param=where) from None


def _tool_results(m: ir.Message, where: str, calls: Mapping[str, ir.ToolCall]) -> list[dict[str, Any]]:
    """COHERE pairs a result with its call by the call's name and parameters (there are no ids)."""
    out = []
    for j, part in enumerate(m.parts):
        if not isinstance(part, ir.ToolResult):
            continue
        at = f"{where}.content.{j}"
        call = calls.get(part.call_id)
        if call is not None:
            wire_call = {"name": call.name, "parameters": _arguments(call, at)}
        elif part.name:
            wire_call = {"name": part.name, "parameters": {}}
        else:
            raise invalid(f"tool result for call {part.call_id!r} answers no tool call in the conversation",
                          param=at)
        for k, item in enumerate(part.content):
            if not isinstance(item, ir.Text):
                raise invalid("tool results sent to this OCI Cohere backend can hold only text",
                              param=f"{at}.content.{k}")
        out.append({"call": wire_call, "outputs": [{"error" if part.is_error else "output": part.text()}]})
    return out


def _cohere_tools(req: ir.Request) -> list[dict[str, Any]]:
    choice = req.tool_choice
    if choice is not None and choice.mode in ("required", "tool"):
        raise invalid("this OCI Cohere backend cannot force a tool call (the Cohere chat format has no tool "
                      "choice); use tool_choice auto", param="tool_choice")
    if choice is not None and choice.mode == "none":
        return []
    tools = []
    for i, tool in enumerate(ir.tools_for(PROTOCOL, req.tools)):
        if tool.native is not None:
            raise invalid(f"{tool.native.kind} cannot be sent to {_LABEL}", param=tool.native.where)
        spec: dict[str, Any] = {"name": tool.name, "description": tool.description or tool.name}
        if tool.kind == "custom":
            params = {"input": {"description": "The tool's input text", "type": "str", "isRequired": True}}
        else:
            params = _parameter_definitions(tool.parameters or {})
        if params:
            spec["parameterDefinitions"] = params
        tools.append(spec)
    return tools


def _parameter_definitions(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    required = set(schema.get("required") or ())
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        kind = prop.get("type")
        if isinstance(kind, list):  # ["string", "null"]: the first real type
            kind = next((k for k in kind if k != "null"), None)
        definition: dict[str, Any] = {}
        description = prop.get("description") or ""
        if isinstance(prop.get("enum"), list):
            allowed = ", ".join(dumps_str(v) for v in prop["enum"])
            description = f"{description} (one of: {allowed})" if description else f"One of: {allowed}"
        if description:
            definition["description"] = description
        definition["type"] = _COHERE_TYPES.get(kind, "str") if isinstance(kind, str) else "str"
        definition["isRequired"] = name in required
        out[name] = definition
    return out


# ------------------------------------------------------------------ GENERIC


def _generic_request(req: ir.Request) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        messages += _generic_messages(m, f"messages.{i}")
    if not messages:
        raise invalid("at least one message is required", param="messages")
    chat: dict[str, Any] = {"apiFormat": GENERIC, "messages": messages}
    tools = []
    for tool in ir.tools_for(PROTOCOL, req.tools):
        if tool.native is not None:
            raise invalid(f"{tool.native.kind} cannot be sent to {_LABEL}", param=tool.native.where)
        spec: dict[str, Any] = {"type": "FUNCTION", "name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        spec["parameters"] = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
        tools.append(spec)
    if tools:
        chat["tools"] = tools
    if req.tool_choice is not None:
        mode = req.tool_choice.mode
        if mode == "tool":
            chat["toolChoice"] = {"type": "FUNCTION", "name": req.tool_choice.name}
        else:
            chat["toolChoice"] = {"type": mode.upper()}
    if req.parallel_tool_calls is not None and tools:
        chat["isParallelToolCalls"] = req.parallel_tool_calls
    _common(chat, req)
    stop = [s for s in req.stop if s]
    if stop:
        chat["stop"] = stop
    if req.reasoning is not None and req.reasoning.effort in _EFFORTS:
        chat["reasoningEffort"] = _EFFORTS[req.reasoning.effort]
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        chat["responseFormat"] = {"type": "JSON_OBJECT"}
    elif fmt is not None and fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": dict(fmt.schema or {})}
        if fmt.strict is not None:
            schema["isStrict"] = fmt.strict
        chat["responseFormat"] = {"type": "JSON_SCHEMA", "jsonSchema": schema}
    return chat


def _generic_messages(m: ir.Message, where: str) -> list[dict[str, Any]]:
    if m.role == "tool":
        out = []
        for j, part in enumerate(m.parts):
            if isinstance(part, ir.ToolResult):
                content = _generic_content(part.content, f"{where}.content.{j}")
                out.append({"role": "TOOL", "toolCallId": part.call_id,
                            "content": content or [{"type": "TEXT", "text": ""}]})
        return out
    content = _generic_content([p for p in m.parts if not isinstance(p, (ir.ToolCall, ir.Thinking))], where)
    role = {"system": "SYSTEM", "developer": "SYSTEM", "user": "USER", "assistant": "ASSISTANT"}[m.role]
    message: dict[str, Any] = {"role": role, "content": content}
    if m.role == "assistant":
        calls = [{"id": p.id, "type": "FUNCTION", "name": p.name, "arguments": p.arguments or "{}"}
                 for p in m.parts if isinstance(p, ir.ToolCall)]
        if calls:
            message["toolCalls"] = calls
            if not content:
                del message["content"]
    if not content and "toolCalls" not in message:
        return []
    return [message]


def _generic_content(parts, where: str) -> list[dict[str, Any]]:
    content = []
    for j, part in enumerate(parts):
        if isinstance(part, (ir.Text, ir.Refusal)):
            if part.text:
                content.append({"type": "TEXT", "text": part.text})
        elif isinstance(part, ir.Image):
            content.append({"type": "IMAGE", "imageUrl": {"url": _image_url(part)}})
        elif isinstance(part, ir.Opaque):
            raise invalid(f"{part.kind} cannot be sent to {_LABEL}", param=part.where)
    return content


def _image_url(image: ir.Image) -> str:
    """An https URL as given, inline data as a data URL (GENERIC takes both)."""
    if image.url:
        return image.url
    media_type = image.media_type or ir.sniff_image_type(image.data or "") or "image/png"
    return f"data:{media_type};base64,{image.data}"


# ============================================================ parse_response


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A ChatResult -> IR. A body that is not one is a bad gateway."""
    data = _json_or_none(body)
    chat = data.get("chatResponse") if isinstance(data, dict) else None
    if not isinstance(chat, dict):
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned a malformed OCI ChatResult")
    if chat.get("apiFormat") == GENERIC or "choices" in chat:
        return _generic_response(chat, req)
    calls = _cohere_calls(chat.get("toolCalls"))
    text = chat.get("text") if isinstance(chat.get("text"), str) else ""
    parts: list[ir.Part] = ([ir.Text(text)] if text.strip() else []) + calls
    raw = chat.get("finishReason")
    return ir.Response(id="", model=req.model, parts=tuple(parts), finish_reason=_cohere_finish(raw, bool(calls)),
                       usage=_usage(chat.get("usage")), raw_finish_reason=raw if isinstance(raw, str) else None,
                       finish_message=chat.get("errorMessage") if isinstance(chat.get("errorMessage"), str) else None)


def _generic_response(chat: dict, req: ir.Request) -> ir.Response:
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    if choice is None:
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned an OCI ChatResult without choices")
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    parts: list[ir.Part] = []
    reasoning = message.get("reasoningContent")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ir.Thinking(reasoning))
    text = "".join(c.get("text") or "" for c in message.get("content") or []
                   if isinstance(c, dict) and c.get("type") == "TEXT")
    if text.strip():
        parts.append(ir.Text(text))
    for k, call in enumerate(message.get("toolCalls") or []):
        if isinstance(call, dict):
            parts.append(ir.ToolCall(str(call.get("id") or _call_id(call.get("name"), call.get("arguments"), k)),
                                     str(call.get("name") or ""), str(call.get("arguments") or "{}")))
    raw = choice.get("finishReason")
    finish = _GENERIC_FINISH.get(raw, ir.FinishReason.stop) if isinstance(raw, str) else ir.FinishReason.stop
    if finish is ir.FinishReason.stop and any(isinstance(p, ir.ToolCall) for p in parts):
        finish = ir.FinishReason.tool_calls
    return ir.Response(id="", model=req.model, parts=tuple(parts), finish_reason=finish,
                       usage=_usage(chat.get("usage") or choice.get("usage")),
                       raw_finish_reason=raw if isinstance(raw, str) else None)


def _call_id(name: Any, arguments: Any, index: int) -> str:
    """An id for a call the API gave none: derived from the call, so the same reply
    always gets the same ids, and two calls in one reply never share one."""
    digest = hashlib.sha256(f"{index}\0{name}\0{dumps_str(arguments)}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _cohere_calls(calls: Any) -> list[ir.ToolCall]:
    out = []
    for k, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            params = call.get("parameters") if isinstance(call.get("parameters"), dict) else {}
            out.append(ir.ToolCall(_call_id(call["name"], params, k), call["name"], dumps_str(params)))
    return out


def _cohere_finish(raw: Any, has_calls: bool) -> ir.FinishReason:
    finish = _COHERE_FINISH.get(raw, ir.FinishReason.stop)
    return ir.FinishReason.tool_calls if has_calls and finish is ir.FinishReason.stop else finish


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    completion = usage.get("completionTokensDetails") if isinstance(usage.get("completionTokensDetails"), dict) else {}
    prompt = usage.get("promptTokensDetails") if isinstance(usage.get("promptTokensDetails"), dict) else {}
    return ir.Usage(input_tokens=_count(usage.get("promptTokens")), output_tokens=_count(usage.get("completionTokens")),
                    reasoning_tokens=_count(completion.get("reasoningTokens")),
                    cache_read_tokens=_count(prompt.get("cachedTokens")))


# ============================================================== StreamParser


def is_content_frame(frame: Frame) -> bool:
    """Never consulted: OCI has no frontend half, so no same-protocol passthrough."""
    return False


class StreamParser:
    """SSE `data:` events of an `isStream` chat -> IR events, either format.

    Each event is read by its own shape: COHERE events carry `text` (a delta) and
    end with the one that has `finishReason`; GENERIC events carry a `message`
    delta (content parts, reasoning, tool-call fragments) and end likewise."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._finished = False
        self._next_part = 0
        self._open: tuple[str, int, str | None] | None = None  # (kind, part index, tool call id)
        self._streamed_text = False
        self._calls = 0  # tool calls emitted so far
        self._format: str | None = None

    def feed(self, frame: Frame) -> list[ir.Event]:
        if "\n" in frame.data:
            # Events the service separated by one line end arrive as one multi-line event:
            # each line is an event of its own (compact JSON has no line ends inside).
            return [e for line in frame.data.split("\n") for e in self.feed(Frame(frame.event, line))]
        if self._finished or frame.data.strip() in ("", "[DONE]"):
            return []
        data = _json_or_none(frame.data)
        if not isinstance(data, dict):
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream sent a malformed OCI stream event"))
        if "code" in data and "message" in data and "finishReason" not in data:
            return self._fail(_envelope_error(200, data, None))  # the service's error envelope, mid-stream
        events = self._start()
        if self._format_of(data) == GENERIC:
            events += self._generic(data)
        else:
            events += self._cohere(data)
        return events

    def _format_of(self, data: dict) -> str:
        """The event's format: named, or told by its shape, else the stream's so far (a
        GENERIC terminal event is a bare `{"index", "finishReason"}`)."""
        named = data.get("apiFormat")
        if named in API_FORMATS:
            self._format = named
        elif isinstance(data.get("message"), dict):
            self._format = GENERIC
        elif isinstance(data.get("text"), str):
            self._format = COHERE
        elif self._format is None:
            self._format = COHERE if data.get("finishReason") in _COHERE_FINISH else GENERIC
        return self._format

    def close(self) -> list[ir.Event]:
        if self._finished:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    # ------------------------------------------------------------ COHERE

    def _cohere(self, data: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        terminal = "finishReason" in data
        text = data.get("text")
        if isinstance(text, str) and text and (not terminal or not self._streamed_text):
            events += self._ensure("text") + [ir.TextDelta(self._open[1], text)]
            self._streamed_text = True
        calls = _cohere_calls(data.get("toolCalls"))
        if calls and (not terminal or not self._calls):  # the terminal event repeats what came before
            for call in calls:
                events += self._whole_call(call)
        if terminal:
            raw = data.get("finishReason")
            events += self._close()
            events += self._stop(_cohere_finish(raw, self._calls > 0), data.get("usage"), raw)
        return events

    def _whole_call(self, call: ir.ToolCall) -> list[ir.Event]:
        index = self._next_part
        self._calls += 1
        events = self._close() + [ir.PartStart(index, "tool_call", id=call.id, name=call.name),
                                  ir.ToolArgumentsDelta(index, call.arguments), ir.PartStop(index)]
        self._next_part += 1
        return events

    # ------------------------------------------------------------ GENERIC

    def _generic(self, data: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        reasoning = message.get("reasoningContent")
        if isinstance(reasoning, str) and reasoning:
            events += self._ensure("thinking") + [ir.ThinkingDelta(self._open[1], reasoning)]
        for part in message.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "TEXT" and part.get("text"):
                events += self._ensure("text") + [ir.TextDelta(self._open[1], part["text"])]
        for fragment in message.get("toolCalls") or []:
            if isinstance(fragment, dict):
                events += self._call_fragment(fragment)
        raw = data.get("finishReason")
        if isinstance(raw, str):
            finish = _GENERIC_FINISH.get(raw, ir.FinishReason.stop)
            if finish is ir.FinishReason.stop and self._calls:
                finish = ir.FinishReason.tool_calls
            events += self._close() + self._stop(finish, data.get("usage"), raw)
        return events

    def _call_fragment(self, fragment: dict) -> list[ir.Event]:
        """Tool calls arrive in pieces: a piece with a name (or a new id) opens a call,
        later pieces carry only argument text."""
        events: list[ir.Event] = []
        call_id, name = fragment.get("id"), fragment.get("name")
        current = self._open if self._open is not None and self._open[0] == "tool_call" else None
        if name or (call_id and (current is None or current[2] != call_id)):
            events += self._close()
            index = self._next_part
            call_id = str(call_id or _call_id(name, "", index))
            self._open = ("tool_call", index, call_id)
            self._next_part += 1
            self._calls += 1
            events.append(ir.PartStart(index, "tool_call", id=call_id, name=str(name or "")))
        arguments = fragment.get("arguments")
        if isinstance(arguments, str) and arguments and self._open is not None and self._open[0] == "tool_call":
            events.append(ir.ToolArgumentsDelta(self._open[1], arguments))
        return events

    # ------------------------------------------------------------ shared

    def _start(self) -> list[ir.Event]:
        if self._started:
            return []
        self._started = True
        return [ir.MessageStart("", self._req.model)]

    def _ensure(self, kind: str) -> list[ir.Event]:
        if self._open is not None and self._open[0] == kind:
            return []
        events = self._close()
        self._open = (kind, self._next_part, None)
        self._next_part += 1
        return events + [ir.PartStart(self._open[1], kind)]  # type: ignore[arg-type]

    def _close(self) -> list[ir.Event]:
        open_part, self._open = self._open, None
        return [] if open_part is None else [ir.PartStop(open_part[1])]

    def _stop(self, finish: ir.FinishReason, usage: Any, raw: Any) -> list[ir.Event]:
        self._finished = True
        return [ir.MessageStop(finish_reason=finish, usage=_usage(usage),
                               raw_finish_reason=raw if isinstance(raw, str) else None)]

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._finished = True
        return [ir.StreamError(err)]


# ================================================================== errors


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error -> ProxyError: OCI's `{"code", "message"}` envelope."""
    payload = _json_or_none(body)
    retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(payload, dict):
        return _envelope_error(status, payload, retry)
    message = body.decode("utf-8", "replace").strip()[:500] or f"upstream returned HTTP {status}"
    return ProxyError(kind_for_status(status), redact(message), status=status, retry_after=retry)


def _envelope_error(status: int, payload: Mapping[str, Any], retry_after: str | None) -> ProxyError:
    code = payload.get("code") if isinstance(payload.get("code"), str) else None
    kind = _ERROR_CODES.get(code) if code else None
    if kind is None:
        kind = kind_for_status(status) if status >= 400 else ErrorKind.api_error
    message = payload.get("message")
    if not isinstance(message, str) or not message:
        message = f"upstream returned HTTP {status}" + (f" ({code})" if code else "")
    return ProxyError(kind, redact(message), status=status if status >= 400 else None, code=code,
                      retry_after=retry_after)


def _json_or_none(data: bytes | str) -> Any:
    try:
        return loads(data)
    except ValueError:
        return None
