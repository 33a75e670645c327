"""Anthropic Messages protocol module, specified by example.

Each test feeds a wire fixture (or IR values) in and asserts the whole shape
that comes out. Sections follow the module: frontend (parse_request,
format_response, StreamFormatter, format_error, format_models), then backend
(build_request, passthrough_request, parse_response, StreamParser,
parse_error). Real recorded traffic comes from ../shared/real-samples.
"""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import anthropic, protocol_module
from app.protocols.base import ModelInfo, UpstreamRequest
from app.upstream.framing import Frame
from tests.upstream_call import Upstream, built
from tests.conftest import every_split, stream_events

TARGET = Upstream(backend="claude", base_url="https://api.anthropic.test", model="claude-sonnet-4-5",
                api_key="sk-ant-test-key-0001")


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message("user", parts)


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message("assistant", parts)


def tool(*results: ir.ToolResult) -> ir.Message:
    return ir.Message("tool", results)


def system(text: str) -> ir.Message:
    return ir.Message("system", (ir.Text(text),))


def request(*messages: ir.Message, **fields) -> ir.Request:
    """An IR request as another frontend (OpenAI) would hand it over."""
    fields.setdefault("model", "my-claude")
    fields.setdefault("protocol", "openai")
    return ir.Request(messages=messages or (user(ir.Text("Hi")),), **fields)


def sent(req: ir.Request, target: Upstream = TARGET) -> dict:
    """The JSON body build_request would send."""
    return json.loads(built(anthropic, req, target).body)


def frames(*pairs: tuple[str, str]) -> bytes:
    """Expected SSE bytes: `event:` + `data:` lines per pair, blank line after each."""
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in pairs)


def render(events: list[ir.Event], req: ir.Request | None = None) -> bytes:
    formatter = anthropic.StreamFormatter(req or request())
    return b"".join(formatter.feed(e) for e in events) + formatter.finish()


def parse_stream(chunks: list[bytes], req: ir.Request | None = None) -> list[ir.Event]:
    return stream_events(anthropic.StreamParser(req or request()), chunks)


def wire_events(*payloads: dict) -> bytes:
    """An upstream Anthropic stream made of these event payloads."""
    return b"".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads)


MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_01S", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}
MESSAGE_STOP = {"type": "message_stop"}


def message_delta(stop_reason: str, **usage) -> dict:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage or {"output_tokens": 5}}


def block_start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


# =========================================================== parse_request


MINIMAL = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

FULL_BODY = {
    "model": "claude-x",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "You are terse."},
               {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Paris and Oslo?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/map.jpg"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "", "signature": "EqQBCkYIBxgCKkB+sig=="},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"},
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": True, "content": [
                {"type": "text", "text": "station offline"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}]},
            {"type": "text", "text": "Which is warmer?"}]},
    ],
    "tools": [{"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "temperature": 0.3,
    "top_p": 0.9,
    "top_k": 40,
    "stop_sequences": ["END"],
    "stream": True,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "user-42"},
}


def test_parse_minimal_request():
    req = anthropic.parse_request(MINIMAL)
    assert req == ir.Request(model="claude-x", messages=(user(ir.Text("Hello")),), protocol="anthropic",
                             max_tokens=100)
    assert req.raw is MINIMAL


def test_parse_full_request():
    """System hoisted, images, thinking (signature-only kept), parallel calls,
    results split from the trailing text, and every sampling field."""
    req = anthropic.parse_request(FULL_BODY)
    assert req == ir.Request(
        model="claude-x",
        protocol="anthropic",
        messages=(
            ir.Message("system", (ir.Text("You are terse."), ir.Text("Answer in French."))),
            user(ir.Text("Weather in Paris and Oslo?"),
                 ir.Image(data="iVBORw0KGgo=", media_type="image/png"),
                 ir.Image(url="https://example.com/map.jpg")),
            assistant(ir.Thinking("", "EqQBCkYIBxgCKkB+sig==", origin="anthropic"),
                      ir.Thinking(redacted="EmwKAhgBEgy3va", origin="anthropic"),
                      ir.Text("Checking both."),
                      ir.ToolCall("toolu_01A", "get_weather", '{"city":"Paris"}'),
                      ir.ToolCall("toolu_01B", "get_weather", '{"city":"Oslo"}')),
            tool(ir.ToolResult("toolu_01A", (ir.Text("18C, sunny"),), name="get_weather"),
                 ir.ToolResult("toolu_01B", (ir.Text("station offline"),
                                             ir.Image(data="/9j/4AAQ", media_type="image/jpeg")),
                               name="get_weather", is_error=True)),
            user(ir.Text("Which is warmer?")),
        ),
        tools=(ir.Tool("get_weather", "Weather by city", WEATHER_SCHEMA),),
        tool_choice=ir.ToolChoice("required"),
        parallel_tool_calls=False,
        max_tokens=2048,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop=("END",),
        stream=True,
        reasoning=ir.Reasoning(budget_tokens=1024, include_thoughts=True),
        user="user-42",
    )


def test_url_stream_overrides_the_body_and_url_model_fills_a_missing_one():
    req = anthropic.parse_request({**MINIMAL, "stream": True}, model="from-url", stream=False)
    assert (req.model, req.stream) == ("claude-x", False)
    assert anthropic.parse_request({k: v for k, v in MINIMAL.items() if k != "model"}, model="from-url").model \
        == "from-url"


def test_tool_results_are_one_tool_message_then_the_rest_of_the_turn():
    body = {**MINIMAL, "messages": [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "b", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1"},
            {"type": "text", "text": "note"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "two"}]}]}
    assert anthropic.parse_request(body).messages[2:] == (
        tool(ir.ToolResult("t1", (), name="a"), ir.ToolResult("t2", (ir.Text("two"),), name="b")),
        user(ir.Text("note")),
    )


def test_empty_and_whitespace_text_is_dropped():
    """Known-gateway-bugs #13: empty text never reaches the IR (nor, so, any backend)."""
    body = {**MINIMAL, "messages": [
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Go"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "  \n"},
                                          {"type": "tool_use", "id": "t1", "name": "a", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": " "}]},
        {"role": "assistant", "content": "   "},
        {"role": "user", "content": "Thanks"}]}
    assert anthropic.parse_request(body).messages == (
        user(ir.Text("Go")),
        assistant(ir.ToolCall("t1", "a", "{}")),
        tool(ir.ToolResult("t1", (), name="a")),
        user(ir.Text("Thanks")),
    )


def test_recorded_sdk_request_parses(real_samples):
    """The second request of a recorded tool loop (with the SDK's extra `caller` key)."""
    exchange = json.loads((real_samples / "anthropic-exchanges" / "tool_loop_streaming.json").read_text())
    req = anthropic.parse_request(exchange[1]["request"]["body"])
    assert req.messages == (
        user(ir.Text("What is the weather in SF?")),
        assistant(ir.ToolCall("toolu_018acGYLtfR52q9yDbWaEdQZ", "get_weather",
                              '{"location":"San Francisco, CA","units":"f"}')),
        tool(ir.ToolResult("toolu_018acGYLtfR52q9yDbWaEdQZ", (ir.Text(
            '{"location": "San Francisco, CA", "temperature": "68\\u00b0F", "condition": "Sunny"}'),),
            name="get_weather")),
    )
    assert (req.stream, req.max_tokens, req.tools[0].name) == (True, 1024, "get_weather")


@pytest.mark.parametrize("tool_choice, expected", [
    ({"type": "auto"}, (ir.ToolChoice("auto"), None)),
    ({"type": "any"}, (ir.ToolChoice("required"), None)),
    ({"type": "tool", "name": "get_weather"}, (ir.ToolChoice("tool", "get_weather"), None)),
    ({"type": "none"}, (ir.ToolChoice("none"), None)),
    ({"type": "auto", "disable_parallel_tool_use": True}, (ir.ToolChoice("auto"), False)),
])
def test_tool_choice(tool_choice, expected):
    req = anthropic.parse_request({**MINIMAL, "tool_choice": tool_choice})
    assert (req.tool_choice, req.parallel_tool_calls) == expected


@pytest.mark.parametrize("fields, expected", [
    ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, ir.Reasoning(budget_tokens=4000, include_thoughts=True)),
    ({"thinking": {"type": "enabled", "budget_tokens": 4000, "display": "omitted"}},
     ir.Reasoning(budget_tokens=4000, include_thoughts=False)),
    # adaptive: the model decides, so a backend without thinking serves it without (optional)
    ({"thinking": {"type": "adaptive"}}, ir.Reasoning(effort="medium", include_thoughts=True, optional=True)),
    ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
     ir.Reasoning(effort="high", include_thoughts=True, optional=True)),
    ({"output_config": {"effort": "low"}}, ir.Reasoning(effort="low")),
    ({"thinking": {"type": "disabled"}}, None),
])
def test_thinking_and_effort(fields, expected):
    assert anthropic.parse_request({**MINIMAL, **fields}).reasoning == expected


