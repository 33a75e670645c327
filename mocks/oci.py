"""Oracle OCI Generative AI inference chat (`POST /20231130/actions/chat`): the
request signature verified for real (mocks/oci_signature.py, against the test
key pair in mocks/testdata), the ChatDetails body checked against the `oci`
SDK's own models (unknown fields, required fields, types, enum values, the
discriminators apiFormat / role / servingType / type) and then against the
rules the service applies on top (the model and its request format, a user
turn or tool results to answer, tool results that answer the calls before
them, Cohere tool names), scenario detection, and replies in OCI's envelope:
`{"code", "message"}` with an `opc-request-id` header, streams as
charset-less `text/event-stream` `data:` events.

Fixtures are written in the COHERE format; a GENERIC request gets the same
scenario rewritten in the GENERIC shape (choices, content parts, tool calls
with ids, lower-case finish reasons), so both formats are served."""
from __future__ import annotations

import configparser
import copy
import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from mocks.oci_signature import SignatureError, verify
from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json, stable_id

TESTDATA = Path(__file__).resolve().parent / "testdata"
CONFIG_FILE = TESTDATA / "oci-config"  # what clients sign with (a config file for the mock alone)
PUBLIC_KEY_FILE = TESTDATA / "oci-api-key-public.pem"
# The scenarios a Cohere chat model has no use for (no reasoning, no image input), and the one it adds.
OMITTED_SCENARIOS = ("thinking", "vision")
EXTRA_SCENARIOS = ("json",)

COHERE, GENERIC = "COHERE", "GENERIC"
# Model id -> the request format the service accepts for it (COHEREV2 is not emulated).
MODELS = {
    "cohere.command-r-plus-08-2024": COHERE,
    "cohere.command-r-08-2024": COHERE,
    "cohere.command-a-03-2025": COHERE,
    "meta.llama-3.3-70b-instruct": GENERIC,
    "meta.llama-3.2-90b-vision-instruct": GENERIC,
    "xai.grok-3": GENERIC,
}
_OCID = re.compile(r"^ocid1\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9-]*\.[A-Za-z0-9._-]+$")
_COHERE_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GENERIC_FINISH = {"COMPLETE": "stop", "MAX_TOKENS": "length", "ERROR_LIMIT": "length", "ERROR_TOXIC": "content_filter",
                   "USER_CANCEL": "stop", "ERROR": "error"}
_ALLOWED = re.compile(r"allowed_values = (\[[^\]]*\])")


# ------------------------------------------------------------------ envelopes

def oci_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"code": code, "message": message})


def invalid(message: str) -> ApiError:
    return oci_error(400, "InvalidParameter", message)


def not_authenticated(message: str) -> ApiError:
    return oci_error(401, "NotAuthenticated", message)


# ------------------------------------------------------------------ test credentials

def _test_keys() -> dict[str, Any]:
    """keyId (tenancy/user/fingerprint of the test config) -> the public key that verifies it."""
    parser = configparser.ConfigParser()
    parser.read(CONFIG_FILE)
    profile = parser["DEFAULT"]
    key_id = f"{profile['tenancy']}/{profile['user']}/{profile['fingerprint']}"
    return {key_id: serialization.load_pem_public_key(PUBLIC_KEY_FILE.read_bytes())}


# ------------------------------------------------------------------ the SDK's models

class _Model:
    """One SDK model class as a request shape: its wire fields, their types, which are
    required and which enum values each allows."""

    def __init__(self, cls: type):
        instance = cls()
        self.cls = cls
        self.types = {instance.attribute_map[a]: t for a, t in instance.swagger_types.items()}
        self.required: set[str] = set()
        self.enums: dict[str, list[str]] = {}
        for attr, wire in instance.attribute_map.items():
            prop = getattr(cls, attr, None)
            if not isinstance(prop, property):
                continue
            if (prop.__doc__ or "").lstrip().startswith("**[Required]**"):
                self.required.add(wire)
            if prop.fset is not None:
                match = _ALLOWED.search(inspect.getsource(prop.fset))
                if match:
                    self.enums[wire] = [v.strip().strip("\"'") for v in match.group(1)[1:-1].split(",")]


@lru_cache(maxsize=None)
def _model(name: str) -> _Model:
    # Imported on the first OCI call, not at start-up: the SDK takes a second or two to import.
    from oci.generative_ai_inference import models
    return _Model(getattr(models, name))


