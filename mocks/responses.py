"""OpenAI Responses (`POST /v1/responses`) and its Azure forms: Bearer auth,
the server-side validation the real API applies (protocols §2 and Appendix A),
scenario detection and the event-stream framing.

Strict where the real API is: tools are flat (a Chat-style nested `function`
is refused), a `function_call_output` must answer a `function_call` earlier in
`input` and every call must be answered, assistant message parts are only
`output_text` / `refusal`, and Chat fields (`messages`, `max_tokens`, `stop`,
`response_format`) are unknown here. Streams are `event: <type>` +
`data: <json>` with a `sequence_number`, ending with the terminal event
(no `[DONE]`). The reasoning summary is sent only when `reasoning.summary`
asks for it.

Azure (protocols §2.8): `POST /openai/v1/responses` (the body's `model` is the
deployment; no dated api-version) and `POST /openai/responses?api-version=…`
(a preview version required), with `api-key` or Entra bearer auth.
"""
from __future__ import annotations

import re
from typing import Any

from mocks.azure import validate_azure
from mocks.azure import AzureOpenAIProvider
from mocks.openai import (REASONING_EFFORTS, TOOL_NAME, OpenAIProvider, _check_range, _present, invalid,
                          is_reasoning_model, known_model, missing, model_not_found, type_error, unknown_parameter)
from mocks.provider import Call
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json

TOP_LEVEL_FIELDS = frozenset({
    "model", "input", "instructions", "stream", "stream_options", "max_output_tokens", "max_tool_calls",
    "temperature", "top_p", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "text",
    "truncation", "store", "previous_response_id", "conversation", "include", "background", "metadata", "prompt",
    "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "service_tier", "user", "client_metadata",
})
# Chat Completions fields, refused by name (the real API's own hint where it gives one).
CHAT_FIELDS = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
               "response_format": "text.format"}
INCLUDE_VALUES = frozenset({
    "reasoning.encrypted_content", "message.output_text.logprobs", "message.input_image.image_url",
    "web_search_call.action.sources", "web_search_call.results", "file_search_call.results",
    "code_interpreter_call.outputs", "computer_call_output.output.image_url",
})
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
    "code_interpreter", "image_generation", "computer_use_preview", "computer", "mcp", "local_shell", "shell",
    "apply_patch", "tool_search",
})
ITEM_TYPES = frozenset({
    "message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
    "reasoning", "item_reference", "web_search_call", "file_search_call", "tool_search_call", "tool_search_output",
    "compaction",
})
PART_TYPES = {"user": ("input_text", "input_image", "input_file"), "system": ("input_text",),
              "developer": ("input_text",), "assistant": ("output_text", "refusal")}
SUMMARIES = ("auto", "concise", "detailed")
MIN_OUTPUT_TOKENS = 16
# Azure's classic form (`/openai/responses`) needs a preview version that has Responses.
AZURE_RESPONSES_VERSIONS = frozenset({"2025-03-01-preview", "2025-04-01-preview", "preview"})
_DATA_URL = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+$")


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" and {quoted[-1]}"


def _invalid_value(value: Any, supported: tuple[str, ...], param: str) -> ApiError:
    return invalid(f"Invalid value: '{value}'. Supported values are: {_supported(supported)}.", param=param,
                   code="invalid_value")


def _string(obj: dict, key: str, path: str, required: bool = True) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            raise missing(path)
        return
    if not isinstance(value, str):
        raise type_error(path, "a string", value)


# ------------------------------------------------------------------ tools

def _check_function(tool: dict, path: str) -> None:
    for key in tool:
        if key not in ("type", "name", "description", "parameters", "strict", "defer_loading", "output_schema"):
            raise unknown_parameter(f"{path}.{key}")  # e.g. Chat's nested `function`
    _string(tool, "name", f"{path}.name")
    if not TOOL_NAME.match(tool["name"]) or len(tool["name"]) > 64:
        raise invalid(f"Invalid '{path}.name': string does not match pattern. Expected a string that matches the "
                      "pattern '^[a-zA-Z0-9_-]+$'.", param=f"{path}.name", code="invalid_value")
    if _present(tool, "parameters") and not isinstance(tool["parameters"], dict):
        raise type_error(f"{path}.parameters", "an object", tool["parameters"])
    if _present(tool, "strict") and not isinstance(tool["strict"], bool):
        raise type_error(f"{path}.strict", "a boolean", tool["strict"])


