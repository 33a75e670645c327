"""OpenAI Chat Completions protocol module: fixtures in, exact shapes out.

Sections follow the module: parse_request (validation, mapping), the
frontend writers (format_response, StreamFormatter, format_error,
format_models), the backend writers (build_request, passthrough_request) and
readers (parse_response, parse_error, StreamParser, including every recorded
real stream split at every byte).
"""
from __future__ import annotations

import json
from functools import lru_cache

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError, invalid
from app.protocols import openai_chat as oc
from app.protocols import protocol_module
from app.protocols.base import ModelInfo
from app.upstream.framing import Frame, SSEFramer
from tests.upstream_call import Upstream, built
from tests.conftest import every_split, stream_events

CREATED = 1700000000
TARGET = Upstream(backend="openai", base_url="https://api.openai.com/v1", model="gpt-4o-2024-08-06",
                api_key="sk-test-key")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    for module in (oc.response, oc.stream_formatter):  # the modules that read the clock
        monkeypatch.setattr(module, "_now", lambda: CREATED)


def ir_request(**fields) -> ir.Request:
    fields.setdefault("model", "gpt-4o")
    fields.setdefault("messages", (ir.Message("user", (ir.Text("Hi"),)),))
    return ir.Request(protocol="openai", **fields)


def upstream_json(upstream) -> dict:
    return json.loads(upstream.body)


# ====================================================================
# parse_request: validation (every 400 names its field)
# ====================================================================