def test_output_config_format_is_a_json_schema_response_format():
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    req = anthropic.parse_request({**MINIMAL, "output_config": {"format": {"type": "json_schema", "schema": schema}}})
    assert req.response_format == ir.ResponseFormat("json_schema", schema=schema)


def _messages(*messages: dict) -> dict:
    return {**MINIMAL, "messages": list(messages)}


def _without(key: str) -> dict:
    return {k: v for k, v in MINIMAL.items() if k != key}


_CALL = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}}]}
_HI = {"role": "user", "content": "Hi"}


@pytest.mark.parametrize("body, param", [
    (_without("model"), "model"),
    ({**MINIMAL, "model": 7}, "model"),
    (_without("max_tokens"), "max_tokens"),
    ({**MINIMAL, "max_tokens": "100"}, "max_tokens"),
    ({**MINIMAL, "max_tokens": 0}, "max_tokens"),
    (_without("messages"), "messages"),
    ({**MINIMAL, "messages": {"role": "user"}}, "messages"),
    ({**MINIMAL, "messages": []}, "messages"),
    (_messages("hello"), "messages.0"),
    (_messages({"role": "developer", "content": "Be nice"}), "messages.0.role"),
    (_messages({"role": "user", "content": "Hi"}, {"role": "system", "content": [{"type": "image"}]}),
     "messages.1.content.0.type"),
    (_messages({"role": "user", "content": [{"type": "mid_conv_system", "content": "Be nice"}]}),
     "messages.0.content.0.content"),
    (_messages({"role": "user", "content": [{"type": "mid_conv_system", "content": [{"type": "image"}]}]}),
     "messages.0.content.0.content.0.type"),
    ({**MINIMAL, "context_management": ["clear"]}, "context_management"),
    ({**MINIMAL, "cache_control": "ephemeral"}, "cache_control"),
    (_messages({"role": "user"}), "messages.0.content"),
    (_messages({"role": "user", "content": 5}), "messages.0.content"),
    (_messages({"role": "user", "content": ["text"]}), "messages.0.content.0"),
    (_messages({"role": "user", "content": [{"text": "no type"}]}), "messages.0.content.0.type"),
    (_messages({"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}), "messages.0.content.0.type"),
    (_messages({"role": "user", "content": [{"type": 5}]}), "messages.0.content.0.type"),
    (_messages({"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "a", "input": {}}]}),
     "messages.0.content.0.type"),
    (_messages({"role": "user", "content": [{"type": "text", "text": 5}]}), "messages.0.content.0.text"),
    (_messages({"role": "user", "content": [{"type": "image"}]}), "messages.0.content.0.source"),
    (_messages({"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/bmp", "data": "Qk0="}}]}), "messages.0.content.0.source.media_type"),
    (_messages({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
     "messages.0.content.0.source.type"),
    (_messages(_HI, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": "{}"}]}),
     "messages.1.content.0.input"),
    (_messages(_HI, {"role": "assistant", "content": [{"type": "tool_use", "name": "a", "input": {}}]}),
     "messages.1.content.0.id"),
    (_messages(_HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": 1}]}),
     "messages.1.content.0.signature"),
    (_messages(_HI, {"role": "assistant", "content": [{"type": "redacted_thinking"}]}),
     "messages.1.content.0.data"),
    (_messages(_HI, {"role": "assistant", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}),
     "messages.1.content.0.type"),
    (_messages(_CALL, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_other"}]}),
     "messages.1.content.0.tool_use_id"),
    (_messages({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}),
     "messages.0.content.0.tool_use_id"),
    (_messages(_CALL, {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}),
     "messages.1.content.0.tool_use_id"),
    (_messages(_CALL, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                     "content": [{"type": "tool_use"}]}]}),
     "messages.1.content.0.content.0.type"),
    (_messages(_CALL, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                     "is_error": "yes"}]}),
     "messages.1.content.0.is_error"),
    ({**MINIMAL, "system": 5}, "system"),
    ({**MINIMAL, "system": [{"type": "image"}]}, "system.0.type"),
    ({**MINIMAL, "tools": {"name": "a"}}, "tools"),
    ({**MINIMAL, "tools": [{"type": 5, "name": "web_search"}]}, "tools.0.type"),
    ({**MINIMAL, "tools": [{"name": "a"}]}, "tools.0.input_schema"),
    ({**MINIMAL, "tools": [{"name": "get.weather", "input_schema": {"type": "object"}}]}, "tools.0.name"),
    ({**MINIMAL, "tool_choice": "auto"}, "tool_choice"),
    ({**MINIMAL, "tool_choice": {"type": "required"}}, "tool_choice.type"),
    ({**MINIMAL, "tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({**MINIMAL, "temperature": 1.5}, "temperature"),
    ({**MINIMAL, "temperature": "warm"}, "temperature"),
    ({**MINIMAL, "top_p": 2}, "top_p"),
    ({**MINIMAL, "top_k": -1}, "top_k"),
    ({**MINIMAL, "stop_sequences": "END"}, "stop_sequences"),
    ({**MINIMAL, "stop_sequences": ["END", 3]}, "stop_sequences.1"),
    ({**MINIMAL, "stream": "yes"}, "stream"),
    ({**MINIMAL, "thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({**MINIMAL, "thinking": {"type": "enabled", "budget_tokens": 500}}, "thinking.budget_tokens"),
    ({**MINIMAL, "thinking": {"type": "on"}}, "thinking.type"),
    ({**MINIMAL, "output_config": {"effort": "extreme"}}, "output_config.effort"),
    ({**MINIMAL, "output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
    ({**MINIMAL, "metadata": {"user_id": 5}}, "metadata.user_id"),
])
def test_invalid_requests_are_400_naming_the_field(body, param):
    with pytest.raises(ProxyError) as caught:
        anthropic.parse_request(body)
    assert (caught.value.kind, caught.value.status, caught.value.param) == (ErrorKind.invalid_request, 400, param)


def test_a_body_that_is_not_an_object_is_400():
    with pytest.raises(ProxyError) as caught:
        anthropic.parse_request(["not", "an", "object"])
    assert caught.value.kind is ErrorKind.invalid_request


# ========================================================= format_response


def test_format_response_whole_message():
    resp = ir.Response(
        id="msg_01XYZ", model="my-claude",
        parts=(ir.Thinking("Two cities.", "sig-1", origin="anthropic"),
               ir.Thinking(redacted="opaque==", origin="anthropic"),
               ir.Text("Checking."),
               ir.ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
               ir.ToolCall("call_2", "get_time", "")),
        finish_reason=ir.FinishReason.tool_calls,
        usage=ir.Usage(input_tokens=1000, output_tokens=50, cache_read_tokens=600, cache_write_tokens=100),
    )
    assert anthropic.format_response(resp, request()) == {
        "id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "my-claude",
        "content": [
            {"type": "thinking", "thinking": "Two cities.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        # Anthropic's input_tokens is the uncached part only: 1000 - 600 - 100.
        "usage": {"input_tokens": 300, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 600,
                  "output_tokens": 50},
    }


def test_non_anthropic_ids_become_msg_ids():
    """Known-gateway-bugs #17: never hand an Anthropic client a chatcmpl- id."""
    resp = ir.Response(id="chatcmpl-9", model="m", parts=(ir.Text("Hi"),))
    first = anthropic.format_response(resp, request())["id"]
    assert first == anthropic.format_response(resp, request())["id"]  # deterministic
    assert re.fullmatch(r"msg_[0-9a-f]{24}", first)
    assert re.fullmatch(r"msg_[0-9a-f]{24}", anthropic.message_id(""))


@pytest.mark.parametrize("finish, stop_sequence, expected", [
    (ir.FinishReason.stop, None, ("end_turn", None)),
    (ir.FinishReason.stop, "END", ("stop_sequence", "END")),
    (ir.FinishReason.length, None, ("max_tokens", None)),
    (ir.FinishReason.tool_calls, None, ("tool_use", None)),
    (ir.FinishReason.content_filter, None, ("refusal", None)),
])
def test_stop_reasons(finish, stop_sequence, expected):
    resp = ir.Response(id="msg_1", model="m", parts=(), finish_reason=finish, stop_sequence=stop_sequence)
    out = anthropic.format_response(resp, request())
    assert (out["stop_reason"], out["stop_sequence"]) == expected


def test_unparseable_arguments_render_as_empty_input_and_refusal_as_text():
    resp = ir.Response(id="msg_1", model="m", finish_reason=ir.FinishReason.length,
                       parts=(ir.Refusal("I can't help with that."),
                              ir.ToolCall("toolu_1", "make_file", '{"filename": "tax')))
    assert anthropic.format_response(resp, request())["content"] == [
        {"type": "text", "text": "I can't help with that."},
        {"type": "tool_use", "id": "toolu_1", "name": "make_file", "input": {}},
    ]


def test_other_families_opaque_reasoning_reaches_the_client_tagged_with_its_family():
    resp = ir.Response(id="msg_1", model="m", parts=(
        ir.Thinking("Bedrock thought.", "EqQBbedrock==", origin="bedrock_converse"),
        ir.Thinking("", "gemini-sig-only", origin="gemini"),
        ir.Thinking(redacted="cmVkYWN0ZWQ=", origin="bedrock_converse"),
        ir.Thinking("Anthropic thought.", "EqQBanthropic==", origin="anthropic"),
        ir.Thinking("", None, origin="bedrock_converse"),  # nothing to show
        ir.Text("Done.")))
    assert anthropic.format_response(resp, request())["content"] == [
        {"type": "thinking", "thinking": "Bedrock thought.", "signature": "bedrock_converse:EqQBbedrock=="},
        {"type": "thinking", "thinking": "", "signature": "gemini:gemini-sig-only"},
        {"type": "redacted_thinking", "data": "bedrock_converse:cmVkYWN0ZWQ="},
        {"type": "thinking", "thinking": "Anthropic thought.", "signature": "EqQBanthropic=="},
        {"type": "text", "text": "Done."},
    ]


@pytest.mark.parametrize("block,part", [
    ({"type": "thinking", "thinking": "T", "signature": "bedrock_converse:EqQB+/sig=="},
     ir.Thinking("T", "EqQB+/sig==", origin="bedrock_converse")),
    ({"type": "thinking", "thinking": "", "signature": "gemini:CikB"}, ir.Thinking("", "CikB", origin="gemini")),
    ({"type": "redacted_thinking", "data": "bedrock_converse:cmVk"},
     ir.Thinking(redacted="cmVk", origin="bedrock_converse")),
], ids=["bedrock", "gemini", "bedrock-redacted"])
def test_a_tagged_signature_sent_back_restores_its_family_and_the_body_is_written_afresh(block, part):
    body = {"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": [block, {"type": "text", "text": "Hello"}]},
        {"role": "user", "content": "Again"}]}
    req = anthropic.parse_request(body)
    assert req.messages[1].parts[0] == part
    assert req.raw is None  # another family's: never passed through to an Anthropic backend


@pytest.mark.parametrize("signature", ["EqQBCkYIBxgCKkB+/sig==", "anthropic:EqQB", "Bedrock:upper", "bedrock converse:x",
                                       ":x", "x:"])
def test_an_untagged_signature_is_anthropics_as_it_came(signature):
    body = {"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "T", "signature": signature}]},
        {"role": "user", "content": "Again"}]}
    req = anthropic.parse_request(body)
    assert (req.messages[1].parts[0], req.raw) == (ir.Thinking("T", signature, origin="anthropic"), body)


def test_a_failed_model_is_an_error_not_a_stop():
    resp = ir.Response(id="x", model="m", parts=(), finish_reason=ir.FinishReason.error,
                       raw_finish_reason="MALFORMED_FUNCTION_CALL")
    with pytest.raises(ProxyError) as caught:
        anthropic.format_response(resp, request())
    assert caught.value.kind is ErrorKind.bad_gateway
    assert "MALFORMED_FUNCTION_CALL" in caught.value.message


# ========================================================= StreamFormatter


def test_text_stream_exact_bytes():
    events = [
        ir.MessageStart("msg_01abc", "my-claude", ir.Usage(input_tokens=25, output_tokens=1)),
        ir.PartStart(0, "text"),
        ir.TextDelta(0, ""),  # OpenAI's first `content: ""` must not become anything
        ir.TextDelta(0, "Hello"),
        ir.TextDelta(0, " world"),
        ir.PartStop(0),
        ir.MessageStop(ir.FinishReason.stop, ir.Usage(input_tokens=25, output_tokens=12)),
    ]
    assert render(events) == frames(
        ("message_start", '{"type":"message_start","message":{"id":"msg_01abc","type":"message","role":"assistant",'
                          '"model":"my-claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":'
                          '{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
                          '"output_tokens":1}}}'),
        ("ping", '{"type":"ping"}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":'
                          '{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
                          '"output_tokens":12}}'),
        ("message_stop", '{"type":"message_stop"}'),
    )


THINKING_TOOLS_EVENTS = [
    ir.MessageStart("msg_stream2", "my-claude"),  # prompt usage unknown up front (an OpenAI source)
    ir.PartStart(0, "thinking"),
    ir.ThinkingDelta(0, "Two cities."),
    ir.SignatureDelta(0, "EqQBsig==", origin="anthropic"),
    ir.PartStop(0),
    ir.PartStart(1, "text"),
    ir.TextDelta(1, "Checking both."),
    ir.PartStop(1),
    ir.PartStart(2, "tool_call", id="call_a", name="get_weather"),
    ir.ToolArgumentsDelta(2, ""),
    ir.ToolArgumentsDelta(2, '{"city":'),
    ir.ToolArgumentsDelta(2, '"Paris"}'),
    ir.PartStop(2),
    ir.PartStart(3, "tool_call", id="call_b", name="get_weather"),
    ir.ToolArgumentsDelta(3, '{"city":"Oslo"}'),
    ir.PartStop(3),
    ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(input_tokens=900, output_tokens=80, cache_read_tokens=800)),
]


def test_thinking_text_and_two_tool_calls_stream_exact_bytes():
    """Known-gateway-bugs #2/#4: the arguments arrive as input_json_delta; #5: each
    parallel call is its own block; #11: message_delta repeats the prompt counts."""
    assert render(THINKING_TOOLS_EVENTS) == frames(
        ("message_start", '{"type":"message_start","message":{"id":"msg_stream2","type":"message","role":"assistant",'
                          '"model":"my-claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":'
                          '{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
                          '"output_tokens":1}}}'),
        ("ping", '{"type":"ping"}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":'
                                '{"type":"thinking","thinking":"","signature":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":'
                                '{"type":"thinking_delta","thinking":"Two cities."}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":'
                                '{"type":"signature_delta","signature":"EqQBsig=="}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":'
                                '{"type":"text_delta","text":"Checking both."}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        ("content_block_start", '{"type":"content_block_start","index":2,"content_block":'
                                '{"type":"tool_use","id":"call_a","name":"get_weather","input":{}}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":2,"delta":'
                                '{"type":"input_json_delta","partial_json":"{\\"city\\":"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":2,"delta":'
                                '{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":2}'),
        ("content_block_start", '{"type":"content_block_start","index":3,"content_block":'
                                '{"type":"tool_use","id":"call_b","name":"get_weather","input":{}}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":3,"delta":'
                                '{"type":"input_json_delta","partial_json":"{\\"city\\":\\"Oslo\\"}"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":3}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":'
                          '{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":800,'
                          '"output_tokens":80}}'),
        ("message_stop", '{"type":"message_stop"}'),
    )


def test_formatter_output_reads_back_as_the_same_response():
    """What the formatter writes, this module's own stream parser reads back unchanged."""
    events = parse_stream([render(THINKING_TOOLS_EVENTS)])
    assert ir.response_from_events(events).parts == ir.response_from_events(THINKING_TOOLS_EVENTS).parts
    assert ir.response_from_events(events).usage == ir.Usage(input_tokens=900, output_tokens=80,
                                                             cache_read_tokens=800)


def test_the_official_sdk_reads_the_formatter_stream():
    """The Anthropic SDK's own accumulator, fed our bytes through an in-process transport."""
    sdk = pytest.importorskip("anthropic")
    # The SDK's HTTP library: httpx in older releases, its fork httpx2 in newer ones.
    httpx = pytest.importorskip("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
    body = render(THINKING_TOOLS_EVENTS)
    transport = httpx.MockTransport(lambda _: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body))
    client = sdk.Anthropic(api_key="test", base_url="http://proxy.test", max_retries=0,
                           http_client=httpx.Client(transport=transport))
    with client.messages.stream(model="my-claude", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]) as s:
        message = s.get_final_message()
    assert [(b.type, getattr(b, "signature", None), getattr(b, "input", None)) for b in message.content] == [
        ("thinking", "EqQBsig==", None), ("text", None, None),
        ("tool_use", None, {"city": "Paris"}), ("tool_use", None, {"city": "Oslo"})]
    assert (message.id, message.stop_reason, message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.output_tokens) == ("msg_stream2", "tool_use", 100, 800, 80)


def test_signature_only_thinking_is_streamed():
    """Known-gateway-bugs #8: a thinking block with no text but a signature is kept."""
    out = render([ir.MessageStart("msg_1", "m"), ir.PartStart(0, "thinking"),
                  ir.SignatureDelta(0, "sig-only", origin="anthropic"), ir.PartStop(0)])
    assert out.endswith(frames(
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":'
                                '{"type":"thinking","thinking":"","signature":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":'
                                '{"type":"signature_delta","signature":"sig-only"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    ))


def test_empty_parts_open_no_blocks():
    """Known-gateway-bugs #1: an empty text part (OpenAI `content: ""` next to
    `tool_calls: []`) opens nothing, so the tool call is block 0; a tool call's signature
    (Gemini's) has no slot."""
    out = render([
        ir.MessageStart("msg_1", "m"),
        ir.PartStart(0, "text"), ir.TextDelta(0, ""), ir.PartStop(0),
        ir.PartStart(1, "thinking"), ir.ThinkingDelta(1, ""), ir.PartStop(1),
        ir.PartStart(2, "tool_call", id="call_1", name="lookup"), ir.ToolArgumentsDelta(2, ""),
        ir.SignatureDelta(2, "gemini-sig", origin="gemini"),
        ir.ToolArgumentsDelta(2, '{"q":"x"}'), ir.PartStop(2),
    ])
    assert b'"type":"text"' not in out and b'"type":"thinking"' not in out
    assert b'"index":1' not in out
    assert frames(("content_block_start", '{"type":"content_block_start","index":0,"content_block":'
                                          '{"type":"tool_use","id":"call_1","name":"lookup","input":{}}}'),
                  ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":'
                                          '{"type":"input_json_delta","partial_json":"{\\"q\\":\\"x\\"}"}}')) in out


def test_other_families_signatures_stream_to_the_client_tagged():
    out = render([
        ir.MessageStart("msg_1", "m"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Think."),
        ir.SignatureDelta(0, "EqQB", origin="bedrock_converse"), ir.SignatureDelta(0, "+/sig==",
                                                                                    origin="bedrock_converse"),
        ir.PartStop(0),
        ir.PartStart(1, "redacted_thinking", data="cmVk", origin="bedrock_converse"), ir.PartStop(1),
        ir.PartStart(2, "redacted_thinking", data="QW50"), ir.PartStop(2),  # unlabelled: Anthropic's
        ir.PartStart(3, "thinking"), ir.SignatureDelta(3, "gemini-sig", origin="gemini"), ir.PartStop(3),
    ])
    assert frames(
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":'
                                '{"type":"signature_delta","signature":"bedrock_converse:EqQB+/sig=="}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("content_block_start", '{"type":"content_block_start","index":1,"content_block":'
                                '{"type":"redacted_thinking","data":"bedrock_converse:cmVk"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        ("content_block_start", '{"type":"content_block_start","index":2,"content_block":'
                                '{"type":"redacted_thinking","data":"QW50"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":2}'),
        ("content_block_start", '{"type":"content_block_start","index":3,"content_block":'
                                '{"type":"thinking","thinking":"","signature":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":3,"delta":'
                                '{"type":"signature_delta","signature":"gemini:gemini-sig"}}')) in out


def test_stream_error_is_an_error_event_and_nothing_follows():
    formatter = anthropic.StreamFormatter(request())
    formatter.feed(ir.MessageStart("msg_1", "m"))
    formatter.feed(ir.PartStart(0, "text"))
    formatter.feed(ir.TextDelta(0, "Hel"))
    out = formatter.feed(ir.StreamError(ProxyError(ErrorKind.overloaded, "Overloaded")))
    assert out == frames(("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'))
    assert formatter.feed(ir.TextDelta(0, "lo")) == b""
    assert formatter.feed(ir.MessageStop(ir.FinishReason.stop)) == b""
    assert formatter.finish() == b""


def test_a_failed_model_ends_the_stream_with_an_error_event():
    out = render([ir.MessageStart("msg_1", "m"),
                  ir.MessageStop(ir.FinishReason.error, raw_finish_reason="MALFORMED_FUNCTION_CALL")])
    assert out.endswith(frames(("error", '{"type":"error","error":{"type":"api_error","message":'
                                         '"the upstream model failed to produce a response '
                                         '(MALFORMED_FUNCTION_CALL)"}}')))
    assert b"message_stop" not in out


def test_a_stream_without_message_start_still_opens_with_one():
    out = render([ir.PartStart(0, "text"), ir.TextDelta(0, "Hi")], request(model="my-claude"))
    assert out.startswith(b"event: message_start\n")
    assert b'"model":"my-claude"' in out


def test_relay_re_encodes_the_upstream_frame():
    formatter = anthropic.StreamFormatter(request())
    data = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'
    assert formatter.relay(Frame("content_block_delta", data)) == frames(("content_block_delta", data))
    assert formatter.relay(Frame("ping", '{"type": "ping"}')) == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert formatter.relay(Frame(None, "a\nb")) == b"data: a\ndata: b\n\n"


# ====================================================== errors and models


@pytest.mark.parametrize("kind, status, error_type", [
    (ErrorKind.invalid_request, 400, "invalid_request_error"),
    (ErrorKind.authentication, 401, "authentication_error"),
    (ErrorKind.permission, 403, "permission_error"),
    (ErrorKind.not_found, 404, "not_found_error"),
    (ErrorKind.request_too_large, 413, "request_too_large"),
    (ErrorKind.rate_limit, 429, "rate_limit_error"),
    (ErrorKind.api_error, 500, "api_error"),
    (ErrorKind.bad_gateway, 502, "api_error"),
    (ErrorKind.overloaded, 529, "overloaded_error"),
    (ErrorKind.timeout, 504, "timeout_error"),
    (ErrorKind.configuration, 500, "api_error"),
])
def test_format_error_status_and_type(kind, status, error_type):
    got_status, headers, body = anthropic.format_error(ProxyError(kind, "Something happened"))
    assert got_status == status
    assert json.loads(body) == {"type": "error", "error": {"type": error_type, "message": "Something happened"}}
    assert headers == {"content-type": "application/json",
                       "x-should-retry": "true" if status == 429 or status >= 500 else "false"}


def test_format_error_names_the_field_first_and_passes_retry_after():
    status, _, body = anthropic.format_error(ProxyError(ErrorKind.invalid_request, "Field required",
                                                        param="max_tokens"))
    assert (status, json.loads(body)["error"]["message"]) == (400, "max_tokens: Field required")
    _, _, body = anthropic.format_error(ProxyError(ErrorKind.invalid_request, "max_tokens: Field required",
                                                   param="max_tokens"))
    assert json.loads(body)["error"]["message"] == "max_tokens: Field required"  # not named twice
    _, headers, _ = anthropic.format_error(ProxyError(ErrorKind.rate_limit, "Slow down", retry_after="20"))
    assert headers == {"content-type": "application/json", "x-should-retry": "true", "retry-after": "20"}


def test_format_models():
    models = [ModelInfo("claude-a", "claude", "anthropic", created=1759104000),
              ModelInfo("gpt-b", "openai", "openai")]
    assert anthropic.format_models(models) == {
        "data": [
            {"type": "model", "id": "claude-a", "display_name": "claude-a", "created_at": "2025-09-29T00:00:00Z"},
            {"type": "model", "id": "gpt-b", "display_name": "gpt-b", "created_at": "1970-01-01T00:00:00Z"},
        ],
        "has_more": False, "first_id": "claude-a", "last_id": "gpt-b",
    }
    assert anthropic.format_models([]) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


# =========================================================== build_request


def test_build_request_url_headers_and_minimal_body():
    upstream = built(anthropic, request(max_tokens=300), TARGET)
    assert upstream == UpstreamRequest(
        method="POST",
        url="https://api.anthropic.test/v1/messages",
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01",
                 "x-api-key": "sk-ant-test-key-0001"},
        body=upstream.body,
        stream=False,
    )
    assert json.loads(upstream.body) == {
        "model": "claude-sonnet-4-5", "max_tokens": 300,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_headers_version_override_and_forwarded_headers():
    target = Upstream(backend="vertexish", base_url="https://gw.test/anthropic/", model="claude-x", api_key="k",
                    headers={"Anthropic-Beta": "fine-grained-tool-streaming-2025-05-14", "X-Api-Key": "client-key"},
                    options={"anthropic_version": "2024-01-01", "max_tokens": 1000})
    upstream = built(anthropic, request(), target)
    assert upstream.url == "https://gw.test/anthropic/v1/messages"
    # The client's own X-Api-Key never goes on, in any letter case; forwarded names keep theirs.
    assert upstream.headers == {"content-type": "application/json", "anthropic-version": "2024-01-01",
                                "Anthropic-Beta": "fine-grained-tool-streaming-2025-05-14", "x-api-key": "k"}
    assert json.loads(upstream.body)["max_tokens"] == 1000  # the configured default when the client sets none
    assert sent(request())["max_tokens"] == 4096


def test_openai_style_parallel_tool_loop_becomes_one_results_first_user_turn():
    """Hazards 6/7/8 and id sanitizing: two consecutive tool messages and the
    user text after them become ONE user turn, results first; ids with `.`/`|`
    are rewritten the same way in the call and in its result."""
    req = request(
        user(ir.Text("Weather in Paris and Oslo?")),
        assistant(ir.Text(""), ir.ToolCall("call.1|a", "get_weather", '{"city":"Paris"}'),
                  ir.ToolCall("call_2", "get_weather", '{"city":"Oslo"}')),
        tool(ir.ToolResult("call.1|a", (ir.Text("18C"),))),
        tool(ir.ToolResult("call_2", (ir.Text("station offline"),), is_error=True)),
        user(ir.Text("Which is warmer?")),
        tools=(ir.Tool("get_weather", "Weather by city", WEATHER_SCHEMA),),
    )
    assert sent(req)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1_a_e6046490", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1_a_e6046490", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "station offline", "is_error": True},
            {"type": "text", "text": "Which is warmer?"}]},
    ]


def test_sanitized_ids_match_the_api_pattern_and_stay_distinct():
    ids = ["call.1|a", "call_1|a", "functions.get_weather:0", "toolu_01A", ""]
    wire = [anthropic.wire_tool_id(i) for i in ids]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", w) for w in wire)
    assert len(set(wire)) == len(ids)
    assert wire[3] == "toolu_01A"  # valid ids are left alone


def test_anthropic_history_round_trips_through_the_ir():
    """Anthropic client -> IR -> Anthropic backend: the conversation comes out as it went in."""
    req = anthropic.parse_request(FULL_BODY)
    body = sent(req)
    assert body["messages"] == [
        FULL_BODY["messages"][0],
        FULL_BODY["messages"][1],
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": True, "content": [
                {"type": "text", "text": "station offline"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}]},
            {"type": "text", "text": "Which is warmer?"}]},
    ]
    assert body["system"] == "You are terse.\nAnswer in French."
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    # thinking on: the forced choice is downgraded, temperature/top_k/low top_p not sent (hazard 27)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [k for k in ("temperature", "top_k", "top_p") if k in body] == []


def test_signature_only_thinking_is_re_emitted_byte_exact():
    """Known-gateway-bugs #8: the signature-only block goes back before the tool_use, unchanged."""
    signature = "EqQBCkYIBxgCKkB/+9zQ3vOq1Hw+lWk/AbC=="
    req = request(
        user(ir.Text("Weather?")),
        assistant(ir.Thinking("", signature, origin="anthropic"),
                  ir.Thinking(redacted="EmwKAhgB", origin="anthropic"),
                  ir.ToolCall("toolu_1", "get_weather", '{"city":"Paris"}')),
        tool(ir.ToolResult("toolu_1", (ir.Text("18C"),))),
        tools=(ir.Tool("get_weather", None, WEATHER_SCHEMA),),
        reasoning=ir.Reasoning(effort="low"),
    )
    body = sent(req)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "", "signature": signature},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    wire = built(anthropic, req, TARGET).body
    assert b'{"type":"thinking","thinking":"","signature":"EqQBCkYIBxgCKkB/+9zQ3vOq1Hw+lWk/AbC=="}' in wire


def test_thinking_from_other_providers_is_dropped():
    req = request(
        user(ir.Text("Hi")),
        assistant(ir.Thinking("Gemini thought", "gemini-sig", origin="gemini"),
                  ir.Thinking("OpenAI-compatible reasoning_content"),
                  ir.Thinking("unsigned", None, origin="anthropic"),
                  ir.Text("Hello!")),
        user(ir.Text("Bye")),
    )
    assert sent(req)["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}


def test_thinking_is_not_requested_when_the_tool_turn_lost_its_thinking_block():
    """An OpenAI client cannot carry the signature back: thinking on would be a 400."""
    req = request(
        user(ir.Text("Weather?")),
        assistant(ir.ToolCall("call_1", "get_weather", '{"city":"Paris"}')),
        tool(ir.ToolResult("call_1", (ir.Text("18C"),))),
        tools=(ir.Tool("get_weather", None, WEATHER_SCHEMA),),
        reasoning=ir.Reasoning(effort="high"), temperature=0.5, max_tokens=500,
    )
    body = sent(req)
    assert "thinking" not in body
    assert (body["temperature"], body["max_tokens"]) == (0.5, 500)


@pytest.mark.parametrize("reasoning, max_tokens, thinking, sent_max_tokens", [
    (ir.Reasoning(effort="minimal"), 4000, {"type": "enabled", "budget_tokens": 1024}, 4000),
    (ir.Reasoning(effort="low"), 4000, {"type": "enabled", "budget_tokens": 2048}, 4000),
    (ir.Reasoning(effort="medium"), 20000, {"type": "enabled", "budget_tokens": 8192}, 20000),
    (ir.Reasoning(effort="high"), 1000, {"type": "enabled", "budget_tokens": 24576}, 25600),
    (ir.Reasoning(effort="xhigh"), None, {"type": "enabled", "budget_tokens": 32000}, 33024),
    (ir.Reasoning(effort="max"), 64000, {"type": "enabled", "budget_tokens": 32000}, 64000),
    (ir.Reasoning(budget_tokens=500), 4000, {"type": "enabled", "budget_tokens": 1024}, 4000),
    (ir.Reasoning(budget_tokens=3000), 3000, {"type": "enabled", "budget_tokens": 3000}, 4024),
    (ir.Reasoning(include_thoughts=True), 10000, {"type": "enabled", "budget_tokens": 8192}, 10000),
    (ir.Reasoning(effort="none"), 4000, None, 4000),
    (ir.Reasoning(budget_tokens=0), 4000, None, 4000),
])
def test_reasoning_to_thinking_budget(reasoning, max_tokens, thinking, sent_max_tokens):
    body = sent(request(reasoning=reasoning, max_tokens=max_tokens))
    assert (body.get("thinking"), body["max_tokens"]) == (thinking, sent_max_tokens)


def test_thinking_restrictions_on_sampling_and_tool_choice():
    tools = (ir.Tool("lookup", None, None),)
    body = sent(request(tools=tools, tool_choice=ir.ToolChoice("tool", "lookup"), reasoning=ir.Reasoning("low"),
                        temperature=0.2, top_k=5, top_p=0.97))
    assert body["tool_choice"] == {"type": "auto"}
    assert (body.get("temperature"), body.get("top_k"), body.get("top_p")) == (None, None, 0.97)


def test_system_hoisting_with_a_mid_conversation_system_message():
    req = request(system("Be brief."), ir.Message("developer", (ir.Text("Use metric units."),)),
                  user(ir.Text("Hi")), assistant(ir.Text("Hello!")),
                  system("From now on, answer formally."), user(ir.Text("Bye")))
    body = sent(req)
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": [{"type": "text", "text": "System: From now on, answer formally."},
                                     {"type": "text", "text": "Bye"}]},
    ]
    assert sent(request(system("Be brief."), user(ir.Text("Hi"))))["system"] == "Be brief."


