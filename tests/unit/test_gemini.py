"""Gemini protocol module: fixtures in, exact shapes out.

Known-gateway-bugs covered here: #4 and #10 (stream tool calls and reasoning),
#6 (MALFORMED_FUNCTION_CALL), #7 (MAX_TOKENS, STOP with calls), #9 (thought
signatures across chunks and protocols), #12 (schema keywords), #17 (no
`finishReason: null` on intermediate chunks). Search for `bug #`.
"""
from __future__ import annotations

import json

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import gemini, protocol_module
from app.protocols.base import ModelInfo
from app.protocols.gemini_schema import from_gemini_schema, to_gemini_parameters
from app.upstream.framing import Frame
from tests.upstream_call import Upstream, built
from tests.conftest import every_split, stream_events

SAMPLE = "gemini-streams/function_call_with_thought_signature.sse"
TARGET = Upstream(backend="gemini", base_url="https://gemini.test", model="gemini-2.5-flash", api_key="k-123",
                headers={"X-Client": "yes"})


def request(*messages: ir.Message, **kwargs) -> ir.Request:
    return ir.Request(model="gemini-2.5-flash", messages=messages, protocol="openai", **kwargs)


def user(text: str) -> ir.Message:
    return ir.Message("user", (ir.Text(text),))


def body_of(upstream) -> dict:
    return json.loads(upstream.body)


def sse_payloads(data: bytes) -> list[dict]:
    """The JSON of each `data:` event; asserts the framing is exactly SSE."""
    assert data.endswith(b"\n\n")
    events = data[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    return [json.loads(e[len(b"data: "):]) for e in events]


def feed_all(parser: gemini.StreamParser, chunks: list[bytes]) -> list[ir.Event]:
    return stream_events(parser, chunks)


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


# =================================================================== schema


def test_schema_drops_keys_gemini_rejects_bug_12():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Args",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "title": "City", "default": "Oslo", "examples": ["Oslo"],
                     "minLength": 1, "format": "hostname"},
            "days": {"type": "integer", "exclusiveMinimum": 0, "maximum": 14, "multipleOf": 1,
                     "format": "int32"},
            "when": {"type": "string", "format": "date-time"},
        },
        "required": ["city", "ghost"],
    }
    assert to_gemini_parameters(schema) == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1},
            "days": {"type": "integer", "maximum": 14, "minimum": 1, "format": "int32"},  # exclusiveMinimum 0
            "when": {"type": "string", "format": "date-time"},
        },
        "required": ["city"],
    }


def test_schema_inlines_defs_and_refs():
    schema = {
        "type": "object",
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]},
                  "Place": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        "definitions": {"Old": {"type": "boolean"}},
        "properties": {
            "unit": {"$ref": "#/$defs/Unit", "description": "temperature unit"},
            "place": {"$ref": "#/$defs/Place"},
            "legacy": {"$ref": "#/definitions/Old"},
        },
    }
    assert to_gemini_parameters(schema) == {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["c", "f"], "description": "temperature unit"},
            "place": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "legacy": {"type": "boolean"},
        },
    }


def test_schema_recursive_ref_stops_at_an_object():
    schema = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "description": "a tree node",
                           "properties": {"value": {"type": "string"},
                                          "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    assert to_gemini_parameters(schema) == {
        "type": "object",
        "properties": {"root": {
            "type": "object", "description": "a tree node",
            "properties": {"value": {"type": "string"},
                           "children": {"type": "array",
                                        "items": {"type": "object", "description": "a tree node"}}}}},
    }


def test_schema_const_type_arrays_any_of_one_of_all_of():
    schema = {
        "type": "object",
        "properties": {
            "kind": {"const": "circle"},
            "count": {"type": "integer", "const": 3},
            "label": {"type": ["string", "null"]},
            "note": {"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}], "description": "optional"},
            "shape": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "mixed": {"type": ["string", "integer"]},
            "level": {"type": "string", "enum": [1, 2, None]},
            "base": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                               {"properties": {"b": {"type": "number"}}}]},
        },
    }
    assert to_gemini_parameters(schema) == {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["circle"]},
            "count": {"type": "integer"},  # Gemini enums are strings: a non-string const is dropped
            "label": {"type": "string", "nullable": True},
            "note": {"type": "string", "maxLength": 9, "description": "optional", "nullable": True},
            "shape": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "mixed": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "level": {"type": "string", "enum": ["1", "2"], "nullable": True},
            "base": {"type": "object",
                     "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]},
        },
    }


def test_schema_nested_objects_and_empty_properties():
    schema = {
        "type": "object",
        "properties": {
            "filter": {"type": "object", "additionalProperties": {"type": "string"}},
            "options": {"type": "object", "properties": {}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}},
                                                 "required": ["id"], "additionalProperties": False}},
            "implicit": {"properties": {"x": {"type": "number"}}},
            "wrong": {"type": "string", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        },
        "propertyOrdering": ["items", "filter", "nope"],
    }
    assert to_gemini_parameters(schema) == {
        "type": "object",
        "properties": {
            "filter": {"type": "object"},
            "options": {"type": "object"},  # `properties: {}` is a 400 on Gemini
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}},
                                                 "required": ["id"]}},
            "implicit": {"type": "object", "properties": {"x": {"type": "number"}}},
            "wrong": {"type": "string"},  # properties/required are only allowed on objects
        },
        "propertyOrdering": ["items", "filter"],
    }


@pytest.mark.parametrize("schema", [
    {},
    {"type": "object"},
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {}, "additionalProperties": False, "$schema": "x", "title": "NoArgs"},
    None,
])
def test_schema_no_arguments_is_none(schema):
    assert to_gemini_parameters(schema) is None


def test_schema_is_pure():
    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"], "default": "x"}},
              "additionalProperties": False}
    before = json.dumps(schema)
    to_gemini_parameters(schema)
    assert json.dumps(schema) == before


def test_gemini_schema_back_to_json_schema():
    assert from_gemini_schema({
        "type": "OBJECT", "propertyOrdering": ["a", "b"],
        "properties": {"a": {"type": "STRING", "nullable": True, "format": "enum", "enum": ["x"]},
                       "b": {"type": "ARRAY", "items": {"type": "INTEGER"}}},
        "required": ["a"],
    }) == {
        "type": "object",
        "properties": {"a": {"type": ["string", "null"], "enum": ["x"]},
                       "b": {"type": "array", "items": {"type": "integer"}}},
        "required": ["a"],
    }


# ============================================================ parse_request


