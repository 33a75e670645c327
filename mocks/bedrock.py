"""AWS Bedrock Runtime Converse (`POST /model/{modelId}/converse` and
`/converse-stream`): SigV4 checked for real (mocks/sigv4.py: the fixed test
credentials, or temporary ones this mock issued through STS or the container
endpoint, mocks/aws_credentials.py, with their session token and expiry) or a
Bedrock API key as Bearer, the request checked against
botocore's own service model (unknown members, types, enums, patterns,
ranges, unions) and then against the rules the service applies on top (blank
text, role alternation, toolUse/toolResult pairing, toolConfig with tool
history, Claude's thinking rules, reasoning signatures this mock issued),
scenario detection, and replies in Bedrock's envelope: `{"message": ...}` with
`x-amzn-ErrorType`, streams as real binary event-stream messages."""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

from botocore.loaders import Loader

from mocks.aws_credentials import TemporaryCredentials
from mocks.eventstream import encode_event, encode_exception
from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import Scenario, ScenarioFrame, ScenarioLibrary, fill_text
from mocks.sigv4 import SigV4Error, verify
from mocks.wire import ApiError, compact_json, decode_base64, sniff_image_type, stable_id

# The test credentials (AWS's documentation example key pair): clients sign with these.
ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
API_KEY = "ABSKbW9jay1iZWRyb2NrLWFwaS1rZXk="  # a Bedrock API key (Authorization: Bearer ...)
SERVICE = "bedrock"  # the signing name; the host is bedrock-runtime.{region}.amazonaws.com
# Reasoning signatures this mock issues decode to this prefix; any other is "invalid".
SIGNATURE_PREFIX = b"bedrock-mock-signature:"

# Base model id -> family. Ids also arrive as cross-region profiles (`us.` + id) or ARNs ending in one.
MODELS = {
    "anthropic.claude-3-sonnet-20240229-v1:0": "anthropic",
    "anthropic.claude-3-7-sonnet-20250219-v1:0": "anthropic",
    "anthropic.claude-sonnet-4-5-20250929-v1:0": "anthropic",
    "amazon.nova-pro-v1:0": "amazon",
    "amazon.nova-lite-v1:0": "amazon",
    # The dual-mode gateway seed's examples call Claude 3 Sonnet by this short id
    # (`/transparent/bedrock/model/anthropic.claude-3-sonnet/converse`); transparent mode
    # relays the path untouched, so the mock answers it as the dated id it stands for.
    "anthropic.claude-3-sonnet": "anthropic",
}
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")
_ARN = re.compile(r"^arn:aws(-[a-z-]+)?:bedrock:[a-z0-9-]+:(\d{12})?:(foundation-model|inference-profile)/(?P<id>.+)$")
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_CLAUDE_FIELDS = {"thinking", "top_k", "anthropic_beta"}

# The service model botocore ships: the request shapes are checked against it.
_SHAPES: dict[str, dict] = Loader().load_service_model("bedrock-runtime", "service-2")["shapes"]
_PATTERNS: dict[str, re.Pattern | None] = {}


# ------------------------------------------------------------------ envelopes

def bedrock_error(status: int, error_type: str, message: str) -> ApiError:
    """Bedrock's envelope: the type in a header (with its Coral suffix), the message in the body."""
    return ApiError(status, {"message": message}, {"x-amzn-ErrorType": error_type + _ERROR_TYPE_SUFFIX})


def validation(message: str) -> ApiError:
    return bedrock_error(400, "ValidationException", message)


def _constraint(value: Any, path: str, rule: str) -> ApiError:
    """The front end's wording: the value is quoted when it is a scalar, left out otherwise."""
    if isinstance(value, (dict, list)):
        shown = ""
    else:
        shown = "null " if value is None else f"'{value}' "
    return validation(f"1 validation error detected: Value {shown}at '{path}' failed to satisfy constraint: {rule}")


def _model_error(message: str) -> ApiError:
    """What the model behind Converse refused, as Bedrock relays it."""
    return validation(f"The model returned the following errors: {message}")


# ------------------------------------------------------------------ models

def model_family(model_id: str) -> str | None:
    """The family of a known model id, profile or ARN; None when unknown."""
    match = _ARN.match(model_id)
    base = match.group("id") if match else model_id
    for prefix in _PROFILE_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    return MODELS.get(base)


# ------------------------------------------------------------------ shapes

