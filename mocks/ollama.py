"""Ollama (protocols B §5): the native chat API `POST /api/chat` (NDJSON
streams, the default when `stream` is left out), `GET /api/tags`, and the
OpenAI-compatible `POST /v1/chat/completions`.

Strict where Ollama is: the body is decoded into Go structs, so a field of
the wrong type is a 400 naming the Go field (`json: cannot unmarshal ...`);
tool-call arguments must be objects, images base64; `options` of the wrong
type are refused by name; `think`, `format` values are checked; an unknown
model is a 404 `model 'x' not found`; a model asked for what it cannot do
(thinking, tools, images) says so with a 400. Like Ollama, it ignores fields
it does not know (the request log keeps them, for the matrix to flag).

Auth: a local Ollama takes no credential; the mock also accepts one
`Authorization: Bearer mock-ollama-key` (as ollama.com or an authenticating
gateway would), and refuses any other (401 `{"error": "unauthorized"}`).

Replies: compact JSON bodies, streams as one compact JSON object per line
(`application/x-ndjson`); an error is `{"error": "..."}`, with its HTTP status
before a stream starts, or as an NDJSON line under the 200 once it has.
The OpenAI-compatible route replays the OpenAI fixtures in Ollama's
envelope (`{"error": {"message", "type", "param": null, "code": null}}`).
"""
from __future__ import annotations

import re
from typing import Any

from flask import Response

from mocks.openai import OpenAIProvider
from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json, decode_base64

API_KEY = "mock-ollama-key"

# The models this server has pulled: name -> (capabilities, family, parameter size, digest prefix).
MODELS: dict[str, tuple[frozenset[str], str, str, str]] = {
    "llama3.2": (frozenset({"completion", "tools"}), "llama", "3.2B", "a80c4f17acd5"),
    "qwen3": (frozenset({"completion", "tools", "thinking"}), "qwen3", "8.2B", "500a1f067a9f"),
    "mistral-small3.2": (frozenset({"completion", "tools", "vision"}), "mistral3", "24.0B", "5a408ab55df5"),
    "gemma3": (frozenset({"completion", "vision"}), "gemma3", "4.3B", "a2af6cc3eb7f"),
    "qwen3-vl": (frozenset({"completion", "tools", "thinking", "vision"}), "qwen3vl", "8.8B", "901cae732162"),
}
THINK_LEVELS = ("high", "medium", "low")
# The `options` Ollama knows, by the type it decodes them to.
_INT_OPTIONS = {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch", "num_gpu",
                "main_gpu", "num_thread"}
_FLOAT_OPTIONS = {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                  "frequency_penalty"}
_BOOL_OPTIONS = {"penalize_newline", "numa", "use_mmap"}
_OPENAI_IMAGE = re.compile(r"^data:(?:image/(?:jpeg|jpg|png|webp))?;base64,")


def ollama_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


def model_name(name: str) -> str | None:
    """The pulled model a name means (`llama3.2` and `llama3.2:latest` are one), or None."""
    base, _, tag = name.partition(":")
    return base if base in MODELS and tag in ("", "latest") else None


def capabilities(name: str) -> frozenset[str]:
    return MODELS[model_name(name)][0]


# ------------------------------------------------------------------ Go's decoding errors

_GO_TYPES = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object",
             type(None): "null"}


def _unmarshal(value: Any, field: str, go_type: str) -> ApiError:
    """encoding/json's wording for a value of the wrong JSON type."""
    return ollama_error(400, f"json: cannot unmarshal {_GO_TYPES[type(value)]} into Go struct field {field} "
                             f"of type {go_type}")


def _expect(value: Any, kind: type | tuple, field: str, go_type: str) -> None:
    if value is None:
        return  # null decodes to the zero value
    if not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool)):
        raise _unmarshal(value, field, go_type)


# ------------------------------------------------------------------ the native API