def test_images():
    req = request(
        user(ir.Text("Compare"),
             ir.Image(data="iVBORw0KGgo=", media_type="image/png"),
             ir.Image(url="https://example.com/a.webp"),
             ir.Image(url="data:image/jpg;base64,/9j/4AAQ")),
        assistant(ir.ToolCall("c1", "render", "{}")),
        tool(ir.ToolResult("c1", (ir.Text("chart:"), ir.Image(data="R0lGOD", media_type="image/gif")))),
    )
    body = sent(req)
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.webp"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
    ]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": [
        {"type": "text", "text": "chart:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGOD"}}]}]


@pytest.mark.parametrize("messages, param", [
    ((user(ir.Text("See"), ir.Image(data="AAAA", media_type="image/heic")),), "messages.0.content.1"),
    ((user(ir.Text("Go")), assistant(ir.ToolCall("c1", "f", "{}")),
      tool(ir.ToolResult("c1", (ir.Image(data="AAAA", media_type="image/tiff"),)))), "messages.2.content.0.content.0"),
    ((user(ir.Image()),), "messages.0.content.0"),
])
def test_unsupported_images_are_400_naming_the_part(messages, param):
    with pytest.raises(ProxyError) as caught:
        built(anthropic, request(*messages), TARGET)
    assert (caught.value.kind, caught.value.param) == (ErrorKind.invalid_request, param)