def check_shape(value: Any, shape_name: str, path: str) -> None:
    """Validate a JSON value against a botocore shape, the way the service's
    front end does (its messages use 1-based `.N.member` list paths)."""
    shape = _SHAPES[shape_name]
    kind = shape["type"]
    if shape.get("document"):
        return  # any JSON value
    if kind == "structure":
        if not isinstance(value, dict):
            raise _constraint(value, path, "Member must be an object")
        members = shape["members"]
        for key in value:
            if key not in members or "location" in members[key]:
                raise validation(f"Unknown field '{key}' at '{path or 'body'}'.")
        if shape.get("union") and len(value) != 1:
            raise _constraint(value, path, "Member must have exactly one member set")
        for key in shape.get("required", ()):
            if "location" not in members[key] and value.get(key) is None:
                raise _constraint(None, _join(path, key), "Member must not be null")
        for key, item in value.items():
            if item is not None:
                check_shape(item, members[key]["shape"], _join(path, key))
    elif kind == "list":
        if not isinstance(value, list):
            raise _constraint(value, path, "Member must be an array")
        _check_length(len(value), shape, value, path)
        for i, item in enumerate(value):
            check_shape(item, shape["member"]["shape"], f"{path}.{i + 1}.member")
    elif kind == "map":
        if not isinstance(value, dict):
            raise _constraint(value, path, "Member must be an object")
        _check_length(len(value), shape, value, path)
        for key, item in value.items():
            check_shape(key, shape["key"]["shape"], f"{path}.{key}")
            check_shape(item, shape["value"]["shape"], f"{path}.{key}")
    elif kind == "string":
        if not isinstance(value, str):
            raise _constraint(value, path, "Member must be a string")
        if "enum" in shape and value not in shape["enum"]:
            raise _constraint(value, path, f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")
        _check_length(len(value), shape, value, path)
        pattern = _pattern(shape_name, shape)
        if pattern is not None and not pattern.fullmatch(value):
            raise _constraint(value, path, f"Member must satisfy regular expression pattern: {shape['pattern']}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _constraint(value, path, "Member must be an integer")
        _check_range(value, shape, path)
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _constraint(value, path, "Member must be a number")
        _check_range(value, shape, path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _constraint(value, path, "Member must be a boolean")
    elif kind == "blob":
        data = decode_base64(value) if isinstance(value, str) else None
        if data is None:
            raise _constraint(None, path, "Member must be base64-encoded binary data")
        _check_length(len(data), shape, "<binary>", path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _pattern(name: str, shape: dict) -> re.Pattern | None:
    if name not in _PATTERNS:
        try:
            _PATTERNS[name] = re.compile(shape["pattern"]) if "pattern" in shape else None
        except re.error:
            _PATTERNS[name] = None
    return _PATTERNS[name]


def _check_length(length: int, shape: dict, value: Any, path: str) -> None:
    if "min" in shape and length < shape["min"]:
        raise _constraint(value, path, f"Member must have length greater than or equal to {shape['min']}")
    if "max" in shape and length > shape["max"]:
        raise _constraint(value, path, f"Member must have length less than or equal to {shape['max']}")


def _check_range(value: float, shape: dict, path: str) -> None:
    if "min" in shape and value < shape["min"]:
        raise _constraint(value, path, f"Member must have value greater than or equal to {shape['min']}")
    if "max" in shape and value > shape["max"]:
        raise _constraint(value, path, f"Member must have value less than or equal to {shape['max']}")


# ------------------------------------------------------------------ service rules

def _check_text(text: str, where: str, block: str) -> None:
    if not text.strip():
        raise validation(f"The text field in the {block} object at {where} is blank. Add text to the text field, "
                         "and try again.")


def _check_image(image: dict, where: str) -> None:
    data = decode_base64(image["source"]["bytes"]) if "bytes" in image["source"] else None
    if data is not None and sniff_image_type(data) != f"image/{image['format']}":
        raise validation(f"The image at {where} does not match its format '{image['format']}'; the provided image "
                         "bytes could not be decoded as that format.")


def _check_messages(messages: list, family: str) -> None:
    """What the service checks beyond the shapes: the conversation's grammar."""
    if not messages or messages[0]["role"] != "user":
        raise validation("A conversation must start with a user message. Try again with a conversation that starts "
                         "with a user message.")
    pending: list[str] = []  # toolUseIds of the previous assistant turn
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == "system" or (i and messages[i - 1]["role"] == role):
            raise validation("A conversation must alternate between user and assistant roles. Make sure the "
                             "conversation alternates between user and assistant roles and try again.")
        if not content:
            raise validation(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock "
                             "object to the content field and try again.")
        results: list[str] = []
        uses: list[str] = []
        for j, block in enumerate(content):
            where = f"messages.{i}.content.{j}"
            if "text" in block:
                _check_text(block["text"], where, "ContentBlock")
            elif "image" in block:
                _check_image(block["image"], where)
            elif "toolUse" in block:
                if role != "assistant":
                    raise validation(f"The toolUse block at {where} is only allowed in an assistant message.")
                uses.append(block["toolUse"]["toolUseId"])
            elif "toolResult" in block:
                if role != "user":
                    raise validation(f"The toolResult block at {where} is only allowed in a user message.")
                results.append(block["toolResult"]["toolUseId"])
                for k, item in enumerate(block["toolResult"]["content"]):
                    if "text" in item:
                        _check_text(item["text"], f"{where}.toolResult.content.{k}", "ToolResultContentBlock")
                    elif "image" in item:
                        _check_image(item["image"], f"{where}.toolResult.content.{k}")
            elif "reasoningContent" in block:
                if role != "assistant":
                    raise validation(f"The reasoningContent block at {where} is only allowed in an assistant message.")
                _check_reasoning(block["reasoningContent"], where, family)
        if role == "user":
            if len(results) > len(pending):
                raise validation(f"The number of toolResult blocks at messages.{i}.content exceeds the number of "
                                 "toolUse blocks of previous turn.")
            missing = [use for use in pending if use not in results]
            if missing:
                raise validation(f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                                 f"{', '.join(missing)}")
        pending = uses


def _check_reasoning(reasoning: dict, where: str, family: str) -> None:
    if family != "anthropic":
        raise _model_error(f"{where}: reasoning content is not supported by this model.")
    text = reasoning.get("reasoningText")
    if text is not None:
        signature = decode_base64(text.get("signature") or "")
        if signature is None or not signature.startswith(SIGNATURE_PREFIX):
            raise _model_error(f"{where}: Invalid `signature` in `thinking` block")


def _has_tool_blocks(messages: list) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _check_tools(body: dict, messages: list) -> None:
    config = body.get("toolConfig")
    if config is None:
        if _has_tool_blocks(messages):
            raise validation("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
        return
    names = [t["toolSpec"]["name"] for t in config["tools"] if "toolSpec" in t]
    if len(set(names)) != len(names):
        raise validation("The toolConfig field contains duplicate tool names; tool names must be unique.")
    choice = config.get("toolChoice") or {}
    if "tool" in choice and choice["tool"]["name"] not in names:
        raise validation(f"The tool {choice['tool']['name']} in toolChoice is not defined in toolConfig.tools.")


def _check_model_fields(body: dict, family: str) -> None:
    """additionalModelRequestFields reach the model; Claude takes its own fields, others none here."""
    fields = body.get("additionalModelRequestFields") or {}
    if not isinstance(fields, dict):
        raise _model_error("Malformed input request: #: expected type: JSONObject, please reformat your input and "
                           "try again.")
    allowed = _CLAUDE_FIELDS if family == "anthropic" else set()
    for key in fields:
        if key not in allowed:
            raise _model_error(f"Malformed input request: #: extraneous key [{key}] is not permitted, please reformat "
                               "your input and try again.")
    thinking = fields.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise _model_error("thinking.type: Input should be 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise _model_error("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    inference = body.get("inferenceConfig") or {}
    if inference.get("maxTokens") is not None and inference["maxTokens"] <= budget:
        raise _model_error("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if inference.get("temperature") not in (None, 1):
        raise _model_error("`temperature` may only be set to 1 when thinking is enabled.")
    if inference.get("topP") is not None and inference["topP"] < 0.95:
        raise _model_error("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.")
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    if "any" in choice or "tool" in choice:
        raise _model_error("Thinking may not be enabled when tool_choice forces tool use.")
    messages = body["messages"]
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if last is not None and any("toolUse" in b for b in messages[last]["content"]) \
            and "reasoningContent" not in messages[last]["content"][0]:
        raise _model_error(f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                           "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with a "
                           "thinking block.")


def validate_request(body: dict, model_id: str) -> None:
    """Everything Converse checks before it answers; raises the ApiError it would send."""
    family = model_family(model_id)
    if family is None:
        raise validation("The provided model identifier is invalid.")
    check_shape(body, "ConverseRequest", "")
    messages = body.get("messages") or []
    _check_messages(messages, family)
    for k, block in enumerate(body.get("system") or []):
        if "text" in block:
            _check_text(block["text"], f"system.{k}", "SystemContentBlock")
    _check_tools(body, messages)
    _check_model_fields(body, family)


# ------------------------------------------------------------------ the provider

class _EventStreamWriter:
    """Fixture frames -> binary event-stream messages. `event` is the `:event-type`;
    an event name ending in `Exception` is written as an exception message; every
    event payload gets a `p` padding member, as the real service adds; a `raw`
    frame's text is the payload as is (for malformed JSON inside valid framing)."""

    def __init__(self) -> None:
        self._count = 0

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        name = frame.event or ""
        if frame.raw is not None:
            return encode_event(name, fill_text(frame.raw, lookup).encode())
        payload = fill_text(frame.encoded(compact_json), lookup)
        if name.endswith("Exception"):
            return encode_exception(name, payload.encode())
        self._count += 1
        padding = _PADDING[:(self._count * 17) % len(_PADDING) + 2]
        payload = payload[:-1] + ("," if payload != "{}" else "") + f'"p":"{padding}"}}'
        return encode_event(name, payload.encode())

    def end(self) -> bytes:
        return b""


class _SecretKeys(Mapping):
    """Access key id -> secret: the fixed test pair, and the temporary keys issued."""

    def __init__(self, temporary: TemporaryCredentials):
        self._temporary = temporary

    def __getitem__(self, access_key: str) -> str:
        if access_key == ACCESS_KEY_ID:
            return SECRET_ACCESS_KEY
        issued = self._temporary.get(access_key)
        if issued is None:
            raise KeyError(access_key)
        return issued.secret

    def __iter__(self):
        raise TypeError("not enumerable")

    def __len__(self) -> int:
        raise TypeError("not enumerable")


class BedrockProvider(Provider):
    name = "bedrock"

    def __init__(self, temporary: TemporaryCredentials | None = None):
        self.temporary = temporary or TemporaryCredentials()
        self._secrets = _SecretKeys(self.temporary)

    def authenticate(self, call: Call) -> None:
        authorization = call.header("Authorization") or ""
        if not authorization:
            raise bedrock_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if authorization.startswith("Bearer "):
            if authorization[len("Bearer "):].strip() != API_KEY:
                raise bedrock_error(403, "UnrecognizedClientException",
                                    "The security token included in the request is invalid.")
            return
        try:
            call.notes["region"] = verify(call.method, call.notes.get("raw_target") or call.path, call.headers,
                                          call.raw_body, service=SERVICE, secrets=self._secrets)
        except SigV4Error as err:
            raise bedrock_error(403, err.code, err.message) from None
        self._check_session(call, authorization)

    def _check_session(self, call: Call, authorization: str) -> None:
        """Temporary credentials: only with their session token, and only until they expire."""
        access_key = authorization.partition("Credential=")[2].partition("/")[0]
        issued = self.temporary.get(access_key)
        if issued is None:
            return  # the fixed test pair (with or without a session token of the caller's)
        if call.header("X-Amz-Security-Token") != issued.session_token:
            raise bedrock_error(403, "UnrecognizedClientException",
                                "The security token included in the request is invalid.")
        if time.time() >= issued.expiry:
            raise bedrock_error(403, "ExpiredTokenException", "The security token included in the request is expired")

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return bedrock_error(400, "SerializationException", "The request body could not be read as a JSON object.")

    def too_large(self, call: Call) -> ApiError:
        return validation("Input is too long for requested model.")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        error_type = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                      429: "ThrottlingException", 503: "ServiceUnavailableException"}.get(
            status, "InternalServerException" if status >= 500 else "ValidationException")
        return bedrock_error(status, error_type, message)

    def not_found(self, call: Call) -> ApiError:
        return bedrock_error(404, "UnknownOperationException", f"No operation matches {call.method} {call.path}.")

    def validate(self, call: Call) -> None:
        validate_request(call.body, call.model or "")  # model and stream come from the path (see the routes)

    def choose_scenario(self, call: Call, library: ScenarioLibrary) -> Scenario:
        scenario = super().choose_scenario(call, library)
        if call.stream and scenario.stream is not None and "x-amzn-ErrorType" in scenario.headers:
            # One header set serves both forms of error_mid_stream; its streamed 200 names no error type.
            scenario = dataclasses.replace(scenario, headers={k: v for k, v in scenario.headers.items()
                                                              if k != "x-amzn-ErrorType"})
        return scenario

    def detect(self, call: Call) -> str:
        body = call.body
        messages = body.get("messages") or []
        if any("toolResult" in b for m in messages for b in m["content"]):
            return "after_tool_result"
        if (body.get("toolConfig") or {}).get("tools"):
            return "function_calling"
        thinking = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
        if thinking.get("type") == "enabled":
            return "thinking"
        if any("image" in b for m in messages if m["role"] == "user" for b in m["content"]):
            return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()

    def stream_writer(self, call: Call) -> _EventStreamWriter:
        return _EventStreamWriter()

    def stream_content_type(self, call: Call) -> str:
        return "application/vnd.amazon.eventstream"

    def response_headers(self, call: Call) -> dict[str, str]:
        seed = call.path.encode() + call.raw_body
        hexa = stable_id(seed, "request", 32).lower().encode().hex()[:32]
        return {"x-amzn-RequestId": f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:32]}"}
