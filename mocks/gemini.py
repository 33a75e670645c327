"""Gemini API (`/v1beta/models/{model}:generateContent`,
`:streamGenerateContent` with or without `alt=sse`, `:countTokens`,
`GET /v1beta/models`): API-key auth, proto-strict parsing (gemini_schema),
the semantic rules of protocols §4 and Appendix A, scenario detection, and
both stream forms (SSE `data:` events; one JSON array written element by
element)."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from flask import Response

from mocks.gemini_schema import ProtoWalker
from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, google_sse_json, pretty_json, stable_id

# id -> (display name, input limit, output limit, thinking)
MODELS = {
    "gemini-2.5-flash": ("Gemini 2.5 Flash", 1048576, 65536, True),
    "gemini-2.0-flash": ("Gemini 2.0 Flash", 1048576, 8192, False),
    "gemini-2.5-pro": ("Gemini 2.5 Pro", 1048576, 65536, True),
}
ALWAYS_THINKING = ("gemini-2.5-pro",)
METHODS = ("generateContent", "streamGenerateContent", "countTokens")
DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
               "codeExecutionResult")
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:\-]{0,127}$")
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


# ------------------------------------------------------------------ envelopes

def error(status: int, message: str, details: list | None = None, status_name: str | None = None) -> ApiError:
    body: dict[str, Any] = {"code": status, "message": message,
                            "status": status_name or STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        body["details"] = details
    return ApiError(status, {"error": body})


def invalid(message: str, field: str | None = None) -> ApiError:
    details = None
    if field is not None:
        details = [{"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}]
    return error(400, message, details)


class _Problems:
    """Semantic violations, reported together as `* GenerateContentRequest.<path>: <text>` lines."""

    def __init__(self, root: str = "GenerateContentRequest"):
        self.root = root
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, text: str) -> None:
        self.items.append((path, text))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        message = "".join(f"* {self.root}.{path}: {text}\n" for path, text in self.items)
        details = [{"@type": BAD_REQUEST, "fieldViolations": [{"field": path, "description": text}
                                                               for path, text in self.items]}]
        raise error(400, message, details)


# ------------------------------------------------------------------ semantic checks

def _check_schema(schema: dict, path: str, problems: _Problems, root: bool = True) -> None:
    """The Schema rules the API applies. An OBJECT needs properties at any depth
    (a free-form nested object is refused too: discuss.ai.google.dev topic 64086,
    "parameters.properties[params].properties: should be non-empty for OBJECT
    type"). Every node below the root needs a type unless it is an anyOf
    (danny-avila/LibreChat#6971: "type: must be specified when not using one_of,
    any_of or all_of fields")."""
    kind = schema.get("type")
    properties = schema.get("properties") or {}
    if kind is None and "anyOf" not in schema and not root:
        problems.add(f"{path}.type", "must be specified when not using one_of, any_of or all_of fields")
    if kind == "OBJECT" and not properties:
        problems.add(f"{path}.properties", "should be non-empty for OBJECT type")
    if kind == "ARRAY" and "items" not in schema:
        problems.add(f"{path}.items", "missing field.")
    if "enum" in schema and kind not in ("STRING", None):
        problems.add(f"{path}.enum", "only allowed for STRING type")
    for i, name in enumerate(schema.get("required", [])):
        if name not in properties:
            problems.add(f"{path}.required[{i}]", "property is not defined")
    for i, (name, child) in enumerate(properties.items()):
        _check_schema(child, f"{path}.properties[{i}].value", problems, root=False)
    if "items" in schema:
        _check_schema(schema["items"], f"{path}.items", problems, root=False)
    for i, child in enumerate(schema.get("anyOf", [])):
        _check_schema(child, f"{path}.any_of[{i}]", problems, root=False)


# The JSON Schema keys `parametersJsonSchema` / `responseJsonSchema` support (protocols
# §4.4, from the SDK's docstring); gateways saw `$schema` and `exclusiveMinimum` from
# Claude Code's tools refused (router-for-me/CLIProxyAPI#97, ruvnet/agentic-flow#55).
JSON_SCHEMA_KEYS = frozenset({
    "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items", "prefixItems",
    "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties", "additionalProperties",
    "required", "propertyOrdering",
})


def _check_json_schema(schema: Any, path: str, problems: _Problems) -> None:
    if isinstance(schema, bool):
        return  # `true` / `false` schemas (additionalProperties: false)
    if not isinstance(schema, dict):
        problems.add(path, "must be a JSON Schema object")
        return
    for key, value in schema.items():
        if key not in JSON_SCHEMA_KEYS:
            problems.add(f"{path}.{key}", f"Unsupported JSON Schema keyword \"{key}\"")
        elif key in ("properties", "$defs") and isinstance(value, dict):
            for name, child in value.items():
                _check_json_schema(child, f"{path}.{key}.{name}", problems)
        elif key in ("items", "additionalProperties"):
            _check_json_schema(value, f"{path}.{key}", problems)
        elif key in ("anyOf", "oneOf", "prefixItems") and isinstance(value, list):
            for i, child in enumerate(value):
                _check_json_schema(child, f"{path}.{key}[{i}]", problems)


def _check_parts(parts: list[dict], path: str, problems: _Problems) -> None:
    if not parts:
        problems.add(f"{path}.parts", "contents.parts must not be empty.")
        return
    for j, part in enumerate(parts):
        present = [f for f in DATA_FIELDS if f in part]
        if len(present) > 1:
            raise invalid(f"Invalid value at '{path}.parts[{j}]' (oneof), oneof field 'data' is already set. "
                          f"Cannot set '{present[1]}'", f"{path}.parts[{j}]")
        if not present:
            if "thoughtSignature" in part:
                continue  # a bare signature part, as Gemini itself emits when streaming
            problems.add(f"{path}.parts[{j}].data", "required oneof field 'data' must have one initialized field")
        elif present[0] == "text" and part["text"] == "" and "thoughtSignature" not in part:
            raise invalid("Unable to submit request because it has an empty text parameter. Add a value to the "
                          "parameter and try again.", f"{path}.parts[{j}].text")


def _calls(content: dict) -> list[str]:
    return [p["functionCall"].get("name", "") for p in content.get("parts", []) if "functionCall" in p]


def _responses(content: dict) -> list[str]:
    return [p["functionResponse"].get("name", "") for p in content.get("parts", []) if "functionResponse" in p]


def _check_function_turns(contents: list[dict]) -> None:
    for i, content in enumerate(contents):
        responses = _responses(content)
        previous = contents[i - 1] if i > 0 else None
        if responses and (previous is None or previous.get("role") != "model" or not _calls(previous)):
            raise invalid("Please ensure that function response turn comes immediately after a function call turn.")
        calls = _calls(content)
        if not calls or content.get("role") != "model":
            continue
        if previous is None or (previous.get("role", "user") != "user"):
            raise invalid("Please ensure that function call turn comes immediately after a user turn or after a "
                          "function response turn.")
        if i + 1 >= len(contents):
            continue
        answered = _responses(contents[i + 1])
        if len(answered) != len(calls):
            raise invalid("Please ensure that the number of function response parts is equal to the number of "
                          "function call parts of the function call turn.")
        unexpected = Counter(answered) - Counter(calls)
        if unexpected:
            name = sorted(unexpected)[0]
            raise invalid("Please ensure that the name of each function response part matches the name of a "
                          f"function call part of the function call turn. Unexpected name: \"{name}\".")


def _check_tools(tools: list[dict], problems: _Problems) -> None:
    for t, tool in enumerate(tools):
        for d, decl in enumerate(tool.get("functionDeclarations", [])):
            path = f"tools[{t}].function_declarations[{d}]"
            name = decl.get("name", "")
            if not FUNCTION_NAME.match(name):
                problems.add(f"{path}.name", "Invalid function name. Must start with a letter or an underscore. "
                                             "Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons "
                                             "(:), or dashes (-), with a maximum length of 128.")
            if "parameters" in decl and "parametersJsonSchema" in decl:
                problems.add(path, "parameters and parameters_json_schema must not both be set.")
            if "parameters" in decl:
                _check_schema(decl["parameters"], f"{path}.parameters", problems)
            if "parametersJsonSchema" in decl:
                _check_json_schema(decl["parametersJsonSchema"], f"{path}.parameters_json_schema", problems)


def _check_generation_config(config: dict, model: str, problems: _Problems) -> None:
    stops = config.get("stopSequences", [])
    if len(stops) > 5:
        problems.add("generation_config.stop_sequences",
                     f"the number of stop_sequences must be at most 5, got {len(stops)}.")
    temperature = config.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        problems.add("generation_config.temperature", "temperature must be in the range [0.0, 2.0].")
    top_p = config.get("topP")
    if top_p is not None and not 0 <= top_p <= 1:
        problems.add("generation_config.top_p", "top_p must be in the range [0.0, 1.0].")
    if ("responseSchema" in config or "responseJsonSchema" in config) \
            and config.get("responseMimeType") not in ("application/json", "text/x.enum"):
        problems.add("generation_config.response_mime_type",
                     "response_mime_type must be application/json or text/x.enum when a response schema is set.")
    if "responseSchema" in config:
        _check_schema(config["responseSchema"], "generation_config.response_schema", problems)
    budget = (config.get("thinkingConfig") or {}).get("thinkingBudget")
    if budget == 0 and model in ALWAYS_THINKING:
        raise invalid("Budget 0 is invalid. This model only works in thinking mode.")


def check_request(request: dict, model: str, root: str = "GenerateContentRequest") -> None:
    """The semantic rules, on a normalized (camelCase) request."""
    problems = _Problems(root)
    contents = request.get("contents", [])
    if not contents:
        problems.add("contents", "contents is not specified")
        problems.raise_if_any()
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model", ""):
            raise invalid("Please use a valid role: user, model.", f"contents[{i}].role")
        _check_parts(content.get("parts", []), f"contents[{i}]", problems)
    if "systemInstruction" in request:
        _check_parts(request["systemInstruction"].get("parts", []), "system_instruction", problems)
    _check_tools(request.get("tools", []), problems)
    _check_generation_config(request.get("generationConfig", {}), model, problems)
    calling = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if calling.get("allowedFunctionNames") and calling.get("mode") not in ("ANY", "VALIDATED"):
        problems.add("tool_config.function_calling_config.allowed_function_names",
                     "allowed_function_names may only be set when mode is ANY or VALIDATED.")
    problems.raise_if_any()
    _check_function_turns(contents)


def parse_request(body: dict, message: str = "GenerateContentRequest") -> dict:
    """Proto-parse the body; every unknown name / bad value is reported at once."""
    walker = ProtoWalker()
    normalized = walker.message(body, message, "") or {}
    items = walker.violations.items
    if items:
        text = "\n".join(description for _, description in items)
        details = [{"@type": BAD_REQUEST, "fieldViolations": [{"field": f, "description": d} for f, d in items]}]
        raise error(400, text, details)
    return normalized


def estimate_tokens(request: dict) -> int:
    """A deterministic stand-in for the tokenizer: ~4 characters a token, the system instruction's
    counted with the contents."""
    counted = [*request.get("contents", []), request.get("systemInstruction") or {}]
    size = sum(len(p.get("text", "")) for c in counted for p in c.get("parts", []))
    return max(1, size // 4)


# ------------------------------------------------------------------ stream writers

class _SseWriter:
    """`data: <json>` events and no terminator (the stream just ends)."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        return f"data: {fill_text(frame.encoded(google_sse_json), lookup)}\n\n".encode()

    def end(self) -> bytes:
        return b""


class _ArrayWriter:
    """One JSON array written incrementally: `[{…}`, `,\\r\\n{…}`, …, `]`."""

    def __init__(self) -> None:
        self.started = False

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        text = frame.raw if frame.raw is not None else frame.encoded(pretty_json)
        prefix = ",\r\n" if self.started else "["
        self.started = True
        return (prefix + fill_text(text, lookup)).encode()

    def end(self) -> bytes:
        return b"]" if self.started else b"[]"


def _has_thoughts(response: Any) -> bool:
    return isinstance(response, dict) and any(
        p.get("thought") is True for c in response.get("candidates", [])
        for p in (c.get("content") or {}).get("parts", []))


def _without_thoughts(response: Any) -> Any:
    """Thought summaries are only sent when thinkingConfig.includeThoughts is true."""
    if not _has_thoughts(response):
        return response
    candidates = []
    for candidate in response["candidates"]:
        content = candidate.get("content")
        if isinstance(content, dict) and "parts" in content:
            parts = [p for p in content["parts"] if p.get("thought") is not True]
            candidate = {**candidate, "content": {**content, "parts": parts}}
        candidates.append(candidate)
    return {**response, "candidates": candidates}


def _is_empty_chunk(response: Any) -> bool:
    if not isinstance(response, dict) or not response.get("candidates"):
        return False
    return all(not (c.get("content") or {}).get("parts") and "finishReason" not in c for c in response["candidates"])


# ------------------------------------------------------------------ the provider

class GeminiProvider(Provider):
    name = "gemini"

    def authenticate(self, call: Call) -> None:
        key = call.header("x-goog-api-key") or call.query.get("key", "").strip()
        if not key:
            scheme, _, token = (call.header("Authorization") or "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else ""
        if not key:
            raise error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                             "Please use API Key or other form of API consumer identity to call this API.",
                        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                          "domain": "googleapis.com",
                          "metadata": {"service": "generativelanguage.googleapis.com"}}])
        if key == "invalid":
            message = "API key not valid. Please pass a valid API key."
            raise error(400, message, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
            ])

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        message = f"Invalid JSON payload received. {detail}"
        return invalid(message, "")

    def too_large(self, call: Call) -> ApiError:
        return invalid("Request payload size exceeds the limit: 33554432 bytes.")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        return error(status, message)

    def model_not_found(self, call: Call, method: str) -> ApiError:
        version = call.notes.get("api_version", "v1beta")
        return error(404, f"models/{call.model} is not found for API version {version}, or is not supported for "
                          f"{method}. Call ListModels to see the list of available models and their supported "
                          "methods.")

    def validate(self, call: Call) -> None:
        normalized = parse_request(call.body)
        if call.model not in MODELS:
            raise self.model_not_found(call, call.notes["method"])
        check_request(normalized, call.model)
        call.notes["request"] = normalized

    def detect(self, call: Call) -> str:
        request = call.notes["request"]
        parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
        if any("functionResponse" in p for p in parts):
            return "after_tool_result"
        if any(t.get("functionDeclarations") for t in request.get("tools", [])):
            return "function_calling"
        thinking = (request.get("generationConfig") or {}).get("thinkingConfig") or {}
        if thinking.get("thinkingBudget", 0) != 0 or thinking.get("includeThoughts") is True:
            return "thinking"
        for part in parts:
            blob = part.get("inlineData") or part.get("fileData") or {}
            if str(blob.get("mimeType", "")).startswith("image/"):
                return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def _sse(self, call: Call) -> bool:
        return call.query.get("alt") == "sse"

    def _includes_thoughts(self, call: Call) -> bool:
        config = (call.notes.get("request") or {}).get("generationConfig") or {}
        return (config.get("thinkingConfig") or {}).get("includeThoughts") is True

    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        # streamGenerateContent without alt=sse answers with an array even for errors.
        if status >= 400 and call.stream and not self._sse(call):
            body = [body]
        return (pretty_json(body) + "\n").encode()

    def body_content_type(self, call: Call) -> str:
        return "application/json; charset=UTF-8"

    def stream_content_type(self, call: Call) -> str:
        return "text/event-stream" if self._sse(call) else "application/json; charset=UTF-8"

    def stream_writer(self, call: Call) -> _SseWriter | _ArrayWriter:
        return _SseWriter() if self._sse(call) else _ArrayWriter()

    def response_headers(self, call: Call) -> dict[str, str]:
        return {"x-goog-request-id": stable_id(call.path.encode() + call.raw_body, "request", 16)}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        if self._includes_thoughts(call):
            return frames
        kept = []
        for frame in frames:
            if not _has_thoughts(frame.data):
                kept.append(frame)  # unchanged: keeps its cached encoding
                continue
            data = _without_thoughts(frame.data)
            if not _is_empty_chunk(data):
                kept.append(ScenarioFrame(data=data, raw=frame.raw, event=frame.event, delay_ms=frame.delay_ms))
        return kept

    def select_body(self, body: Any, call: Call) -> Any:
        return body if self._includes_thoughts(call) else _without_thoughts(body)

    # ----------------------------------------------------------- other endpoints
    def count_tokens(self, call: Call) -> Response:
        normalized = parse_request(call.body, "CountTokensRequest")
        if call.model not in MODELS:
            raise self.model_not_found(call, "countTokens")
        request = normalized.get("generateContentRequest") or {"contents": normalized.get("contents", [])}
        check_request(request, call.model, "CountTokensRequest")
        total = estimate_tokens(request)
        return self._json({"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]},
                          call)

    def _model_info(self, model: str) -> dict[str, Any]:
        display, input_limit, output_limit, thinking = MODELS[model]
        info = {"name": f"models/{model}", "version": "001", "displayName": display,
                "description": f"{display} (mock)", "inputTokenLimit": input_limit, "outputTokenLimit": output_limit,
                "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent",
                                               "batchGenerateContent"],
                "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2}
        if thinking:
            info["thinking"] = True
        return info

    def list_models(self, call: Call) -> Response:
        return self._json({"models": [self._model_info(m) for m in MODELS]}, call)

    def get_model(self, call: Call, model: str) -> Response:
        model = model.removeprefix("models/")
        if model not in MODELS:
            call.model = model
            raise self.model_not_found(call, "getModel")
        return self._json(self._model_info(model), call)

    def not_found(self, call: Call) -> ApiError:
        return error(404, f"The requested URL {call.path} was not found on this server.")

    def _json(self, body: Any, call: Call) -> Response:
        return Response(pretty_json(body) + "\n", status=200, headers=self.response_headers(call),
                        content_type="application/json; charset=UTF-8")