@pytest.mark.parametrize("body, param", [
    ({}, "contents"),
    ({"contents": []}, "contents"),
    ({"contents": "hi"}, "contents"),
    ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
    ({"contents": [{"role": "user"}]}, "contents[0].parts"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{}]}]},
     "contents[1].parts[0]"),
    ({"contents": [{"parts": [{"text": "a", "inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]},
     "contents[0].parts[0]"),
    ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
    ({"contents": [{"parts": [{"txt": "a"}]}]}, "contents[0].parts[0].txt"),
    ({"contents": [{"parts": [{"text": "a"}]}], "stream": True}, "stream"),
    ({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"stopSequences": "END"}},
     "generationConfig.stopSequences"),
    ({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"temperature": "hot"}},
     "generationConfig.temperature"),
    ({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"maxTokens": 5}},
     "generationConfig.maxTokens"),
    ({"contents": [{"parts": [{"text": "a"}]}], "tools": ["googleSearch"]}, "tools[0]"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]},
     "contents[0].parts[0].inlineData.data"),
    ({"contents": [{"parts": [{"executableCode": "print(1)"}]}]}, "contents[0].parts[0].executableCode"),
    ({"contents": [{"parts": [{"executableCode": {"code": "1"}, "text": "a"}]}]}, "contents[0].parts[0]"),
    ({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "contents[0].parts[0].functionResponse"),
])
def test_parse_request_rejects_with_the_field_named(body, param):
    with pytest.raises(ProxyError) as caught:
        gemini.parse_request(body, model="gemini-2.5-flash")
    assert caught.value.kind == ErrorKind.invalid_request
    assert caught.value.status == 400
    assert caught.value.param == param


def test_parse_request_text_system_and_generation_config():
    body = {
        "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": ""}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi"}, {"text": ""}]},
                     {"role": "model", "parts": [{"text": "Hello."}]},
                     {"parts": [{"text": "Weather?"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 40, "maxOutputTokens": 256,
                             "stopSequences": ["END"], "seed": 7, "candidateCount": 1,
                             "responseMimeType": "application/json",
                             "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
    }
    req = gemini.parse_request(body, model="gemini-2.5-flash", stream=True)
    assert req == ir.Request(
        model="gemini-2.5-flash",
        messages=(ir.Message("system", (ir.Text("Be terse."),)),
                  ir.Message("user", (ir.Text("Hi"),)),
                  ir.Message("assistant", (ir.Text("Hello."),)),
                  ir.Message("user", (ir.Text("Weather?"),))),
        protocol="gemini", stream=True, include_usage=True,
        temperature=0.5, top_p=0.9, top_k=40, max_tokens=256, stop=("END",), seed=7, n=1,
        response_format=ir.ResponseFormat("json_object"),
        reasoning=ir.Reasoning(budget_tokens=1024, include_thoughts=True),
    )
    assert req.raw is body


def test_parse_request_accepts_snake_case_and_model_from_body():
    body = {"model": "models/gemini-2.5-pro",
            "system_instruction": {"parts": [{"text": "S"}]},
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "generation_config": {"max_output_tokens": 9, "stop_sequences": ["x"],
                                  "thinking_config": {"thinking_level": "HIGH"}}}
    req = gemini.parse_request(body)
    assert (req.model, req.max_tokens, req.stop, req.reasoning, req.stream) == (
        "gemini-2.5-pro", 9, ("x",), ir.Reasoning(effort="high"), False)


def test_parse_request_images_normalise_base64_and_keep_file_uris():
    body = {"contents": [{"parts": [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "ab-_cd"}},  # URL-safe, unpadded
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/f1"}},
    ]}]}
    req = gemini.parse_request(body, model="m")
    assert req.messages == (ir.Message("user", (
        ir.Text("What is this?"),
        ir.Image(data="ab+/cd==", media_type="image/png"),
        ir.Image(url="https://generativelanguage.googleapis.com/v1beta/files/f1", media_type="image/jpeg"),
    )),)


def test_parse_request_synthesizes_ids_and_pairs_parallel_results_by_position_and_name():
    body = {"contents": [
        {"role": "user", "parts": [{"text": "Weather in Oslo and Rome, and the time?"}]},
        {"role": "model", "parts": [
            {"text": "Thinking about it", "thought": True},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnMQ=="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            {"functionCall": {"name": "get_time"}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 3}}}},
            {"functionResponse": {"name": "get_weather", "response": {"error": "no data"}}},
            {"text": "Thanks"},
        ]},
    ]}
    req = gemini.parse_request(body, model="m")
    oslo, rome, time = (gemini.synthesize_call_id(1, 1, "get_weather"), gemini.synthesize_call_id(1, 2, "get_weather"),
                        gemini.synthesize_call_id(1, 3, "get_time"))
    assert len({oslo, rome, time}) == 3
    assert req.messages[1:] == (
        ir.Message("assistant", (
            ir.Thinking("Thinking about it", None, None, "gemini"),
            ir.ToolCall(oslo, "get_weather", '{"city":"Oslo"}', "c2lnMQ==", "gemini"),
            ir.ToolCall(rome, "get_weather", '{"city":"Rome"}'),
            ir.ToolCall(time, "get_time", "{}"),
        )),
        ir.Message("tool", (
            ir.ToolResult(time, (ir.Text("12:00"),), "get_time"),
            ir.ToolResult(oslo, (ir.Text('{"temp_c":3}'),), "get_weather"),
            ir.ToolResult(rome, (ir.Text("no data"),), "get_weather", is_error=True),
        )),
        ir.Message("user", (ir.Text("Thanks"),)),
    )
    # Deterministic: the same history gives the same ids on the next turn.
    assert gemini.parse_request(body, model="m").messages == req.messages


def test_parse_request_uses_ids_when_present():
    body = {"contents": [
        {"role": "model", "parts": [{"functionCall": {"id": "fc-9", "name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "fc-9", "name": "f", "response": {"x": 1, "y": 2}}}]},
    ]}
    assert gemini.parse_request(body, model="m").messages == (
        ir.Message("assistant", (ir.ToolCall("fc-9", "f", '{"a":1}'),)),
        ir.Message("tool", (ir.ToolResult("fc-9", (ir.Text('{"x":1,"y":2}'),), "f"),)),
    )


def test_parse_request_unmatched_function_response_is_400():
    body = {"contents": [
        {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "g", "response": {}}}]},
    ]}
    with pytest.raises(ProxyError) as caught:
        gemini.parse_request(body, model="m")
    assert caught.value.param == "contents[1].parts[0].functionResponse"


def test_parse_request_tools_and_tool_config():
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
            {"name": "lookup", "parametersJsonSchema": {"type": "object", "additionalProperties": False,
                                                        "properties": {"q": {"type": "string"}}}},
            {"name": "ping"},
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}},
    }
    req = gemini.parse_request(body, model="m")
    assert req.tools == (
        ir.Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                            "required": ["city"]}),
        ir.Tool("lookup", None, {"type": "object", "additionalProperties": False,
                                 "properties": {"q": {"type": "string"}}}),
        ir.Tool("ping"),
    )
    assert req.tool_choice == ir.ToolChoice("tool", "lookup")


