"""Frontend: a Gemini generateContent request body parsed into the IR."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from app import errors, ir
from app.jsonutil import dumps_str
from app.model_ids import check_model_id
from app.protocols import gemini_schema
from app.protocols.gemini.common import PROVIDER, _standard_base64
from app.protocols.gemini.call_ids import synthesize_call_id


_REQUEST_FIELDS = frozenset({"model", "contents", "systemInstruction", "tools", "toolConfig", "safetySettings",
                             "generationConfig", "cachedContent", "serviceTier"})
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult", "toolCall", "toolResponse")
_OPAQUE_PART_DATA = frozenset({"executableCode", "codeExecutionResult", "toolCall", "toolResponse"})
_PART_FIELDS = frozenset(_PART_DATA) | {"thought", "thoughtSignature", "videoMetadata", "mediaResolution",
                                        "partMetadata"}
_GENERATION_FIELDS = frozenset({
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "presencePenalty",
    "frequencyPenalty", "seed", "responseMimeType", "responseSchema", "responseJsonSchema", "responseLogprobs",
    "logprobs", "responseModalities", "speechConfig", "imageConfig", "mediaResolution", "thinkingConfig",
    "enableEnhancedCivicAnswers"})
_THINKING_FIELDS = frozenset({"thinkingBudget", "includeThoughts", "thinkingLevel"})
_DECLARATION_FIELDS = frozenset({"name", "description", "parameters", "parametersJsonSchema", "response",
                                 "responseJsonSchema", "behavior"})
_TOOL_CHOICE_MODES = {"AUTO": "auto", "MODE_UNSPECIFIED": "auto", "VALIDATED": "auto", "ANY": "required",
                      "NONE": "none"}


def parse_request(body: dict, *, model: str | None = None, stream: bool | None = None) -> ir.Request:
    """A GenerateContentRequest -> ir.Request. Model and stream come from the URL."""
    fields = _fields(body, _REQUEST_FIELDS, "")
    model = model or (_string(fields["model"], "model") if fields.get("model") is not None else None)
    if not model:
        raise errors.invalid("model is required", "model")
    check_model_id(model)
    messages: list[ir.Message] = []
    if fields.get("systemInstruction") is not None:
        system = _system_message(fields["systemInstruction"])
        if system is not None:
            messages.append(system)
    if "contents" not in fields:
        raise errors.invalid("contents is required", "contents")
    messages.extend(_parse_contents(fields["contents"]))
    tools = _parse_tools(fields["tools"]) if fields.get("tools") is not None else ()
    tool_choice = _parse_tool_config(fields["toolConfig"]) if fields.get("toolConfig") is not None else None
    generation = _parse_generation(fields["generationConfig"]) if fields.get("generationConfig") is not None else {}
    return ir.Request(
        model=model.removeprefix("models/"),
        messages=tuple(messages),
        protocol=PROVIDER,
        stream=bool(stream),
        include_usage=True,  # Gemini clients always get usageMetadata, so always ask upstream (bug #17)
        tools=tools,
        tool_choice=tool_choice,
        raw=body,
        **generation,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fields(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """An object's fields under their camelCase names (the proto JSON parser also
    takes snake_case). Unknown names are a 400, as the real API's parser says."""
    if not isinstance(obj, dict):
        raise errors.invalid(f"{where or 'the request body'} must be a JSON object", where or None)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = _camel(key)
        if name not in allowed:
            raise errors.invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.',
                                 _path(where, key))
        out[name] = value
    return out


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise errors.invalid(f"{where} must be a string", where)
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise errors.invalid(f"{where} must be a boolean", where)
    return value


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise errors.invalid(f"{where} must be a number", where)
    return value


_INT32 = (-2**31, 2**31 - 1)  # Gemini's integer fields are int32 (a 1e308 must not reach another backend)


def _integer(value: Any, where: str, minimum: int = _INT32[0]) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.invalid(f"{where} must be an integer", where)
    if not minimum <= value <= _INT32[1]:
        raise errors.invalid(f"{where} must be between {minimum} and {_INT32[1]}", where)
    return value


def _positive(value: Any, where: str) -> int:
    """A positive int32 (token limits, candidates)."""
    return _integer(value, where, minimum=1)


def _budget(value: Any, where: str) -> int:
    """thinkingBudget: 0 is off, -1 dynamic."""
    return _integer(value, where, minimum=-1)


def _nonnegative(value: Any, where: str) -> int:
    return _integer(value, where, minimum=0)