def test_tools_and_no_argument_schemas():
    req = request(tools=(ir.Tool("get_weather", "Weather by city", WEATHER_SCHEMA), ir.Tool("now", None, None),
                         ir.Tool("ping", "", {"properties": {}})))
    assert sent(req)["tools"] == [
        {"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize("choice, parallel, expected", [
    (None, None, None),
    (ir.ToolChoice("auto"), None, {"type": "auto"}),
    (ir.ToolChoice("required"), None, {"type": "any"}),
    (ir.ToolChoice("tool", "lookup"), None, {"type": "tool", "name": "lookup"}),
    (ir.ToolChoice("none"), None, {"type": "none"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (ir.ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
    (ir.ToolChoice("none"), False, {"type": "none"}),
])
def test_tool_choice_mapping(choice, parallel, expected):
    body = sent(request(tools=(ir.Tool("lookup"),), tool_choice=choice, parallel_tool_calls=parallel))
    assert body.get("tool_choice") == expected


def test_tool_history_without_tool_definitions_declares_placeholders():
    """The API refuses tool_use/tool_result history when `tools` is absent."""
    req = request(user(ir.Text("Go")), assistant(ir.ToolCall("c1", "lookup", '{"q":"x"}')),
                  tool(ir.ToolResult("c1", (ir.Text("found"),))), user(ir.Text("Summarize")))
    body = sent(req)
    assert body["tools"] == [{"name": "lookup", "description": "Declared by the proxy for the conversation history.",
                              "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "none"}


def test_sampling_stop_stream_and_user():
    upstream = built(anthropic, 
        request(temperature=1.7, top_p=0.5, top_k=20, stop=("END", "###"), stream=True, user="u-1", seed=7,
                max_tokens=50), TARGET)
    assert upstream.stream is True
    assert json.loads(upstream.body) == {
        "model": "claude-sonnet-4-5", "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 1.0,  # clamped to Anthropic's range, not rescaled; seed has no Anthropic field
        "top_p": 0.5, "top_k": 20, "stop_sequences": ["END", "###"], "stream": True,
        "metadata": {"user_id": "u-1"},
    }


def test_a_json_schema_response_format_is_sent_as_output_config_format():
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    body = sent(request(response_format=ir.ResponseFormat("json_schema", schema=schema, name="grade")))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_fields_without_ir_meaning_are_extras_re_sent_to_anthropic_only():
    body = {**MINIMAL, "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "cache_control": {"type": "ephemeral", "ttl": "1h"}, "mcp_servers": [{"type": "url", "url": "u"}]}
    req = anthropic.parse_request(body)
    assert req.extras == (
        ir.Extra("anthropic", "context_management", body["context_management"], optional=True),
        ir.Extra("anthropic", "cache_control", body["cache_control"], optional=True),
        ir.Extra("anthropic", "mcp_servers", body["mcp_servers"], optional=False),
    )
    rebuilt = sent(req)
    assert [rebuilt[k] for k in ("context_management", "cache_control", "mcp_servers")] == \
        [body["context_management"], body["cache_control"], body["mcp_servers"]]
    # Another protocol's extras: dropped when optional, refused (naming the field) otherwise.
    foreign = request(extras=(ir.Extra("gemini", "cachedContent", "cachedContents/1", optional=True),))
    assert "cachedContent" not in sent(foreign)
    with pytest.raises(ProxyError) as caught:
        sent(request(extras=(ir.Extra("gemini", "labels", {"team": "a"}, optional=False),)))
    assert caught.value.param == "labels"


@pytest.mark.parametrize("fields, param", [
    ({"response_format": ir.ResponseFormat("json_object")}, "response_format"),
    ({"n": 2}, "n"),
])
def test_unsupported_request_features_are_400(fields, param):
    with pytest.raises(ProxyError) as caught:
        built(anthropic, request(**fields), TARGET)
    assert (caught.value.kind, caught.value.param) == (ErrorKind.invalid_request, param)


def test_unparseable_tool_arguments_are_400_naming_the_call():
    req = request(user(ir.Text("Go")), assistant(ir.ToolCall("call_9", "make_file", '{"name": "tax')),
                  tool(ir.ToolResult("call_9", (ir.Text("?"),))))
    with pytest.raises(ProxyError) as caught:
        built(anthropic, req, TARGET)
    assert (caught.value.kind, caught.value.param) == (ErrorKind.invalid_request, "messages.1.content.0")
    assert "call_9" in caught.value.message


def test_empty_text_is_never_sent_and_prefill_is_trimmed():
    """Known-gateway-bugs #13 and hazard 13: no empty text blocks, no empty turns,
    and a final assistant prefill without trailing whitespace."""
    req = request(user(ir.Text("Go"), ir.Text("   ")), user(ir.Text("")),
                  assistant(ir.Text("Here is the list:\n  ")))
    assert sent(req)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Go"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here is the list:"}]},
    ]


def test_a_conversation_with_nothing_to_send_is_400():
    with pytest.raises(ProxyError) as caught:
        built(anthropic, request(system("Only a system prompt")), TARGET)
    assert caught.value.param == "messages"


def test_passthrough_swaps_only_the_model():
    body = {**FULL_BODY, "service_tier": "auto", "container": "c-1", "model": "my-claude-alias"}
    req = anthropic.parse_request(body)
    upstream = built(anthropic, req, TARGET, passthrough=True)
    assert json.loads(upstream.body) == {**body, "model": "claude-sonnet-4-5"}
    assert (upstream.url, upstream.headers, upstream.stream) == (
        "https://api.anthropic.test/v1/messages",
        {"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test-key-0001"},
        True)


# ============================================ opaque blocks and server tools
# What the IR cannot model parses as ir.Opaque (not a 400), goes back to an
# Anthropic backend unchanged and in place, and is a 400 naming the client's
# field for any other backend.

DOCUMENT = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Q3 rose 4%."},
            "title": "Report", "citations": {"enabled": True}}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
SERVER_TOOL_USE = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "oslo"}}
SEARCH_RESULTS = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
    {"type": "web_search_result", "url": "https://example.com", "title": "Oslo", "encrypted_content": "EqQ=",
     "page_age": None}]}