@pytest.mark.parametrize("config, choice", [
    ({"mode": "AUTO"}, ir.ToolChoice("auto")),
    ({"mode": "ANY"}, ir.ToolChoice("required")),
    ({"mode": "ANY", "allowedFunctionNames": ["a", "b"]}, ir.ToolChoice("required")),
    ({"mode": "NONE"}, ir.ToolChoice("none")),
])
def test_parse_request_tool_choice_modes(config, choice):
    body = {"contents": [{"parts": [{"text": "hi"}]}], "toolConfig": {"functionCallingConfig": config}}
    assert gemini.parse_request(body, model="m").tool_choice == choice


def test_parse_request_response_schema_and_thinking_level():
    body = {"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"responseMimeType": "application/json",
                                 "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
                                 "candidateCount": 2,
                                 "thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": -1}}}
    req = gemini.parse_request(body, model="m")
    assert req.response_format == ir.ResponseFormat("json_schema", {"type": "object",
                                                                    "properties": {"a": {"type": "string"}}})
    assert req.reasoning == ir.Reasoning(effort="low")
    assert req.n == 2


def test_parse_request_response_json_schema_with_upper_case_types_becomes_plain_json_schema():
    """Gemini CLI's routing classifier writes Schema-style types in responseJsonSchema."""
    body = {"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {
                "type": "OBJECT", "required": ["score"], "properties": {
                    "reason": {"type": "STRING", "description": "Why."}, "score": {"type": "INTEGER"}}}}}
    assert gemini.parse_request(body, model="m").response_format == ir.ResponseFormat("json_schema", {
        "type": "object", "required": ["score"],
        "properties": {"reason": {"type": "string", "description": "Why."}, "score": {"type": "integer"}}})


# ========================================================== format_response


def test_format_response_text_thinking_and_call():
    resp = ir.Response(
        id="resp-1", model="gemini-2.5-flash",
        parts=(ir.Thinking("Let me check", "sig-think", None, "gemini"),
               ir.Thinking("", "anthropic-sig", None, "anthropic"),
               ir.Text("Checking."),
               ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}', "c2ln", "gemini"),
               ir.ToolCall("call_2", "broken", '{"city":', "other-sig", "anthropic")),
        finish_reason=ir.FinishReason.tool_calls,
        usage=ir.Usage(input_tokens=83, output_tokens=118, reasoning_tokens=104, cache_read_tokens=20),
    )
    assert gemini.format_response(resp, request()) == {
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me check", "thought": True, "thoughtSignature": "sig-think"},
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1"},
                 "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "broken", "args": {}, "id": "call_2"}},
            ]},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 83, "candidatesTokenCount": 14, "thoughtsTokenCount": 104,
                          "cachedContentTokenCount": 20, "totalTokenCount": 201},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    }


@pytest.mark.parametrize("reason, raw, expected", [
    (ir.FinishReason.stop, None, "STOP"),
    (ir.FinishReason.tool_calls, "tool_use", "STOP"),
    (ir.FinishReason.length, "max_tokens", "MAX_TOKENS"),
    (ir.FinishReason.content_filter, None, "SAFETY"),
    (ir.FinishReason.content_filter, "RECITATION", "RECITATION"),
    (ir.FinishReason.error, None, "OTHER"),
    (ir.FinishReason.error, "MALFORMED_FUNCTION_CALL", "MALFORMED_FUNCTION_CALL"),
])
def test_format_response_finish_reasons(reason, raw, expected):
    resp = ir.Response("r", "m", (ir.Text("x"),), reason, raw_finish_reason=raw)
    candidate = gemini.format_response(resp, request())["candidates"][0]
    assert candidate["finishReason"] == expected


def test_format_response_error_keeps_finish_message():
    resp = ir.Response("r", "m", (), ir.FinishReason.error, raw_finish_reason="MALFORMED_FUNCTION_CALL",
                       finish_message="Malformed function call: print(x")
    assert gemini.format_response(resp, request())["candidates"] == [{
        "content": {"role": "model", "parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0,
        "finishMessage": "Malformed function call: print(x"}]


# ========================================================== StreamFormatter

TEXT_EVENTS = [
    ir.MessageStart("resp-1", "gemini-x", ir.Usage(input_tokens=10)),
    ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Hmm"), ir.PartStop(0),
    ir.PartStart(1, "text"), ir.TextDelta(1, "Hel"), ir.TextDelta(1, "lo"), ir.PartStop(1),
    ir.MessageStop(ir.FinishReason.stop, ir.Usage(output_tokens=7, reasoning_tokens=2)),
]
TOOL_EVENTS = [
    ir.MessageStart("resp-2", "gemini-x"),
    ir.PartStart(0, "tool_call", "call_a", "get_weather"),
    ir.ToolArgumentsDelta(0, '{"ci'), ir.ToolArgumentsDelta(0, 'ty":"Oslo"}'),
    ir.SignatureDelta(0, "c2ln", "gemini"),
    ir.PartStop(0),
    ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(input_tokens=5, output_tokens=3)),
]


def chunk(parts: list[dict], response_id: str = "resp-1") -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
            "modelVersion": "gemini-x", "responseId": response_id}


def run_formatter(events, **options) -> bytes:
    formatter = gemini.StreamFormatter(request(stream=True), **options)
    return b"".join(formatter.feed(e) for e in events) + formatter.finish()


def test_stream_formatter_sse_text_exact_bytes():
    assert run_formatter(TEXT_EVENTS) == (
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hmm","thought":true}]},"index":0}],'
        b'"modelVersion":"gemini-x","responseId":"resp-1"}\n\n'
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],'
        b'"modelVersion":"gemini-x","responseId":"resp-1"}\n\n'
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"index":0}],'
        b'"modelVersion":"gemini-x","responseId":"resp-1"}\n\n'
        b'data: {"candidates":[{"content":{"role":"model","parts":[]},"finishReason":"STOP","index":0}],'
        b'"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"thoughtsTokenCount":2,'
        b'"totalTokenCount":17},"modelVersion":"gemini-x","responseId":"resp-1"}\n\n'
    )


def test_stream_formatter_intermediate_chunks_have_no_finish_reason_bug_17():
    payloads = sse_payloads(run_formatter(TEXT_EVENTS))
    assert all("finishReason" not in p["candidates"][0] for p in payloads[:-1])
    assert payloads[-1]["candidates"][0]["finishReason"] == "STOP"


def test_stream_formatter_tool_call_is_one_whole_part():
    assert sse_payloads(run_formatter(TOOL_EVENTS)) == [
        chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_a"},
                "thoughtSignature": "c2ln"}], "resp-2"),
        {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
         "modelVersion": "gemini-x", "responseId": "resp-2"},
    ]