def validate_chat(body: dict) -> tuple[str, bool]:
    """Everything /api/chat checks; (model, stream) when the request is good."""
    model = body.get("model")
    _expect(model, str, "ChatRequest.model", "string")
    if not model:
        raise ollama_error(400, "model is required")
    messages = body.get("messages")
    _expect(messages, list, "ChatRequest.messages", "[]api.Message")
    for message in messages or []:
        _check_message(message)
    stream = body.get("stream")
    _expect(stream, bool, "ChatRequest.stream", "bool")
    tools = body.get("tools")
    _expect(tools, list, "ChatRequest.tools", "api.Tools")
    for tool in tools or []:
        _check_tool(tool)
    _check_format(body.get("format"))
    think = body.get("think")
    if think is not None and not isinstance(think, bool) and think not in THINK_LEVELS:
        raise ollama_error(400, f"invalid think value: {compact_json(think)} (must be \"high\", \"medium\", \"low\", "
                                "true, or false)")
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and (isinstance(keep_alive, bool) or not isinstance(keep_alive, (str, int, float))):
        raise _unmarshal(keep_alive, "ChatRequest.keep_alive", "api.Duration")
    options = body.get("options")
    _expect(options, dict, "ChatRequest.options", "map[string]interface {}")
    _check_options(options or {})
    name = model_name(model)
    if name is None:
        raise ollama_error(404, f"model '{model}' not found")
    caps = MODELS[name][0]
    if think not in (None, False) and "thinking" not in caps:
        raise ollama_error(400, f"\"{model}\" does not support thinking")
    if tools and "tools" not in caps:
        raise ollama_error(400, f"\"{model}\" does not support tools")
    if any(m.get("images") for m in messages or []) and "vision" not in caps:
        raise ollama_error(400, f"\"{model}\" does not support images")  # the mock's wording
    return model, stream is not False


def _check_message(message: Any) -> None:
    _expect(message, dict, "ChatRequest.messages", "api.Message")
    for field, kind, go_type in (("role", str, "string"), ("content", str, "string"), ("thinking", str, "string"),
                                 ("tool_name", str, "string"), ("tool_call_id", str, "string"),
                                 ("images", list, "[]api.ImageData"), ("tool_calls", list, "[]api.ToolCall")):
        _expect(message.get(field), kind, f"Message.messages.{field}", go_type)
    for image in message.get("images") or []:
        _expect(image, str, "Message.messages.images", "api.ImageData")
        if decode_base64(image) is None:
            raise ollama_error(400, "illegal base64 data at input byte 0")
    for call in message.get("tool_calls") or []:
        _expect(call, dict, "Message.messages.tool_calls", "api.ToolCall")
        _expect(call.get("id"), str, "ToolCall.messages.tool_calls.id", "string")
        function = call.get("function")
        _expect(function, dict, "ToolCall.messages.tool_calls.function", "api.ToolCallFunction")
        function = function or {}
        _expect(function.get("name"), str, "ToolCallFunction.messages.tool_calls.function.name", "string")
        _expect(function.get("index"), int, "ToolCallFunction.messages.tool_calls.function.index", "int")
        _expect(function.get("arguments"), dict, "ToolCallFunction.messages.tool_calls.function.arguments",
                "api.ToolCallFunctionArguments")


def _check_tool(tool: Any) -> None:
    _expect(tool, dict, "ChatRequest.tools", "api.Tool")
    _expect(tool.get("type"), str, "Tool.tools.type", "string")
    function = tool.get("function")
    _expect(function, dict, "Tool.tools.function", "api.ToolFunction")
    function = function or {}
    _expect(function.get("name"), str, "ToolFunction.tools.function.name", "string")
    _expect(function.get("description"), str, "ToolFunction.tools.function.description", "string")
    _expect(function.get("parameters"), dict, "ToolFunction.tools.function.parameters", "api.ToolFunctionParameters")


def _check_format(value: Any) -> None:
    if value is None or value in ("", "json") or isinstance(value, dict):
        return
    raise ollama_error(400, f"invalid format: {compact_json(value)}; expected \"json\" or a valid JSON Schema")


def _check_options(options: dict) -> None:
    """Options of the wrong type are refused by name; unknown ones Ollama only logs."""
    for key, value in options.items():
        if value is None:
            continue
        if key in _INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ollama_error(400, f"option \"{key}\" must be of type integer")
        if key in _FLOAT_OPTIONS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ollama_error(400, f"option \"{key}\" must be of type float32")
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise ollama_error(400, f"option \"{key}\" must be of type boolean")
        if key == "stop" and (not isinstance(value, list) or not all(isinstance(s, str) for s in value)):
            raise ollama_error(400, f"option \"{key}\" must be of an array of strings")


class _NDJSONWriter:
    """One compact JSON object per line; a `raw` frame is written as is."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        return (fill_text(frame.encoded(compact_json), lookup) + "\n").encode()

    def end(self) -> bytes:
        return b""


def authorised(call: Call) -> bool:
    """No credential (a local server takes none), or the mock's key as a Bearer token."""
    authorization = call.header("Authorization")
    if authorization is None:
        return True
    scheme, _, key = authorization.partition(" ")
    return scheme.lower() == "bearer" and key.strip() == API_KEY


