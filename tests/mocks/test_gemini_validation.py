"""Gemini: proto strictness (unknown names anywhere, JSON-Schema keys outside
the Schema subset, wrong scalar types) and the semantic rules reject with
Google's envelope; the forms Google accepts are accepted; API-key auth."""
from __future__ import annotations

import copy

import pytest
import requests

from tests.mocks.helpers import AUTH, post

MODEL_PATH = "/v1beta/models/gemini-2.5-flash"
PATH = MODEL_PATH + ":generateContent"
USER = {"role": "user", "parts": [{"text": "Hi"}]}
BASE = {"contents": [USER]}


def body(**changes) -> dict:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def tool(parameters: dict) -> list:
    return [{"functionDeclarations": [{"name": "get_weather", "parameters": parameters}]}]


def call_turn(*names: str) -> dict:
    return {"role": "model", "parts": [{"functionCall": {"name": n, "args": {}}} for n in names]}


def answer_turn(*names: str) -> dict:
    return {"role": "user", "parts": [{"functionResponse": {"name": n, "response": {"output": "ok"}}} for n in names]}


PARAMS = {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}
UNSUPPORTED_SCHEMA_KEYS = ["additionalProperties", "$schema", "$ref", "$defs", "const", "oneOf", "allOf",
                           "exclusiveMinimum", "not", "examples", "patternProperties", "multipleOf"]