def test_stream_formatter_array_mode_exact_bytes():
    events = [ir.MessageStart("r", "m"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hi"), ir.PartStop(0),
              ir.MessageStop(ir.FinishReason.length, ir.Usage(1, 1))]
    assert run_formatter(events, sse=False) == (
        b'[{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"index":0}],'
        b'"modelVersion":"m","responseId":"r"}'
        b',{"candidates":[{"content":{"role":"model","parts":[]},"finishReason":"MAX_TOKENS","index":0}],'
        b'"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2},'
        b'"modelVersion":"m","responseId":"r"}]'
    )


def test_stream_formatter_array_mode_tool_call_parses_as_one_array():
    assert json.loads(run_formatter(TOOL_EVENTS, sse=False)) == sse_payloads(run_formatter(TOOL_EVENTS))


def test_stream_formatter_error_sse_and_array():
    error = ir.StreamError(ProxyError(ErrorKind.overloaded, "The model is overloaded."))
    events = [ir.MessageStart("r", "m"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hi"), error]
    expected_error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    assert sse_payloads(run_formatter(events))[-1] == expected_error
    array = run_formatter(events, sse=False)
    assert array.endswith(b',{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]')
    assert json.loads(array)[-1] == expected_error
    # An error before anything was written still makes one valid array.
    assert json.loads(run_formatter([error], sse=False)) == [expected_error]


def test_stream_formatter_empty_array_and_sse_finish():
    assert run_formatter([], sse=False) == b"[]"
    assert run_formatter([]) == b""


def test_stream_formatter_relays_upstream_frames():
    data = '{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"},"index":0}]}'
    raw_error = '[{\n  "error": {\n    "code": 429,\n    "status": "RESOURCE_EXHAUSTED"\n  }\n}]'
    sse_formatter = gemini.StreamFormatter(request(), sse=True)
    assert sse_formatter.relay(Frame(None, data)) == b"data: " + data.encode() + b"\n\n"
    assert sse_formatter.relay(Frame("raw", raw_error)) == (
        b'data: {"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}\n\n')
    array = gemini.StreamFormatter(request(), sse=False)
    out = array.relay(Frame(None, data)) + array.relay(Frame(None, data)) + array.finish()
    assert json.loads(out) == [json.loads(data), json.loads(data)]


# =============================================================== format_error


@pytest.mark.parametrize("kind, status, canonical", [
    (ErrorKind.invalid_request, 400, "INVALID_ARGUMENT"),
    (ErrorKind.authentication, 401, "UNAUTHENTICATED"),
    (ErrorKind.permission, 403, "PERMISSION_DENIED"),
    (ErrorKind.not_found, 404, "NOT_FOUND"),
    (ErrorKind.request_too_large, 400, "INVALID_ARGUMENT"),
    (ErrorKind.rate_limit, 429, "RESOURCE_EXHAUSTED"),
    (ErrorKind.api_error, 500, "INTERNAL"),
    (ErrorKind.bad_gateway, 502, "UNAVAILABLE"),
    (ErrorKind.overloaded, 503, "UNAVAILABLE"),
    (ErrorKind.timeout, 504, "DEADLINE_EXCEEDED"),
    (ErrorKind.configuration, 500, "INTERNAL"),
])
def test_format_error_status_table(kind, status, canonical):
    code, headers, body = gemini.format_error(ProxyError(kind, "boom"))
    assert (code, headers) == (status, {"Content-Type": "application/json; charset=UTF-8"})
    assert json.loads(body) == {"error": {"code": status, "message": "boom", "status": canonical}}


def test_format_error_field_violation_and_retry():
    code, _, body = gemini.format_error(ProxyError(ErrorKind.invalid_request, "contents must not be empty",
                                                   param="contents"))
    assert json.loads(body)["error"]["details"] == [{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "contents", "description": "contents must not be empty"}]}]
    code, headers, body = gemini.format_error(ProxyError(ErrorKind.rate_limit, "slow down", retry_after="37"))
    assert (code, headers["Retry-After"]) == (429, "37")
    assert json.loads(body)["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]


def test_format_models():
    models = [ModelInfo("gemini-2.5-flash", "g", "gemini"), ModelInfo("gpt-4o", "o", "openai")]
    methods = ["generateContent", "streamGenerateContent", "countTokens"]
    assert gemini.format_models(models) == {"models": [
        {"name": "models/gemini-2.5-flash", "displayName": "gemini-2.5-flash", "supportedGenerationMethods": methods},
        {"name": "models/gpt-4o", "displayName": "gpt-4o", "supportedGenerationMethods": methods},
    ]}


# ============================================================= build_request


def test_build_request_url_headers_and_stream():
    plain = built(gemini, request(user("hi")), TARGET)
    assert (plain.method, plain.url, plain.stream) == (
        "POST", "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent", False)
    assert plain.headers == {"X-Client": "yes", "Content-Type": "application/json", "x-goog-api-key": "k-123"}
    streamed = built(gemini, request(user("hi"), stream=True), TARGET)
    assert (streamed.url, streamed.stream) == (
        "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", True)


def test_build_request_conversation_with_parallel_calls_and_results():
    """OpenAI-shaped history: results as separate tool messages, out of call order."""
    req = request(
        ir.Message("system", (ir.Text("Be terse."),)),
        user("Weather in Oslo and Rome?"),
        ir.Message("assistant", (ir.Text(""), ir.Thinking("hidden", "x", None, "anthropic"),
                                 ir.ToolCall("call_oslo", "get_weather", '{"city":"Oslo"}'),
                                 ir.ToolCall("call_rome", "get_weather", '{"city":"Rome"}'))),
        ir.Message("tool", (ir.ToolResult("call_rome", (ir.Text("sunny"),)),)),
        ir.Message("tool", (ir.ToolResult("call_oslo", (ir.Text('{"temp_c": 3}'),)),)),
        user("Thanks"),
        tools=(ir.Tool("get_weather", "Weather for a city",
                       {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                        "additionalProperties": False}),
               ir.Tool("ping", None, {"type": "object", "properties": {}})),
        tool_choice=ir.ToolChoice("required"),
        temperature=0.2, max_tokens=100, stop=("END",),
    )
    assert body_of(built(gemini, req, TARGET)) == {
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Oslo and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_oslo"}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_rome"}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}, "id": "call_oslo"}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}, "id": "call_rome"}}]},
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ],
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "ping"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 100, "stopSequences": ["END"]},
    }


def test_build_request_synthesized_ids_are_not_sent_and_errors_wrap():
    call_id = gemini.synthesize_call_id(1, 0, "f")
    req = request(user("go"),
                  ir.Message("assistant", (ir.ToolCall(call_id, "f", ""),)),
                  ir.Message("tool", (ir.ToolResult(call_id, (ir.Text("bad input"),), is_error=True),)))
    assert body_of(built(gemini, req, TARGET))["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"error": "bad input"}}}]},
    ]


