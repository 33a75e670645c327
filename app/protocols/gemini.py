"""Google Gemini `generateContent` / `streamGenerateContent` (v1beta), both directions.

Frontend: a client speaks Gemini to the proxy (model and stream flag come from
the URL). Backend: the proxy speaks Gemini to the provider, always streaming
with `alt=sse`. Module shape: app/protocols/base.py.

Gemini facts that shape this module (protocol reference §4, hazards in §5):
- function calls usually carry no id; results pair to calls by position and
  name, so ids are synthesized deterministically (hazard 1);
- a call's `thoughtSignature` must come back byte-exact on the next turn, and
  clients of other protocols cannot carry it, so it rides inside the
  synthesized id (`call_<hash>_ts_<signature, URL-safe base64>`, hazard 25);
- `finishReason` is STOP for call turns, so tool_calls is derived from the parts;
- streams have no terminator: a finishReason then end-of-body is the normal end.

What Gemini defines but the IR cannot model (executableCode, codeExecutionResult,
toolCall and toolResponse parts; googleSearch, codeExecution and other built-in
tools) is kept as `ir.Opaque` in place: re-sent unchanged to a Gemini backend,
refused with a 400 naming the client's field by any other. Another protocol's
request fields with no IR meaning (`ir.Extra`) are dropped or refused by the one
rule every backend applies (base.extras_to_send).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import uuid
from typing import Any, Mapping, NamedTuple

from app import errors, ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, dumps_str, loads, loads_bounded
from app.model_ids import check_model_id
from app.protocols import gemini_schema
from app.protocols.base import extras_to_send, ModelInfo, opaque_out, Target
from app.upstream.framing import Frame, encode_sse

PROVIDER = "gemini"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
RESPONSE_MODEL_FIELD = "modelVersion"

# ======================================================= tool-call identity

_SYNTHESIZED_ID = re.compile(r"call_[0-9a-f]{20}")
_SIGNATURE_MARK = "_ts_"
_BASE64_ANY_ALPHABET = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_BASE64_URLSAFE_UNPADDED = re.compile(r"[A-Za-z0-9_-]+")


def synthesize_call_id(*seed: object) -> str:
    """A deterministic id for a call Gemini sent without one: same seed, same id."""
    digest = hashlib.sha256("\x1f".join(map(str, seed)).encode()).hexdigest()
    return "call_" + digest[:20]


def encode_signature_in_id(call_id: str, signature: str) -> str:
    """Carry a thoughtSignature inside a tool-call id, in the characters every
    protocol's id field accepts (Anthropic: `[a-zA-Z0-9_-]`)."""
    if not signature or not _BASE64_ANY_ALPHABET.fullmatch(signature):
        return call_id  # not base64: it cannot ride in an id unchanged
    urlsafe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return call_id + _SIGNATURE_MARK + urlsafe


def split_signature_id(call_id: str) -> tuple[str, str | None]:
    """(id without the signature, the signature in the standard alphabet with
    its padding restored) — the inverse of `encode_signature_in_id`."""
    base, mark, encoded = call_id.partition(_SIGNATURE_MARK)
    if not mark or not _BASE64_URLSAFE_UNPADDED.fullmatch(encoded):
        return call_id, None
    standard = encoded.replace("-", "+").replace("_", "/")
    return base, standard + "=" * (-len(standard) % 4)


def is_synthesized_id(call_id: str) -> bool:
    """Whether the id was made up by this module (and so must not be sent to Gemini)."""
    return _SYNTHESIZED_ID.fullmatch(split_signature_id(call_id)[0]) is not None


class _CallIds:
    """Ids for the calls of one Gemini response, in order. Seeded by responseId
    so re-parsing gives the same ids; a random seed when there is none, so two
    responses never share ids."""

    def __init__(self, response_id: str | None):
        self._seed = response_id or uuid.uuid4().hex
        self._count = 0

    def make(self, gemini_id: Any, name: str, signature: str | None) -> str:
        base = gemini_id if isinstance(gemini_id, str) and gemini_id else synthesize_call_id(self._seed, self._count, name)
        self._count += 1
        return encode_signature_in_id(base, signature) if signature else base


# ============================================================ shared tables

_CONTENT_FILTER = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})
_TOOL_FAILURES = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
_GEMINI_FINISH_REASONS = _CONTENT_FILTER | _TOOL_FAILURES | {
    "FINISH_REASON_UNSPECIFIED", "STOP", "MAX_TOKENS", "LANGUAGE", "OTHER", "NO_IMAGE", "IMAGE_OTHER"}

