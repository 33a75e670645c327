"""Ollama's native wire (app/protocols/ollama) and the NDJSON framing
(app/upstream/ndjson): an IR request in, the exact /api/chat body out; replies,
stream lines (split at every byte) and error bodies in, the exact IR out."""
from __future__ import annotations

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import ollama
from app.protocols.base import Target
from app.upstream.framing import Frame, framer
from app.upstream.ndjson import NDJSONFramer
from tests.conftest import every_split

TARGET = Target("ollama", "llama3.2")
HI = ir.Message("user", (ir.Text("Hi"),))


def body_of(**kw) -> dict:
    return ollama.build_body(ir.Request("client-model", kw.pop("messages", (HI,)), "openai", **kw), TARGET)


# ------------------------------------------------------------------ NDJSON framing

NDJSON = (b'{"message":{"content":"caf\xc3\xa9 \xe2\x9c\x93"},"done":false}\n'
          b"\n"
          b'{"a":1}\r\n'
          b'{"done":true}\n')
LINES = [Frame(None, '{"message":{"content":"café ✓"},"done":false}'), Frame(None, '{"a":1}'),
         Frame(None, '{"done":true}')]


def frames_of(chunks: list[bytes]) -> list[Frame]:
    f = NDJSONFramer()
    out = [frame for chunk in chunks for frame in f.feed(chunk)]
    return out + f.close()


def test_ndjson_lines_are_identical_at_every_split():
    for chunks in every_split(NDJSON):
        assert frames_of(chunks) == LINES, chunks


def test_ndjson_byte_at_a_time():
    assert frames_of([bytes([b]) for b in NDJSON]) == LINES


def test_ndjson_last_line_without_its_newline_comes_at_close():
    f = NDJSONFramer()
    assert f.feed(b'{"a":1}\n{"b"') == [Frame(None, '{"a":1}')]
    assert f.feed(b":2}") == []
    assert f.close() == [Frame(None, '{"b":2}')]
    assert f.close() == []


def test_ndjson_is_a_declared_framing():
    assert isinstance(framer("ndjson"), NDJSONFramer)


# ------------------------------------------------------------------ build_body

def test_minimal_body_says_whether_to_stream():
    assert body_of() == {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": False}
    assert body_of(stream=True)["stream"] is True  # Ollama streams when `stream` is left out


def test_whole_conversation():
    image = ir.Image(data="iVBORw0KGgoAAAA", media_type="image/png")
    messages = (
        ir.Message("system", (ir.Text("Be brief."),)),
        ir.Message("user", (ir.Text("Weather "), ir.Text("here?"), image)),
        ir.Message("assistant", (ir.Thinking("Look it up.", origin="ollama"), ir.Text("Checking."),
                                 ir.ToolCall("call_a", "get_weather", '{"location": "Paris"}'),
                                 ir.ToolCall("call_b", "get_time", ""))),
        ir.Message("tool", (ir.ToolResult("call_a", (ir.Text("18C"),)), ir.ToolResult("call_b", (ir.Text("noon"),)))),
        ir.Message("developer", (ir.Text("Answer in French."),)),
    )
    assert body_of(messages=messages)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather here?", "images": ["iVBORw0KGgoAAAA"]},
        {"role": "assistant", "content": "Checking.", "thinking": "Look it up.", "tool_calls": [
            {"id": "call_a", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
            {"id": "call_b", "function": {"name": "get_time", "arguments": {}}}]},
        {"role": "tool", "content": "18C", "tool_name": "get_weather", "tool_call_id": "call_a"},
        {"role": "tool", "content": "noon", "tool_name": "get_time", "tool_call_id": "call_b"},
        {"role": "system", "content": "Answer in French."},
    ]


def test_other_providers_thoughts_stay_home():
    messages = (HI, ir.Message("assistant", (ir.Thinking("mine", "sig", origin="anthropic"),)),
                ir.Message("assistant", (ir.Thinking("also", origin="gemini"), ir.Text("Hello."))))
    assert body_of(messages=messages)["messages"][1:] == [{"role": "assistant", "content": "Hello."}]


def test_options_think_format_and_tools():
    tool = ir.Tool("get_weather", "Weather now", {"type": "object", "properties": {"location": {"type": "string"}}})
    body = body_of(max_tokens=16, temperature=0.2, top_p=0.9, top_k=40, seed=7, stop=("four", ""),
                   reasoning=ir.Reasoning(effort="high"), tools=(tool, ir.Tool("noop")),
                   response_format=ir.ResponseFormat("json_schema", {"type": "object"}))
    assert body["options"] == {"num_predict": 16, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": 7,
                               "stop": ["four"]}
    assert body["think"] is True and body["format"] == {"type": "object"}
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}]
    assert body_of(response_format=ir.ResponseFormat("json_object"))["format"] == "json"