def test_build_request_images():
    req = request(ir.Message("user", (ir.Text("look"), ir.Image(data="iVBORw0KGgoAAAA"),
                                      ir.Image(url="data:image/webp;base64,UklGRxx"),
                                      ir.Image(url="gs://bucket/cat.jpg", media_type="image/jpeg"))))
    assert body_of(built(gemini, req, TARGET))["contents"] == [{"role": "user", "parts": [
        {"text": "look"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAA"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRxx"}},
        {"fileData": {"fileUri": "gs://bucket/cat.jpg", "mimeType": "image/jpeg"}},
    ]}]


@pytest.mark.parametrize("req, param, words", [
    (request(ir.Message("user", (ir.Image(url="https://example.com/cat.png"),))), None, "data URL"),
    (request(user("x"), ir.Message("tool", (ir.ToolResult("call_nowhere", (ir.Text("r"),)),))), None,
     "call_nowhere"),
    (request(user("x"), ir.Message("assistant", (ir.ToolCall("c1", "f", "{}"), ir.ToolCall("c2", "f", "{}"))),
             ir.Message("tool", (ir.ToolResult("c1", (ir.Text("r"),)),))), None, "'c2'"),
    (request(user("x"), stop=("1", "2", "3", "4", "5", "6")), "stop", "at most 5"),
    (request(user("x"), n=2), "n", "n > 1"),
])
def test_build_request_rejects(req, param, words):
    with pytest.raises(ProxyError) as caught:
        built(gemini, req, TARGET)
    assert (caught.value.kind, caught.value.param) == (ErrorKind.invalid_request, param)
    assert words in caught.value.message


@pytest.mark.parametrize("reasoning, thinking", [
    (ir.Reasoning(effort="none"), {"thinkingBudget": 0}),
    (ir.Reasoning(effort="minimal"), {"thinkingBudget": 1024, "includeThoughts": True}),
    (ir.Reasoning(effort="low"), {"thinkingBudget": 2048, "includeThoughts": True}),
    (ir.Reasoning(effort="medium"), {"thinkingBudget": 8192, "includeThoughts": True}),
    (ir.Reasoning(effort="high"), {"thinkingBudget": 24576, "includeThoughts": True}),
    (ir.Reasoning(effort="xhigh"), {"thinkingBudget": 32000, "includeThoughts": True}),
    (ir.Reasoning(effort="max", include_thoughts=False), {"thinkingBudget": 32000}),
    (ir.Reasoning(budget_tokens=5000, effort="low"), {"thinkingBudget": 5000, "includeThoughts": True}),
    (ir.Reasoning(), {"includeThoughts": True}),
])
def test_build_request_thinking_config(reasoning, thinking):
    body = body_of(built(gemini, request(user("x"), reasoning=reasoning), TARGET))
    assert body["generationConfig"] == {"thinkingConfig": thinking}


@pytest.mark.parametrize("choice, config", [
    (ir.ToolChoice("auto"), {"mode": "AUTO"}),
    (ir.ToolChoice("required"), {"mode": "ANY"}),
    (ir.ToolChoice("tool", "f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    (ir.ToolChoice("none"), {"mode": "NONE"}),
])
def test_build_request_tool_choice(choice, config):
    req = request(user("x"), tools=(ir.Tool("f"),), tool_choice=choice)
    assert body_of(built(gemini, req, TARGET))["toolConfig"] == {"functionCallingConfig": config}


def test_build_request_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string", "title": "A"}}, "additionalProperties": False}
    json_schema = request(user("x"), response_format=ir.ResponseFormat("json_schema", schema, "out", True))
    json_object = request(user("x"), response_format=ir.ResponseFormat("json_object"))
    assert body_of(built(gemini, json_schema, TARGET))["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    assert body_of(built(gemini, json_object, TARGET))["generationConfig"] == {
        "responseMimeType": "application/json"}
    free_form = {"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {}}}}
    with_map = request(user("x"), response_format=ir.ResponseFormat("json_schema", free_form))
    assert body_of(built(gemini, with_map, TARGET))["generationConfig"] == {
        "responseMimeType": "application/json", "responseJsonSchema": free_form}


def test_passthrough_request_sends_the_client_body_unchanged():
    raw = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "safetySettings": [], "cachedContent": "c/1"}
    req = gemini.parse_request(raw, model="alias", stream=True)
    upstream = built(gemini, req, TARGET, passthrough=True)
    assert upstream.url == "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert json.loads(upstream.body) == raw


# ===================================== opaque parts and built-in tools

WEATHER_DECLARATION = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}, "required": ["city"]}}
CODE_PART = {"executableCode": {"language": "PYTHON", "code": "print(1 + 1)"}, "thoughtSignature": "c2ln"}
RESULT_PART = {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "2\n"}}
OTHER_BACKENDS = [
    ("openai", Upstream(backend="gpt", base_url="https://api.openai.test/v1", model="gpt-4o"), "an OpenAI"),
    ("anthropic", Upstream(backend="claude", base_url="https://api.anthropic.test", model="claude-x"), "an Anthropic"),
]

