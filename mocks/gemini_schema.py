"""The proto shape of a Gemini `GenerateContentRequest`, and the walker that
parses a JSON body against it the way Google's JSON->proto front end does:
unknown names anywhere are rejected ("Unknown name ... Cannot find field."),
scalars must have their proto type, both lowerCamelCase and snake_case names
are accepted, a single value is accepted for a repeated field, null means
unset. The walker returns a normalized copy (camelCase keys, lists for
repeated fields) that the semantic checks and scenario detection read."""
from __future__ import annotations

import re
from typing import Any

from mocks.wire import compact_json, decode_base64

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1beta."

# Field kinds: a scalar name, a message name (a key of MESSAGES), ("repeated", kind),
# ("map", kind) or ("enum", EnumName, values). "struct" = a JSON object of anything
# (google.protobuf.Struct), "value" = any JSON value (google.protobuf.Value).
STRING, INT, FLOAT, BOOL, BYTES, STRUCT, VALUE = "string", "int", "float", "bool", "bytes", "struct", "value"


def _rep(kind: Any) -> tuple:
    return ("repeated", kind)


def _enum(name: str, *values: str) -> tuple:
    return ("enum", name, values)


SCHEMA_TYPE = _enum("Type", "TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
CALLING_MODE = _enum("FunctionCallingConfig.Mode", "MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
MODALITY = _enum("GenerationConfig.Modality", "MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO")
THINKING_LEVEL = _enum("ThinkingConfig.ThinkingLevel", "THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM",
                       "HIGH")

MESSAGES: dict[str, dict[str, Any]] = {
    "GenerateContentRequest": {
        "model": STRING, "contents": _rep("Content"), "systemInstruction": "Content", "tools": _rep("Tool"),
        "toolConfig": "ToolConfig", "safetySettings": _rep("SafetySetting"), "generationConfig": "GenerationConfig",
        "cachedContent": STRING, "serviceTier": STRING, "store": BOOL,
    },
    "CountTokensRequest": {"contents": _rep("Content"), "generateContentRequest": "GenerateContentRequest"},
    # Vertex AI's (aiplatform v1): the generate request's counted fields at the top level, no wrapper.
    "VertexCountTokensRequest": {"model": STRING, "instances": _rep(VALUE), "contents": _rep("Content"),
                                 "systemInstruction": "Content", "tools": _rep("Tool"),
                                 "generationConfig": "GenerationConfig"},
    "Content": {"role": STRING, "parts": _rep("Part")},
    "Part": {
        "text": STRING, "inlineData": "Blob", "fileData": "FileData", "functionCall": "FunctionCall",
        "functionResponse": "FunctionResponse", "executableCode": "ExecutableCode",
        "codeExecutionResult": "CodeExecutionResult", "thought": BOOL, "thoughtSignature": BYTES,
        "videoMetadata": "VideoMetadata", "partMetadata": STRUCT, "mediaResolution": STRUCT,
    },
    "Blob": {"mimeType": STRING, "data": BYTES},
    "FileData": {"mimeType": STRING, "fileUri": STRING, "displayName": STRING},
    "FunctionCall": {"id": STRING, "name": STRING, "args": STRUCT},
    "FunctionResponse": {"id": STRING, "name": STRING, "response": STRUCT, "parts": _rep("FunctionResponsePart"),
                         "willContinue": BOOL, "scheduling": STRING},
    "FunctionResponsePart": {"inlineData": "Blob", "fileData": "FileData"},
    "ExecutableCode": {"id": STRING, "language": STRING, "code": STRING},
    "CodeExecutionResult": {"id": STRING, "outcome": STRING, "output": STRING},
    "VideoMetadata": {"startOffset": STRING, "endOffset": STRING, "fps": FLOAT},
    "Tool": {
        "functionDeclarations": _rep("FunctionDeclaration"), "googleSearchRetrieval": STRUCT,
        "codeExecution": STRUCT, "googleSearch": STRUCT, "urlContext": STRUCT, "computerUse": STRUCT,
        "fileSearch": STRUCT, "googleMaps": STRUCT,
    },
    "FunctionDeclaration": {
        "name": STRING, "description": STRING, "behavior": STRING, "parameters": "Schema",
        "parametersJsonSchema": VALUE, "response": "Schema", "responseJsonSchema": VALUE,
    },
    # The OpenAPI-3.0 subset (protocols §4.4): anything else is an unknown name.
    "Schema": {
        "type": SCHEMA_TYPE, "format": STRING, "title": STRING, "description": STRING, "nullable": BOOL,
        "enum": _rep(STRING), "maxItems": INT, "minItems": INT, "items": "Schema", "properties": ("map", "Schema"),
        "required": _rep(STRING), "minProperties": INT, "maxProperties": INT, "minLength": INT, "maxLength": INT,
        "pattern": STRING, "example": VALUE, "anyOf": _rep("Schema"), "propertyOrdering": _rep(STRING),
        "default": VALUE, "minimum": FLOAT, "maximum": FLOAT,
    },
    "ToolConfig": {"functionCallingConfig": "FunctionCallingConfig", "retrievalConfig": STRUCT},
    "FunctionCallingConfig": {"mode": CALLING_MODE, "allowedFunctionNames": _rep(STRING)},
    "SafetySetting": {"category": STRING, "threshold": STRING},
    "GenerationConfig": {
        "stopSequences": _rep(STRING), "responseMimeType": STRING, "responseSchema": "Schema",
        "responseJsonSchema": VALUE, "responseModalities": _rep(MODALITY), "candidateCount": INT,
        "maxOutputTokens": INT, "temperature": FLOAT, "topP": FLOAT, "topK": INT, "seed": INT,
        "presencePenalty": FLOAT, "frequencyPenalty": FLOAT, "responseLogprobs": BOOL, "logprobs": INT,
        "enableEnhancedCivicAnswers": BOOL, "speechConfig": STRUCT, "thinkingConfig": "ThinkingConfig",
        "imageConfig": STRUCT, "mediaResolution": STRING,
    },
    "ThinkingConfig": {"includeThoughts": BOOL, "thinkingBudget": INT, "thinkingLevel": THINKING_LEVEL},
}

_SCALAR_PROTO_NAMES = {STRING: "TYPE_STRING", INT: "TYPE_INT32", FLOAT: "TYPE_FLOAT", BOOL: "TYPE_BOOL",
                       BYTES: "TYPE_BYTES"}


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


# Accepted JSON name -> (canonical camelCase name, kind), per message.
_ALIASES: dict[str, dict[str, tuple[str, Any]]] = {
    message: {**{n: (n, k) for n, k in fields.items()}, **{snake(n): (n, k) for n, k in fields.items()}}
    for message, fields in MESSAGES.items()
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class ProtoViolations:
    """Everything the JSON parser objects to, reported together like Google does."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (field path, description)

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))


class ProtoWalker:
    def __init__(self) -> None:
        self.violations = ProtoViolations()

    def message(self, value: Any, message: str, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self._invalid(path, TYPE_PREFIX + message, value)
            return None
        aliases = _ALIASES[message]
        out: dict[str, Any] = {}
        for key, item in value.items():
            entry = aliases.get(key)
            if entry is None:
                where = f" at '{path}'" if path else ""
                self.violations.add(path, f'Invalid JSON payload received. Unknown name "{key}"{where}: '
                                          "Cannot find field.")
                continue
            canonical, kind = entry
            if item is None:
                continue  # JSON null = the field's default
            parsed = self.value(item, kind, _join(path, snake(canonical)))
            if parsed is not None:
                out[canonical] = parsed
        return out

    def value(self, item: Any, kind: Any, path: str) -> Any:
        if isinstance(kind, tuple) and kind[0] == "repeated":
            items = item if isinstance(item, list) else [item]  # one value is accepted for a repeated field
            out = []
            for i, element in enumerate(items):
                if isinstance(element, list):
                    self.violations.add(f"{path}[{i}]", "Invalid JSON payload received. Proto field is not "
                                                        "repeating, cannot start list.")
                    continue
                parsed = self.value(element, kind[1], f"{path}[{i}]")
                if parsed is not None:
                    out.append(parsed)
            return out
        if isinstance(item, list):
            self.violations.add(path, "Invalid JSON payload received. Proto field is not repeating, cannot start "
                                      "list.")
            return None
        if isinstance(kind, tuple) and kind[0] == "map":
            if not isinstance(item, dict):
                self._invalid(path, "map", item)
                return None
            out = {}
            for i, (key, element) in enumerate(item.items()):
                parsed = self.value(element, kind[1], f"{path}[{i}].value")
                if parsed is not None:
                    out[key] = parsed
            return out
        if isinstance(kind, tuple) and kind[0] == "enum":
            _, enum_name, values = kind
            if isinstance(item, str) and item.upper() in values:
                return item.upper()  # REST examples use lowercase schema types too
            if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(values):
                return values[item]
            self._invalid(path, TYPE_PREFIX + enum_name, item)
            return None
        if kind in MESSAGES:
            return self.message(item, kind, path)
        return self._scalar(item, kind, path)

    def _scalar(self, item: Any, kind: str, path: str) -> Any:
        if kind == VALUE:
            return item
        if kind == STRUCT:
            if isinstance(item, dict):
                return item
        elif kind == STRING:
            if isinstance(item, str):
                return item
        elif kind == BOOL:
            if isinstance(item, bool):
                return item
        elif kind == INT:
            if isinstance(item, bool):
                pass
            elif isinstance(item, int):
                return item
            elif isinstance(item, float) and item.is_integer():
                return int(item)
            elif isinstance(item, str) and re.fullmatch(r"-?\d+", item):
                return int(item)
        elif kind == FLOAT:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                return float(item)
            if isinstance(item, str):
                try:
                    return float(item)
                except ValueError:
                    pass
        elif kind == BYTES:
            if isinstance(item, str) and decode_base64(item) is not None:
                return item
            if isinstance(item, str):
                self.violations.add(path, f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for "
                                          f"{compact_json(item[:40])}")
                return None
        self._invalid(path, _SCALAR_PROTO_NAMES.get(kind, "google.protobuf.Struct"), item)
        return None

    def _invalid(self, path: str, type_name: str, item: Any) -> None:
        self.violations.add(path, f"Invalid value at '{path}' ({type_name}), {compact_json(item)}")