@pytest.mark.parametrize("key", UNSUPPORTED_SCHEMA_KEYS)
def test_json_schema_keys_outside_the_subset(mock_url, key):
    parameters = {**PARAMS, key: {} if key != "const" else "x"}
    response = post(mock_url, "gemini", PATH, body(tools=tool(parameters)))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["message"] == (f'Invalid JSON payload received. Unknown name "{key}" at '
                                "'tools[0].function_declarations[0].parameters': Cannot find field.")
    violation = error["details"][0]
    assert violation["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert violation["fieldViolations"][0]["field"] == "tools[0].function_declarations[0].parameters"


def test_nested_unknown_names_are_all_reported(mock_url):
    parameters = {"type": "OBJECT", "properties": {"a": {"type": "STRING", "const": "x"},
                                                   "b": {"type": "OBJECT", "properties": {"c": {"type": "STRING"}},
                                                         "additionalProperties": False}}}
    response = post(mock_url, "gemini", PATH, body(tools=tool(parameters), temperature=1))
    lines = response.json()["error"]["message"].split("\n")
    assert lines == [  # in the order the body is read
        'Invalid JSON payload received. Unknown name "const" at '
        "'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field.",
        'Invalid JSON payload received. Unknown name "additionalProperties" at '
        "'tools[0].function_declarations[0].parameters.properties[1].value': Cannot find field.",
        'Invalid JSON payload received. Unknown name "temperature": Cannot find field.',
    ]
    assert len(response.json()["error"]["details"][0]["fieldViolations"]) == 3


CASES = [
    ("assistant role", body(contents=[{"role": "assistant", "parts": [{"text": "Hi"}]}]),
     "Please use a valid role: user, model."),
    ("no contents", body(contents=[]), "* GenerateContentRequest.contents: contents is not specified\n"),
    ("empty parts", body(contents=[{"role": "user", "parts": []}]),
     "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n"),
    ("empty text", body(contents=[{"role": "user", "parts": [{"text": ""}]}]),
     "Unable to submit request because it has an empty text parameter."),
    ("part with no data", body(contents=[{"role": "user", "parts": [{"thought": True}]}]),
     "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one initialized "
     "field\n"),
    ("part with two data fields", body(contents=[{"role": "user", "parts": [
        {"text": "Hi", "inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}]),
     "oneof field 'data' is already set"),
    ("fewer responses than calls", body(tools=tool(PARAMS), contents=[USER, call_turn("get_weather", "get_weather"),
                                                                      answer_turn("get_weather")]),
     "Please ensure that the number of function response parts is equal to the number of function call parts of "
     "the function call turn."),
    ("text instead of responses", body(tools=tool(PARAMS), contents=[USER, call_turn("get_weather"), USER]),
     "Please ensure that the number of function response parts is equal to the number of function call parts"),
    ("response name not called", body(tools=tool(PARAMS), contents=[USER, call_turn("get_weather"),
                                                                    answer_turn("get_time")]),
     'Unexpected name: "get_time".'),
    ("response without a call", body(contents=[USER, answer_turn("get_weather")]),
     "Please ensure that function response turn comes immediately after a function call turn."),
    ("call turn first", body(tools=tool(PARAMS), contents=[call_turn("get_weather"), answer_turn("get_weather")]),
     "Please ensure that function call turn comes immediately after a user turn or after a function response turn."),
    ("OBJECT without properties", body(tools=tool({"type": "OBJECT", "properties": {}})),
     "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties: should be non-empty for "
     "OBJECT type\n"),
    ("nested OBJECT without properties", body(tools=tool({"type": "object", "properties": {"o": {"type": "object"}}})),
     "parameters.properties[0].value.properties: should be non-empty for OBJECT type"),
    ("nested field without a type", body(tools=tool({"type": "object", "properties": {"args": {
        "description": "anything"}}})),
     "parameters.properties[0].value.type: must be specified when not using one_of, any_of or all_of fields"),
    ("parametersJsonSchema keyword Gemini does not support", body(tools=[{"functionDeclarations": [{
        "name": "read", "parametersJsonSchema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                                 "type": "object", "properties": {"limit": {
                                                     "type": "integer", "exclusiveMinimum": 0}}}}]}]),
     'parameters_json_schema.$schema: Unsupported JSON Schema keyword "$schema"'),
    ("required not defined", body(tools=tool({**PARAMS, "required": ["city"]})),
     "parameters.required[0]: property is not defined"),
    ("enum on a number", body(tools=tool({"type": "OBJECT", "properties": {"n": {"type": "INTEGER",
                                                                                  "enum": ["1"]}}})),
     "enum: only allowed for STRING type"),
    ("six stop sequences", body(generationConfig={"stopSequences": list("abcdef")}),
     "* GenerateContentRequest.generation_config.stop_sequences: "),
    ("type array", body(tools=tool({"type": "OBJECT", "properties": {"a": {"type": ["string", "null"]}}})),
     "Proto field is not repeating, cannot start list."),
    ("wrong scalar type", body(generationConfig={"temperature": "hot"}),
     "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""),
    ("enum value", body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
     "Invalid value at 'tool_config.function_calling_config.mode'"),
    ("bad base64", body(contents=[{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png",
                                                                             "data": "not base64!"}}]}]),
     "(TYPE_BYTES), Base64 decoding failed"),
    ("function name", body(tools=[{"functionDeclarations": [{"name": "1st tool"}]}]),
     "function_declarations[0].name: Invalid function name."),
]


@pytest.mark.parametrize("case, request_body, message", CASES, ids=[c[0] for c in CASES])
def test_rejections(mock_url, case, request_body, message):
    response = post(mock_url, "gemini", PATH, request_body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


def test_budget_zero_on_a_thinking_only_model(mock_url):
    response = post(mock_url, "gemini", "/v1beta/models/gemini-2.5-pro:generateContent",
                    body(generationConfig={"thinkingConfig": {"thinkingBudget": 0}}))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Budget 0 is invalid. This model only works in thinking mode."


def test_unknown_model(mock_url):
    response = post(mock_url, "gemini", "/v1beta/models/gemini-9:generateContent", BASE)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["status"] == "NOT_FOUND"
    assert error["message"].startswith("models/gemini-9 is not found for API version v1beta")


@pytest.mark.parametrize("raw", [b"{not json", b"[]"])
def test_body_not_a_json_object(mock_url, raw):
    response = post(mock_url, "gemini", PATH, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON payload received.")


def test_body_too_large(mock_url):
    response = post(mock_url, "gemini", PATH, None, raw=b"x" * (33 * 1024 * 1024))
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


ACCEPTED = [
    ("free-form object through parametersJsonSchema", body(tools=[{"functionDeclarations": [{
        "name": "create_task", "parametersJsonSchema": {"type": "object", "properties": {
            "metadata": {"type": "object", "additionalProperties": {}}, "args": {"description": "anything"}}}}]}])),
    ("snake_case names", {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                          "generation_config": {"max_output_tokens": 10, "thinking_config": {"thinking_budget": 0}},
                          "system_instruction": {"parts": [{"text": "Be brief."}]}}),
    ("one content instead of a list", {"contents": {"parts": [{"text": "Hi"}]}}),
    ("schema subset incl. default and title, lowercase types",
     body(tools=tool({"type": "object", "title": "Args", "properties": {
         "location": {"type": "string", "default": "Paris", "description": "city", "enum": ["Paris", "London"]},
         "days": {"type": "integer", "minimum": 1, "maximum": 7, "nullable": True},
         "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
         "required": ["location"], "propertyOrdering": ["location", "days", "tags"]}))),
    ("parametersJsonSchema takes full JSON Schema", body(tools=[{"functionDeclarations": [{
        "name": "get_weather", "parametersJsonSchema": {"type": "object", "additionalProperties": False,
                                                        "properties": {"a": {"$ref": "#/$defs/A"}},
                                                        "$defs": {"A": {"type": "string"}}}}]}])),
    ("no-arg function", body(tools=[{"functionDeclarations": [{"name": "now", "description": "time"}]}])),
    ("two calls answered in order", body(tools=tool(PARAMS), contents=[
        USER, call_turn("get_weather", "get_weather"), answer_turn("get_weather", "get_weather")])),
    ("signature-only part", body(contents=[USER, {"role": "model", "parts": [{"text": "Hi"},
                                                                               {"thoughtSignature": "c2lnbmF0dXJl"}]},
                                           USER])),
    ("five stop sequences, full config", body(generationConfig={
        "stopSequences": list("abcde"), "temperature": 2, "topP": 1, "topK": 40.0, "candidateCount": 1,
        "responseMimeType": "application/json", "responseSchema": {"type": "STRING"}, "seed": "7"},
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}])),
]


@pytest.mark.parametrize("case, request_body", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(mock_url, case, request_body):
    response = post(mock_url, "gemini", PATH, request_body)
    assert response.status_code == 200, response.text


def test_missing_key(mock_url):
    response = requests.post(mock_url + PATH, json=BASE, timeout=5)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED" and error["code"] == 403
    assert "unregistered callers" in error["message"]


@pytest.mark.parametrize("where", ["header", "query"])
def test_invalid_key(mock_url, where):
    headers = {"x-goog-api-key": "invalid"} if where == "header" else {}
    url = mock_url + PATH + ("?key=invalid" if where == "query" else "")
    response = requests.post(url, json=BASE, headers=headers, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["message"] == "API key not valid. Please pass a valid API key."
    info = error["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and info["reason"] == "API_KEY_INVALID"


def test_key_in_query_is_accepted(mock_url):
    assert requests.post(mock_url + PATH + "?key=AIza-good", json=BASE, timeout=5).status_code == 200


def test_models(mock_url):
    for path in ("/v1beta/models", "/v1/models"):
        listing = requests.get(mock_url + path, headers=AUTH["gemini"], timeout=5).json()
        assert [m["name"] for m in listing["models"]] == ["models/gemini-2.5-flash", "models/gemini-2.0-flash",
                                                          "models/gemini-2.5-pro"]
    one = requests.get(mock_url + MODEL_PATH, headers=AUTH["gemini"], timeout=5)
    assert one.json()["name"] == "models/gemini-2.5-flash"
    assert requests.get(mock_url + "/v1beta/models", timeout=5).status_code == 403