OPAQUE_CASES = [
    # (client body, the Opaque parts parse_request keeps, where each lands in the built body, capabilities)
    pytest.param({"contents": [{"role": "user", "parts": [{"text": "Oslo weather and news?"}]}],
                  "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}, {"googleSearch": {}}]},
                 [ir.Opaque("gemini", "googleSearch tool", {"googleSearch": {}}, "tools[1].googleSearch")],
                 [("tools", 1)], {"text", "tools"}, id="google-search-tool"),
    pytest.param({"contents": [{"role": "user", "parts": [{"text": "1 + 1?"}]}], "tools": [{"code_execution": {}}]},
                 [ir.Opaque("gemini", "codeExecution tool", {"code_execution": {}}, "tools[0].code_execution")],
                 [("tools", 0)], {"text", "tools"}, id="code-execution-tool"),
    pytest.param({"contents": [{"role": "user", "parts": [{"text": "1 + 1?"}]},
                               {"role": "model", "parts": [CODE_PART, RESULT_PART, {"text": "It is 2."}]},
                               {"role": "user", "parts": [{"text": "Thanks"}]}]},
                 [ir.Opaque("gemini", "executableCode part", CODE_PART, "contents[1].parts[0]"),
                  ir.Opaque("gemini", "codeExecutionResult part", RESULT_PART, "contents[1].parts[1]")],
                 [("contents", 1, "parts", 0), ("contents", 1, "parts", 1)], {"text"}, id="executable-code"),
]


def _opaques(req: ir.Request) -> list[ir.Opaque]:
    parts = [p for m in req.messages for p in m.parts if isinstance(p, ir.Opaque)]
    return parts + [t.native for t in req.tools if t.native is not None]


def _at(doc: dict, path: tuple) -> object:
    for key in path:
        doc = doc[key]
    return doc


@pytest.mark.parametrize("body, opaques, paths, capabilities", OPAQUE_CASES)
def test_parts_and_tools_without_ir_form_are_kept_opaque(body, opaques, paths, capabilities):
    req = gemini.parse_request(body, model="gemini-2.5-flash")
    assert _opaques(req) == opaques
    assert req.capabilities() == capabilities  # an opaque part needs nothing; an opaque tool is a tool
    # A Gemini backend gets each one back as sent, in place.
    upstream = built(gemini, req, TARGET)
    wire_body = body_of(upstream)
    for opaque, path in zip(opaques, paths):
        assert _at(wire_body, path) == opaque.data
        assert json.dumps(opaque.data, separators=(",", ":")).encode() in upstream.body
    assert wire_body["contents"] == body["contents"]  # every turn as the client sent it, in order
    # Any other backend: a 400 naming the field in the client's (Gemini) terms.
    for name, target, backend_label in OTHER_BACKENDS:
        with pytest.raises(ProxyError) as caught:
            built(protocol_module(name), req, target)
        assert (caught.value.kind, caught.value.status, caught.value.param) == (
            ErrorKind.invalid_request, 400, opaques[0].where)
        assert caught.value.message == f"{opaques[0].kind} cannot be sent to {backend_label} backend"


def test_built_in_tools_keep_their_place_beside_one_declarations_entry():
    body = {"contents": [{"parts": [{"text": "a"}]}],
            "tools": [{"googleSearch": {}}, {"functionDeclarations": [WEATHER_DECLARATION]},
                      {"urlContext": {}, "functionDeclarations": [{"name": "noop"}]}]}
    tools = body_of(built(gemini, gemini.parse_request(body, model="m"), TARGET))["tools"]
    assert tools == [{"googleSearch": {}}, {"functionDeclarations": [WEATHER_DECLARATION, {"name": "noop"}]},
                     {"urlContext": {}}]


# =============================================== thought signatures (bug #9)


def test_signature_id_encoding_round_trip_is_byte_exact():
    """Gemini sends standard base64 with padding; the id carries it URL-safe, unpadded."""
    base = gemini.synthesize_call_id("r", 0, "f")
    for signature in ("CikB+/x=", "ab+/cd==", "abcd", "a/b+c/d+"):
        call_id = gemini.encode_signature_in_id(base, signature)
        assert set(call_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        assert gemini.split_signature_id(call_id) == (base, signature)
        assert gemini.is_synthesized_id(call_id)
    assert gemini.split_signature_id("call_abc") == ("call_abc", None)
    assert not gemini.is_synthesized_id("call_Ab3xYz")
    assert not gemini.is_synthesized_id(gemini.encode_signature_in_id("fc-from-gemini", "abcd"))


def test_signature_survives_a_client_that_only_keeps_the_id_bug_9():
    """Gemini reply -> (an OpenAI client keeps only id/name/arguments) -> next Gemini request."""
    signature = "CikBcsjafFK1+8Ibt/toxVV0Tsn8O+eU45=="
    reply = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "getWeather", "args": {"location": "Tokyo"}}, "thoughtSignature": signature},
        {"functionCall": {"name": "getTime", "args": {}}}]}, "finishReason": "STOP"}], "responseId": "r1"}
    first, second = gemini.parse_response(json.dumps(reply).encode(), request()).parts
    as_openai_client_sends_it = request(
        user("Weather?"),
        ir.Message("assistant", (ir.ToolCall(first.id, first.name, first.arguments),
                                 ir.ToolCall(second.id, second.name, second.arguments))),
        ir.Message("tool", (ir.ToolResult(first.id, (ir.Text("rain"),)),
                            ir.ToolResult(second.id, (ir.Text("noon"),)))))
    contents = body_of(built(gemini, as_openai_client_sends_it, TARGET))["contents"]
    assert contents[1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "getWeather", "args": {"location": "Tokyo"}}, "thoughtSignature": signature},
            {"functionCall": {"name": "getTime", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "getWeather", "response": {"output": "rain"}}},
                                   {"functionResponse": {"name": "getTime", "response": {"output": "noon"}}}]},
    ]


def test_only_gemini_signatures_are_sent_back():
    req = request(user("x"),
                  ir.Message("assistant", (ir.ToolCall("toolu_1", "f", "{}", "anthropic-sig", "anthropic"),
                                           ir.ToolCall("fc_2", "g", "{}", "Z2VtaW5p", "gemini"))),
                  ir.Message("tool", (ir.ToolResult("toolu_1", (ir.Text("a"),)), ir.ToolResult("fc_2", (ir.Text("b"),)))))
    assert body_of(built(gemini, req, TARGET))["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}, "id": "toolu_1"}},
        {"functionCall": {"name": "g", "args": {}, "id": "fc_2"}, "thoughtSignature": "Z2VtaW5p"},
    ]


def test_stream_signatures_are_never_merged_across_chunks_bug_9():
    stream = sse(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "plan A", "thought": True}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "c2lnMQ=="}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "plan B", "thought": True,
                                                                  "thoughtSignature": "c2lnMg=="}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnMw=="}]}, "finishReason": "STOP"}]},
    )
    resp = ir.response_from_events(feed_all(gemini.StreamParser(request()), [stream]))
    thinking_a, thinking_b, call = resp.parts
    assert (thinking_a, thinking_b) == (ir.Thinking("plan A", "c2lnMQ==", None, "gemini"),
                                        ir.Thinking("plan B", "c2lnMg==", None, "gemini"))
    assert (call.signature, gemini.split_signature_id(call.id)[1]) == ("c2lnMw==", "c2lnMw==")


# ============================================================ parse_response


def candidate_response(parts: list[dict], finish: str | None = "STOP", **extra) -> bytes:
    candidate = {"content": {"role": "model", "parts": parts}, "index": 0, **extra}
    if finish:
        candidate["finishReason"] = finish
    return json.dumps({"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1",
                       "usageMetadata": {"promptTokenCount": 83, "candidatesTokenCount": 14,
                                         "thoughtsTokenCount": 104, "cachedContentTokenCount": 50,
                                         "totalTokenCount": 201}}).encode()


def test_parse_response_parts_in_order_with_usage():
    body = candidate_response([
        {"text": "Thinking…", "thought": True},
        {"text": "", "thoughtSignature": "c2ln"},
        {"text": "Let me "}, {"text": "check."},
        {"functionCall": {"name": "getWeather", "args": {"location": "Tokyo"}}},
    ], finishMessage="Model generated function call(s).")
    call_id = gemini.synthesize_call_id("r1", 0, "getWeather")
    assert gemini.parse_response(body, request()) == ir.Response(
        id="r1", model="gemini-2.5-flash",
        parts=(ir.Thinking("Thinking…", "c2ln", None, "gemini"), ir.Text("Let me check."),
               ir.ToolCall(call_id, "getWeather", '{"location":"Tokyo"}')),
        finish_reason=ir.FinishReason.tool_calls,
        usage=ir.Usage(input_tokens=83, output_tokens=118, reasoning_tokens=104, cache_read_tokens=50),
        raw_finish_reason="STOP", finish_message="Model generated function call(s).",
    )