SEARCH_RESULT = {"type": "search_result", "source": "https://wiki.example/oslo", "title": "Oslo",
                 "content": [{"type": "text", "text": "Oslo is the capital."}]}
_OTHER_BACKENDS = [
    ("openai", Upstream(backend="gpt", base_url="https://api.openai.test/v1", model="gpt-4o"), "an OpenAI"),
    ("gemini", Upstream(backend="gem", base_url="https://gemini.test", model="gemini-2.5-flash"), "a Gemini"),
]

OPAQUE_CASES = [
    # (client body, the Opaque parts parse_request keeps, where each lands in the built body, capabilities)
    pytest.param(_messages({"role": "user", "content": [{"type": "text", "text": "Summarise:"}, DOCUMENT,
                                                        {"type": "text", "text": "Briefly."}]}),
                 [ir.Opaque("anthropic", "document block", DOCUMENT, "messages.0.content.1")],
                 [("messages", 0, "content", 1)], {"text"}, id="document"),
    pytest.param(_messages(_HI, {"role": "assistant", "content": [
                     {"type": "text", "text": "Searching."}, SERVER_TOOL_USE, SEARCH_RESULTS,
                     {"type": "text", "text": "Sunny."}]}, {"role": "user", "content": "Thanks"}),
                 [ir.Opaque("anthropic", "server_tool_use block", SERVER_TOOL_USE, "messages.1.content.1"),
                  ir.Opaque("anthropic", "web_search_tool_result block", SEARCH_RESULTS, "messages.1.content.2")],
                 [("messages", 1, "content", 1), ("messages", 1, "content", 2)], {"text"}, id="server-tool-history"),
    pytest.param(_messages(_CALL, {"role": "user", "content": [
                     {"type": "tool_result", "tool_use_id": "toolu_1", "content": [SEARCH_RESULT]}]}),
                 [ir.Opaque("anthropic", "search_result block", SEARCH_RESULT, "messages.1.content.0.content.0")],
                 [("messages", 1, "content", 0, "content", 0)], {"text", "tools"}, id="search-result-in-tool-result"),
    pytest.param({**MINIMAL, "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}, WEB_SEARCH]},
                 [ir.Opaque("anthropic", "web_search_20250305 tool", WEB_SEARCH, "tools.1")],
                 [("tools", 1)], {"text", "tools"}, id="web-search-tool"),
]


def _opaques(req: ir.Request) -> list[ir.Opaque]:
    found = [t.native for t in req.tools if t.native is not None]
    for m in req.messages:
        for p in m.parts:
            found += [c for c in p.content if isinstance(c, ir.Opaque)] if isinstance(p, ir.ToolResult) else []
            found += [p] if isinstance(p, ir.Opaque) else []
    return found


def _at(body: dict, path: tuple) -> object:
    for key in path:
        body = body[key]
    return body


@pytest.mark.parametrize("body, opaques, paths, capabilities", OPAQUE_CASES)
def test_blocks_and_tools_without_ir_form_are_kept_opaque(body, opaques, paths, capabilities):
    req = anthropic.parse_request(body)
    assert _opaques(req) == opaques
    assert req.capabilities() == capabilities  # an opaque block needs nothing; an opaque tool is a tool
    # An Anthropic backend gets each one back as sent, in place, around the modelled blocks.
    upstream = built(anthropic, req, TARGET)
    wire_body = json.loads(upstream.body)
    for opaque, path in zip(opaques, paths):
        assert _at(wire_body, path) == opaque.data
        assert json.dumps(opaque.data, separators=(",", ":")).encode() in upstream.body
    if len(paths[0]) == 4:  # a message block: the whole turn is the client's, in order
        turn = paths[0][1]
        assert wire_body["messages"][turn] == body["messages"][turn]
    # Any other backend: a 400 naming the field in the client's (Anthropic) terms.
    for name, target, backend_label in _OTHER_BACKENDS:
        with pytest.raises(ProxyError) as caught:
            built(protocol_module(name), req, target)
        assert (caught.value.kind, caught.value.status, caught.value.param) == (
            ErrorKind.invalid_request, 400, opaques[0].where)
        assert caught.value.message == f"{opaques[0].kind} cannot be sent to {backend_label} backend"


def test_server_tool_is_a_native_tool_labelled_by_its_name():
    req = anthropic.parse_request({**MINIMAL, "tools": [WEB_SEARCH],
                                   "tool_choice": {"type": "tool", "name": "web_search"}})
    assert req.tools == (ir.Tool("web_search", native=ir.Opaque("anthropic", "web_search_20250305 tool", WEB_SEARCH,
                                                                "tools.0")),)
    assert sent(req)["tools"] == [WEB_SEARCH]
    assert sent(req)["tool_choice"] == {"type": "tool", "name": "web_search"}


# ========================================================== parse_response


def test_parse_response_whole_message():
    body = {
        "id": "msg_01Q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "", "signature": "sig-only=="},
            {"type": "redacted_thinking", "data": "EmwK"},
            {"type": "text", "text": "Let me check.", "citations": None},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": ""},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"},
             "caller": {"type": "direct"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 100, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 600,
                  "cache_creation": {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 0},
                  "output_tokens": 65, "output_tokens_details": {"thinking_tokens": 20}, "service_tier": "standard"},
    }
    assert anthropic.parse_response(json.dumps(body).encode(), request()) == ir.Response(
        id="msg_01Q", model="claude-sonnet-4-5-20250929",
        parts=(ir.Thinking("", "sig-only==", origin="anthropic"),
               ir.Thinking(redacted="EmwK", origin="anthropic"),
               ir.Text("Let me check."),
               ir.ToolCall("toolu_01A", "get_weather", '{"city":"Oslo"}')),
        finish_reason=ir.FinishReason.tool_calls,
        # the IR counts the whole prompt: 100 uncached + 600 read + 50 written
        usage=ir.Usage(input_tokens=750, output_tokens=65, reasoning_tokens=20, cache_read_tokens=600,
                       cache_write_tokens=50),
        raw_finish_reason="tool_use",
    )