@pytest.mark.parametrize("reasoning, think", [
    (ir.Reasoning(effort="none"), False), (ir.Reasoning(budget_tokens=0), False),
    (ir.Reasoning(budget_tokens=2048), True), (ir.Reasoning(include_thoughts=True), True),
    (ir.Reasoning(summary="auto"), None),
])
def test_think(reasoning, think):
    assert body_of(reasoning=reasoning).get("think") is think


def test_tool_choice_none_leaves_the_tools_out():
    body = body_of(tools=(ir.Tool("f"),), tool_choice=ir.ToolChoice("none"))
    assert "tools" not in body


@pytest.mark.parametrize("kw, param", [
    ({"n": 2}, "n"),
    ({"tools": (ir.Tool("f"),), "tool_choice": ir.ToolChoice("required")}, "tool_choice"),
    ({"tools": (ir.Tool("f"),), "tool_choice": ir.ToolChoice("tool", "f")}, "tool_choice"),
    ({"messages": (ir.Message("user", (ir.Image(url="https://example.com/a.png"),)),)}, "messages.0.content.0"),
    ({"messages": (ir.Message("user", (ir.Image(url="data:image/png,abc"),)),)}, "messages.0.content.0"),
    ({"messages": (ir.Message("assistant", (ir.ToolCall("c", "f", "[1]"),)),)}, "messages.0.content.0"),
    ({"messages": (ir.Message("user", (ir.Opaque("anthropic", "document block", {}, "messages.0.content.0"),)),)},
     "messages.0.content.0"),
    ({"tools": (ir.Tool("web", native=ir.Opaque("gemini", "googleSearch tool", {}, "tools[0].googleSearch")),)},
     "tools[0].googleSearch"),
    ({"extras": (ir.Extra("anthropic", "mcp_servers", [], optional=False),)}, "mcp_servers"),
])
def test_refused_with_the_field_named(kw, param):
    with pytest.raises(ProxyError) as e:
        body_of(**kw)
    assert (e.value.kind, e.value.param) == (ErrorKind.invalid_request, param)


def test_data_url_images_go_as_bare_base64_and_droppable_hosted_tools_go_away():
    image = ir.Image(url="data:image/png;base64,iVBORw0KGgo")
    droppable = ir.Tool("web_search", native=ir.Opaque("openai_responses", "web_search tool", {}, "tools[0]",
                                                       droppable=True))
    body = body_of(messages=(ir.Message("user", (image,)),), tools=(droppable,))
    assert body["messages"] == [{"role": "user", "content": "", "images": ["iVBORw0KGgo"]}] and "tools" not in body


# ------------------------------------------------------------------ parse_response

REQ = ir.Request("client-model", (HI,), "openai")


def test_reply_with_thinking_text_and_tool_calls():
    body = (b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19Z","message":{"role":"assistant",'
            b'"content":"Let me check.","thinking":"Weather needs a tool.","tool_calls":['
            b'{"id":"call_x1","function":{"index":0,"name":"get_weather","arguments":{"location":"Paris"}}},'
            b'{"function":{"name":"get_time","arguments":{}}}]},'
            b'"done":true,"done_reason":"stop","prompt_eval_count":30,"eval_count":12}')
    resp = ollama.parse_response(body, REQ)
    synthetic = resp.parts[3].id
    assert resp == ir.Response(id="", model="client-model", parts=(
        ir.Thinking("Weather needs a tool.", origin="ollama"), ir.Text("Let me check."),
        ir.ToolCall("call_x1", "get_weather", '{"location":"Paris"}'), ir.ToolCall(synthetic, "get_time", "{}")),
        finish_reason=ir.FinishReason.tool_calls, usage=ir.Usage(30, 12), raw_finish_reason="stop")
    assert synthetic.startswith("call_") and len(synthetic) == 13
    assert ollama.parse_response(body, REQ).parts[3].id == synthetic  # the same reply, the same id


def test_reply_without_counts_and_cut_by_length():
    resp = ollama.parse_response(b'{"message":{"role":"assistant","content":"The quick"},"done":true,'
                                 b'"done_reason":"length"}', REQ)
    assert (resp.parts, resp.finish_reason, resp.usage) == ((ir.Text("The quick"),), ir.FinishReason.length,
                                                            ir.Usage())


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"message":{"content":"x"},"done":false}',
                                  b'{"done":true}', b'{"message":{"tool_calls":[{"function":{}}]},"done":true}'])
def test_malformed_replies_are_a_bad_gateway(body):
    with pytest.raises(ProxyError) as e:
        ollama.parse_response(body, REQ)
    assert e.value.kind is ErrorKind.bad_gateway


