"""Backend: the IR written as a Gemini generateContent request body, and a countTokens body."""
from __future__ import annotations

from typing import Any

from app import errors, ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import loads, loads_bounded
from app.protocols import gemini_schema
from app.protocols.base import extras_to_send, opaque_out, Target
from app.protocols.gemini.common import PROVIDER
from app.protocols.gemini.call_ids import is_synthesized_id, split_signature_id


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


# What a countTokens request counts of a generate request. These go at the top level, as
# Vertex AI's CountTokensRequest has them; the Gemini API nests them in
# `generateContentRequest` (with the model), which its provider does if it counts.
COUNTED_FIELDS = ("contents", "systemInstruction", "tools", "generationConfig")


def count_tokens_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """A Gemini client's countTokens request (its `contents`, or what its `generateContentRequest`
    holds) as the counted fields of a generate request; what a counter does not take (toolConfig,
    safetySettings, cachedContent) is left out. The model is in the URL."""
    source = req.raw if req.raw is not None else build_body(req, target)
    return {name: source[name] for name in COUNTED_FIELDS if name in source}


def parse_count_tokens(body: bytes) -> int:
    """`{"totalTokens": N, ...}` -> N. Google's JSON leaves out a zero-valued field: an object
    without totalTokens counted none."""
    try:
        doc = loads(body)
    except ValueError:
        doc = None
    count = doc.get("totalTokens", 0) if isinstance(doc, dict) else None
    if not isinstance(count, int) or isinstance(count, bool):
        raise ProxyError(ErrorKind.bad_gateway, "The backend's countTokens reply has no integer totalTokens.")
    return count


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
    signature = call.signature if call.signature and call.signature_origin == PROVIDER else id_signature
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