@pytest.mark.parametrize("stop_reason, stop_sequence, finish, expected_sequence", [
    ("end_turn", None, ir.FinishReason.stop, None),
    ("stop_sequence", "END", ir.FinishReason.stop, "END"),
    ("max_tokens", None, ir.FinishReason.length, None),
    ("tool_use", None, ir.FinishReason.tool_calls, None),
    ("refusal", None, ir.FinishReason.content_filter, None),
    ("pause_turn", None, ir.FinishReason.stop, None),
    ("model_context_window_exceeded", None, ir.FinishReason.length, None),
])
def test_parse_response_stop_reasons(stop_reason, stop_sequence, finish, expected_sequence):
    body = {"id": "msg_1", "model": "c", "content": [], "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": 1, "output_tokens": 1}}
    resp = anthropic.parse_response(json.dumps(body).encode(), request())
    assert (resp.finish_reason, resp.stop_sequence, resp.raw_finish_reason) == (finish, expected_sequence, stop_reason)


def test_parse_recorded_response(real_samples):
    exchange = json.loads((real_samples / "anthropic-exchanges" / "orphan_tool_result_400.json").read_text())
    body = json.dumps(exchange[0]["response"]["body"]).encode()
    assert anthropic.parse_response(body, request()) == ir.Response(
        id="msg_01QCEBW49MBPHFuFwMDoFtPP", model="claude-haiku-4-5-20251001",
        parts=(ir.ToolCall("toolu_01GHndag5wQmbzNihYmV2UBj", "get_weather",
                           '{"location":"San Francisco, CA","units":"c"}'),),
        finish_reason=ir.FinishReason.tool_calls, usage=ir.Usage(input_tokens=659, output_tokens=74),
        raw_finish_reason="tool_use")