def test_an_error_object_under_200_is_an_error():
    with pytest.raises(ProxyError) as e:
        ollama.parse_response(b'{"error":"model runner has unexpectedly stopped"}', REQ)
    assert (e.value.kind, e.value.message) == (ErrorKind.api_error, "model runner has unexpectedly stopped")


# ------------------------------------------------------------------ StreamParser

STREAM = (b'{"model":"llama3.2","created_at":"t0","message":{"role":"assistant","content":"","thinking":"Hm,"},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t1","message":{"role":"assistant","content":"","thinking":" Paris."},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t2","message":{"role":"assistant","content":"\\n\\n"},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t3","message":{"role":"assistant","content":"Caf\xc3\xa9"},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t4","message":{"role":"assistant","content":" time."},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t5","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1",'
          b'"function":{"index":0,"name":"get_weather","arguments":{"location":"Paris"}}}]},"done":false}\n'
          b'{"model":"llama3.2","created_at":"t6","message":{"role":"assistant","content":""},"done":true,'
          b'"done_reason":"stop","prompt_eval_count":64,"eval_count":14}\n')
EVENTS = [
    ir.MessageStart("", "client-model"),
    ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Hm,"), ir.ThinkingDelta(0, " Paris."), ir.PartStop(0),
    ir.PartStart(1, "text"), ir.TextDelta(1, "Café"), ir.TextDelta(1, " time."), ir.PartStop(1),
    ir.PartStart(2, "tool_call", id="call_1", name="get_weather"), ir.ToolArgumentsDelta(2, '{"location":"Paris"}'),
    ir.PartStop(2),
    ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(64, 14), raw_finish_reason="stop"),
]


def stream_events(chunks: list[bytes]) -> list[ir.Event]:
    f, parser = NDJSONFramer(), ollama.StreamParser(REQ)
    events = [e for chunk in chunks for frame in f.feed(chunk) for e in parser.feed(frame)]
    return events + [e for frame in f.close() for e in parser.feed(frame)] + parser.close()


def test_stream_events_are_identical_at_every_split():
    for chunks in every_split(STREAM):
        assert stream_events(chunks) == EVENTS, chunks


def test_stream_cut_before_the_done_line_is_an_error():
    events = stream_events([STREAM.split(b"\n")[3] + b"\n"])
    assert events[:3] == [ir.MessageStart("", "client-model"), ir.PartStart(0, "text"), ir.TextDelta(0, "Café")]
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is ErrorKind.bad_gateway


def test_error_line_under_200_ends_the_stream():
    data = (b'{"message":{"role":"assistant","content":"Hello"},"done":false}\n'
            b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'
            b'{"message":{"role":"assistant","content":"never"},"done":false}\n')
    for chunks in every_split(data):
        events = stream_events(chunks)
        assert events[:3] == [ir.MessageStart("", "client-model"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hello")]
        assert len(events) == 4 and isinstance(events[3], ir.StreamError)
        err = events[3].error
        assert (err.kind, err.message) == (ErrorKind.api_error,
                                           "an error was encountered while running the model: unexpected EOF")


def test_malformed_line_is_a_bad_gateway():
    events = stream_events([b'{"message":{"content":"Hi"},"done":false}\n{"message":{"con\n'])
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is ErrorKind.bad_gateway


def test_length_finish_without_counts():
    events = stream_events([b'{"message":{"content":"The quick"},"done":false}\n',
                            b'{"message":{"content":""},"done":true,"done_reason":"length"}\n'])
    assert events[-1] == ir.MessageStop(ir.FinishReason.length, ir.Usage(), raw_finish_reason="length")


# ------------------------------------------------------------------ parse_error

@pytest.mark.parametrize("status, body, kind, message", [
    (404, b'{"error":"model \'llama9\' not found"}', ErrorKind.not_found, "model 'llama9' not found"),
    (400, b'{"error":"\\"llama3.2\\" does not support thinking"}', ErrorKind.invalid_request,
     '"llama3.2" does not support thinking'),
    (503, b'{"error":"server busy, please try again.  maximum pending requests exceeded"}', ErrorKind.overloaded,
     "server busy, please try again.  maximum pending requests exceeded"),
    (401, b'{"error":"unauthorized"}', ErrorKind.authentication, "unauthorized"),
    (502, b'{"error":{"message":"upstream gone"}}', ErrorKind.bad_gateway, "upstream gone"),
    (500, b"Internal Server Error", ErrorKind.api_error, "Internal Server Error"),
    (500, b"", ErrorKind.api_error, "upstream returned HTTP 500"),
])
def test_parse_error(status, body, kind, message):
    err = ollama.parse_error(status, {}, body)
    assert (err.kind, err.status, err.message, err.retry_after) == (kind, status, message, None)


def test_parse_error_keeps_retry_after():
    assert ollama.parse_error(429, {"Retry-After": " 7 "}, b'{"error":"slow down"}').retry_after == "7"