def _array(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise errors.invalid(f"{where} must be an array", where)
    return value


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise errors.invalid(f"{where} must be an object", where)
    return value


def _optional(fields: Mapping[str, Any], key: str, check, where: str):
    value = fields.get(key)
    return None if value is None else check(value, _path(where, key))


def _required_string(fields: Mapping[str, Any], key: str, where: str) -> str:
    value = fields.get(key)
    if not value:
        raise errors.invalid(f"{_path(where, key)} is required", _path(where, key))
    return _string(value, _path(where, key))


class _WirePart(NamedTuple):
    """One request part, validated: its single data field and its metadata."""
    kind: str
    value: Any
    thought: bool
    signature: str | None
    where: str
    raw: dict  # the part as the client sent it (kept whole by an ir.Opaque)


def _wire_part(raw: Any, where: str) -> _WirePart:
    fields = _fields(raw, _PART_FIELDS, where)
    data = [key for key in _PART_DATA if key in fields]
    if not data:
        raise errors.invalid("required oneof field 'data' must have one initialized field", where)
    if len(data) > 1:
        raise errors.invalid(f"a part holds exactly one data field, got {', '.join(data)}", where)
    kind = data[0]
    if kind in _OPAQUE_PART_DATA:
        _object(fields[kind], f"{where}.{kind}")
    thought = _optional(fields, "thought", _boolean, where) or False
    signature = _optional(fields, "thoughtSignature", _string, where)
    return _WirePart(kind, fields[kind], thought, signature, where, raw)


def _system_message(value: Any) -> ir.Message | None:
    fields = _fields(value, _CONTENT_FIELDS, "systemInstruction")
    texts: list[ir.Part] = []
    for j, raw in enumerate(_array(fields.get("parts", []), "systemInstruction.parts")):
        part = _wire_part(raw, f"systemInstruction.parts[{j}]")
        if part.kind != "text":
            raise errors.invalid("systemInstruction takes text parts only", part.where)
        text = _string(part.value, f"{part.where}.text")
        if text.strip():
            texts.append(ir.Text(text))
    return ir.Message("system", tuple(texts)) if texts else None


def _parse_contents(value: Any) -> list[ir.Message]:
    contents = _array(value, "contents")
    if not contents:
        raise errors.invalid("contents must not be empty", "contents")
    messages: list[ir.Message] = []
    open_calls: list[ir.ToolCall] = []  # the last model turn's calls, answered by the next user turn
    for i, raw in enumerate(contents):
        where = f"contents[{i}]"
        fields = _fields(raw, _CONTENT_FIELDS, where)
        role = _optional(fields, "role", _string, where) or "user"  # the API's default
        if role not in ("user", "model"):
            raise errors.invalid(f"Please use a valid role: user, model (got {role!r})", f"{where}.role")
        raw_parts = _array(fields.get("parts", []), f"{where}.parts")
        if not raw_parts:
            raise errors.invalid("contents.parts must not be empty", f"{where}.parts")
        parts = [_wire_part(p, f"{where}.parts[{j}]") for j, p in enumerate(raw_parts)]
        if role == "model":
            message, open_calls = _model_message(parts, i)
            if message is not None:
                messages.append(message)
        else:
            messages.extend(_user_messages(parts, open_calls))
            open_calls = []
    return messages


def _model_message(parts: list[_WirePart], turn: int) -> tuple[ir.Message | None, list[ir.ToolCall]]:
    out: list[ir.Part] = []
    calls: list[ir.ToolCall] = []
    for index, part in enumerate(parts):
        if part.kind == "text":
            text = _string(part.value, f"{part.where}.text")
            if part.thought:
                if text.strip() or part.signature:
                    out.append(ir.Thinking(text if text.strip() else "", part.signature, None, PROVIDER))
            elif text.strip():
                out.append(ir.Text(text))  # a signature on plain text has no IR slot (optional for Gemini)
        elif part.kind == "functionCall":
            call = _function_call(part, turn, index)
            out.append(call)
            calls.append(call)
        elif part.kind in ("inlineData", "fileData"):
            out.append(_image(part.kind, part.value, f"{part.where}.{part.kind}"))
        elif part.kind in _OPAQUE_PART_DATA:
            out.append(ir.Opaque(PROVIDER, f"{part.kind} part", part.raw, part.where))
        else:
            raise errors.invalid("functionResponse parts belong in a user turn", f"{part.where}.functionResponse")
    return (ir.Message("assistant", tuple(out)) if out else None), calls


def _function_call(part: _WirePart, turn: int, index: int) -> ir.ToolCall:
    where = f"{part.where}.functionCall"
    fields = _fields(part.value, frozenset({"id", "name", "args", "partialArgs", "willContinue"}), where)
    name = _required_string(fields, "name", where)
    args = _optional(fields, "args", _object, where) or {}
    call_id = _optional(fields, "id", _string, where) or synthesize_call_id(turn, index, name)
    return ir.ToolCall(call_id, name, dumps_str(args), part.signature, PROVIDER if part.signature else None)


def _user_messages(parts: list[_WirePart], open_calls: list[ir.ToolCall]) -> list[ir.Message]:
    """One user content -> a tool message (all its functionResponses) and then a
    user message (everything else), in that order."""
    unanswered = list(open_calls)
    results: list[ir.Part] = []
    others: list[ir.Part] = []
    for part in parts:
        if part.kind == "functionResponse":
            results.append(_function_response(part, unanswered))
        elif part.kind == "text":
            text = _string(part.value, f"{part.where}.text")
            if text.strip():
                others.append(ir.Text(text))
        elif part.kind in ("inlineData", "fileData"):
            others.append(_image(part.kind, part.value, f"{part.where}.{part.kind}"))
        elif part.kind in _OPAQUE_PART_DATA:
            others.append(ir.Opaque(PROVIDER, f"{part.kind} part", part.raw, part.where))
        else:
            raise errors.invalid("functionCall parts belong in a model turn", f"{part.where}.functionCall")
    messages = []
    if results:
        messages.append(ir.Message("tool", tuple(results)))
    if others:
        messages.append(ir.Message("user", tuple(others)))
    return messages


def _function_response(part: _WirePart, unanswered: list[ir.ToolCall]) -> ir.ToolResult:
    """Pair a result to its call: by id when given, else the first unanswered
    call of that name (Gemini pairs by position and name, hazard 1)."""
    where = f"{part.where}.functionResponse"
    fields = _fields(part.value, frozenset({"id", "name", "response", "parts", "willContinue", "scheduling"}), where)
    name = _required_string(fields, "name", where)
    response = _optional(fields, "response", _object, where) or {}
    call_id = _optional(fields, "id", _string, where)
    match = next((c for c in unanswered if (c.id == call_id if call_id else c.name == name)), None)
    if match is not None:
        unanswered.remove(match)
        call_id = match.id
    elif not call_id:
        raise errors.invalid(f"functionResponse {name!r} answers no functionCall of the previous model turn", where)
    text, is_error = _result_text(response)
    content: list[ir.Text | ir.Image] = [ir.Text(text)] if text else []
    for k, raw in enumerate(_array(fields.get("parts", []), f"{where}.parts")):
        media = _fields(raw, frozenset({"inlineData", "fileData"}), f"{where}.parts[{k}]")
        for kind, value in media.items():
            content.append(_image(kind, value, f"{where}.parts[{k}].{kind}"))
    return ir.ToolResult(call_id, tuple(content), name, is_error)


def _result_text(response: dict) -> tuple[str, bool]:
    """A functionResponse.response object -> result text. `{"output": x}` and
    `{"error": x}` unwrap (strings as they are); anything else is the whole object."""
    if set(response) == {"error"}:
        return _as_text(response["error"]), True
    if set(response) == {"output"}:
        return _as_text(response["output"]), False
    return (dumps_str(response) if response else ""), False


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps_str(value)


def _image(kind: str, value: Any, where: str) -> ir.Image:
    if kind == "inlineData":
        fields = _fields(value, frozenset({"mimeType", "data", "displayName"}), where)
        data = _standard_base64(_required_string(fields, "data", where), f"{where}.data")
        return ir.Image(data=data, media_type=_required_string(fields, "mimeType", where))
    fields = _fields(value, frozenset({"mimeType", "fileUri", "displayName"}), where)
    return ir.Image(url=_required_string(fields, "fileUri", where),
                    media_type=_optional(fields, "mimeType", _string, where))


def _parse_tools(value: Any) -> tuple[ir.Tool, ...]:
    tools: list[ir.Tool] = []
    for i, raw in enumerate(_array(value, "tools")):
        where = f"tools[{i}]"
        for key, declarations in _object(raw, where).items():
            name = _camel(key)
            if name != "functionDeclarations":
                # Built-in tools (googleSearch, codeExecution, ...) run inside Gemini: kept as sent.
                tools.append(ir.Tool(name, native=ir.Opaque(PROVIDER, f"{name} tool", {key: declarations},
                                                            f"{where}.{key}")))
                continue
            for j, declaration in enumerate(_array(declarations, f"{where}.functionDeclarations")):
                tools.append(_declaration(declaration, f"{where}.functionDeclarations[{j}]"))
    return tuple(tools)


def _declaration(value: Any, where: str) -> ir.Tool:
    fields = _fields(value, _DECLARATION_FIELDS, where)
    if fields.get("parameters") is not None and fields.get("parametersJsonSchema") is not None:
        raise errors.invalid("parameters and parametersJsonSchema are mutually exclusive", where)
    parameters = None
    if fields.get("parametersJsonSchema") is not None:
        parameters = _object(fields["parametersJsonSchema"], f"{where}.parametersJsonSchema")
    elif fields.get("parameters") is not None:
        parameters = gemini_schema.from_gemini_schema(_object(fields["parameters"], f"{where}.parameters"))
    return ir.Tool(name=_required_string(fields, "name", where),
                   description=_optional(fields, "description", _string, where),
                   parameters=parameters)


def _parse_tool_config(value: Any) -> ir.ToolChoice | None:
    fields = _fields(value, frozenset({"functionCallingConfig", "retrievalConfig"}), "toolConfig")
    if fields.get("functionCallingConfig") is None:
        return None
    where = "toolConfig.functionCallingConfig"
    config = _fields(fields["functionCallingConfig"], frozenset({"mode", "allowedFunctionNames"}), where)
    mode = (_optional(config, "mode", _string, where) or "AUTO").upper()
    if mode not in _TOOL_CHOICE_MODES:
        raise errors.invalid(f"unknown function calling mode {mode!r}", f"{where}.mode")
    names = [_string(n, f"{where}.allowedFunctionNames[{k}]")
             for k, n in enumerate(_array(config.get("allowedFunctionNames") or [], f"{where}.allowedFunctionNames"))]
    if mode == "ANY" and len(names) == 1:
        return ir.ToolChoice("tool", names[0])
    return ir.ToolChoice(_TOOL_CHOICE_MODES[mode])


def _parse_generation(value: Any) -> dict[str, Any]:
    """generationConfig -> ir.Request keyword arguments."""
    where = "generationConfig"
    g = _fields(value, _GENERATION_FIELDS, where)
    out: dict[str, Any] = {
        "temperature": _optional(g, "temperature", _number, where),
        "top_p": _optional(g, "topP", _number, where),
        "top_k": _optional(g, "topK", _nonnegative, where),
        "max_tokens": _optional(g, "maxOutputTokens", _positive, where),
        "seed": _optional(g, "seed", _integer, where),
        "response_format": _response_format(g),
        "reasoning": _reasoning(g.get("thinkingConfig")),
    }
    stops = _optional(g, "stopSequences", _array, where)
    if stops is not None:
        out["stop"] = tuple(_string(s, f"{where}.stopSequences[{k}]") for k, s in enumerate(stops))
    count = _optional(g, "candidateCount", _positive, where)
    if count is not None:
        out["n"] = count
    return out


def _response_format(g: Mapping[str, Any]) -> ir.ResponseFormat | None:
    where = "generationConfig"
    if g.get("responseSchema") is not None and g.get("responseJsonSchema") is not None:
        raise errors.invalid("responseSchema and responseJsonSchema are mutually exclusive", f"{where}.responseSchema")
    mime = _optional(g, "responseMimeType", _string, where)
    schema = None
    if g.get("responseJsonSchema") is not None:
        # Gemini takes Schema-style upper-case types here too (Gemini CLI's router sends
        # OBJECT, STRING): other targets need plain JSON Schema.
        schema = gemini_schema.from_gemini_schema(_object(g["responseJsonSchema"], f"{where}.responseJsonSchema"))
    elif g.get("responseSchema") is not None:
        schema = gemini_schema.from_gemini_schema(_object(g["responseSchema"], f"{where}.responseSchema"))
    if schema is not None:
        return ir.ResponseFormat("json_schema", schema)
    if mime == "application/json":
        return ir.ResponseFormat("json_object")
    return None  # text/plain; text/x.enum has no IR form (kept in raw)


def _reasoning(value: Any) -> ir.Reasoning | None:
    if value is None:
        return None
    where = "generationConfig.thinkingConfig"
    t = _fields(value, _THINKING_FIELDS, where)
    budget = _optional(t, "thinkingBudget", _budget, where)
    level = _optional(t, "thinkingLevel", _string, where)
    effort = level.lower() if level and level != "THINKING_LEVEL_UNSPECIFIED" else None
    include = _optional(t, "includeThoughts", _boolean, where)
    if budget is None and effort is None and include is None:
        return None  # an empty thinkingConfig asks for nothing
    return ir.Reasoning(
        effort=effort,
        budget_tokens=None if budget == -1 else budget,  # -1 is "dynamic": the model decides
        include_thoughts=include,
    )