_FINISH_TO_GEMINI = {
    ir.FinishReason.stop: "STOP",
    ir.FinishReason.tool_calls: "STOP",  # Gemini says STOP for call turns
    ir.FinishReason.length: "MAX_TOKENS",
    ir.FinishReason.content_filter: "SAFETY",
    ir.FinishReason.error: "OTHER",
}


def finish_reason_from_gemini(value: str | None, has_calls: bool) -> ir.FinishReason:
    """Gemini finishReason -> IR. Never a silent stop for a failed call
    (known-gateway-bugs #6); a call turn is tool_calls although Gemini says STOP (#7)."""
    if value == "MAX_TOKENS":
        return ir.FinishReason.length  # also with empty text (thinking used the budget)
    if value in _CONTENT_FILTER:
        return ir.FinishReason.content_filter
    if value in _TOOL_FAILURES:
        return ir.FinishReason.error
    return ir.FinishReason.tool_calls if has_calls else ir.FinishReason.stop


def _finish_reason_to_gemini(reason: ir.FinishReason, raw: str | None) -> str:
    # A raw Gemini value that means the same thing is more precise (RECITATION, MALFORMED_FUNCTION_CALL).
    if raw in _GEMINI_FINISH_REASONS and finish_reason_from_gemini(raw, reason == ir.FinishReason.tool_calls) == reason:
        return raw
    return _FINISH_TO_GEMINI[reason]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_gemini(meta: Mapping[str, Any]) -> ir.Usage:
    """usageMetadata -> IR usage. Gemini's candidatesTokenCount excludes thoughts;
    the IR output includes them. Tool-use prompt tokens count as prompt so the
    totals add up."""
    thoughts = _count(meta.get("thoughtsTokenCount"))
    return ir.Usage(
        input_tokens=_count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount")),
        output_tokens=_count(meta.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
        cache_read_tokens=_count(meta.get("cachedContentTokenCount")),
    )


def _usage_metadata(usage: ir.Usage) -> dict:
    meta = {"promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0)}
    if usage.reasoning_tokens > 0:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens > 0:
        meta["cachedContentTokenCount"] = usage.cache_read_tokens
    meta["totalTokenCount"] = usage.total_tokens
    return meta


def _standard_base64(data: str, where: str) -> str:
    """Base64 in either alphabet (the Python SDK sends URL-safe) -> the standard
    alphabet with padding, the IR's form."""
    text = "".join(data.split()).replace("-", "+").replace("_", "/").rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9+/]*", text) or len(text) % 4 == 1:
        raise errors.invalid(f"{where} is not valid base64", where)
    return text + "=" * (-len(text) % 4)


# ================================================= frontend: parse_request

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


# ---------------------------------------------------------- field checks

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


# ---------------------------------------------------------- contents

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


# ---------------------------------------------------------- tools, config

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


# =============================================== frontend: format_response

def format_response(resp: ir.Response, req: ir.Request) -> dict:
    """ir.Response -> GenerateContentResponse."""
    parts = [wire for part in resp.parts if (wire := _part_out(part)) is not None]
    candidate: dict[str, Any] = {"content": _model_content(parts),
                                 "finishReason": _finish_reason_to_gemini(resp.finish_reason, resp.raw_finish_reason),
                                 "index": 0}
    if resp.finish_message:
        candidate["finishMessage"] = resp.finish_message
    return {"candidates": [candidate], "usageMetadata": _usage_metadata(resp.usage),
            "modelVersion": resp.model or req.model, "responseId": resp.id}


def _model_content(parts: list[dict]) -> dict:
    return {"role": "model", "parts": parts}


def _part_out(part: ir.Part) -> dict | None:
    if isinstance(part, (ir.Text, ir.Refusal)):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Thinking):
        if not part.text:
            return None  # redacted or signature-only thinking of another provider
        wire = {"text": part.text, "thought": True}
        if part.signature and part.provider == PROVIDER:
            wire["thoughtSignature"] = part.signature
        return wire
    if isinstance(part, ir.ToolCall):
        return _function_call_part(part.id, part.name, part.arguments,
                                   part.signature if part.signature_provider == PROVIDER else None)
    if isinstance(part, ir.Image):
        if part.data:
            return {"inlineData": {"mimeType": part.media_type or "application/octet-stream", "data": part.data}}
        if part.url:
            file_data = {"fileUri": part.url}
            if part.media_type:
                file_data["mimeType"] = part.media_type
            return {"fileData": file_data}
    return None


def _function_call_part(call_id: str, name: str, arguments: str, signature: str | None) -> dict:
    """A whole functionCall part for a client. The id is included so clients can
    echo it; args unparseable as an object become {} (Gemini args are objects)."""
    try:
        args = ir.parse_arguments(arguments)
    except ValueError:
        args = {}
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args, "id": call_id}}
    if signature:
        part["thoughtSignature"] = signature
    return part