def _check_custom(tool: dict, path: str) -> None:
    _string(tool, "name", f"{path}.name")
    fmt = tool.get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar")):
        raise invalid(f"Invalid '{path}.format'.", param=f"{path}.format", code="invalid_value")


def _check_tools(body: dict) -> set[str]:
    """Validates `tools`; returns the function/custom names (flattened for namespaces)."""
    names: set[str] = set()
    tools = body.get("tools")
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise type_error("tools", "an array", tools)
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise type_error(path, "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise missing(f"{path}.type")
        if kind == "function":
            _check_function(tool, path)
            names.add(tool["name"])
        elif kind == "custom":
            _check_custom(tool, path)
            names.add(tool["name"])
        elif kind == "namespace":
            _string(tool, "name", f"{path}.name")
            members = tool.get("tools")
            if not isinstance(members, list) or not members:
                raise missing(f"{path}.tools")
            for j, member in enumerate(members):
                mpath = f"{path}.tools[{j}]"
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise _invalid_value(member.get("type") if isinstance(member, dict) else member,
                                         ("function", "custom"), f"{mpath}.type")
                (_check_function if member["type"] == "function" else _check_custom)(member, mpath)
                names.add(f"{tool['name']}.{member['name']}")
        elif kind not in HOSTED_TOOLS:
            raise _invalid_value(kind, ("function", "custom", "namespace") + tuple(sorted(HOSTED_TOOLS)),
                                 f"{path}.type")
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid_value(choice, ("none", "auto", "required"), "tool_choice")
    elif isinstance(choice, dict):
        if choice.get("type") in ("function", "custom") and choice.get("name") not in names:
            raise invalid(f"Tool choice '{choice.get('name')}' not found in 'tools' parameter.",
                          param="tool_choice.name", code="invalid_value")
    elif choice is not None:
        raise type_error("tool_choice", "one of a string or object", choice)
    return names


# ------------------------------------------------------------------ input items

def _check_image(part: dict, path: str) -> None:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is None:
            raise missing(f"{path}.image_url")
        return
    if not isinstance(url, str):
        raise type_error(f"{path}.image_url", "a string", url)
    if url.startswith("data:"):
        if not _DATA_URL.match(url):
            raise invalid("You uploaded an unsupported image. Please make sure your image is below 20 MB in size "
                          "and is of one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
                          param=f"{path}.image_url", code="invalid_image_format")
    elif not url.startswith(("http://", "https://")):
        raise invalid(f"Invalid '{path}.image_url'. Expected a valid URL, but got a value with an invalid format.",
                      param=f"{path}.image_url", code="invalid_value")
    if _present(part, "detail") and part["detail"] not in ("auto", "low", "high", "original"):
        raise _invalid_value(part["detail"], ("auto", "low", "high", "original"), f"{path}.detail")


def _check_message(item: dict, path: str) -> None:
    role = item.get("role")
    if role not in PART_TYPES:
        raise _invalid_value(role, ("user", "assistant", "system", "developer"), f"{path}.role")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise missing(f"{path}.content") if content is None else \
            type_error(f"{path}.content", "one of a string or array of objects", content)
    allowed = PART_TYPES[role]
    for j, part in enumerate(content):
        ppath = f"{path}.content[{j}]"
        if not isinstance(part, dict):
            raise type_error(ppath, "an object", part)
        kind = part.get("type")
        if kind not in allowed:
            raise _invalid_value(kind, allowed, ppath)
        if kind in ("input_text", "output_text"):
            _string(part, "text", f"{ppath}.text")
        elif kind == "refusal":
            _string(part, "refusal", f"{ppath}.refusal")
        elif kind == "input_image":
            _check_image(part, ppath)


def _check_output(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise missing(path) if value is None else type_error(path, "one of a string or array of objects", value)
    for j, part in enumerate(value):
        ppath = f"{path}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "input_image", "input_file"):
            raise _invalid_value(kind, ("input_text", "input_image", "input_file"), f"{ppath}.type")
        if kind == "input_text":
            _string(part, "text", f"{ppath}.text")
        elif kind == "input_image":
            _check_image(part, ppath)


def _check_call_id(item: dict, path: str) -> str:
    call_id = item.get("call_id")
    _string(item, "call_id", f"{path}.call_id")
    if not 1 <= len(call_id) <= 64:
        raise invalid(f"Invalid '{path}.call_id': string too long. Expected a string with maximum length 64, but "
                      f"got a string with length {len(call_id)} instead.", param=f"{path}.call_id",
                      code="string_above_max_length")
    return call_id


def _check_input(body: dict) -> None:
    value = body.get("input")
    if value is None:
        if body.get("previous_response_id") is None:
            raise missing("input")
        return
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise type_error("input", "one of a string or array of input items", value)
    calls: dict[str, str] = {}  # call_id -> output item type expected
    answered: set[str] = set()
    for i, item in enumerate(value):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise type_error(path, "an object", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in ITEM_TYPES:
            raise _invalid_value(kind, tuple(sorted(ITEM_TYPES)), f"{path}.type")
        if kind == "message":
            _check_message(item, path)
        elif kind in ("function_call", "custom_tool_call"):
            call_id = _check_call_id(item, path)
            _string(item, "name", f"{path}.name")
            _string(item, "arguments" if kind == "function_call" else "input",
                    f"{path}.{'arguments' if kind == 'function_call' else 'input'}")
            calls[call_id] = kind + "_output"
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _check_call_id(item, path)
            if call_id not in calls:
                raise invalid(f"No tool call found for {kind} with call_id {call_id}.", param=path)
            _check_output(item.get("output"), f"{path}.output")
            answered.add(call_id)
        elif kind == "reasoning":
            if not isinstance(item.get("summary"), list):
                raise missing(f"{path}.summary") if item.get("summary") is None else \
                    type_error(f"{path}.summary", "an array", item["summary"])
            _string(item, "encrypted_content", f"{path}.encrypted_content", required=False)
        elif kind == "item_reference" and body.get("store") is False:
            raise invalid(f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set "
                          "to false.", param=path)
    for call_id in calls:
        if call_id not in answered:
            raise invalid(f"No tool output found for function call {call_id}.", param="input")


# ------------------------------------------------------------------ settings

def _check_settings(body: dict, model: str) -> None:
    reasoning_model = is_reasoning_model(model)
    if _present(body, "stream") and not isinstance(body["stream"], bool):
        raise type_error("stream", "a boolean", body["stream"])
    if _present(body, "stream_options") and body.get("stream") is not True:
        raise invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                      param="stream_options")
    if _present(body, "max_output_tokens"):
        _check_range("max_output_tokens", body["max_output_tokens"], MIN_OUTPUT_TOKENS, 2**31 - 1, integer=True)
    if _present(body, "temperature"):
        _check_range("temperature", body["temperature"], 0, 2, integer=False)
    if _present(body, "top_p"):
        _check_range("top_p", body["top_p"], 0, 1, integer=False)
    for key in ("store", "parallel_tool_calls", "background"):
        if _present(body, key) and not isinstance(body[key], bool):
            raise type_error(key, "a boolean", body[key])
    for key in ("instructions", "previous_response_id", "prompt_cache_key", "user", "safety_identifier"):
        if _present(body, key) and not isinstance(body[key], str):
            raise type_error(key, "a string", body[key])
    if _present(body, "previous_response_id"):
        if _present(body, "conversation"):
            raise invalid("Mutually exclusive parameters: 'previous_response_id' and 'conversation'. Ensure you are "
                          "only providing one of: 'previous_response_id' or 'conversation'.",
                          param="previous_response_id", code="mutually_exclusive_parameters")
        # The mock stores nothing: every id is unknown, as an expired one would be.
        raise invalid(f"Previous response with id '{body['previous_response_id']}' not found.",
                      param="previous_response_id", code="previous_response_not_found", status=404)
    if _present(body, "truncation") and body["truncation"] not in ("auto", "disabled"):
        raise _invalid_value(body["truncation"], ("auto", "disabled"), "truncation")
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise type_error("reasoning", "an object", reasoning)
        effort, summary = reasoning.get("effort"), reasoning.get("summary")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise _invalid_value(effort, REASONING_EFFORTS, "reasoning.effort")
        if summary is not None and summary not in SUMMARIES:
            raise _invalid_value(summary, SUMMARIES, "reasoning.summary")
        if (effort is not None or summary is not None) and not reasoning_model:
            raise invalid("Unsupported parameter: 'reasoning.effort' is not supported with this model.",
                          param="reasoning.effort", code="unsupported_parameter")
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list):
            raise type_error("include", "an array", include)
        for j, value in enumerate(include):
            if value not in INCLUDE_VALUES:
                raise _invalid_value(value, tuple(sorted(INCLUDE_VALUES)), f"include[{j}]")
        if "reasoning.encrypted_content" in include and not reasoning_model:
            raise invalid("Encrypted content is not supported with this model.", param="include",
                          code="unsupported_parameter")
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise type_error("text", "an object", text)
        fmt = text.get("format")
        if fmt is not None:
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind not in ("text", "json_object", "json_schema"):
                raise _invalid_value(kind, ("text", "json_object", "json_schema"), "text.format.type")
            if kind == "json_schema":
                if "json_schema" in fmt:
                    raise unknown_parameter("text.format.json_schema")  # Chat's nested form
                _string(fmt, "name", "text.format.name")
                if not isinstance(fmt.get("schema"), dict):
                    raise missing("text.format.schema")
        if _present(text, "verbosity") and text["verbosity"] not in ("low", "medium", "high"):
            raise _invalid_value(text["verbosity"], ("low", "medium", "high"), "text.verbosity")
    if _present(body, "metadata"):
        metadata = body["metadata"]
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise type_error("metadata", "an object with string values", metadata)


# ------------------------------------------------------------------ rendering

class _EventWriter:
    """`event: <type>` + `data: <compact json>` per event; nothing after the terminal event."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        data = fill_text(frame.encoded(compact_json), lookup)
        event = frame.event or (frame.data.get("type") if isinstance(frame.data, dict) else "message")
        return f"event: {event}\ndata: {data}\n\n".encode()

    def end(self) -> bytes:
        return b""


def _wants_summary(body: dict) -> bool:
    reasoning = body.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") is not None


def _without_summary(value: Any) -> Any:
    """Reasoning items with their summary emptied (the API sends it only on request)."""
    if isinstance(value, list):
        return [_without_summary(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("type") == "reasoning":
        return {**value, "summary": []}
    return {k: _without_summary(v) for k, v in value.items()}


class ResponsesProvider(OpenAIProvider):
    name = "openai_responses"

    def validate(self, call: Call) -> None:
        body = call.body
        for key in body:
            if key in CHAT_FIELDS:
                raise invalid(f"Unsupported parameter: '{key}'. In the Responses API, this parameter has moved to "
                              f"'{CHAT_FIELDS[key]}'. Try again with the new parameter.", param=key,
                              code="unsupported_parameter")
            if key not in TOP_LEVEL_FIELDS:
                raise unknown_parameter(key)  # messages, stop, n, seed, ...
        model = body.get("model")
        if model is None or model == "":
            raise missing("model")
        if not isinstance(model, str):
            raise type_error("model", "a string", model)
        call.model = model
        call.stream = body.get("stream") is True
        if not known_model(model):
            raise model_not_found(model)
        _check_settings(body, model)
        _check_tools(body)
        _check_input(body)

    def detect(self, call: Call) -> str:
        body = call.body
        items = body.get("input") if isinstance(body.get("input"), list) else []
        kinds = [i.get("type", "message") for i in items]
        if "function_call_output" in kinds or "custom_tool_call_output" in kinds:
            return "after_tool_result"
        if any(t.get("type") in ("function", "custom", "namespace") for t in body.get("tools") or ()):
            return "function_calling"
        effort = (body.get("reasoning") or {}).get("effort")
        if effort not in (None, "none", "minimal"):
            return "thinking"
        for item in items:
            if item.get("role") == "user" and isinstance(item.get("content"), list) \
                    and any(p.get("type") == "input_image" for p in item["content"]):
                return "vision"
        return "text"

    def stream_writer(self, call: Call) -> _EventWriter:
        return _EventWriter()

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        if _wants_summary(call.body) or not any(isinstance(f.data, dict) and "reasoning" in f.encoded(compact_json)
                                                for f in frames):
            return frames
        kept: list[ScenarioFrame] = []
        for f in frames:
            data = f.data
            if isinstance(data, dict) and str(data.get("type", "")).startswith("response.reasoning_summary"):
                continue
            if isinstance(data, dict):
                data = {**_without_summary(data), "sequence_number": len(kept)}
                f = ScenarioFrame(data=data, raw=f.raw, event=f.event, delay_ms=f.delay_ms)
            kept.append(f)
        return kept

    def select_body(self, body: Any, call: Call) -> Any:
        return body if _wants_summary(call.body) else _without_summary(body)


class AzureResponsesProvider(ResponsesProvider):
    """Responses at Azure's URLs; the body's `model` names a deployment."""

    name = "azure_openai_responses"
    scenario_set = "openai_responses"
    authenticate = AzureOpenAIProvider.authenticate
    not_found = AzureOpenAIProvider.not_found

    def validate(self, call: Call) -> None:
        validate_azure(call, super().validate, AZURE_RESPONSES_VERSIONS,
                       dated_form=call.notes.get("form") == "classic")
