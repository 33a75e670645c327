"""OpenAI Chat Completions (`POST /v1/chat/completions`, `GET /v1/models`):
Bearer auth, the server-side validation the real API applies (messages and
texts from protocols §1 and Appendix A), scenario detection and framing."""
from __future__ import annotations

import re
from typing import Any

from flask import Response

from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json, decode_base64, json_type_name, pretty_json, stable_id

# Model id -> `created` of its /v1/models entry.
MODELS = {"gpt-5-nano": 1754425777, "gpt-4o-mini": 1721172741, "gpt-4o": 1715367049}
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")
REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")

TOP_LEVEL_FIELDS = frozenset({
    "model", "messages", "stream", "stream_options", "max_completion_tokens", "max_tokens", "temperature",
    "top_p", "n", "stop", "seed", "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty",
    "logit_bias", "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
    "verbosity", "modalities", "audio", "prediction", "metadata", "store", "service_tier", "user",
    "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
    "web_search_options", "moderation", "functions", "function_call",
})
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
    "function": {"role", "content", "name"},
}
PART_TYPES_BY_ROLE = {
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "system": ("text",), "developer": ("text",), "tool": ("text",), "function": ("text",),
}
PART_FIELDS = {
    "text": {"type", "text", "prompt_cache_breakpoint"},
    "image_url": {"type", "image_url", "prompt_cache_breakpoint"},
    "input_audio": {"type", "input_audio", "prompt_cache_breakpoint"},
    "file": {"type", "file", "prompt_cache_breakpoint"},
    "refusal": {"type", "refusal"},
}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
IMAGE_FORMATS = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]+);base64,(?P<data>.*)$", re.S)


# ------------------------------------------------------------------ envelopes

def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, error_body(message, param=param, code=code))


def _article(type_name: str) -> str:
    if type_name == "null":
        return "null"
    if type_name == "number":
        type_name = "decimal"
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def type_error(path: str, expected: str, value: Any) -> ApiError:
    return invalid(f"Invalid type for '{path}': expected {expected}, but got {_article(json_type_name(value))} instead.",
                   param=path, code="invalid_type")


def unknown_parameter(path: str) -> ApiError:
    return invalid(f"Unknown parameter: '{path}'.", param=path, code="unknown_parameter")


def missing(path: str) -> ApiError:
    return invalid(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")


def _number_text(value: float | int) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ------------------------------------------------------------------ models

def known_model(model: str) -> bool:
    if model in MODELS:
        return True
    snapshot = _SNAPSHOT.match(model)
    return bool(snapshot and snapshot.group("base") in MODELS)


def is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_PREFIXES)


def model_not_found(model: str) -> ApiError:
    return ApiError(404, error_body(f"The model `{model}` does not exist or you do not have access to it.",
                                    code="model_not_found"))


# ------------------------------------------------------------------ field checks

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_range(name: str, value: Any, low: float, high: float, integer: bool) -> None:
    kind = "integer" if integer else "decimal"
    if integer and not _is_int(value):
        raise type_error(name, "an integer", value)
    if not integer and not _is_number(value):
        raise type_error(name, "a decimal", value)
    if value < low:
        raise invalid(f"Invalid '{name}': {kind} below minimum value. Expected a value >= {_number_text(low)}, "
                      f"but got {_number_text(value)} instead.", param=name, code=f"{kind}_below_min_value")
    if value > high:
        raise invalid(f"Invalid '{name}': {kind} above maximum value. Expected a value <= {_number_text(high)}, "
                      f"but got {_number_text(value)} instead.", param=name, code=f"{kind}_above_max_value")


def _present(body: dict, key: str) -> bool:
    return body.get(key) is not None