# ================================================ frontend: StreamFormatter

class StreamFormatter:
    """IR events -> the Gemini client stream.

    `sse=True` (`?alt=sse`): each chunk is `data: <GenerateContentResponse>\\n\\n`,
    no terminator. `sse=False`: the body is one JSON array written incrementally,
    `[` + first chunk, `,` + each next one, `]` from `finish()`.
    Intermediate chunks omit finishReason (never `null`, known-gateway-bugs #17);
    a tool call is sent whole at its PartStop (Gemini never fragments args).
    """

    def __init__(self, req: ir.Request, sse: bool = True):
        self._req = req
        self._sse = sse
        self._id = ""
        self._model = req.model
        self._start_usage: ir.Usage | None = None
        self._kind: str | None = None  # kind of the open part
        self._call: dict[str, Any] | None = None  # the tool call being buffered
        self._written = False  # array mode: whether `[` has been sent
        self._closed = False

    def feed(self, event: ir.Event) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, ir.MessageStart):
            self._id, self._model = event.id, event.model or self._req.model
            self._start_usage = event.usage
        elif isinstance(event, ir.PartStart):
            self._kind = event.kind
            if event.kind == "tool_call":
                self._call = {"id": event.id or "", "name": event.name or "", "args": [], "signature": None}
        elif isinstance(event, (ir.TextDelta, ir.RefusalDelta)):
            return self._parts_chunk({"text": event.text}) if event.text else b""
        elif isinstance(event, ir.ThinkingDelta):
            return self._parts_chunk({"text": event.text, "thought": True}) if event.text else b""
        elif isinstance(event, ir.ToolArgumentsDelta):
            if self._call is not None:
                self._call["args"].append(event.json)
        elif isinstance(event, ir.SignatureDelta):
            return self._signature(event)
        elif isinstance(event, ir.PartStop):
            self._kind = None
            return self._flush_call()
        elif isinstance(event, ir.MessageStop):
            return self._flush_call() + self._final_chunk(event)
        elif isinstance(event, ir.StreamError):
            return self._error(event.error)
        return b""

    def relay(self, frame: Frame) -> bytes:
        """An upstream Gemini SSE frame, re-framed for this client (passthrough)."""
        if self._closed or not frame.data.strip():
            return b""
        if frame.event != "raw" and "\n" not in frame.data:
            return self._emit(frame.data.encode())
        try:  # a raw error body or a multi-line data field: re-serialize on one line
            payload = loads(frame.data)
        except ValueError:
            return b""
        items = payload if isinstance(payload, list) else [payload]
        return b"".join(self._emit(dumps(item)) for item in items)

    def finish(self) -> bytes:
        if self._sse or self._closed:
            return b""
        self._closed = True
        return b"]" if self._written else b"[]"

    # ------------------------------------------------------------ chunks

    def _signature(self, event: ir.SignatureDelta) -> bytes:
        if event.provider != PROVIDER:
            return b""  # another provider's signature means nothing to Gemini
        if self._call is not None:
            self._call["signature"] = event.signature
            return b""
        part: dict[str, Any] = {"text": "", "thoughtSignature": event.signature}
        if self._kind == "thinking":
            part["thought"] = True
        return self._parts_chunk(part)

    def _flush_call(self) -> bytes:
        call, self._call = self._call, None
        if call is None:
            return b""
        return self._parts_chunk(_function_call_part(call["id"], call["name"], "".join(call["args"]),
                                                     call["signature"]))

    def _parts_chunk(self, part: dict) -> bytes:
        return self._emit(dumps({"candidates": [{"content": _model_content([part]), "index": 0}],
                                 "modelVersion": self._model, "responseId": self._id}))

    def _final_chunk(self, stop: ir.MessageStop) -> bytes:
        usage = stop.usage
        if usage.input_tokens == 0 and self._start_usage is not None:
            # Prompt usage known only at the start (Anthropic-style upstreams).
            usage = dataclasses.replace(usage, input_tokens=self._start_usage.input_tokens,
                                        cache_read_tokens=usage.cache_read_tokens or self._start_usage.cache_read_tokens)
        candidate: dict[str, Any] = {"content": _model_content([]),
                                     "finishReason": _finish_reason_to_gemini(stop.finish_reason, stop.raw_finish_reason),
                                     "index": 0}
        if stop.finish_message:
            candidate["finishMessage"] = stop.finish_message
        return self._emit(dumps({"candidates": [candidate], "usageMetadata": _usage_metadata(usage),
                                 "modelVersion": self._model, "responseId": self._id}))

    def _error(self, error: Any) -> bytes:
        if not isinstance(error, ProxyError):
            error = ProxyError(ErrorKind.api_error, str(error))
        status, canonical = _STATUS_BY_KIND[error.kind]
        body = dumps({"error": {"code": status, "message": error.message, "status": canonical}})
        if self._sse:
            return encode_sse(body)
        self._closed = True  # nothing may follow the error in the array
        return self._emit(body) + b"]"

    def _emit(self, body: bytes) -> bytes:
        if self._sse:
            return encode_sse(body)
        prefix = b"," if self._written else b"["
        self._written = True
        return prefix + body