def check_shape(value: Any, type_name: str, path: str) -> None:
    """Validate a JSON value against an SDK model type name, as the service's front end does."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise invalid(f"{path} must be an array.")
        for i, item in enumerate(value):
            check_shape(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            raise invalid(f"{path} must be an object.")
        item_type = type_name[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            check_shape(item, item_type, f"{path}.{key}")
        return
    scalar = {"str": str, "datetime": str, "bool": bool}
    if type_name in scalar:
        if not isinstance(value, scalar[type_name]):
            raise invalid(f"{path} must be a {'string' if scalar[type_name] is str else 'boolean'}.")
        return
    if type_name in ("int", "float"):
        ok = isinstance(value, int) if type_name == "int" else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise invalid(f"{path} must be {'an integer' if type_name == 'int' else 'a number'}.")
        return
    if type_name == "object":
        return
    model = _model(type_name)
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object.")
    if hasattr(model.cls, "get_subtype"):
        for key in model.required:
            if value.get(key) is None:
                raise invalid(f"{path}.{key} is required.")
        for key, allowed in model.enums.items():
            if key in value and value[key] not in allowed:
                raise invalid(f"{path}.{key} must be one of {', '.join(allowed)} (got {value[key]!r}).")
        subtype = model.cls.get_subtype(value)
        if subtype != type_name:
            model = _model(subtype)
    for key in value:
        if key not in model.types:
            raise invalid(f"Unknown field {path}.{key}: {model.cls.__name__} has {', '.join(sorted(model.types))}.")
    for key in model.required:
        if value.get(key) is None:
            raise invalid(f"{path}.{key} is required.")
    for key, item in value.items():
        if item is None:
            continue
        allowed = model.enums.get(key)
        if allowed is not None and item not in allowed:
            raise invalid(f"{path}.{key} must be one of {', '.join(allowed)} (got {item!r}).")
        check_shape(item, model.types[key], f"{path}.{key}")


# ------------------------------------------------------------------ service rules

def validate_request(body: dict) -> tuple[str | None, str, bool]:
    """Everything the chat action checks; returns (model id, apiFormat, stream)."""
    check_shape(body, "ChatDetails", "chatDetails")
    if not _OCID.match(body["compartmentId"]):
        raise invalid(f"compartmentId {body['compartmentId']!r} is not a valid OCID.")
    serving = body["servingMode"]
    chat = body["chatRequest"]
    api_format = chat["apiFormat"]
    model = None
    if serving["servingType"] == "ON_DEMAND":
        model = serving["modelId"]
        if model not in MODELS:
            raise oci_error(404, "NotAuthorizedOrNotFound", f"Entity with key {model} not found")
        if MODELS[model] != api_format:
            raise invalid(f"Model {model} does not support apiFormat {api_format}; use {MODELS[model]}.")
    elif not _OCID.match(serving["endpointId"]):
        raise invalid(f"endpointId {serving['endpointId']!r} is not a valid OCID.")
    if api_format == COHERE:
        _check_cohere(chat)
    elif api_format == GENERIC:
        _check_generic(chat)
    else:
        raise invalid(f"apiFormat {api_format} is not served by this endpoint.")
    return model, api_format, bool(chat.get("isStream"))


def _same_call(a: dict, b: dict) -> bool:
    return a.get("name") == b.get("name") and a.get("parameters") == b.get("parameters")


def _check_cohere(chat: dict) -> None:
    for i, tool in enumerate(chat.get("tools") or []):
        if not _COHERE_TOOL_NAME.match(tool["name"]):
            raise invalid(f"chatRequest.tools[{i}].name {tool['name']!r}: valid names contain only a-z, A-Z, 0-9 and "
                          "_ and do not begin with a digit.")
    history = chat.get("chatHistory") or []
    calls: list[dict] = []  # the toolCalls of the last CHATBOT turn
    for i, entry in enumerate(history):
        if entry["role"] == "CHATBOT":
            calls = entry.get("toolCalls") or []
        elif entry["role"] == "TOOL":
            _check_results(entry["toolResults"], calls, f"chatRequest.chatHistory[{i}].toolResults")
            calls = []
    results = chat.get("toolResults")
    if results:
        _check_results(results, calls, "chatRequest.toolResults")
    elif not chat["message"].strip():
        raise invalid("chatRequest.message must not be empty.")


def _check_results(results: list, calls: list, where: str) -> None:
    for j, result in enumerate(results):
        if not any(_same_call(result["call"], call) for call in calls):
            raise invalid(f"{where}[{j}].call does not match a tool call of the preceding CHATBOT message.")


def _check_generic(chat: dict) -> None:
    messages = chat.get("messages") or []
    if not messages:
        raise invalid("chatRequest.messages must not be empty.")
    ids: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.get("toolCalls") or []:
            ids.add(call["id"])
        if message["role"] == "TOOL" and message.get("toolCallId") not in ids:
            raise invalid(f"chatRequest.messages[{i}].toolCallId does not answer a tool call before it.")


# ------------------------------------------------------------------ GENERIC replies

def _generic_calls(calls: list, seed: str) -> list[dict]:
    return [{"id": f"call_{stable_id(seed.encode(), str(k), 20)}", "type": "FUNCTION", "name": c["name"],
             "arguments": compact_json(c["parameters"])} for k, c in enumerate(calls)]


def generic_body(body: Any, call: Call) -> Any:
    """A COHERE ChatResult fixture in the GENERIC shape (errors pass unchanged)."""
    chat = body.get("chatResponse") if isinstance(body, dict) else None
    if not isinstance(chat, dict):
        return body
    message: dict[str, Any] = {"role": "ASSISTANT"}
    if chat.get("text"):
        message["content"] = [{"type": "TEXT", "text": chat["text"]}]
    if chat.get("toolCalls"):
        message["toolCalls"] = _generic_calls(chat["toolCalls"], call.raw_body.decode("utf-8", "replace"))
    finish = "tool_calls" if chat.get("toolCalls") else _GENERIC_FINISH.get(chat.get("finishReason"), "stop")
    return {"modelId": body.get("modelId"), "modelVersion": body.get("modelVersion"),
            "chatResponse": {"apiFormat": GENERIC, "timeCreated": "2025-10-09T08:53:20.000Z",
                             "choices": [{"index": 0, "message": message, "finishReason": finish}],
                             "usage": chat.get("usage")}}


def generic_event(data: Any, call: Call) -> Any:
    """A COHERE stream event fixture in the GENERIC shape: a text delta as a content part,
    whole tool calls as fragments with ids, the terminal event as a bare finishReason."""
    if not isinstance(data, dict) or "code" in data:
        return data
    if "finishReason" in data:
        finish = "tool_calls" if data.get("toolCalls") else _GENERIC_FINISH.get(data["finishReason"], "stop")
        out: dict[str, Any] = {"index": 0, "finishReason": finish}
        if "usage" in data:
            out["usage"] = data["usage"]
        return out
    message: dict[str, Any] = {"role": "ASSISTANT"}
    if data.get("text"):
        message["content"] = [{"type": "TEXT", "text": data["text"]}]
    if data.get("toolCalls"):
        message["toolCalls"] = _generic_calls(data["toolCalls"], call.raw_body.decode("utf-8", "replace"))
    return {"index": 0, "message": message}


# ------------------------------------------------------------------ the provider

class _SseWriter:
    """`data: <compact json>` events; the terminal event's usage only when asked for."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        data = frame.data
        if self._call.notes.get("api_format") == GENERIC or not self._call.notes.get("usage"):
            data = copy.deepcopy(data)
            if isinstance(data, dict) and not self._call.notes.get("usage"):
                data.pop("usage", None)
            if self._call.notes.get("api_format") == GENERIC:
                data = generic_event(data, self._call)
            return f"data: {fill_text(compact_json(data), lookup)}\n\n".encode()
        return f"data: {fill_text(frame.encoded(compact_json), lookup)}\n\n".encode()

    def end(self) -> bytes:
        return b""