@pytest.mark.parametrize("raw, parts, expected", [
    ("STOP", [{"text": "hi"}], ir.FinishReason.stop),
    ("STOP", [{"functionCall": {"name": "f", "args": {}}}], ir.FinishReason.tool_calls),  # bug #7
    ("MAX_TOKENS", [{"text": "cut"}], ir.FinishReason.length),  # bug #7
    ("MAX_TOKENS", [], ir.FinishReason.length),  # thinking used the budget: still length, not a filter
    ("SAFETY", [], ir.FinishReason.content_filter),
    ("RECITATION", [{"text": "x"}], ir.FinishReason.content_filter),
    ("BLOCKLIST", [], ir.FinishReason.content_filter),
    ("PROHIBITED_CONTENT", [], ir.FinishReason.content_filter),
    ("SPII", [], ir.FinishReason.content_filter),
    ("IMAGE_SAFETY", [], ir.FinishReason.content_filter),
    ("MALFORMED_FUNCTION_CALL", [], ir.FinishReason.error),  # bug #6
    ("UNEXPECTED_TOOL_CALL", [], ir.FinishReason.error),
    ("TOO_MANY_TOOL_CALLS", [], ir.FinishReason.error),
    ("OTHER", [{"text": "x"}], ir.FinishReason.stop),
    (None, [{"text": "x"}], ir.FinishReason.stop),
])
def test_parse_response_finish_reason_table(raw, parts, expected):
    resp = gemini.parse_response(candidate_response(parts, raw), request())
    assert (resp.finish_reason, resp.raw_finish_reason) == (expected, raw)


def test_malformed_function_call_is_an_error_with_its_message_bug_6():
    body = candidate_response([], "MALFORMED_FUNCTION_CALL",
                              finishMessage="Malformed function call: print(default_api.get_weather(city=Oslo")
    resp = gemini.parse_response(body, request())
    assert (resp.parts, resp.finish_reason, resp.raw_finish_reason, resp.finish_message) == (
        (), ir.FinishReason.error, "MALFORMED_FUNCTION_CALL",
        "Malformed function call: print(default_api.get_weather(city=Oslo")


def test_parse_response_prompt_blocked():
    body = json.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                       "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                       "modelVersion": "gemini-2.5-flash", "responseId": "r2"}).encode()
    assert gemini.parse_response(body, request()) == ir.Response(
        "r2", "gemini-2.5-flash", (), ir.FinishReason.content_filter, ir.Usage(input_tokens=9),
        raw_finish_reason="PROHIBITED_CONTENT")


def test_parse_response_normalises_url_safe_image_data():
    body = candidate_response([{"inlineData": {"mimeType": "image/png", "data": "ab-_"}}])
    assert gemini.parse_response(body, request()).parts == (ir.Image(data="ab+/", media_type="image/png"),)


def test_parse_response_malformed_body_is_bad_gateway():
    for body in (b"<html>", b"{}", b"[1, 2]"):
        with pytest.raises(ProxyError) as caught:
            gemini.parse_response(body, request())
        assert caught.value.kind == ErrorKind.bad_gateway


# ============================================================== StreamParser


def test_real_stream_at_every_split(real_samples):
    data = (real_samples / SAMPLE).read_bytes()
    signature = json.loads(data.decode()[len("data: "):])["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    whole = feed_all(gemini.StreamParser(request()), [data])
    for chunks in every_split(data):
        assert feed_all(gemini.StreamParser(request()), chunks) == whole
    resp = ir.response_from_events(whole)
    (call,) = resp.parts
    assert (call.name, json.loads(call.arguments)) == ("getWeather", {"location": "Tokyo"})
    assert resp.finish_reason == ir.FinishReason.tool_calls
    assert resp.usage == ir.Usage(input_tokens=83, output_tokens=118, reasoning_tokens=104)
    assert (resp.id, resp.model) == ("qpc2afWVFJK4vr0Pq6WiyAU", "gemini-2.5-flash")
    assert gemini.split_signature_id(call.id)[1] == signature  # byte-exact
    assert call.signature == signature and call.signature_origin == "gemini"


def test_real_stream_tool_call_events_to_another_protocol_bugs_4_and_10(real_samples):
    """The call arrives as start, ONE whole arguments delta, stop: a writer needs nothing else."""
    events = feed_all(gemini.StreamParser(request()), [(real_samples / SAMPLE).read_bytes()])
    call_id = events[1].id
    assert [type(e).__name__ for e in events] == [
        "MessageStart", "PartStart", "ToolArgumentsDelta", "SignatureDelta", "PartStop", "MessageStop"]
    assert events[1:3] == [ir.PartStart(0, "tool_call", call_id, "getWeather"),
                           ir.ToolArgumentsDelta(0, '{"location":"Tokyo"}')]


def test_stream_text_thinking_and_call_stay_apart_bug_10():
    stream = sse(
        chunk([{"text": "Need the ", "thought": True}]),
        chunk([{"text": "weather.", "thought": True}]),
        chunk([{"text": "Checking"}]),
        chunk([{"text": " now."}]),
        chunk([{"functionCall": {"name": "f", "args": {"a": 1}}}]),
        {**chunk([{"text": "Done"}]), "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3}},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2}},
    )
    events = feed_all(gemini.StreamParser(request()), [stream])
    call_id = gemini.synthesize_call_id("resp-1", 0, "f")
    assert events == [
        ir.MessageStart("resp-1", "gemini-x", ir.Usage()),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Need the "), ir.ThinkingDelta(0, "weather."),
        ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "Checking"), ir.TextDelta(1, " now."), ir.PartStop(1),
        ir.PartStart(2, "tool_call", call_id, "f"), ir.ToolArgumentsDelta(2, '{"a":1}'), ir.PartStop(2),
        ir.PartStart(3, "text"), ir.TextDelta(3, "Done"), ir.PartStop(3),
        # Running totals: the last usage wins, never the sum.
        ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(input_tokens=4, output_tokens=8, reasoning_tokens=2),
                       raw_finish_reason="STOP"),
    ]


def test_stream_raw_error_mid_stream_is_a_stream_error():
    data = (sse(chunk([{"text": "Hel"}]))
            + b'{\n  "error": {\n    "code": 503,\n    "message": "The model is overloaded.",\n'
              b'    "status": "UNAVAILABLE"\n  }\n}\n')
    events = feed_all(gemini.StreamParser(request()), [data])
    assert events[:3] == [ir.MessageStart("resp-1", "gemini-x", ir.Usage()), ir.PartStart(0, "text"),
                          ir.TextDelta(0, "Hel")]
    (error,) = [e for e in events if isinstance(e, ir.StreamError)]
    assert events[-1] is error
    assert (error.error.kind, error.error.message) == (ErrorKind.overloaded, "The model is overloaded.")