# ================================================ frontend: errors, models

_STATUS_BY_KIND: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.invalid_request: (400, "INVALID_ARGUMENT"),
    ErrorKind.authentication: (401, "UNAUTHENTICATED"),
    ErrorKind.permission: (403, "PERMISSION_DENIED"),
    ErrorKind.not_found: (404, "NOT_FOUND"),
    ErrorKind.request_too_large: (400, "INVALID_ARGUMENT"),  # Gemini has no 413
    ErrorKind.rate_limit: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.api_error: (500, "INTERNAL"),
    ErrorKind.bad_gateway: (502, "UNAVAILABLE"),
    ErrorKind.overloaded: (503, "UNAVAILABLE"),
    ErrorKind.timeout: (504, "DEADLINE_EXCEEDED"),
    ErrorKind.configuration: (500, "INTERNAL"),
}
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """ProxyError -> the google.rpc.Status envelope."""
    status, canonical = _STATUS_BY_KIND[err.kind]
    error: dict[str, Any] = {"code": status, "message": err.message, "status": canonical}
    details = []
    if err.param:
        details.append({"@type": _BAD_REQUEST_TYPE,
                        "fieldViolations": [{"field": err.param, "description": err.message}]})
    if err.retry_after and _seconds(err.retry_after) is not None:
        # Google clients (genai SDK, gemini-cli) read the delay from RetryInfo, not the header.
        details.append({"@type": _RETRY_INFO_TYPE, "retryDelay": f"{_seconds(err.retry_after)}s"})
    if details:
        error["details"] = details
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    if err.retry_after:
        headers["Retry-After"] = str(err.retry_after)
    return status, headers, dumps({"error": error})


def _seconds(value: str) -> int | None:
    try:
        return max(math.ceil(float(value)), 0)
    except (TypeError, ValueError):
        return None


def format_models(models: list[ModelInfo]) -> dict:
    return {"models": [{"name": "models/" + m.id.removeprefix("models/"),
                        "displayName": m.id.removeprefix("models/"),
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}
                       for m in models]}


# ================================================= backend: build_request

# Reasoning effort -> thinkingBudget (policy from hazard 26).
_MAX_STOP_SEQUENCES = 5
_GEMINI_FILE_PREFIXES = ("https://generativelanguage.googleapis.com/", "gs://",
                         "https://www.youtube.com/", "https://youtube.com/", "https://youtu.be/")


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """ir.Request -> a generateContent body (the model and streaming are in the URL)."""
    if req.n > 1:
        raise errors.invalid("n > 1 is not supported for Gemini backends", "n")
    return _request_body(req)


def passthrough_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """Same-protocol hop: the client's body unchanged; the model lives in the URL."""
    if req.raw is None:
        return build_body(req, target)
    return req.raw


def _request_body(req: ir.Request) -> dict:
    # Leading system messages become systemInstruction. A later one (an OpenAI system
    # message mid-history, Claude Code's mid-conversation agent list) stays in its turn,
    # as user text marked "System: ", rather than being folded into systemInstruction:
    # the model then reads it where the client put it, and systemInstruction, which
    # precedes all contents, stays the same from turn to turn, so Gemini's implicit
    # prefix cache keeps working (the reason Claude Code puts it mid-conversation).
    system, rest = ir.split_system(req.messages)
    contents = _contents(rest, ir.tool_names_by_id(req.messages))
    if not contents:
        raise errors.invalid("the request has no user or assistant turns to send", "messages")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    if req.tools:
        # One functionDeclarations entry (where the first function is) beside built-in tools, in order.
        body["tools"] = []
        declarations: list[dict] = []
        for t in req.tools:
            if t.native is not None:
                body["tools"].append(opaque_out(t.native, PROVIDER, "a Gemini backend"))
                continue
            if not declarations:
                body["tools"].append({"functionDeclarations": declarations})
            declarations.append(_declaration_out(t))
        if req.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(req.tool_choice)}
    generation = _generation_config(req)
    if generation:
        body["generationConfig"] = generation
    body.update(extras_to_send(req, PROVIDER, "a Gemini backend"))
    return body