@pytest.mark.parametrize("body", [b"not json", b'{"id": "msg_1"}', b"[]", b""])
def test_malformed_response_is_bad_gateway(body):
    with pytest.raises(ProxyError) as caught:
        anthropic.parse_response(body, request())
    assert caught.value.kind is ErrorKind.bad_gateway


def test_an_error_envelope_with_status_200_is_raised_as_that_error():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    with pytest.raises(ProxyError) as caught:
        anthropic.parse_response(body, request())
    assert (caught.value.kind, caught.value.status, caught.value.message) == (ErrorKind.overloaded, 529, "Overloaded")


# ============================================================ StreamParser


def _stream_samples(real_samples):
    paths = sorted((real_samples / "anthropic-streams").glob("*.sse"))
    assert paths, "no recorded Anthropic streams"
    return paths


def test_every_recorded_stream_parses_identically_at_every_split(real_samples):
    for path in _stream_samples(real_samples):
        data = path.read_bytes()
        whole = parse_stream([data])
        assert isinstance(whole[0], ir.MessageStart), path.name
        assert isinstance(whole[-1], ir.MessageStop), path.name
        assert not any(isinstance(e, ir.StreamError) for e in whole), path.name
        for chunks in every_split(data):
            assert parse_stream(chunks) == whole, (path.name, len(chunks[0]))


def _response_of(real_samples, name: str) -> ir.Response:
    return ir.response_from_events(parse_stream([(real_samples / "anthropic-streams" / name).read_bytes()]))


def test_recorded_basic_stream(real_samples):
    assert _response_of(real_samples, "basic_response.sse") == ir.Response(
        id="msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", model="claude-3-opus-latest", parts=(ir.Text("Hello there!"),),
        finish_reason=ir.FinishReason.stop, usage=ir.Usage(input_tokens=11, output_tokens=6),
        raw_finish_reason="end_turn")


def test_recorded_tool_use_stream(real_samples):
    resp = _response_of(real_samples, "tool_use_response.sse")
    assert resp.finish_reason is ir.FinishReason.tool_calls
    assert resp.parts[0] == ir.Text("I'll check the current weather in Paris for you.")
    call = resp.parts[1]
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})
    assert resp.usage == ir.Usage(input_tokens=377, output_tokens=65)


def test_recorded_stream_cut_inside_tool_json(real_samples):
    """No content_block_stop before message_delta: the open call is finished there."""
    resp = _response_of(real_samples, "incomplete_partial_json_response.sse")
    assert resp.finish_reason is ir.FinishReason.length
    assert [type(p) for p in resp.parts] == [ir.Text, ir.ToolCall]
    assert resp.parts[1].name == "make_file"
    assert resp.parts[1].arguments.startswith('{"filename": "taxes.txt", "lines_of_text": [')
    assert resp.parts[1].arguments.endswith('"Filing taxes')


def test_recorded_refusal_stream(real_samples):
    resp = _response_of(real_samples, "refusal_response.sse")
    assert (resp.finish_reason, resp.parts, resp.raw_finish_reason) == (ir.FinishReason.content_filter, (), "refusal")


def test_recorded_tool_loop_streams(real_samples):
    exchange = json.loads((real_samples / "anthropic-exchanges" / "tool_loop_streaming.json").read_text())
    first, second = (ir.response_from_events(parse_stream([e["response"]["body"].encode()])) for e in exchange)
    assert first.finish_reason is ir.FinishReason.tool_calls
    assert (first.parts[0].name, json.loads(first.parts[0].arguments)) == (
        "get_weather", {"location": "San Francisco, CA", "units": "f"})
    assert second.finish_reason is ir.FinishReason.stop
    assert "68°F" in second.parts[0].text
    assert second.usage == ir.Usage(input_tokens=770, output_tokens=38)