class OllamaProvider(Provider):
    name = "ollama"

    def authenticate(self, call: Call) -> None:
        if not authorised(call):
            raise ollama_error(401, "unauthorized")

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        if not call.raw_body.strip():
            return ollama_error(400, "missing request body")
        return ollama_error(400, "invalid character in request body: not valid JSON")

    def too_large(self, call: Call) -> ApiError:
        return ollama_error(413, "http: request body too large")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        return ollama_error(status, message)

    def not_found(self, call: Call) -> ApiError:
        return ollama_error(404, "404 page not found")

    def validate(self, call: Call) -> None:
        call.model, call.stream = validate_chat(call.body)

    def detect(self, call: Call) -> str:
        body = call.body
        messages = body.get("messages") or []
        if any(m.get("role") == "tool" for m in messages):
            return "after_tool_result"
        if body.get("tools"):
            return "function_calling"
        if body.get("think") not in (None, False):
            return "thinking"
        if any(m.get("images") for m in messages if m.get("role") == "user"):
            return "vision"
        return "text"

    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()

    def body_content_type(self, call: Call) -> str:
        return "application/json; charset=utf-8"

    def stream_writer(self, call: Call) -> _NDJSONWriter:
        return _NDJSONWriter()

    def stream_content_type(self, call: Call) -> str:
        return "application/x-ndjson"

    def list_models(self, call: Call) -> Response:
        """GET /api/tags: the pulled models, `name:tag` each."""
        models = [{"name": f"{name}:latest", "model": f"{name}:latest", "modified_at": "2025-07-01T10:00:00.000000Z",
                   "size": 2019393189, "digest": (digest * 6)[:64],
                   "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                               "parameter_size": size, "quantization_level": "Q4_K_M"}}
                  for name, (_, family, size, digest) in MODELS.items()]
        return Response(self.encode_body({"models": models}, 200, call), status=200,
                        content_type=self.body_content_type(call))


# ------------------------------------------------------------------ the OpenAI-compatible API

def compat_error(status: int, message: str) -> ApiError:
    """Ollama's OpenAI-layer envelope: the type from the status, param and code null."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return ApiError(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def validate_compat(body: dict) -> tuple[str, bool]:
    """What /v1/chat/completions checks before it becomes an /api/chat request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise compat_error(400, "model is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise compat_error(400, "[] is too short - 'messages'")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise compat_error(400, "json: cannot unmarshal into Go struct field ChatCompletionRequest.stream of type bool")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise compat_error(400, "invalid message format")
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise compat_error(400, "invalid message format")
                if part["type"] == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str) or not _OPENAI_IMAGE.match(url):
                        raise compat_error(400, "invalid image input")
        elif content is not None and not isinstance(content, str):
            raise compat_error(400, f"invalid message content type: {type(content).__name__}")
        elif content is None and not message.get("tool_calls"):
            raise compat_error(400, "invalid message content type: <nil>")
        for call in message.get("tool_calls") or []:
            arguments = ((call or {}).get("function") or {}).get("arguments")
            if not isinstance(arguments, str):
                raise compat_error(400, "invalid tool call arguments")
    name = model_name(model)
    if name is None:
        raise compat_error(404, f"model '{model}' not found")
    caps = MODELS[name][0]
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    if effort not in (None, "none") and "thinking" not in caps:
        raise compat_error(400, f"\"{model}\" does not support thinking")
    if body.get("tools") and "tools" not in caps:
        raise compat_error(400, f"\"{model}\" does not support tools")
    if any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
           for m in messages) and "vision" not in caps:
        raise compat_error(400, f"\"{model}\" does not support images")
    return model, stream is True


class OllamaOpenAIProvider(OpenAIProvider):
    """The OpenAI wire at Ollama: the OpenAI fixtures, Ollama's checks and envelope."""

    name = "ollama_openai"
    scenario_set = "openai"

    def authenticate(self, call: Call) -> None:
        if not authorised(call):  # the same server, the same rule
            raise compat_error(401, "unauthorized")

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return compat_error(400, "invalid character in request body: not valid JSON")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        return compat_error(status, message)

    def validate(self, call: Call) -> None:
        call.model, call.stream = validate_compat(call.body)

    def response_headers(self, call: Call) -> dict[str, str]:
        return {}  # Ollama sends none of OpenAI's request-id headers

    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()