def _contents(messages: list[ir.Message], names: dict[str, str]) -> list[dict]:
    """IR turns -> Gemini contents. Tool results (one or several tool messages in
    a row) become ONE user content answering the model turn just before them."""
    contents: list[dict] = []
    calls: list[ir.ToolCall] = []  # the previous model turn's calls
    results: list[ir.ToolResult] = []
    for m in messages:
        results.extend(p for p in m.parts if isinstance(p, ir.ToolResult))
        others = [p for p in m.parts if not isinstance(p, ir.ToolResult)]
        if not others:
            continue
        if results:
            contents.append(_function_responses(results, calls, names))
            results = []
        role = "model" if m.role == "assistant" else "user"
        parts = [wire for p in others if (wire := _part_for_upstream(p)) is not None]
        if parts:
            contents.append({"role": role, "parts": parts})
        calls = [p for p in others if isinstance(p, ir.ToolCall)] if role == "model" else []
    if results:
        contents.append(_function_responses(results, calls, names))
    return contents


def _part_for_upstream(part: ir.Part) -> dict | None:
    if isinstance(part, (ir.Text, ir.Refusal)):
        return {"text": part.text} if part.text.strip() else None  # Gemini 400s on empty text
    if isinstance(part, ir.Image):
        return _image_for_upstream(part)
    if isinstance(part, ir.ToolCall):
        return _function_call_for_upstream(part)
    if isinstance(part, ir.Opaque):
        return opaque_out(part, PROVIDER, "a Gemini backend")
    return None  # Thinking is never sent as text; its signatures ride on the calls


def _function_call_for_upstream(call: ir.ToolCall) -> dict:
    try:
        args = call.arguments_object()
    except ValueError:
        raise errors.invalid(f"tool call {call.id!r} has arguments that are not a JSON object; "
                             "Gemini needs an object") from None
    base_id, id_signature = split_signature_id(call.id)
    function_call: dict[str, Any] = {"name": call.name, "args": args}
    if not is_synthesized_id(call.id):
        function_call["id"] = base_id
    part: dict[str, Any] = {"functionCall": function_call}
    # Only Gemini's own signature goes back (hazard 25), byte-exact.
    signature = call.signature if call.signature and call.signature_provider == PROVIDER else id_signature
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_responses(results: list[ir.ToolResult], calls: list[ir.ToolCall],
                        names: dict[str, str]) -> dict:
    """One functionResponse per call of the previous model turn, in call order
    (Gemini pairs by position and name and 400s on a count mismatch)."""
    for r in results:
        if r.call_id not in names:
            raise errors.invalid(f"tool result for unknown tool call id {r.call_id!r}: "
                                 "no assistant turn in the history made that call")
    by_id = {r.call_id: r for r in reversed(results)}  # the first result for an id wins
    call_ids = {c.id for c in calls}
    stray = next((r for r in results if r.call_id not in call_ids), None)
    if stray is not None:
        raise errors.invalid(f"tool result for {stray.call_id!r} does not follow the assistant turn that made "
                             "the call; Gemini needs results right after their calls")
    missing = next((c for c in calls if c.id not in by_id), None)
    if missing is not None:
        raise errors.invalid(f"tool call {missing.id!r} ({missing.name}) has no result; Gemini needs one "
                             "result for every call of a turn")
    parts: list[dict] = []
    images: list[dict] = []
    for call in calls:
        result = by_id[call.id]
        function_response: dict[str, Any] = {"name": result.name or names[result.call_id],
                                             "response": _response_object(result)}
        if not is_synthesized_id(result.call_id):
            function_response["id"] = split_signature_id(result.call_id)[0]
        parts.append({"functionResponse": function_response})
        images.extend(_image_for_upstream(p) if isinstance(p, ir.Image) else opaque_out(p, PROVIDER, "a Gemini backend")
                      for p in result.content if isinstance(p, (ir.Image, ir.Opaque)))
    return {"role": "user", "parts": parts + images}


def _response_object(result: ir.ToolResult) -> dict:
    """Result text -> functionResponse.response, which must be an object (hazard 9)."""
    text = result.text()
    if result.is_error:
        return {"error": text}
    try:
        value = loads_bounded(text)
    except ValueError:  # not JSON, or too deep to send on as JSON: the text it is
        value = None
    return value if isinstance(value, dict) else {"output": text}


def _image_for_upstream(image: ir.Image) -> dict:
    if image.data:
        return {"inlineData": {"mimeType": image.media_type or _media_type_of(image.data), "data": image.data}}
    url = image.url or ""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or None
        return {"inlineData": {"mimeType": media_type or _media_type_of(data), "data": data}}
    if url.startswith(_GEMINI_FILE_PREFIXES):
        file_data = {"fileUri": url}
        if image.media_type:
            file_data["mimeType"] = image.media_type
        return {"fileData": file_data}
    raise errors.invalid("Gemini cannot fetch image URLs; send the image inline as a data URL")