HI = {"role": "user", "content": "Hi"}
CALL_1 = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
TOOL_TURN = [HI, {"role": "assistant", "content": None, "tool_calls": [CALL_1]},
             {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def body(**fields) -> dict:
    base = {"model": "gpt-4o", "messages": [HI]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}  # `...` removes a field


def with_messages(*messages) -> dict:
    return body(messages=list(messages))


def assistant_calls(*calls) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


INVALID_REQUESTS = [
    # (param the 400 must name, request body)
    (None, ["not", "an", "object"]),
    ("model", body(model=...)),
    ("model", body(model="")),
    ("model", body(model=42)),
    ("messages", body(messages=...)),
    ("messages", body(messages=[])),
    ("messages", body(messages="Hi")),
    ("messages[0]", with_messages("Hi")),
    ("messages[0].role", with_messages({"role": "bot", "content": "Hi"})),
    ("messages[0].role", with_messages({"role": "function", "name": "f", "content": "x"})),
    ("messages[0].role", with_messages({"content": "Hi"})),
    ("messages[0].content", with_messages({"role": "user", "content": 42})),
    ("messages[0].content[0].type", with_messages(
        {"role": "user", "content": [{"type": "input_video", "input_video": {"data": "AA=="}}]})),
    ("messages[0].content[0].type", with_messages(
        {"role": "system", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]})),
    ("messages[0].content[0].type", with_messages({"role": "user", "content": ["Hi"]})),
    ("messages[0].content[1].type", with_messages({"role": "system", "content": [
        {"type": "text", "text": "Be brief."},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]})),
    ("messages[0].content[0].text", with_messages({"role": "user", "content": [{"type": "text", "text": 5}]})),
    ("messages[0].content[0].image_url.url", with_messages(
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]})),
    ("messages[0].content[0].image_url.url", with_messages(
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml;utf8,<svg/>"}}]})),
    ("messages[0].content[0].image_url.url", with_messages(
        {"role": "user", "content": [{"type": "image_url", "image_url": "https://example.com/a.png"}]})),
    ("messages[0].name", with_messages({"role": "user", "content": "Hi", "name": 7})),
    ("messages[1].content", with_messages(HI, {"role": "assistant"})),
    ("messages[1].content[0].type", with_messages(
        HI, {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x.io/a.png"}}]})),
    ("messages[1].tool_calls", with_messages(HI, {"role": "assistant", "content": None, "tool_calls": {}})),
    ("messages[1].tool_calls[0].type", with_messages(
        HI, assistant_calls({"id": "c", "type": "mcp", "mcp": {"name": "f"}}))),
    ("messages[1].tool_calls[0].custom.input", with_messages(
        HI, assistant_calls({"id": "c", "type": "custom", "custom": {"name": "f", "input": {"x": 1}}}))),
    ("messages[1].tool_calls[0].custom.name", with_messages(HI, assistant_calls({"id": "c", "type": "custom"}))),
    ("messages[1].tool_calls", with_messages(  # a custom call must be answered like a function call
        HI, assistant_calls({"id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}))),
    ("messages[1].tool_calls[0].id", with_messages(
        HI, assistant_calls({"type": "function", "function": {"name": "f", "arguments": "{}"}}))),
    ("messages[1].tool_calls[0].function.name", with_messages(
        HI, assistant_calls({"id": "c", "type": "function", "function": {"arguments": "{}"}}))),
    ("messages[1].tool_calls[0].function.arguments", with_messages(
        HI, assistant_calls({"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}))),
    ("messages[2].tool_call_id", with_messages(*TOOL_TURN[:2], {"role": "tool", "content": "Sunny"})),
    ("messages[2].tool_call_id", with_messages(
        *TOOL_TURN[:2], {"role": "tool", "tool_call_id": "call_9", "content": "Sunny"})),
    ("messages[0].tool_call_id", with_messages({"role": "tool", "tool_call_id": "call_1", "content": "Sunny"})),
    ("messages[2].content[0].type", with_messages(*TOOL_TURN[:2], {"role": "tool", "tool_call_id": "call_1",
        "content": [{"type": "image_url", "image_url": {"url": "https://x.io/a.png"}}]})),
    ("messages[1].tool_calls", with_messages(*TOOL_TURN[:2], HI)),  # call never answered
    ("messages[1].tool_calls", with_messages(*TOOL_TURN[:2])),  # ... not even at the end
    ("functions", body(functions=[{"name": "f"}])),
    ("function_call", body(function_call="auto")),
    ("tools", body(tools={"type": "function"})),
    ("tools[0].custom.name", body(tools=[{"type": "custom", "custom": {"description": "no name"}}])),
    ("tools[0].custom.name", body(tools=[{"type": "custom"}])),
    ("tools[1].type", body(tools=[WEATHER_TOOL, {"type": "web_search"}])),
    ("tools[0].function", body(tools=[{"type": "function"}])),
    ("tools[0].function.name", body(tools=[{"type": "function", "function": {"name": "get weather"}}])),
    ("tools[0].function.name", body(tools=[{"type": "function", "function": {"name": "x" * 65}}])),
    ("tools[0].function.parameters", body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}])),
    ("tool_choice", body(tool_choice="sometimes", tools=[WEATHER_TOOL])),
    ("tool_choice", body(tool_choice="required")),
    ("tool_choice.function.name", body(tool_choice={"type": "function", "function": {"name": "nope"}},
                                       tools=[WEATHER_TOOL])),
    ("tool_choice.type", body(tool_choice={"type": "custom", "custom": {"name": "grep"}}, tools=[WEATHER_TOOL])),
    ("tool_choice.allowed_tools", body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "any"}},
                                       tools=[WEATHER_TOOL])),
    ("tool_choice.allowed_tools.tools[0]", body(tools=[WEATHER_TOOL], tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function",
                                                                              "function": {"name": "nope"}}]}})),
    ("parallel_tool_calls", body(parallel_tool_calls="yes")),
    ("stream", body(stream="true")),
    ("stream_options", body(stream_options={"include_usage": True})),
    ("stream_options", body(stream=False, stream_options={"include_usage": True})),
    ("stream_options", body(stream=True, stream_options=True)),
    ("stream_options.include_usage", body(stream=True, stream_options={"include_usage": "yes"})),
    ("n", body(n=0)),
    ("n", body(n=129)),
    ("n", body(n="2")),
    ("temperature", body(temperature=2.5)),
    ("temperature", body(temperature=-0.1)),
    ("temperature", body(temperature="hot")),
    ("temperature", body(temperature=True)),
    ("top_p", body(top_p=1.5)),
    ("max_completion_tokens", body(max_completion_tokens=0)),
    ("max_tokens", body(max_tokens=-1)),
    ("max_tokens", body(max_tokens=1.5)),
    ("stop", body(stop=5)),
    ("stop", body(stop=["END", 1])),
    ("seed", body(seed="seven")),
    ("reasoning_effort", body(reasoning_effort="extreme")),
    ("response_format", body(response_format="json")),
    ("response_format.type", body(response_format={"type": "yaml"})),
    ("response_format.json_schema", body(response_format={"type": "json_schema"})),
    ("response_format.json_schema.name", body(response_format={"type": "json_schema",
                                                               "json_schema": {"schema": {}}})),
    ("response_format.json_schema.schema", body(response_format={"type": "json_schema",
                                                                 "json_schema": {"name": "a", "schema": "x"}})),
    ("user", body(user=5)),
]


@pytest.mark.parametrize("param,request_body", INVALID_REQUESTS,
                         ids=[f"{i}:{p}" for i, (p, _) in enumerate(INVALID_REQUESTS)])
def test_parse_request_rejects_with_400_naming_the_field(param, request_body):
    with pytest.raises(ProxyError) as caught:
        oc.parse_request(request_body)
    err = caught.value
    assert (err.kind, err.status, err.param) == (ErrorKind.invalid_request, 400, param)
    assert err.message


def test_a_validation_error_reaches_the_client_in_openai_form():
    with pytest.raises(ProxyError) as caught:
        oc.parse_request(body(temperature=3))
    status, headers, payload = oc.format_error(caught.value)
    assert status == 400
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(payload) == {"error": {
        "message": "'temperature' must be between 0 and 2; got 3.",
        "type": "invalid_request_error", "param": "temperature", "code": None}}


# ====================================================================
# parse_request: mapping into the IR
# ====================================================================

# A request written in OpenAI's canonical forms: parse_request then
# build_request must give it back unchanged (model aside).
CANONICAL = {
    "model": "gpt-4o",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {"role": "assistant", "content": "Sunny at noon."},
        {"role": "system", "content": "Answer in French from now on.", "name": "ops"},
        {"role": "user", "content": "Merci", "name": "ana"},
    ],
    "tools": [
        {"type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True}},
        {"type": "function", "function": {"name": "get_time"}},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "max_completion_tokens": 256,
    "temperature": 0.5,
    "top_p": 0.9,
    "seed": 7,
    "user": "user-1",
    "stop": ["END"],
    "reasoning_effort": "low",
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
    "stream": True,
    "stream_options": {"include_usage": True},
}

CANONICAL_IR = ir.Request(
    model="gpt-4o",
    protocol="openai",
    messages=(
        ir.Message("developer", (ir.Text("Be brief."),)),
        ir.Message("user", (
            ir.Text("Weather here?"),
            ir.Image(data="iVBORw0KGgo=", media_type="image/png", detail="low"),
            ir.Image(url="https://example.com/cat.jpg"))),
        ir.Message("assistant", (
            ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),
            ir.ToolCall("call_2", "get_time", ""))),
        ir.Message("tool", (  # consecutive tool messages answer one turn: merged
            ir.ToolResult("call_1", (ir.Text("Sunny, 21 C"),), name="get_weather"),
            ir.ToolResult("call_2", (ir.Text("12:00"),), name="get_time"))),
        ir.Message("assistant", (ir.Text("Sunny at noon."),)),
        ir.Message("system", (ir.Text("Answer in French from now on."),), name="ops"),
        ir.Message("user", (ir.Text("Merci"),), name="ana"),
    ),
    stream=True,
    include_usage=True,
    tools=(
        ir.Tool("get_weather", "Current weather",
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, True),
        ir.Tool("get_time"),
    ),
    tool_choice=ir.ToolChoice("auto"),
    parallel_tool_calls=False,
    max_tokens=256,
    temperature=0.5,
    top_p=0.9,
    stop=("END",),
    seed=7,
    reasoning=ir.Reasoning(effort="low"),
    response_format=ir.ResponseFormat("json_schema", {"type": "object"}, "answer", True),
    user="user-1",
)


def test_parse_request_maps_every_field():
    req = oc.parse_request(CANONICAL)
    assert req == CANONICAL_IR
    assert req.raw is CANONICAL  # same-protocol hops send the client's body on


def test_round_trip_client_body_through_ir_back_to_openai():
    upstream = built(oc, oc.parse_request(CANONICAL), TARGET)
    assert upstream_json(upstream) == {**CANONICAL, "model": "gpt-4o-2024-08-06"}


def test_parse_request_minimal_defaults():
    assert oc.parse_request(body()) == ir_request()


def test_parse_request_takes_model_and_stream_from_the_caller_when_given():
    req = oc.parse_request(body(model="from-body"), model="from-url", stream=True)
    assert (req.model, req.stream) == ("from-url", True)


def test_max_tokens_is_read_when_max_completion_tokens_is_absent():
    assert oc.parse_request(body(max_tokens=100)).max_tokens == 100
    assert oc.parse_request(body(max_tokens=100, max_completion_tokens=50)).max_tokens == 50


def test_stop_as_a_string_and_null_fields():
    req = oc.parse_request(body(stop="END", temperature=None, stream=None, tools=None, n=None))
    assert (req.stop, req.temperature, req.stream, req.tools, req.n) == (("END",), None, False, (), 1)


def test_empty_and_whitespace_text_is_dropped_and_empty_turns_vanish():
    req = oc.parse_request(with_messages(
        {"role": "system", "content": "  "},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"},
                                     {"type": "text", "text": "\n"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Again"},
    ))
    assert req.messages == (ir.Message("user", (ir.Text("Hi"),)), ir.Message("user", (ir.Text("Again"),)))


def test_empty_assistant_text_beside_tool_calls_gives_no_text_part():
    for content in (None, "", " "):
        req = oc.parse_request(with_messages(
            HI, {"role": "assistant", "content": content, "tool_calls": [CALL_1]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}))
        assert req.messages[1] == ir.Message("assistant", (ir.ToolCall("call_1", "get_weather", "{}"),))


def test_assistant_refusal_and_content_parts():
    req = oc.parse_request(with_messages(
        HI, {"role": "assistant", "content": [{"type": "text", "text": "Well."},
                                              {"type": "refusal", "refusal": "I can't."}]},
        HI, {"role": "assistant", "content": None, "refusal": "No."}, HI))
    assert req.messages[1] == ir.Message("assistant", (ir.Text("Well."), ir.Refusal("I can't.")))
    assert req.messages[3] == ir.Message("assistant", (ir.Refusal("No."),))


def test_tool_messages_separated_by_other_turns_are_not_merged():
    req = oc.parse_request(with_messages(
        *TOOL_TURN,
        {"role": "assistant", "content": None, "tool_calls": [{**CALL_1, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rain"}]}))
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert req.messages[4] == ir.Message("tool", (ir.ToolResult("call_2", (ir.Text("Rain"),), "get_weather"),))


def test_tool_choice_forms():
    tools = [WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}]
    choice = lambda value: oc.parse_request(body(tools=tools, tool_choice=value))  # noqa: E731
    assert choice("none").tool_choice == ir.ToolChoice("none")
    assert choice("required").tool_choice == ir.ToolChoice("required")
    assert choice({"type": "function", "function": {"name": "get_time"}}).tool_choice == \
        ir.ToolChoice("tool", "get_time")
    # allowed_tools has no IR form: the tool list is narrowed instead.
    narrowed = choice({"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]}})
    assert (narrowed.tools, narrowed.tool_choice) == ((ir.Tool("get_time"),), ir.ToolChoice("required"))


def test_response_format_and_reasoning_forms():
    assert oc.parse_request(body(response_format={"type": "json_object"})).response_format == \
        ir.ResponseFormat("json_object")
    assert oc.parse_request(body(response_format={"type": "text"})).response_format == ir.ResponseFormat("text")
    assert oc.parse_request(body(reasoning_effort="xhigh")).reasoning == ir.Reasoning(effort="xhigh")


# ====================================================================
# format_response
# ====================================================================

def test_format_response_text_with_usage():
    resp = ir.Response(id="chatcmpl-abc", model="gpt-4o", parts=(ir.Text("Hello"), ir.Text(" there")),
                       usage=ir.Usage(input_tokens=20, output_tokens=9, reasoning_tokens=4, cache_read_tokens=16))
    assert oc.format_response(resp, ir_request()) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 16},
                  "completion_tokens_details": {"reasoning_tokens": 4}},
    }


def test_format_response_tool_calls_only_has_null_content_and_a_chatcmpl_id():
    # Known gateway bug #17 (mirror image): a foreign id must not leak as is.
    resp = ir.Response(id="msg_01XYZ", model="claude-sonnet-4", finish_reason=ir.FinishReason.tool_calls,
                       parts=(ir.Thinking("hidden", signature="sig"),
                              ir.ToolCall("toolu_1", "get_weather", '{"city":"Oslo"}'),
                              ir.ToolCall("toolu_2", "get_time", "{}")),
                       usage=ir.Usage(10, 5, cache_write_tokens=3))
    out = oc.format_response(resp, ir_request())
    assert out["id"] == "chatcmpl-msg_01XYZ"
    assert out["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}]
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 3}


def test_format_response_reasoning_content_only_when_the_client_asked():
    resp = ir.Response(id="r1", model="m", parts=(ir.Thinking("Let me think."), ir.Text("42")))
    asked = oc.format_response(resp, ir_request(reasoning=ir.Reasoning(effort="high")))
    not_asked = oc.format_response(resp, ir_request())
    assert asked["choices"][0]["message"] == {"role": "assistant", "content": "42", "refusal": None,
                                              "reasoning_content": "Let me think."}
    assert not_asked["choices"][0]["message"] == {"role": "assistant", "content": "42", "refusal": None}


@pytest.mark.parametrize("finish,wire", [(ir.FinishReason.stop, "stop"), (ir.FinishReason.length, "length"),
                                         (ir.FinishReason.tool_calls, "tool_calls"),
                                         (ir.FinishReason.content_filter, "content_filter")])
def test_format_response_finish_reasons(finish, wire):
    resp = ir.Response(id="chatcmpl-1", model="m", parts=(ir.Text("x"),), finish_reason=finish)
    assert oc.format_response(resp, ir_request())["choices"][0]["finish_reason"] == wire


def test_format_response_refusal_and_empty_completion():
    refused = oc.format_response(ir.Response("chatcmpl-1", "m", (ir.Refusal("I can't help."),)), ir_request())
    empty = oc.format_response(ir.Response("chatcmpl-2", "m", (), ir.FinishReason.length), ir_request())
    assert refused["choices"][0]["message"] == {"role": "assistant", "content": None, "refusal": "I can't help."}
    assert empty["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}


def test_format_response_never_reports_a_failed_model_turn_as_a_stop():
    resp = ir.Response("r", "gemini", (), ir.FinishReason.error, raw_finish_reason="MALFORMED_FUNCTION_CALL")
    with pytest.raises(ProxyError) as caught:
        oc.format_response(resp, ir_request())
    assert (caught.value.kind, caught.value.status) == (ErrorKind.bad_gateway, 502)
    assert "MALFORMED_FUNCTION_CALL" in caught.value.message


# ====================================================================
# StreamFormatter
# ====================================================================

HEAD = '{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o",'


def sse(*chunks: str) -> bytes:
    return b"".join(b"data: " + c.encode() + b"\n\n" for c in chunks)


def choice(delta: str, finish: str = "null") -> str:
    return HEAD + '"choices":[{"index":0,"delta":' + delta + ',"finish_reason":' + finish + "}]}"


def format_stream(events, **req_fields) -> bytes:
    formatter = oc.StreamFormatter(ir_request(**req_fields))
    return b"".join(formatter.feed(e) for e in events) + formatter.finish()


TEXT_EVENTS = [
    ir.MessageStart("chatcmpl-abc", "gpt-4o"),
    ir.PartStart(0, "text"),
    ir.TextDelta(0, "Hel"),
    ir.TextDelta(0, "lo"),
    ir.PartStop(0),
    ir.MessageStop(ir.FinishReason.stop, ir.Usage(9, 2)),
]
USAGE_CHUNK = (HEAD + '"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,'
               '"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}')


def test_stream_formatter_text_stream_with_usage():
    assert format_stream(TEXT_EVENTS, stream=True, include_usage=True) == sse(
        choice('{"role":"assistant","content":""}'),
        choice('{"content":"Hel"}'),
        choice('{"content":"lo"}'),
        choice("{}", '"stop"'),
        USAGE_CHUNK,
        "[DONE]",
    )


def test_stream_formatter_sends_no_usage_chunk_unless_asked():
    assert format_stream(TEXT_EVENTS, stream=True) == sse(
        choice('{"role":"assistant","content":""}'),
        choice('{"content":"Hel"}'),
        choice('{"content":"lo"}'),
        choice("{}", '"stop"'),
        "[DONE]",
    )


def test_stream_formatter_two_tool_calls_use_tool_ordinals_not_part_indices():
    events = [
        ir.MessageStart("chatcmpl-abc", "gpt-4o"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Checking."), ir.PartStop(0),
        ir.PartStart(1, "tool_call", id="call_a", name="get_weather"),
        ir.ToolArgumentsDelta(1, '{"city":'), ir.ToolArgumentsDelta(1, '"Oslo"}'), ir.PartStop(1),
        ir.PartStart(2, "tool_call", id="call_b", name="get_time"),
        ir.ToolArgumentsDelta(2, ""), ir.ToolArgumentsDelta(2, "{}"), ir.PartStop(2),
        ir.MessageStop(ir.FinishReason.tool_calls),
    ]
    assert format_stream(events) == sse(
        choice('{"role":"assistant","content":""}'),
        choice('{"content":"Checking."}'),
        choice('{"tool_calls":[{"index":0,"id":"call_a","type":"function",'
               '"function":{"name":"get_weather","arguments":""}}]}'),
        choice('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}'),
        choice('{"tool_calls":[{"index":0,"function":{"arguments":"\\"Oslo\\"}"}}]}'),
        choice('{"tool_calls":[{"index":1,"id":"call_b","type":"function",'
               '"function":{"name":"get_time","arguments":""}}]}'),
        choice('{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}'),
        choice("{}", '"tool_calls"'),
        "[DONE]",
    )


def test_stream_formatter_role_chunk_has_null_content_before_a_tool_call():
    events = [ir.MessageStart("chatcmpl-abc", "gpt-4o"), ir.PartStart(0, "tool_call", id="c", name="f")]
    assert format_stream(events).startswith(sse(choice('{"role":"assistant","content":null}')))


def test_stream_formatter_reasoning_and_refusal_deltas():
    events = [ir.MessageStart("chatcmpl-abc", "gpt-4o"),
              ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Hmm."), ir.SignatureDelta(0, "sig"), ir.PartStop(0),
              ir.PartStart(1, "refusal"), ir.RefusalDelta(1, "No."), ir.PartStop(1),
              ir.MessageStop(ir.FinishReason.stop)]
    role, refusal, finish = (choice('{"role":"assistant","content":""}'), choice('{"refusal":"No."}'),
                             choice("{}", '"stop"'))
    assert format_stream(events, reasoning=ir.Reasoning(effort="low")) == sse(
        role, choice('{"reasoning_content":"Hmm."}'), refusal, finish, "[DONE]")
    assert format_stream(events) == sse(role, refusal, finish, "[DONE]")


def test_stream_formatter_ends_with_an_error_and_nothing_after():
    events = [ir.MessageStart("chatcmpl-abc", "gpt-4o"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hi"),
              ir.StreamError(ProxyError(ErrorKind.overloaded, "Overloaded", status=529)),
              ir.MessageStop(ir.FinishReason.stop)]
    assert format_stream(events, include_usage=True) == sse(
        choice('{"role":"assistant","content":""}'),
        choice('{"content":"Hi"}'),
        '{"error":{"message":"Overloaded","type":"service_unavailable_error","param":null,"code":null}}',
    )


def test_stream_formatter_reports_a_failed_model_turn_as_an_error():
    events = [ir.MessageStart("chatcmpl-abc", "gpt-4o"),
              ir.MessageStop(ir.FinishReason.error, raw_finish_reason="MALFORMED_FUNCTION_CALL")]
    out = format_stream(events)
    assert out.startswith(b'data: {"error":{') and b"[DONE]" not in out
    assert json.loads(out[6:])["error"]["type"] == "server_error"


def test_stream_formatter_gives_every_chunk_the_same_identity():
    formatter = oc.StreamFormatter(ir_request())
    out = b"".join(formatter.feed(e) for e in [ir.MessageStart("msg_1", "claude"), *TEXT_EVENTS[1:]])
    frames = [json.loads(line[6:]) for line in out.split(b"\n\n") if line and line != b"data: [DONE]"]
    assert {(f["id"], f["object"], f["created"], f["model"]) for f in frames} == \
        {("chatcmpl-msg_1", "chat.completion.chunk", CREATED, "claude")}


def test_stream_formatter_relays_upstream_frames_verbatim():
    formatter = oc.StreamFormatter(ir_request())
    chunk = '{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi"}}]}'
    assert formatter.relay(Frame(None, chunk)) == b"data: " + chunk.encode() + b"\n\n"
    assert formatter.relay(Frame(None, "[DONE]")) == b"data: [DONE]\n\n"
    assert formatter.finish() == b""


def test_stream_formatter_relay_leaves_out_azure_prompt_filter_chunks():
    formatter = oc.StreamFormatter(ir_request())
    azure_first = ('{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
                   '[{"prompt_index":0,"content_filter_results":{}}]}')
    assert formatter.relay(Frame(None, azure_first)) == b""
    usage = '{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3}}'
    assert formatter.relay(Frame(None, usage)) == b"data: " + usage.encode() + b"\n\n"
    error = '{"choices":[],"error":{"message":"m"}}'
    assert formatter.relay(Frame(None, error)) == b"data: " + error.encode() + b"\n\n"


def test_formatter_output_parses_back_to_the_same_response():
    events = [ir.MessageStart("chatcmpl-abc", "gpt-4o"),
              ir.PartStart(0, "text"), ir.TextDelta(0, "Héllo ✓"), ir.PartStop(0),
              ir.PartStart(1, "tool_call", id="call_a", name="f"), ir.ToolArgumentsDelta(1, '{"a":1}'), ir.PartStop(1),
              ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(3, 4), raw_finish_reason="tool_calls")]
    wire = format_stream(events, include_usage=True)
    assert ir.response_from_events(parse_stream([wire])) == ir.response_from_events(events)


# ====================================================================
# format_error / format_models
# ====================================================================

ERROR_RENDERINGS = [
    # (error, status, headers beyond Content-Type, envelope)
    (invalid("Bad value.", param="stop"), 400, {},
     {"message": "Bad value.", "type": "invalid_request_error", "param": "stop", "code": None}),
    (ProxyError(ErrorKind.authentication, "Incorrect API key provided."), 401, {},
     {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None,
      "code": "invalid_api_key"}),
    (ProxyError(ErrorKind.permission, "Country not supported.", code="unsupported_country_region_territory"), 403,
     {}, {"message": "Country not supported.", "type": "request_forbidden", "param": None,
          "code": "unsupported_country_region_territory"}),
    (ProxyError(ErrorKind.not_found, "The model `x` does not exist.", param="model", code="model_not_found"), 404,
     {}, {"message": "The model `x` does not exist.", "type": "invalid_request_error", "param": "model",
          "code": "model_not_found"}),
    (ProxyError(ErrorKind.rate_limit, "Slow down.", retry_after="7"), 429, {"Retry-After": "7"},
     {"message": "Slow down.", "type": "requests", "param": None, "code": "rate_limit_exceeded"}),
    (ProxyError(ErrorKind.rate_limit, "You exceeded your current quota.", code="insufficient_quota"), 429, {},
     {"message": "You exceeded your current quota.", "type": "insufficient_quota", "param": None,
      "code": "insufficient_quota"}),
    (ProxyError(ErrorKind.api_error, "Upstream failed."), 500, {},
     {"message": "Upstream failed.", "type": "server_error", "param": None, "code": None}),
    (ProxyError(ErrorKind.bad_gateway, "Malformed reply."), 502, {},
     {"message": "Malformed reply.", "type": "server_error", "param": None, "code": None}),
    (ProxyError(ErrorKind.overloaded, "Overloaded.", status=529, retry_after="2"), 503, {"Retry-After": "2"},
     {"message": "Overloaded.", "type": "service_unavailable_error", "param": None, "code": None}),
    (ProxyError(ErrorKind.timeout, "Upstream timed out."), 504, {},
     {"message": "Upstream timed out.", "type": "timeout_error", "param": None, "code": None}),
    (ProxyError(ErrorKind.configuration, "No API key configured for backend openai."), 500, {},
     {"message": "No API key configured for backend openai.", "type": "configuration_error", "param": None,
      "code": "configuration_error"}),
]


@pytest.mark.parametrize("err,status,extra_headers,envelope", ERROR_RENDERINGS,
                         ids=[e[0].kind.value + str(i) for i, e in enumerate(ERROR_RENDERINGS)])
def test_format_error(err, status, extra_headers, envelope):
    assert oc.format_error(err) == (status, {"Content-Type": "application/json", **extra_headers},
                                    json.dumps({"error": envelope}, separators=(",", ":")).encode())


def test_format_models():
    models = [ModelInfo("gpt-4o", "openai", "openai", created=1686935002, owned_by="system"),
              ModelInfo("claude-sonnet-4", "anthropic", "anthropic")]
    assert oc.format_models(models) == {"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created": 1686935002, "owned_by": "system"},
        {"id": "claude-sonnet-4", "object": "model", "created": 0, "owned_by": "interchange"}]}


# ====================================================================
# build_request / passthrough_request
# ====================================================================

def test_build_request_minimal_call():
    upstream = built(oc, ir_request(), TARGET)
    assert (upstream.method, upstream.url, upstream.stream) == ("POST", "https://api.openai.com/v1/chat/completions",
                                                                False)
    assert dict(upstream.headers) == {"Content-Type": "application/json", "Authorization": "Bearer sk-test-key"}
    assert upstream_json(upstream) == {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "Hi"}]}


def test_forwarded_headers_never_override_ours_and_a_missing_key_is_a_configuration_error():
    target = Upstream("local", "http://localhost:8000/v1", "llama", api_key="sk-ours",
                      headers={"OpenAI-Organization": "org-1", "content-type": "text/plain",
                               "authorization": "Bearer client-key"})
    assert dict(built(oc, ir_request(), target).headers) == {
        "OpenAI-Organization": "org-1", "Content-Type": "application/json", "Authorization": "Bearer sk-ours"}
    keyless = Upstream("local", "http://localhost:8000/v1", "llama", api_key=None)
    with pytest.raises(ProxyError) as caught:
        built(oc, ir_request(), keyless)
    assert caught.value.kind is ErrorKind.configuration and "'local'" in caught.value.message


def test_build_request_streaming_always_asks_for_usage():
    upstream = built(oc, ir_request(stream=True, include_usage=False), TARGET)
    assert upstream.stream is True
    assert upstream_json(upstream) == {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "Hi"}],
                                       "stream": True, "stream_options": {"include_usage": True}}


def test_build_request_from_a_foreign_conversation():
    # As an Anthropic or Gemini frontend would hand it over: thinking with
    # signatures, text interleaved with calls, images inside tool results.
    req = ir_request(
        model="claude-sonnet-4",
        messages=(
            ir.Message("system", (ir.Text("You are terse."), ir.Text("Use tools."))),
            ir.Message("user", (ir.Text("Weather and a photo?"),)),
            ir.Message("assistant", (
                ir.Thinking("User wants weather.", signature="sig", origin="anthropic"),
                ir.Text("Checking."),
                ir.ToolCall("toolu_1", "get_weather", '{"city":"Oslo"}'),
                ir.Text("And a photo."),
                ir.ToolCall("toolu_2", "get_photo", "{}"))),
            ir.Message("tool", (
                ir.ToolResult("toolu_1", (ir.Text("Sunny"),), "get_weather"),
                ir.ToolResult("toolu_2", (ir.Text("Here:"), ir.Image(data="/9j/4AAQ")), "get_photo", is_error=False))),
            ir.Message("assistant", (ir.Thinking("", redacted="opaque", origin="anthropic"),)),
            ir.Message("user", (ir.Text("Thanks"),)),
        ),
        max_tokens=1024, top_k=40, stop=("a", "b", "c", "d"), n=2,
        reasoning=ir.Reasoning(budget_tokens=4000, include_thoughts=True),
        response_format=ir.ResponseFormat("json_schema", {"type": "object"}),
        tool_choice=ir.ToolChoice("tool", "get_weather"),
        tools=(ir.Tool("get_weather", parameters={"type": "object"}), ir.Tool("get_photo")),
    )
    assert upstream_json(built(oc, req, TARGET)) == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are terse."},
                                           {"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": "Weather and a photo?"},
            {"role": "assistant",
             "content": [{"type": "text", "text": "Checking."}, {"type": "text", "text": "And a photo."}],
             "tool_calls": [
                 {"id": "toolu_1", "type": "function", "function": {"name": "get_weather",
                                                                    "arguments": '{"city":"Oslo"}'}},
                 {"id": "toolu_2", "type": "function", "function": {"name": "get_photo", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Here:"},
            # OpenAI tool messages are text-only: the image follows as a user turn.
            {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
            # the thinking-only assistant turn has nothing OpenAI can carry: dropped
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "get_photo"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_completion_tokens": 1024,
        "stop": ["a", "b", "c", "d"],
        "n": 2,
        "reasoning_effort": "medium",
        "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
    }


def test_build_request_tool_results_inside_a_user_turn_come_first():
    req = ir_request(messages=(
        ir.Message("assistant", (ir.ToolCall("c1", "f", "{}"),)),
        ir.Message("user", (ir.ToolResult("c1", (ir.Text("done"),)), ir.Text("Now summarise."))),
    ))
    assert upstream_json(built(oc, req, TARGET))["messages"] == [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "content": "Now summarise."},
    ]


def test_build_request_maps_long_tool_call_ids_the_same_for_call_and_result():
    long_id = "toolu_" + "x" * 60
    req = ir_request(messages=(
        ir.Message("user", (ir.Text("Hi"),)),
        ir.Message("assistant", (ir.ToolCall(long_id, "f", "{}"), ir.ToolCall("call_short", "g", "{}"))),
        ir.Message("tool", (ir.ToolResult(long_id, (ir.Text("1"),)), ir.ToolResult("call_short", ()))),
    ))
    messages = upstream_json(built(oc, req, TARGET))["messages"]
    mapped = messages[1]["tool_calls"][0]["id"]
    assert mapped == oc.wire_call_id(long_id) == oc.wire_call_id(long_id)  # deterministic
    assert mapped.startswith("call_") and len(mapped) <= 40
    assert messages[1]["tool_calls"][1]["id"] == "call_short"  # short ids are left alone
    assert messages[2:] == [{"role": "tool", "tool_call_id": mapped, "content": "1"},
                            {"role": "tool", "tool_call_id": "call_short", "content": ""}]


def test_build_request_image_forms():
    req = ir_request(messages=(ir.Message("user", (
        ir.Image(data="iVBORw0KGgo=", media_type="image/png", detail="high"),
        ir.Image(url="https://example.com/a.webp"),
        ir.Image(data="R0lGODlh"))),))
    assert upstream_json(built(oc, req, TARGET))["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh"}}]}]


@pytest.mark.parametrize("reasoning,effort", [
    (ir.Reasoning(effort="high"), "high"), (ir.Reasoning(effort="none"), "none"),
    (ir.Reasoning(budget_tokens=512), "low"), (ir.Reasoning(budget_tokens=1024), "low"),
    (ir.Reasoning(budget_tokens=1025), "medium"), (ir.Reasoning(budget_tokens=8192), "medium"),
    (ir.Reasoning(budget_tokens=8193), "high"), (ir.Reasoning(budget_tokens=0), None),
    (ir.Reasoning(budget_tokens=-1), None), (ir.Reasoning(include_thoughts=True), None), (None, None)])
def test_build_request_reasoning_effort(reasoning, effort):
    sent = upstream_json(built(oc, ir_request(reasoning=reasoning), TARGET))
    assert sent.get("reasoning_effort") == effort


def test_build_request_rejects_more_than_four_stop_sequences():
    with pytest.raises(ProxyError) as caught:
        built(oc, ir_request(stop=("a", "b", "c", "d", "e")), TARGET)
    assert (caught.value.status, caught.value.param) == (400, "stop")


def test_build_request_sends_no_tool_settings_without_tools():
    req = ir_request(tool_choice=ir.ToolChoice("none"), parallel_tool_calls=False)
    assert upstream_json(built(oc, req, TARGET)) == {
        "model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "Hi"}]}


def test_passthrough_request_swaps_only_the_model():
    client_body = {"model": "my-alias", "messages": [HI], "logprobs": True, "top_logprobs": 2,
                   "metadata": {"k": "v"}, "max_tokens": 5, "stream": True}
    upstream = built(oc, oc.parse_request(client_body), TARGET, passthrough=True)
    assert (upstream.url, upstream.stream) == ("https://api.openai.com/v1/chat/completions", True)
    assert dict(upstream.headers) == {"Content-Type": "application/json", "Authorization": "Bearer sk-test-key"}
    assert upstream_json(upstream) == {**client_body, "model": "gpt-4o-2024-08-06"}
    assert client_body["model"] == "my-alias"  # the client's dict is not modified


# ====================================================================
# opaque parts and tools: kept for OpenAI, a 400 naming the field elsewhere
# ====================================================================

AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
FILE_PART = {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
CUSTOM_TOOL = {"type": "custom", "custom": {"name": "run_sql", "description": "Raw SQL",
                                            "format": {"type": "text"}}}
CUSTOM_CALL = {"id": "call_sql", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}
CUSTOM_HISTORY = body(tools=[CUSTOM_TOOL], messages=[
    HI, assistant_calls(CUSTOM_CALL), {"role": "tool", "tool_call_id": "call_sql", "content": "1"}])
OTHER_BACKENDS = [
    ("anthropic", Upstream(backend="claude", base_url="https://api.anthropic.test", model="claude-x"), "an Anthropic"),
    ("gemini", Upstream(backend="gem", base_url="https://gemini.test", model="gemini-2.5-flash"), "a Gemini"),
]

OPAQUE_CASES = [
    # (client body, the Opaque parts parse_request keeps, where each lands in the built body, capabilities)
    pytest.param(with_messages({"role": "user", "content": [{"type": "text", "text": "Transcribe, then summarise:"},
                                                            AUDIO_PART, FILE_PART]}),
                 [ir.Opaque("openai", "input_audio part", AUDIO_PART, "messages[0].content[1]"),
                  ir.Opaque("openai", "file part", FILE_PART, "messages[0].content[2]")],
                 [("messages", 0, "content", 1), ("messages", 0, "content", 2)], {"text"}, id="audio-and-file"),
    pytest.param(with_messages({"role": "user", "content": [FILE_PART]}),
                 [ir.Opaque("openai", "file part", FILE_PART, "messages[0].content[0]")],
                 [("messages", 0, "content", 0)], {"text"}, id="file"),
    pytest.param(body(tools=[WEATHER_TOOL, CUSTOM_TOOL]),
                 [ir.Opaque("openai", "custom tool", CUSTOM_TOOL, "tools[1]")],
                 [("tools", 1)], {"text", "tools"}, id="custom-tool"),
    pytest.param(CUSTOM_HISTORY,
                 [ir.Opaque("openai", "custom tool call", CUSTOM_CALL, "messages[1].tool_calls[0]"),
                  ir.Opaque("openai", "custom tool", CUSTOM_TOOL, "tools[0]")],
                 [("messages", 1, "tool_calls", 0), ("tools", 0)], {"text", "tools"}, id="custom-tool-call"),
]


def _opaques(req: ir.Request) -> list[ir.Opaque]:
    parts = [p for m in req.messages for p in m.parts if isinstance(p, ir.Opaque)]
    return parts + [t.native for t in req.tools if t.native is not None]


def _at(doc: dict, path: tuple) -> object:
    for key in path:
        doc = doc[key]
    return doc


@pytest.mark.parametrize("request_body, opaques, paths, capabilities", OPAQUE_CASES)
def test_parts_and_tools_without_ir_form_are_kept_opaque(request_body, opaques, paths, capabilities):
    req = oc.parse_request(request_body)
    assert _opaques(req) == opaques
    assert req.capabilities() == capabilities  # an opaque part needs nothing; an opaque tool is a tool
    # An OpenAI backend gets each one back as sent, in place.
    upstream = built(oc, req, TARGET)
    wire_body = upstream_json(upstream)
    for opaque, path in zip(opaques, paths):
        assert _at(wire_body, path) == opaque.data
        assert json.dumps(opaque.data, separators=(",", ":")).encode() in upstream.body
    assert wire_body["messages"] == request_body["messages"]  # every turn as the client sent it, in order
    # Any other backend: a 400 naming the field in the client's (OpenAI) terms.
    for name, target, backend_label in OTHER_BACKENDS:
        with pytest.raises(ProxyError) as caught:
            built(protocol_module(name), req, target)
        assert (caught.value.kind, caught.value.status, caught.value.param) == (
            ErrorKind.invalid_request, 400, opaques[0].where)
        assert caught.value.message == f"{opaques[0].kind} cannot be sent to {backend_label} backend"


def test_a_custom_tool_call_result_pairs_by_id():
    req = oc.parse_request(CUSTOM_HISTORY)
    assert req.messages[2] == ir.Message("tool", (ir.ToolResult("call_sql", (ir.Text("1"),), name="run_sql"),))
    assert req.tools == (ir.Tool("run_sql", native=ir.Opaque("openai", "custom tool", CUSTOM_TOOL, "tools[0]")),)


# ====================================================================
# parse_response / parse_error
# ====================================================================

def test_parse_response_tool_calls_and_usage():
    reply = {
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1760000000, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "refusal": None, "annotations": [],
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                  "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": 0}},
    }
    assert oc.parse_response(json.dumps(reply).encode(), ir_request()) == ir.Response(
        id="chatcmpl-9", model="gpt-4o-2024-08-06",
        parts=(ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}'), ir.ToolCall("call_2", "get_time", "")),
        finish_reason=ir.FinishReason.tool_calls,
        usage=ir.Usage(input_tokens=82, output_tokens=17, reasoning_tokens=8, cache_read_tokens=64),
        raw_finish_reason="tool_calls",
    )


def test_parse_response_text_refusal_and_reasoning_content():
    reply = {"id": "chatcmpl-1", "model": "deepseek-reasoner", "choices": [{"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "reasoning_content": "Thinking...", "content": "",
                         "refusal": "I can't help with that."}}]}
    assert oc.parse_response(json.dumps(reply).encode(), ir_request()) == ir.Response(
        id="chatcmpl-1", model="deepseek-reasoner",
        parts=(ir.Thinking("Thinking..."), ir.Refusal("I can't help with that.")),
        raw_finish_reason="stop")