class OCIProvider(Provider):
    name = "oci"

    def __init__(self) -> None:
        self._keys = _test_keys()

    def authenticate(self, call: Call) -> None:
        if not call.header("Authorization"):
            raise not_authenticated("The required information to complete authentication was not provided.")
        try:
            verify(call.method, call.notes.get("raw_target") or call.path, call.headers, call.raw_body,
                   public_keys=self._keys)
        except SignatureError as err:
            raise not_authenticated(str(err)) from None

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return invalid(f"The request body is not valid JSON: {detail}")

    def too_large(self, call: Call) -> ApiError:
        return oci_error(413, "RequestEntityTooLarge", "The request body is too large.")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        code = {400: "InvalidParameter", 401: "NotAuthenticated", 404: "NotAuthorizedOrNotFound",
                429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
            status, "InternalServerError" if status >= 500 else "InvalidParameter")
        return oci_error(status, code, message)

    def not_found(self, call: Call) -> ApiError:
        return oci_error(404, "NotAuthorizedOrNotFound", f"No operation matches {call.method} {call.path}.")

    def validate(self, call: Call) -> None:
        call.model, api_format, call.stream = validate_request(call.body)
        options = call.body["chatRequest"].get("streamOptions") or {}
        call.notes.update(api_format=api_format, usage=options.get("isIncludeUsage") is True)

    def detect(self, call: Call) -> str:
        chat = call.body["chatRequest"]
        if chat["apiFormat"] == GENERIC:
            messages = chat.get("messages") or []
            if any(m["role"] == "TOOL" for m in messages):
                return "after_tool_result"
            tools = chat.get("tools")
        else:
            if chat.get("toolResults") or any(h["role"] == "TOOL" for h in chat.get("chatHistory") or []):
                return "after_tool_result"
            tools = chat.get("tools")
        if tools:
            return "function_calling"
        if (chat.get("responseFormat") or {}).get("type") in ("JSON_OBJECT", "JSON_SCHEMA"):
            return "json"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        if status == 200 and call.notes.get("api_format") == GENERIC:
            body = generic_body(body, call)
        return compact_json(body).encode()

    def stream_writer(self, call: Call) -> _SseWriter:
        return _SseWriter(call)

    def stream_content_type(self, call: Call) -> str:
        return "text/event-stream"  # the service names no charset (hazard: clients must read UTF-8 bytes)

    def response_headers(self, call: Call) -> dict[str, str]:
        seed = call.path.encode() + call.raw_body
        return {"opc-request-id": stable_id(seed, "request", 32).upper()}