def _media_type_of(data: str) -> str:
    media_type = ir.sniff_image_type(data)
    if media_type is None:  # Gemini needs a mimeType, and guessing one would misdescribe the bytes
        raise errors.invalid("the image's media type is unknown; send it with its media type")
    return media_type


def _declaration_out(tool: ir.Tool) -> dict:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    parameters = gemini_schema.to_gemini_parameters(tool.parameters)
    if parameters is None:
        return declaration  # no-arg tools: no parameters at all (hazard 21)
    if gemini_schema.fits_schema_subset(parameters):
        declaration["parameters"] = parameters
    else:  # a free-form object or an any-value field: only the JSON Schema channel can say it
        declaration["parametersJsonSchema"] = gemini_schema.to_gemini_json_schema(tool.parameters)
    return declaration


def _calling_config(choice: ir.ToolChoice) -> dict:
    if choice.mode == "tool" and choice.name:
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice.mode, "AUTO")}


def _generation_config(req: ir.Request) -> dict:
    g: dict[str, Any] = {}
    for key, value in (("temperature", req.temperature), ("topP", req.top_p), ("topK", req.top_k),
                       ("maxOutputTokens", req.max_tokens), ("seed", req.seed)):
        if value is not None:
            g[key] = value
    if req.stop:
        if len(req.stop) > _MAX_STOP_SEQUENCES:
            raise errors.invalid(f"Gemini accepts at most {_MAX_STOP_SEQUENCES} stop sequences", "stop")
        g["stopSequences"] = list(req.stop)
    rf = req.response_format
    if rf is not None and rf.type != "text":
        g["responseMimeType"] = "application/json"
        schema = gemini_schema.to_gemini_parameters(rf.schema) if rf.type == "json_schema" else None
        if schema is not None and gemini_schema.fits_schema_subset(schema):
            g["responseSchema"] = schema
        elif schema is not None:  # as for tools: what the Schema subset cannot say goes as JSON Schema
            g["responseJsonSchema"] = gemini_schema.to_gemini_json_schema(rf.schema)
    if req.reasoning is not None:
        thinking = _thinking_config(req.reasoning)
        if thinking:
            g["thinkingConfig"] = thinking
    return g


def _thinking_config(reasoning: ir.Reasoning) -> dict:
    config: dict[str, Any] = {}
    budget = reasoning.budget_tokens
    if budget is None and reasoning.effort is not None:
        budget = 0 if reasoning.effort == "none" else ir.EFFORT_BUDGETS.get(reasoning.effort)
    if budget is not None:
        config["thinkingBudget"] = budget
    if reasoning.include_thoughts is not False and budget != 0:  # nothing to include when thinking is off
        config["includeThoughts"] = True
    return config


# ================================================ backend: parse_response