def test_thinking_stream_events():
    data = wire_events(
        MESSAGE_START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        {"type": "ping"},
        block_delta(0, {"type": "thinking_delta", "thinking": "Paris first."}),
        block_delta(0, {"type": "signature_delta", "signature": "EqQB=="}),
        block_stop(0),
        block_start(1, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(1, {"type": "signature_delta", "signature": "only=="}),
        block_stop(1),
        block_start(2, {"type": "redacted_thinking", "data": "EmwK"}),
        block_stop(2),
        block_start(3, {"type": "text", "text": ""}),
        block_delta(3, {"type": "citations_delta", "citation": {"type": "char_location"}}),
        block_delta(3, {"type": "text_delta", "text": "Sunny."}),
        block_stop(3),
        message_delta("end_turn"),
        MESSAGE_STOP,
    )
    assert parse_stream([data]) == [
        ir.MessageStart("msg_01S", "claude-sonnet-4-5", ir.Usage(input_tokens=10, output_tokens=1)),
        ir.PartStart(0, "thinking"),
        ir.ThinkingDelta(0, "Paris first."),
        ir.SignatureDelta(0, "EqQB==", origin="anthropic"),
        ir.PartStop(0),
        ir.PartStart(1, "thinking"),
        ir.SignatureDelta(1, "only==", origin="anthropic"),
        ir.PartStop(1),
        ir.PartStart(2, "redacted_thinking", data="EmwK"),
        ir.PartStop(2),
        ir.PartStart(3, "text"),
        ir.TextDelta(3, "Sunny."),
        ir.PartStop(3),
        ir.MessageStop(ir.FinishReason.stop, ir.Usage(input_tokens=10, output_tokens=5),
                       raw_finish_reason="end_turn"),
    ]


def test_server_tool_blocks_are_skipped_and_parts_stay_numbered():
    data = wire_events(
        MESSAGE_START,
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        block_delta(0, {"type": "input_json_delta", "partial_json": '{"query":"x"}'}),
        block_stop(0),
        block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        block_delta(2, {"type": "text_delta", "text": "Found it."}),
        block_stop(2),
        message_delta("end_turn"), MESSAGE_STOP)
    assert parse_stream([data])[1:4] == [ir.PartStart(0, "text"), ir.TextDelta(0, "Found it."), ir.PartStop(0)]


def test_tool_use_placeholder_input_is_not_the_arguments():
    """`input: {}` at the start is a placeholder; a gateway that sends the whole
    input there and no deltas is taken at its word."""
    data = wire_events(
        MESSAGE_START,
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}}),
        block_delta(0, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(0, {"type": "input_json_delta", "partial_json": '{"x": 1}'}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {"y": 2}}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_3", "name": "c", "input": {}}),
        block_stop(2),
        message_delta("tool_use"), MESSAGE_STOP)
    assert ir.response_from_events(parse_stream([data])).parts == (
        ir.ToolCall("toolu_1", "a", '{"x": 1}'), ir.ToolCall("toolu_2", "b", '{"y":2}'), ir.ToolCall("toolu_3", "c", "{}"))


def test_stream_usage_is_cumulative_and_the_last_value_wins():
    start = {**MESSAGE_START, "message": {**MESSAGE_START["message"], "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 0, "output_tokens": 1}}}
    data = wire_events(
        start,
        message_delta("stop_sequence", output_tokens=3),
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
         "usage": {"input_tokens": 10, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 20,
                   "output_tokens": 30}},
        MESSAGE_STOP)
    assert parse_stream([data])[-1] == ir.MessageStop(
        ir.FinishReason.stop, ir.Usage(input_tokens=530, output_tokens=30, cache_read_tokens=500, cache_write_tokens=20),
        stop_sequence="END", raw_finish_reason="stop_sequence")


def test_error_event_is_a_stream_error_and_ends_the_stream():
    data = wire_events(
        MESSAGE_START,
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Hel"}),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        block_delta(0, {"type": "text_delta", "text": "lo"}))
    events = parse_stream([data])
    assert [type(e) for e in events] == [ir.MessageStart, ir.PartStart, ir.TextDelta, ir.StreamError]
    err = events[-1].error
    assert (err.kind, err.status, err.message) == (ErrorKind.overloaded, 529, "Overloaded")


def test_a_stream_that_ends_without_message_stop_is_an_error():
    data = wire_events(MESSAGE_START, block_start(0, {"type": "text", "text": ""}),
                       block_delta(0, {"type": "text_delta", "text": "Hel"}))
    err = parse_stream([data])[-1].error
    assert (err.kind, err.message) == (ErrorKind.bad_gateway, "upstream stream ended before completion")
    parser = anthropic.StreamParser(request())
    parser.feed(Frame("message_stop", '{"type":"message_stop"}'))
    assert parser.close() == []


def test_a_malformed_stream_event_is_a_bad_gateway_error():
    parser = anthropic.StreamParser(request())
    [event] = parser.feed(Frame("content_block_delta", "{not json"))
    assert event.error.kind is ErrorKind.bad_gateway
    assert parser.feed(Frame("message_stop", '{"type":"message_stop"}')) == []
    assert parser.close() == []


# ============================================================= parse_error


def _recorded_error(real_samples, name: str, index: int) -> tuple[int, dict, bytes]:
    exchange = json.loads((real_samples / "anthropic-exchanges" / name).read_text())
    response = exchange[index]["response"]
    return response["status_code"], response["headers"], json.dumps(response["body"]).encode()


def test_recorded_400_orphan_tool_result(real_samples):
    err = anthropic.parse_error(*_recorded_error(real_samples, "orphan_tool_result_400.json", 1))
    assert (err.kind, err.status, err.retry_after) == (ErrorKind.invalid_request, 400, None)
    assert err.message.startswith("messages.0.content.1: unexpected `tool_use_id` found in `tool_result` blocks")


def test_recorded_429_rate_limit(real_samples):
    status, headers, body = _recorded_error(real_samples, "rate_limit_429.json", 0)
    err = anthropic.parse_error(status, headers, body)
    assert (err.kind, err.status, err.retry_after) == (ErrorKind.rate_limit, 429, headers.get("retry-after"))
    assert err.message.startswith("This request would exceed your organization's rate limit")
    assert anthropic.parse_error(status, {**headers, "Retry-After": "17"}, body).retry_after == "17"


@pytest.mark.parametrize("status, headers, body, kind, message, retry_after", [
    (529, {}, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
     ErrorKind.overloaded, "Overloaded", None),
    (401, {}, b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
     ErrorKind.authentication, "invalid x-api-key", None),
    (404, {}, b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}',
     ErrorKind.not_found, "model: claude-nope", None),
    (504, {}, b'{"type":"error","error":{"type":"timeout_error","message":"Request timed out"}}',
     ErrorKind.timeout, "Request timed out", None),
    (429, {"retry-after-ms": "1500"}, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}',
     ErrorKind.rate_limit, "slow", "2"),
    (502, {}, b"<html>Bad Gateway</html>", ErrorKind.bad_gateway, "<html>Bad Gateway</html>", None),
    (500, {}, b"", ErrorKind.api_error, "upstream returned HTTP 500", None),
    (429, {}, b'{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}',
     ErrorKind.rate_limit, "Quota exceeded", None),
    (400, {}, b'[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]',
     ErrorKind.invalid_request, "bad", None),
    (503, {}, json.dumps({"error": {"code": 503, "status": "UNAVAILABLE", "message": json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})}}).encode(),
     ErrorKind.overloaded, "Overloaded", None),
])
def test_parse_error(status, headers, body, kind, message, retry_after):
    err = anthropic.parse_error(status, headers, body)
    assert (err.kind, err.status, err.message, err.retry_after) == (kind, status, message, retry_after)


def test_parse_error_redacts_keys():
    body = b'{"type":"error","error":{"type":"authentication_error","message":"bad key sk-ant-api03-abcdefghijklmnop"}}'
    err = anthropic.parse_error(401, {}, body)
    assert "abcdefghijklmnop" not in err.message
    assert err.kind is ErrorKind.authentication


def test_stream_and_response_contract_names():
    assert anthropic.RESPONSE_MODEL_FIELD == "model"


def test_count_tokens_body_with_another_familys_thinking_is_written_afresh():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "T", "signature": "bedrock_converse:EqQB"},
                                          {"type": "text", "text": "Hello"}]},
        {"role": "user", "content": "Again"}]}
    req = anthropic.parse_request({**body, "max_tokens": 1})  # as app/tokens.py parses a count_tokens body
    assert anthropic.count_tokens_body(req, TARGET) == {"model": TARGET.model, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]}]}