def _check_sampling(body: dict, model: str) -> None:
    reasoning = is_reasoning_model(model)
    if _present(body, "stream") and not isinstance(body["stream"], bool):
        raise type_error("stream", "a boolean", body["stream"])
    if _present(body, "stream_options"):
        if not isinstance(body["stream_options"], dict):
            raise type_error("stream_options", "an object", body["stream_options"])
        if body.get("stream") is not True:
            raise invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                          param="stream_options")
        for key in body["stream_options"]:
            if key not in ("include_usage", "include_obfuscation"):
                raise unknown_parameter(f"stream_options.{key}")
    if _present(body, "max_tokens"):
        if reasoning:
            raise invalid("Unsupported parameter: 'max_tokens' is not supported with this model. "
                          "Use 'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
        _check_range("max_tokens", body["max_tokens"], 1, 2**31 - 1, integer=True)
    if _present(body, "max_completion_tokens"):
        _check_range("max_completion_tokens", body["max_completion_tokens"], 1, 2**31 - 1, integer=True)
    if _present(body, "temperature"):
        _check_range("temperature", body["temperature"], 0, 2, integer=False)
        if reasoning and body["temperature"] != 1:
            raise invalid(f"Unsupported value: 'temperature' does not support {_number_text(body['temperature'])} "
                          "with this model. Only the default (1) value is supported.",
                          param="temperature", code="unsupported_value")
    if _present(body, "top_p"):
        _check_range("top_p", body["top_p"], 0, 1, integer=False)
    if _present(body, "n"):
        _check_range("n", body["n"], 1, 128, integer=True)
    for name in ("frequency_penalty", "presence_penalty"):
        if _present(body, name):
            _check_range(name, body[name], -2, 2, integer=False)
    if _present(body, "seed") and not _is_int(body["seed"]):
        raise type_error("seed", "an integer", body["seed"])
    if _present(body, "stop"):
        stop = body["stop"]
        if isinstance(stop, list):
            if not all(isinstance(s, str) for s in stop):
                raise type_error("stop", "one of a string or array of strings", stop)
            if len(stop) > 4:
                raise invalid(f"Invalid 'stop': array too long. Expected an array with maximum length 4, "
                              f"but got an array with length {len(stop)} instead.", param="stop",
                              code="array_above_max_length")
        elif not isinstance(stop, str):
            raise type_error("stop", "one of a string or array of strings", stop)
    if _present(body, "logprobs") and not isinstance(body["logprobs"], bool):
        raise type_error("logprobs", "a boolean", body["logprobs"])
    if _present(body, "top_logprobs"):
        _check_range("top_logprobs", body["top_logprobs"], 0, 20, integer=True)
        if body.get("logprobs") is not True:
            raise invalid("Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' "
                          "is specified.", param="top_logprobs")
    if _present(body, "reasoning_effort"):
        effort = body["reasoning_effort"]
        if effort not in REASONING_EFFORTS:
            supported = ", ".join(f"'{e}'" for e in REASONING_EFFORTS[:-1]) + f", and '{REASONING_EFFORTS[-1]}'"
            raise invalid(f"Invalid value: '{effort}'. Supported values are: {supported}.",
                          param="reasoning_effort", code="invalid_value")
        if not reasoning:
            raise invalid("Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                          param="reasoning_effort", code="unsupported_parameter")
    if _present(body, "response_format"):
        _check_response_format(body["response_format"])
    if _present(body, "metadata"):
        metadata = body["metadata"]
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise type_error("metadata", "an object with string values", metadata)
        if len(metadata) > 16:
            raise invalid("Invalid 'metadata': too many properties. Expected an object with at most 16 "
                          f"properties, but got an object with {len(metadata)} properties instead.",
                          param="metadata", code="object_above_max_properties")


def _check_response_format(fmt: Any) -> None:
    if not isinstance(fmt, dict):
        raise type_error("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid(f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
                      param="response_format.type", code="invalid_value")
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict):
            raise missing("response_format.json_schema")
        name = schema.get("name")
        if not isinstance(name, str):
            raise missing("response_format.json_schema.name")
        if not TOOL_NAME.match(name) or len(name) > 64:
            raise invalid("Invalid 'response_format.json_schema.name': string does not match pattern. Expected a "
                          "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                          param="response_format.json_schema.name", code="invalid_value")


def _check_function_name(name: Any, path: str) -> None:
    if not isinstance(name, str):
        raise missing(path) if name is None else type_error(path, "a string", name)
    if len(name) > 64:
        raise invalid(f"Invalid '{path}': string too long. Expected a string with maximum length 64, but got a "
                      f"string with length {len(name)} instead.", param=path, code="string_above_max_length")
    if not TOOL_NAME.match(name):
        raise invalid(f"Invalid '{path}': string does not match pattern. Expected a string that matches the "
                      "pattern '^[a-zA-Z0-9_-]+$'.", param=path, code="invalid_value")


def _check_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise type_error("tools", "an array", tools)
        if not tools:
            raise invalid("Invalid 'tools': empty array. Expected an array with minimum length 1, but got an "
                          "empty array instead.", param="tools", code="empty_array")
        for k, tool in enumerate(tools):
            path = f"tools[{k}]"
            if not isinstance(tool, dict):
                raise type_error(path, "an object", tool)
            kind = tool.get("type")
            if kind is None:
                raise missing(f"{path}.type")
            if kind not in ("function", "custom"):
                raise invalid(f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                              param=f"{path}.type", code="invalid_value")
            for key in tool:
                if key not in ("type", kind):
                    raise unknown_parameter(f"{path}.{key}")
            spec = tool.get(kind)
            if not isinstance(spec, dict):
                raise missing(f"{path}.{kind}") if spec is None else type_error(f"{path}.{kind}", "an object", spec)
            _check_function_name(spec.get("name"), f"{path}.{kind}.name")
            if kind == "function":
                for key in spec:
                    if key not in ("name", "description", "parameters", "strict"):
                        raise unknown_parameter(f"{path}.function.{key}")
                if _present(spec, "parameters") and not isinstance(spec["parameters"], dict):
                    raise type_error(f"{path}.function.parameters", "an object", spec["parameters"])
                if _present(spec, "strict") and not isinstance(spec["strict"], bool):
                    raise type_error(f"{path}.function.strict", "a boolean", spec["strict"])
    has_tools = bool(tools) or bool(body.get("functions"))
    if _present(body, "tool_choice"):
        if not has_tools:
            raise invalid("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                          "specified.", param="tool_choice")
        choice = body["tool_choice"]
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise invalid(f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                              param="tool_choice", code="invalid_value")
        elif not isinstance(choice, dict):
            raise type_error("tool_choice", "one of a string or object", choice)
    if _present(body, "parallel_tool_calls"):
        if not isinstance(body["parallel_tool_calls"], bool):
            raise type_error("parallel_tool_calls", "a boolean", body["parallel_tool_calls"])
        if not has_tools:
            raise invalid("Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when "
                          "'tools' are specified.", param="parallel_tool_calls")


def _check_image_url(part: dict, path: str) -> None:
    image = part.get("image_url")
    if not isinstance(image, dict):
        raise missing(f"{path}.image_url") if image is None else type_error(f"{path}.image_url", "an object", image)
    url = image.get("url")
    if not isinstance(url, str):
        raise missing(f"{path}.image_url.url") if url is None else type_error(f"{path}.image_url.url", "a string", url)
    if _present(image, "detail") and image["detail"] not in ("auto", "low", "high"):
        raise invalid(f"Invalid value: '{image['detail']}'. Supported values are: 'auto', 'low', and 'high'.",
                      param=f"{path}.image_url.detail", code="invalid_value")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or match.group("mime") not in IMAGE_FORMATS or decode_base64(match.group("data")) is None:
            raise invalid("You uploaded an unsupported image. Please make sure your image is below 20 MB in size "
                          "and is of one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
                          code="invalid_image_format")
    elif not url.startswith(("http://", "https://")):
        raise invalid(f"Invalid '{path}.image_url.url'. Expected a valid URL, but got a value with an invalid "
                      "format.", param=f"{path}.image_url.url", code="invalid_value")


def _check_content(message: dict, role: str, index: int) -> None:
    path = f"messages[{index}]"
    content = message.get("content")
    if content is None:
        if role == "assistant":
            if not message.get("tool_calls") and not message.get("function_call") and not message.get("audio"):
                raise invalid("Invalid value for 'content': expected a string, got null.",
                              param=f"messages.[{index}].content")
            return
        if role == "function":
            return
        raise missing(f"{path}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise type_error(f"{path}.content", "one of a string or array of objects", content)
    allowed = PART_TYPES_BY_ROLE[role]
    for j, part in enumerate(content):
        ppath = f"{path}.content[{j}]"
        if not isinstance(part, dict):
            raise type_error(ppath, "an object", part)
        ptype = part.get("type")
        if ptype is None:
            raise missing(f"{ppath}.type")
        if ptype == "image_url" and role != "user":
            raise invalid(f"Invalid '{path}'. Image URLs are only allowed for messages with role 'user', but this "
                          f"message with role '{role}' contains an image URL.", param=path, code="invalid_value")
        if ptype not in allowed:
            supported = ", ".join(f"'{t}'" for t in allowed[:-1])
            supported = f"{supported}, and '{allowed[-1]}'" if supported else f"'{allowed[-1]}'"
            raise invalid(f"Invalid value: '{ptype}'. Supported values are: {supported}.",
                          param=f"{ppath}.type", code="invalid_value")
        for key in part:
            if key not in PART_FIELDS[ptype]:
                raise unknown_parameter(f"{ppath}.{key}")
        if ptype in ("text", "refusal"):
            if not isinstance(part.get(ptype), str):
                raise missing(f"{ppath}.{ptype}") if part.get(ptype) is None else \
                    type_error(f"{ppath}.{ptype}", "a string", part[ptype])
        elif ptype == "image_url":
            _check_image_url(part, ppath)
        elif not isinstance(part.get(ptype), dict):
            raise missing(f"{ppath}.{ptype}")


def _check_tool_calls(message: dict, path: str) -> list[str]:
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise type_error(f"{path}.tool_calls", "an array", calls)
    ids = []
    for k, call in enumerate(calls):
        cpath = f"{path}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise type_error(cpath, "an object", call)
        for key in ("id", "type"):
            if not isinstance(call.get(key), str):
                raise missing(f"{cpath}.{key}") if call.get(key) is None else \
                    type_error(f"{cpath}.{key}", "a string", call[key])
        kind = call["type"]
        if kind not in ("function", "custom"):
            raise invalid(f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                          param=f"{cpath}.type", code="invalid_value")
        spec = call.get(kind)
        if not isinstance(spec, dict):
            raise missing(f"{cpath}.{kind}") if spec is None else type_error(f"{cpath}.{kind}", "an object", spec)
        if not isinstance(spec.get("name"), str):
            raise missing(f"{cpath}.{kind}.name")
        field_name = "arguments" if kind == "function" else "input"
        if not isinstance(spec.get(field_name), str):
            raise missing(f"{cpath}.{kind}.{field_name}") if spec.get(field_name) is None else \
                type_error(f"{cpath}.{kind}.{field_name}", "a string", spec[field_name])
        ids.append(call["id"])
    return ids


def _unanswered(ids: list[str], answered: set[str], index: int) -> ApiError:
    left = ", ".join(i for i in ids if i not in answered)
    return invalid("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                   f"'tool_call_id'. The following tool_call_ids did not have response messages: {left}",
                   param=f"messages.[{index}].role")


def _check_messages(messages: list) -> None:
    pending: list[str] = []       # tool_call ids of the last assistant turn with calls
    answered: set[str] = set()
    pending_from = -1             # index of that assistant message
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise type_error(path, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing(f"{path}.role")
        if role not in ROLES:
            raise invalid(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                          "'function', 'tool', and 'developer'.", param=f"{path}.role", code="invalid_value")
        for key in message:
            if key not in MESSAGE_FIELDS[role]:
                raise unknown_parameter(f"{path}.{key}")
        if _present(message, "name") and not isinstance(message["name"], str):
            raise type_error(f"{path}.name", "a string", message["name"])
        _check_content(message, role, i)

        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise missing(f"{path}.tool_call_id") if call_id is None else \
                    type_error(f"{path}.tool_call_id", "a string", call_id)
            if pending_from < 0:
                raise invalid("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                              "message with 'tool_calls'.", param=f"messages.[{i}].role")
            if call_id not in pending:
                raise invalid(f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
                              "previous message.", param=f"messages.[{i}].tool_call_id")
            answered.add(call_id)
            continue
        if pending_from >= 0 and not set(pending) <= answered:
            raise _unanswered(pending, answered, i)
        pending, answered, pending_from = [], set(), -1
        if role == "assistant":
            ids = _check_tool_calls(message, path)
            if ids:
                pending, pending_from = ids, i
    if pending_from >= 0 and not set(pending) <= answered:
        raise _unanswered(pending, answered, pending_from)


# ------------------------------------------------------------------ the provider

class _SseWriter:
    """`data: <json>` events; a string `data` (e.g. [DONE]) is written as is."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        return f"data: {fill_text(frame.encoded(compact_json), lookup)}\n\n".encode()

    def end(self) -> bytes:
        return b""


def _is_usage_chunk(frame: ScenarioFrame) -> bool:
    data = frame.data
    return isinstance(data, dict) and data.get("choices") == [] and "usage" in data


class OpenAIProvider(Provider):
    name = "openai"

    def authenticate(self, call: Call) -> None:
        scheme, _, key = (call.header("Authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, error_body(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from "
                "https://platform.openai.com/account/api-keys.", code="invalid_api_key"))
        if key == "invalid":
            shown = key if len(key) <= 8 else f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"
            raise ApiError(401, error_body(
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", code="invalid_api_key"))

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return invalid("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                       "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                       "not valid JSON. If you have trouble figuring out how to fix this, please visit "
                       "https://community.openai.com.)")

    def too_large(self, call: Call) -> ApiError:
        return invalid("Request too large: the request body exceeds the maximum allowed size of 32 MB.",
                       code="request_too_large", status=413)

    def error(self, status: int, message: str, call: Call) -> ApiError:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return ApiError(status, error_body(message, type=kind))

    def validate(self, call: Call) -> None:
        body = call.body
        for key in body:
            if key not in TOP_LEVEL_FIELDS:
                raise invalid(f"Unrecognized request argument supplied: {key}", code="unknown_parameter")
        model = body.get("model")
        if model is None or model == "":
            raise invalid("you must provide a model parameter")
        if not isinstance(model, str):
            raise type_error("model", "a string", model)
        if body.get("messages") is None:
            raise missing("messages")
        messages = body["messages"]
        if not isinstance(messages, list):
            raise type_error("messages", "an array", messages)
        if not messages:
            raise invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                          "empty array instead.", param="messages", code="empty_array")
        call.model = model
        call.stream = body.get("stream") is True
        if not known_model(model):
            raise model_not_found(model)
        _check_sampling(body, model)
        _check_tools(body)
        _check_messages(messages)

    def detect(self, call: Call) -> str:
        body = call.body
        messages = body["messages"]
        if any(m.get("role") in ("tool", "function") for m in messages):
            return "after_tool_result"
        if body.get("tools") or body.get("functions"):
            return "function_calling"
        if body.get("reasoning_effort") not in (None, "none", "minimal"):
            return "thinking"
        for m in messages:
            if m.get("role") == "user" and isinstance(m.get("content"), list) \
                    and any(p.get("type") == "image_url" for p in m["content"]):
                return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        # The real API indents replies by 2 and error envelopes by 4.
        return (pretty_json(body, 4 if status >= 400 else 2) + "\n").encode()

    def stream_writer(self, call: Call) -> _SseWriter:
        return _SseWriter()

    def response_headers(self, call: Call) -> dict[str, str]:
        return {"x-request-id": "req_" + stable_id(call.path.encode() + call.raw_body, "request", 32).lower(),
                "openai-version": "2020-10-01"}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        # The usage chunk (choices: []) exists only when the client asked for it.
        options = call.body.get("stream_options") or {}
        if options.get("include_usage") is True:
            return frames
        return [f for f in frames if not _is_usage_chunk(f)]

    # ----------------------------------------------------------- other endpoints
    def list_models(self, call: Call) -> Response:
        data = [{"id": m, "object": "model", "created": created, "owned_by": "system"} for m, created in MODELS.items()]
        return self._json({"object": "list", "data": data}, call)

    def get_model(self, call: Call, model: str) -> Response:
        if not known_model(model):
            raise model_not_found(model)
        base = model if model in MODELS else _SNAPSHOT.match(model).group("base")
        return self._json({"id": model, "object": "model", "created": MODELS[base], "owned_by": "system"}, call)

    def not_found(self, call: Call) -> ApiError:
        return ApiError(404, error_body(f"Invalid URL ({call.method} {call.path})"))

    def _json(self, body: Any, call: Call) -> Response:
        return Response(self.encode_body(body, 200, call), status=200, headers=self.response_headers(call),
                        content_type="application/json")