def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """GenerateContentResponse -> ir.Response."""
    data = _json_body(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise _malformed("upstream Gemini response is not a JSON object")
    if isinstance(data.get("error"), dict):
        raise _error_from_status(data["error"], 0, {})
    response_id = data.get("responseId") or ""
    model = data.get("modelVersion") or req.model
    usage = usage_from_gemini(data.get("usageMetadata") or {})
    candidates = data.get("candidates") or []
    if not candidates:
        feedback = data.get("promptFeedback") or {}
        if feedback.get("blockReason"):  # the prompt was blocked: a filter result, not an HTTP error
            return ir.Response(response_id, model, (), ir.FinishReason.content_filter, usage,
                               raw_finish_reason=feedback["blockReason"],
                               finish_message=feedback.get("blockReasonMessage"))
        raise _malformed("upstream Gemini response has no candidates")
    candidate = candidates[0]
    parts = _response_parts(candidate, _CallIds(response_id))
    raw_reason = candidate.get("finishReason")
    has_calls = any(isinstance(p, ir.ToolCall) for p in parts)
    return ir.Response(response_id, model, parts, finish_reason_from_gemini(raw_reason, has_calls), usage,
                       raw_finish_reason=raw_reason, finish_message=candidate.get("finishMessage"))


def _response_parts(candidate: Mapping[str, Any], ids: _CallIds) -> tuple[ir.Part, ...]:
    parts: list[ir.Part] = []
    for raw in (candidate.get("content") or {}).get("parts") or ():
        if not isinstance(raw, dict):
            continue
        signature = raw.get("thoughtSignature") or None
        if isinstance(raw.get("functionCall"), dict):
            parts.append(_tool_call(raw["functionCall"], signature, ids))
        elif "text" in raw:
            text = raw.get("text") or ""
            if raw.get("thought"):
                if text or signature:
                    parts.append(ir.Thinking(text, signature, None, PROVIDER))
            elif text:
                if parts and isinstance(parts[-1], ir.Text):
                    parts[-1] = ir.Text(parts[-1].text + text)  # one text block, not many
                else:
                    parts.append(ir.Text(text))
            elif signature and parts and isinstance(parts[-1], ir.Thinking) and parts[-1].signature is None:
                parts[-1] = dataclasses.replace(parts[-1], signature=signature)
        elif isinstance(raw.get("inlineData"), dict):
            inline = raw["inlineData"]
            parts.append(ir.Image(data=_standard_base64(inline.get("data") or "", "inlineData.data"),
                                  media_type=inline.get("mimeType")))
    return tuple(p for p in parts if not isinstance(p, ir.Text) or p.text.strip())


def _tool_call(function_call: Mapping[str, Any], signature: str | None, ids: _CallIds) -> ir.ToolCall:
    name = function_call.get("name") or ""
    args = function_call.get("args")
    return ir.ToolCall(ids.make(function_call.get("id"), name, signature), name,
                       dumps_str(args if isinstance(args, dict) else {}),
                       signature, PROVIDER if signature else None)


def _json_body(body: bytes) -> Any:
    try:
        return loads(body)
    except ValueError:
        raise _malformed("upstream Gemini response is not JSON") from None


def _malformed(message: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, message, provider=PROVIDER)


# =================================================== backend: StreamParser


def is_content_frame(frame: Frame) -> bool:
    """A chunk with no finishReason, no error and no promptFeedback: content
    only (its usageMetadata is a running count; the last chunk carries the
    total). A passthrough relay, which parses frames only to notice the end,
    errors and usage, may leave it unparsed."""
    d = frame.data
    return (frame.event is None and d.startswith("{") and '"finishReason"' not in d
            and '"error"' not in d and '"promptFeedback"' not in d)


class StreamParser:
    """Gemini SSE frames -> IR events.

    Each chunk is a whole GenerateContentResponse with only the NEW parts. Text
    stays one open part across chunks until another kind arrives; a functionCall
    arrives whole and becomes a complete tool_call part at once (start, the whole
    args JSON, stop: known-gateway-bugs #4/#10); usageMetadata is a running
    total, so the last one wins. The stream has no terminator: MessageStop is
    emitted at close() when a finishReason was seen, else a StreamError.
    """

    def __init__(self, req: ir.Request):
        self._req = req
        self._ids: _CallIds | None = None
        self._open: tuple[str, int] | None = None  # (kind, index) of the open part
        self._next_index = 0
        self._usage = ir.Usage()
        self._finish_seen = False
        self._finish_raw: str | None = None
        self._finish_message: str | None = None
        self._blocked = False
        self._has_calls = False
        self._done = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done or not frame.data.strip():
            return []
        try:
            payload = loads(frame.data)
        except ValueError:
            return self._fail(_malformed("malformed frame in the upstream Gemini stream"))
        events: list[ir.Event] = []
        for chunk in payload if isinstance(payload, list) else [payload]:
            if not isinstance(chunk, dict):
                return events + self._fail(_malformed("malformed frame in the upstream Gemini stream"))
            if isinstance(chunk.get("error"), dict):  # an error written into the stream (data: or raw)
                return events + self._fail(_error_from_status(chunk["error"], 0, {}))
            events.extend(self._chunk(chunk))
        return events

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        if not self._finish_seen:
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion",
                                         provider=PROVIDER))
        self._done = True
        reason = (ir.FinishReason.content_filter if self._blocked
                  else finish_reason_from_gemini(self._finish_raw, self._has_calls))
        return self._close_part() + [ir.MessageStop(reason, self._usage, raw_finish_reason=self._finish_raw,
                                                    finish_message=self._finish_message)]

    # ------------------------------------------------------------ chunks

    def _chunk(self, chunk: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        if self._ids is None:
            self._ids = _CallIds(chunk.get("responseId"))
            prompt = usage_from_gemini(chunk.get("usageMetadata") or {})
            events.append(ir.MessageStart(chunk.get("responseId") or "", chunk.get("modelVersion") or self._req.model,
                                          ir.Usage(input_tokens=prompt.input_tokens,
                                                   cache_read_tokens=prompt.cache_read_tokens)))
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = usage_from_gemini(chunk["usageMetadata"])  # running totals: never summed
        candidates = chunk.get("candidates") or []
        if candidates and isinstance(candidates[0], dict):
            candidate = candidates[0]
            for raw in (candidate.get("content") or {}).get("parts") or ():
                if isinstance(raw, dict):
                    events.extend(self._part(raw))
            if candidate.get("finishReason"):
                self._finish_seen = True
                self._finish_raw = candidate["finishReason"]
                self._finish_message = candidate.get("finishMessage")
                events.extend(self._close_part())
        elif (chunk.get("promptFeedback") or {}).get("blockReason"):
            self._finish_seen = self._blocked = True
            self._finish_raw = chunk["promptFeedback"]["blockReason"]
            self._finish_message = chunk["promptFeedback"].get("blockReasonMessage")
        return events

    def _part(self, raw: dict) -> list[ir.Event]:
        signature = raw.get("thoughtSignature") or None
        if isinstance(raw.get("functionCall"), dict):
            return self._tool_call(raw["functionCall"], signature)
        if "text" not in raw:
            return []  # inline images, executable code: no stream event for them
        text = raw.get("text") or ""
        kind = "thinking" if raw.get("thought") else "text"
        events: list[ir.Event] = []
        if text:
            events += self._open_part(kind)
            index = self._open[1]
            events.append(ir.ThinkingDelta(index, text) if kind == "thinking" else ir.TextDelta(index, text))
        if signature and (kind == "thinking" or (self._open and self._open[0] == "thinking")):
            events += self._open_part("thinking")
            events.append(ir.SignatureDelta(self._open[1], signature, PROVIDER))
            # One signature per part: a later one starts a new part, never merged (known-gateway-bugs #9).
            events += self._close_part()
        return events  # a signature on plain text has no IR slot (optional for Gemini)

    def _tool_call(self, function_call: dict, signature: str | None) -> list[ir.Event]:
        events = self._close_part()
        call = _tool_call(function_call, signature, self._ids)
        index = self._next_index
        self._next_index += 1
        self._has_calls = True
        events += [ir.PartStart(index, "tool_call", call.id, call.name), ir.ToolArgumentsDelta(index, call.arguments)]
        if signature:
            events.append(ir.SignatureDelta(index, signature, PROVIDER))
        events.append(ir.PartStop(index))
        return events

    def _open_part(self, kind: str) -> list[ir.Event]:
        if self._open is not None and self._open[0] == kind:
            return []
        events = self._close_part()
        self._open = (kind, self._next_index)
        self._next_index += 1
        return events + [ir.PartStart(self._open[1], kind)]

    def _close_part(self) -> list[ir.Event]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [ir.PartStop(index)]

    def _fail(self, error: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(error)]


# ===================================================== backend: parse_error

_KIND_BY_CANONICAL = {
    "INVALID_ARGUMENT": ErrorKind.invalid_request,
    "FAILED_PRECONDITION": ErrorKind.invalid_request,
    "OUT_OF_RANGE": ErrorKind.invalid_request,
    "UNAUTHENTICATED": ErrorKind.authentication,
    "PERMISSION_DENIED": ErrorKind.permission,
    "NOT_FOUND": ErrorKind.not_found,
    "RESOURCE_EXHAUSTED": ErrorKind.rate_limit,
    "INTERNAL": ErrorKind.api_error,
    "UNKNOWN": ErrorKind.api_error,
    "UNAVAILABLE": ErrorKind.overloaded,
    "DEADLINE_EXCEEDED": ErrorKind.timeout,
}


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """A Gemini error reply (google.rpc.Status, or a one-element array of it) -> ProxyError."""
    try:
        data = loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return _error_from_status(error, status, headers)
    text = body.decode("utf-8", "replace").strip()[:500] or f"upstream returned HTTP {status}"
    return ProxyError(errors.kind_for_status(status), errors.redact(text),
                      retry_after=errors.retry_after_from_headers(headers), provider=PROVIDER)


def _error_from_status(error: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> ProxyError:
    code = status or (error.get("code") if isinstance(error.get("code"), int) else 502)
    details = [d for d in error.get("details") or () if isinstance(d, dict)]
    canonical = error.get("status")
    if any(d.get("reason") == "API_KEY_INVALID" for d in details):
        kind = ErrorKind.authentication  # Gemini says 400 INVALID_ARGUMENT for a bad key
    else:
        kind = _KIND_BY_CANONICAL.get(canonical) or errors.kind_for_status(code)
    message = str(error.get("message") or canonical or f"upstream returned HTTP {code}")
    return ProxyError(kind, errors.redact(message), param=_field_violation(details),
                      retry_after=_retry_delay(details) or errors.retry_after_from_headers(headers),
                      provider=PROVIDER)


def _retry_delay(details: list[dict]) -> str | None:
    """RetryInfo.retryDelay ("37s", "1.5s") -> whole seconds for Retry-After."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str):
            seconds = _seconds(delay.removesuffix("s"))
            if seconds is not None:
                return str(seconds)
    return None


def _field_violation(details: list[dict]) -> str | None:
    for detail in details:
        for violation in detail.get("fieldViolations") or ():
            if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                return violation["field"]
    return None