def test_parse_response_tool_call_turn_reported_as_stop_is_a_tool_call_turn():
    # Known gateway bug #7: some OpenAI-compatible servers say "stop" here.
    reply = {"id": "x", "model": "llama3", "choices": [{"finish_reason": "stop", "message": {
        "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}]}
    resp = oc.parse_response(json.dumps(reply).encode(), ir_request())
    assert resp.finish_reason is ir.FinishReason.tool_calls
    assert [(type(p), p.name, p.arguments) for p in resp.parts] == [(ir.ToolCall, "f", '{"a":1}')]
    assert resp.parts[0].id.startswith("call_")  # synthesized, deterministic
    assert oc.parse_response(json.dumps(reply).encode(), ir_request()).parts[0].id == resp.parts[0].id


@pytest.mark.parametrize("reply", [b"<html>oops</html>", b"[]", b"{}", b'{"choices":[]}',
                                   b'{"choices":[{"index":0}]}', b'{"choices":[{"message":{"tool_calls":[{}]}}]}'])
def test_parse_response_malformed_body_is_a_bad_gateway(reply):
    with pytest.raises(ProxyError) as caught:
        oc.parse_response(reply, ir_request())
    assert (caught.value.kind, caught.value.status) == (ErrorKind.bad_gateway, 502)
    assert caught.value.message.startswith("Upstream returned a malformed chat completion")


def test_parse_response_error_envelope_in_a_200_body():
    reply = b'{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}'
    with pytest.raises(ProxyError) as caught:
        oc.parse_response(reply, ir_request())
    assert (caught.value.kind, caught.value.code) == (ErrorKind.rate_limit, "rate_limit_exceeded")


def envelope(message, type_, param=None, code=None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


UPSTREAM_ERRORS = [
    # (status, headers, body) -> (kind, message, param, code, retry_after)
    ((401, {}, envelope("Incorrect API key provided: sk-proj-abcdefghijklmnop1234. You can find your API key "
                        "at https://platform.openai.com/account/api-keys.", "invalid_request_error",
                        code="invalid_api_key")),
     # the key never reaches the client
     (ErrorKind.authentication, "Incorrect API key provided: sk-proj…[REDACTED]. You can find your API key at "
                                "https://platform.openai.com/account/api-keys.", None, "invalid_api_key", None)),
    ((400, {}, envelope("This model's maximum context length is 128000 tokens.", "invalid_request_error",
                        "messages", "context_length_exceeded")),
     (ErrorKind.invalid_request, "This model's maximum context length is 128000 tokens.", "messages",
      "context_length_exceeded", None)),
    ((404, {}, envelope("The model `gpt-x` does not exist or you do not have access to it.",
                        "invalid_request_error", code="model_not_found")),
     (ErrorKind.not_found, "The model `gpt-x` does not exist or you do not have access to it.", None,
      "model_not_found", None)),
    ((429, {"retry-after": "20"}, envelope("Rate limit reached for requests", "requests", code="rate_limit_exceeded")),
     (ErrorKind.rate_limit, "Rate limit reached for requests", None, "rate_limit_exceeded", "20")),
    ((429, {"Retry-After-Ms": "1500"}, envelope("You exceeded your current quota.", "insufficient_quota",
                                                code="insufficient_quota")),
     (ErrorKind.rate_limit, "You exceeded your current quota.", None, "insufficient_quota", "2")),
    ((403, {}, envelope("Country, region, or territory not supported", "request_forbidden",
                        code="unsupported_country_region_territory")),
     (ErrorKind.permission, "Country, region, or territory not supported", None,
      "unsupported_country_region_territory", None)),
    ((500, {}, envelope("The server had an error while processing your request.", "server_error")),
     (ErrorKind.api_error, "The server had an error while processing your request.", None, None, None)),
    ((503, {}, envelope("That model is currently overloaded.", "server_error", code="server_is_overloaded")),
     (ErrorKind.overloaded, "That model is currently overloaded.", None, "server_is_overloaded", None)),
    ((502, {}, b"<html><body>Bad Gateway</body></html>"),
     (ErrorKind.bad_gateway, "Upstream returned HTTP 502: <html><body>Bad Gateway</body></html>", None, None, None)),
    ((504, {}, b""), (ErrorKind.timeout, "Upstream returned HTTP 504.", None, None, None)),
    ((422, {}, b'{"detail":"Input should be a valid list"}'),  # FastAPI-style servers
     (ErrorKind.invalid_request, "Input should be a valid list", None, None, None)),
    ((400, {}, b'{"error":"model is required"}'),  # Ollama-style
     (ErrorKind.invalid_request, "model is required", None, None, None)),
]


@pytest.mark.parametrize("reply,expected", UPSTREAM_ERRORS, ids=[str(r[0][0]) for r in UPSTREAM_ERRORS])
def test_parse_error(reply, expected):
    err = oc.parse_error(*reply)
    assert (err.kind, err.message, err.param, err.code, err.retry_after) == expected


# ====================================================================
# StreamParser
# ====================================================================

def parse_stream(chunks: list[bytes], req: ir.Request | None = None) -> list[ir.Event]:
    return stream_events(oc.StreamParser(req or ir_request(stream=True)), chunks)


def parse_frames(frames, req: ir.Request | None = None) -> list[ir.Event]:
    parser = oc.StreamParser(req or ir_request(stream=True))
    events: list[ir.Event] = []
    for frame in frames:
        events += parser.feed(frame)
    return events + parser.close()


def assert_well_formed(events: list[ir.Event]) -> None:
    """The IR stream contract: start first, terminal last, one open part at a
    time, every delta inside its own part, part indices increasing."""
    assert isinstance(events[0], ir.MessageStart)
    assert isinstance(events[-1], (ir.MessageStop, ir.StreamError))
    assert not any(isinstance(e, (ir.MessageStart, ir.MessageStop, ir.StreamError)) for e in events[1:-1])
    open_index, last_index = None, -1
    for e in events[1:-1]:
        if isinstance(e, ir.PartStart):
            assert open_index is None and e.index > last_index
            open_index = last_index = e.index
        elif isinstance(e, ir.PartStop):
            assert e.index == open_index
            open_index = None
        else:
            assert e.index == open_index
    if isinstance(events[-1], ir.MessageStop):
        assert open_index is None


CHUNK_HEAD = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}


def chunk(delta=None, finish=None, **extra) -> Frame:
    choices = [] if delta is None and finish is None else [
        {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    return Frame(None, json.dumps({**CHUNK_HEAD, "choices": choices, **extra}))


ROLE = chunk({"role": "assistant", "content": ""})
ROLE_NULL = chunk({"role": "assistant", "content": None})
DONE = Frame(None, "[DONE]")


def call_start(index, call_id, name):
    return chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": ""}}]})


def call_args(index, fragment):
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})


# ------------------------------------------------------- real recorded streams

def _resp(id_, parts, finish, usage, raw_finish):
    return ir.Response(id=id_, model="gpt-4o-2024-08-06", parts=parts, finish_reason=finish, usage=usage,
                       raw_finish_reason=raw_finish)


REAL_STREAMS = {
    "text.sse": _resp(
        "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL",
        (ir.Text("I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
                 "I recommend checking a reliable weather website or a weather app."),),
        ir.FinishReason.stop, ir.Usage(14, 30), "stop"),
    "content_logprobs.sse": _resp(
        "chatcmpl-ABfw5EzoqmfXjnnsXY7Yd8OC6tb3c", (ir.Text("Foo!"),), ir.FinishReason.stop, ir.Usage(9, 2), "stop"),
    "finish_length.sse": _resp(
        "chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh", (ir.Text('{"'),), ir.FinishReason.length, ir.Usage(79, 1),
        "length"),
    "n3_interleaved.sse": _resp(  # n=3: only choice 0 is mapped
        "chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq",
        (ir.Text('{"city":"San Francisco","temperature":65,"units":"f"}'),),
        ir.FinishReason.stop, ir.Usage(79, 42), "stop"),
    "refusal.sse": _resp(
        "chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7", (ir.Refusal("I'm sorry, I can't assist with that request."),),
        ir.FinishReason.stop, ir.Usage(79, 11), "stop"),
    "single_tool_call.sse": _resp(
        "chatcmpl-ABfwERreu9s99xXsVuOWtIB2UOx62",
        (ir.ToolCall("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}'),),
        ir.FinishReason.tool_calls, ir.Usage(44, 16), "tool_calls"),
    "parallel_tool_calls.sse": _resp(
        "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63",
        (ir.ToolCall("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs",
                     '{"city": "Edinburgh", "country": "GB", "units": "c"}'),
         ir.ToolCall("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price",
                     '{"ticker": "AAPL", "exchange": "NASDAQ"}')),
        ir.FinishReason.tool_calls, ir.Usage(149, 60), "tool_calls"),
}


def test_every_real_openai_stream_has_an_expectation(real_samples):
    recorded = {p.name for p in (real_samples / "openai-chat-streams").glob("*.sse")}
    assert recorded == set(REAL_STREAMS)


def _frames(pieces: list[bytes]) -> tuple[Frame, ...]:
    framer = SSEFramer()
    frames = [f for piece in pieces for f in framer.feed(piece)]
    return tuple(frames + framer.close())


@lru_cache(maxsize=None)
def _events_for(frames: tuple[Frame, ...]) -> tuple[ir.Event, ...]:
    return tuple(parse_frames(frames))


@pytest.mark.parametrize("name", sorted(REAL_STREAMS))
def test_real_stream_parses_identically_at_every_split(real_samples, name):
    data = (real_samples / "openai-chat-streams" / name).read_bytes()
    whole = list(_events_for(_frames([data])))
    assert_well_formed(whole)
    assert ir.response_from_events(whole) == REAL_STREAMS[name]
    # The parser sees only frames, so equal frames give equal events: compare
    # frame sequences at every split and parse each distinct one (memoised).
    for pieces in every_split(data):
        assert list(_events_for(_frames(pieces))) == whole


def test_real_single_tool_call_arguments_parse_as_json(real_samples):
    data = (real_samples / "openai-chat-streams" / "single_tool_call.sse").read_bytes()
    (call,) = ir.response_from_events(parse_stream([data])).parts
    assert (call.name, call.arguments_object()) == ("get_weather", {"city": "New York City"})


def test_real_parallel_tool_calls_keep_index_order(real_samples):
    data = (real_samples / "openai-chat-streams" / "parallel_tool_calls.sse").read_bytes()
    events = parse_stream([data])
    starts = [(e.index, e.id, e.name) for e in events if isinstance(e, ir.PartStart)]
    assert starts == [(0, "call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs"),
                      (1, "call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price")]
    calls = ir.response_from_events(events).parts
    assert [c.arguments_object() for c in calls] == [
        {"city": "Edinburgh", "country": "GB", "units": "c"}, {"ticker": "AAPL", "exchange": "NASDAQ"}]


def test_real_stream_cut_before_its_end_is_an_error(real_samples):
    data = (real_samples / "openai-chat-streams" / "text.sse").read_bytes()
    finish_at = data.index(b'"finish_reason":"stop"')
    between_frames = data[:data.rindex(b"data: ", 0, finish_at)]
    events = parse_stream([between_frames])
    assert_well_formed(events)
    assert isinstance(events[-1], ir.StreamError)
    assert (events[-1].error.kind, events[-1].error.message) == (ErrorKind.bad_gateway,
                                                                 "upstream stream ended before completion")
    # Cut inside a line: the framer hands over the partial frame at close.
    inside_a_line = parse_stream([data[:finish_at]])
    assert_well_formed(inside_a_line)
    assert isinstance(inside_a_line[-1], ir.StreamError)
    assert inside_a_line[-1].error.kind is ErrorKind.bad_gateway


# ------------------------------------------------------- exact event sequences

def test_text_stream_events():
    events = parse_frames([ROLE, chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop"),
                           chunk(usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                        "prompt_tokens_details": {"cached_tokens": 4}}), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Hel"), ir.TextDelta(0, "lo"), ir.PartStop(0),
        ir.MessageStop(ir.FinishReason.stop, ir.Usage(9, 2, cache_read_tokens=4), raw_finish_reason="stop"),
    ]


def test_known_bug_1_empty_tool_calls_beside_text_opens_no_tool_part():
    events = parse_frames([chunk({"role": "assistant", "content": "", "tool_calls": []}),
                           chunk({"content": "Hi", "tool_calls": []}),
                           chunk({"content": " there", "tool_calls": None}), chunk({}, "stop"), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Hi"), ir.TextDelta(0, " there"), ir.PartStop(0),
        ir.MessageStop(ir.FinishReason.stop, raw_finish_reason="stop"),
    ]


def test_whitespace_alone_never_becomes_a_part():
    # Known gateway bug #13: a blank text block later breaks Anthropic/Bedrock history.
    events = parse_frames([ROLE, chunk({"content": "\n\n"}), call_start(0, "c1", "f"), call_args(0, "{}"),
                           chunk({"content": " "}), chunk({}, "tool_calls"), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "tool_call", id="c1", name="f"), ir.ToolArgumentsDelta(0, "{}"), ir.PartStop(0),
        ir.MessageStop(ir.FinishReason.tool_calls, raw_finish_reason="tool_calls"),
    ]
    # ...but leading whitespace of real text is kept.
    text = parse_frames([ROLE, chunk({"content": "\n"}), chunk({"content": "Hi"}), chunk({}, "stop"), DONE])
    assert ir.response_from_events(text).parts == (ir.Text("\nHi"),)


def test_text_then_two_tool_calls():
    events = parse_frames([ROLE, chunk({"content": "Let me check."}),
                           call_start(0, "call_a", "get_weather"), call_args(0, '{"ci'), call_args(0, 'ty":"Oslo"}'),
                           call_start(1, "call_b", "get_time"), call_args(1, "{}"),
                           chunk({}, "tool_calls"), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Let me check."), ir.PartStop(0),
        ir.PartStart(1, "tool_call", id="call_a", name="get_weather"),
        ir.ToolArgumentsDelta(1, '{"ci'), ir.ToolArgumentsDelta(1, 'ty":"Oslo"}'), ir.PartStop(1),
        # a second call is held back until the finish: the first might still get fragments
        ir.PartStart(2, "tool_call", id="call_b", name="get_time"), ir.ToolArgumentsDelta(2, "{}"), ir.PartStop(2),
        ir.MessageStop(ir.FinishReason.tool_calls, raw_finish_reason="tool_calls"),
    ]


def test_interleaved_tool_fragments_are_keyed_by_index_not_arrival():
    events = parse_frames([ROLE_NULL, call_start(0, "call_a", "f"), call_start(1, "call_b", "g"),
                           call_args(1, '{"b":'), call_args(0, '{"a":'), call_args(1, "2}"), call_args(0, "1}"),
                           chunk({"content": "Done."}), chunk({}, "tool_calls"), DONE])
    assert_well_formed(events)
    assert ir.response_from_events(events).parts == (
        ir.ToolCall("call_a", "f", '{"a":1}'), ir.ToolCall("call_b", "g", '{"b":2}'), ir.Text("Done."))


def test_several_calls_in_one_chunk_and_calls_without_index():
    both = chunk({"tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}}]})
    assert ir.response_from_events(parse_frames([ROLE_NULL, both, chunk({}, "tool_calls"), DONE])).parts == (
        ir.ToolCall("call_a", "f", "{}"), ir.ToolCall("call_b", "g", '{"x":1}'))
    # Some compatible servers omit `index` (or number every call 0 with new ids).
    no_index = [ROLE_NULL,
                chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
                chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
                chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),
                chunk({}, "stop"), DONE]
    resp = ir.response_from_events(parse_frames(no_index))
    assert (resp.parts, resp.finish_reason) == (
        (ir.ToolCall("c1", "f", '{"a":1}'), ir.ToolCall("c2", "g", "{}")), ir.FinishReason.tool_calls)


def test_reasoning_content_deltas_become_a_thinking_part():
    events = parse_frames([ROLE, chunk({"reasoning_content": "Think"}), chunk({"reasoning_content": "ing."}),
                           chunk({"content": "Answer"}), chunk({}, "stop"), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Think"), ir.ThinkingDelta(0, "ing."), ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "Answer"), ir.PartStop(1),
        ir.MessageStop(ir.FinishReason.stop, raw_finish_reason="stop"),
    ]


def test_azure_filter_chunks_and_null_usage_are_tolerated():
    prompt_filter = Frame(None, json.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                            "prompt_filter_results": [{"prompt_index": 0,
                                                                       "content_filter_results": {}}]}))
    no_delta = chunk(usage=None, choices=[{"index": 0, "finish_reason": None,
                                           "content_filter_results": {"hate": {"filtered": False}}}])
    events = parse_frames([prompt_filter, chunk({"role": "assistant", "content": ""}, usage=None),
                           chunk({"content": "Hi"}, usage=None), no_delta, chunk({}, "stop", usage=None), DONE])
    assert events == [
        ir.MessageStart("chatcmpl-t", "gpt-4o"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Hi"), ir.PartStop(0),
        ir.MessageStop(ir.FinishReason.stop, raw_finish_reason="stop"),
    ]


def test_error_chunk_mid_stream_ends_the_stream():
    error = Frame(None, json.dumps({"error": {"message": "The server had an error processing your request.",
                                              "type": "server_error", "param": None, "code": None}}))
    parser = oc.StreamParser(ir_request())
    events = [e for f in [ROLE, chunk({"content": "Hi"}), error] for e in parser.feed(f)]
    assert events[:3] == [ir.MessageStart("chatcmpl-t", "gpt-4o"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hi")]
    err = events[3].error
    assert (err.kind, err.message) == (ErrorKind.api_error, "The server had an error processing your request.")
    assert parser.feed(chunk({"content": "more"})) == [] and parser.feed(DONE) == [] and parser.close() == []


def test_stream_without_done_or_finish_is_an_error():
    events = parse_frames([ROLE, chunk({"content": "Hel"})])
    assert events[:3] == [ir.MessageStart("chatcmpl-t", "gpt-4o"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hel")]
    assert len(events) == 4 and isinstance(events[3], ir.StreamError)
    assert (events[3].error.kind, events[3].error.message) == (ErrorKind.bad_gateway,
                                                               "upstream stream ended before completion")


def test_stream_with_finish_but_no_done_still_completes():
    events = parse_frames([ROLE, chunk({"content": "Hi"}), chunk({}, "length")])
    assert events[-1] == ir.MessageStop(ir.FinishReason.length, raw_finish_reason="length")
    assert_well_formed(events)


def test_malformed_chunk_is_an_error():
    events = parse_frames([ROLE, Frame(None, '{"choices": [')])
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is ErrorKind.bad_gateway


def test_finish_reason_stop_with_tool_calls_reports_tool_calls():
    events = parse_frames([ROLE_NULL, call_start(0, "c1", "f"), call_args(0, "{}"), chunk({}, "stop"), DONE])
    assert events[-1] == ir.MessageStop(ir.FinishReason.tool_calls, raw_finish_reason="stop")