def test_stream_error_as_data_array():
    data = sse([{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                           "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}])
    (error,) = feed_all(gemini.StreamParser(request()), [data])
    assert (error.error.kind, error.error.retry_after) == (ErrorKind.rate_limit, "7")


def test_stream_cut_before_finish_reason_is_a_stream_error():
    events = feed_all(gemini.StreamParser(request()), [sse(chunk([{"text": "Hel"}]))])
    assert isinstance(events[-1], ir.StreamError)
    assert events[-1].error.kind == ErrorKind.bad_gateway
    assert events[-1].error.message == "upstream stream ended before completion"
    assert not any(isinstance(e, ir.MessageStop) for e in events)
    assert isinstance(feed_all(gemini.StreamParser(request()), [b""])[-1], ir.StreamError)


def test_stream_malformed_function_call_bug_6():
    stream = sse({"candidates": [{"content": {"role": "model"}, "finishReason": "MALFORMED_FUNCTION_CALL",
                                  "finishMessage": "Malformed function call: f("}], "responseId": "r"})
    assert feed_all(gemini.StreamParser(request()), [stream])[-1] == ir.MessageStop(
        ir.FinishReason.error, ir.Usage(), raw_finish_reason="MALFORMED_FUNCTION_CALL",
        finish_message="Malformed function call: f(")


def test_stream_max_tokens_is_length_bug_7():
    stream = sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "cut"}]},
                                  "finishReason": "MAX_TOKENS"}]})
    assert feed_all(gemini.StreamParser(request()), [stream])[-1].finish_reason == ir.FinishReason.length


def test_stream_bridged_to_gemini_client_round_trip(real_samples):
    """Gemini upstream -> IR -> Gemini client: the same call, signature and finish."""
    events = feed_all(gemini.StreamParser(request()), [(real_samples / SAMPLE).read_bytes()])
    payloads = sse_payloads(run_formatter(events))
    part = payloads[0]["candidates"][0]["content"]["parts"][0]
    original = json.loads((real_samples / SAMPLE).read_bytes()[len(b"data: "):])
    original_part = original["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["args"] == original_part["functionCall"]["args"]
    assert part["thoughtSignature"] == original_part["thoughtSignature"]
    assert payloads[-1]["candidates"][0]["finishReason"] == "STOP"
    assert payloads[-1]["usageMetadata"] == {"promptTokenCount": 83, "candidatesTokenCount": 14,
                                             "thoughtsTokenCount": 104, "totalTokenCount": 201}


# =============================================================== parse_error


def test_parse_error_rate_limit_with_retry_info():
    body = json.dumps({"error": {"code": 429, "message": "You exceeded your current quota.",
                                 "status": "RESOURCE_EXHAUSTED",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                                             {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                              "retryDelay": "37s"}]}}).encode()
    err = gemini.parse_error(429, {}, body)
    assert (err.kind, err.message, err.retry_after, err.backend) == (
        ErrorKind.rate_limit, "You exceeded your current quota.", "37", "gemini")


def test_parse_error_array_form_and_retry_after_header():
    body = b'[{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]'
    err = gemini.parse_error(503, {"retry-after": "5"}, body)
    assert (err.kind, err.message, err.retry_after) == (ErrorKind.overloaded, "The model is overloaded.", "5")


def test_parse_error_bad_key_is_authentication_and_redacted():
    body = json.dumps({"error": {"code": 400, "message": "API key not valid: AIzaSyDUMMYDUMMYDUMMYDUMMY.",
                                 "status": "INVALID_ARGUMENT",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                              "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}).encode()
    err = gemini.parse_error(400, {}, body)
    assert err.kind == ErrorKind.authentication
    assert "DUMMYDUMMYDUMMY" not in err.message


@pytest.mark.parametrize("status, canonical, kind", [
    (400, "INVALID_ARGUMENT", ErrorKind.invalid_request),
    (403, "PERMISSION_DENIED", ErrorKind.permission),
    (404, "NOT_FOUND", ErrorKind.not_found),
    (500, "INTERNAL", ErrorKind.api_error),
    (504, "DEADLINE_EXCEEDED", ErrorKind.timeout),
])
def test_parse_error_kinds(status, canonical, kind):
    body = json.dumps({"error": {"code": status, "message": "m", "status": canonical}}).encode()
    assert gemini.parse_error(status, {}, body).kind == kind


def test_parse_error_field_violation_and_non_json():
    body = json.dumps({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT", "details": [
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": "contents[0].parts", "description": "empty"}]}]}}).encode()
    assert gemini.parse_error(400, {}, body).param == "contents[0].parts"
    err = gemini.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert (err.kind, err.message) == (ErrorKind.bad_gateway, "<html>Bad Gateway</html>")


# ------------------------------------------------------------------ token counting (a Vertex backend's counter)

COUNTED = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
           "systemInstruction": {"parts": [{"text": "Be brief."}]},
           "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
           "generationConfig": {"maxOutputTokens": 5}}


@pytest.mark.parametrize("client_body", [
    {"generateContentRequest": {"model": "models/g", **COUNTED, "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
                                "safetySettings": [], "cachedContent": "cachedContents/x"}},
    COUNTED,
], ids=["generateContentRequest", "top-level"])
def test_count_tokens_body_is_the_counted_fields_at_the_top_level(client_body):
    from app.protocols.base import Target
    inner = client_body.get("generateContentRequest", client_body)
    req = gemini.parse_request({k: v for k, v in inner.items() if k != "model"}, model="g", stream=False)
    assert gemini.count_tokens_body(req, Target("vx", "gemini-2.5-pro")) == COUNTED


def test_count_tokens_body_without_the_clients_body_is_built_from_the_ir():
    from app.protocols.base import Target
    req = ir.Request(model="g", protocol="openai", messages=[ir.Message("user", [ir.Text("Hi")])])
    assert gemini.count_tokens_body(req, Target("vx", "g")) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@pytest.mark.parametrize("body,count", [
    (b'{"totalTokens": 31, "totalBillableCharacters": 96, "promptTokensDetails": [{"modality": "TEXT", '
     b'"tokenCount": 31}]}', 31),
    (b'{"promptTokensDetails": []}', 0),  # Google's JSON leaves a zero out
])
def test_parse_count_tokens(body, count):
    assert gemini.parse_count_tokens(body) == count


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"totalTokens": "31"}', b'{"totalTokens": true}',
                                  b'{"totalTokens": null}'])
def test_an_unreadable_count_is_a_bad_gateway(body):
    with pytest.raises(ProxyError) as e:
        gemini.parse_count_tokens(body)
    assert e.value.kind == ErrorKind.bad_gateway
