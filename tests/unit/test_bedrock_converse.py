"""Bedrock Converse wire module (backend direction), specified by example:
IR in, the exact Converse body out; Converse replies, event-stream bytes and
error envelopes in, exact IR out. Real recorded traffic comes from
../shared/real-samples/bedrock."""
from __future__ import annotations

import json

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import bedrock_converse as bc
from app.upstream.eventstream import EventStreamFramer
from app.protocols.base import Target
from mocks.eventstream import encode_event, encode_exception
from tests.conftest import every_split

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-pro-v1:0"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUg=="
WEATHER = ir.Tool("get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message("user", parts)


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message("assistant", parts)


def tool(*results: ir.ToolResult) -> ir.Message:
    return ir.Message("tool", results)


def request(*messages: ir.Message, **fields) -> ir.Request:
    fields.setdefault("model", "claude-3-sonnet")
    fields.setdefault("protocol", "openai")
    return ir.Request(messages=messages or (user(ir.Text("Hi")),), **fields)


def body(req: ir.Request, model_id: str = CLAUDE) -> dict:
    return bc.build_body(req, Target("bedrock", model_id))


# ================================================================ build_body


def test_text():
    assert body(request()) == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


def test_system_texts_become_system_blocks_and_a_late_one_stays_in_place():
    req = request(ir.Message("system", (ir.Text("Be brief."),)), ir.Message("developer", (ir.Text("No emoji."),)),
                  user(ir.Text("Hi")), assistant(ir.Text("Hello")), ir.Message("system", (ir.Text("Now French."),)),
                  user(ir.Text("Again")))
    assert body(req) == {
        "system": [{"text": "Be brief."}, {"text": "No emoji."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}]},
            {"role": "assistant", "content": [{"text": "Hello"}]},
            {"role": "user", "content": [{"text": "System: Now French."}, {"text": "Again"}]},
        ]}


def test_multi_turn_merges_same_role_turns_and_drops_blank_text():
    req = request(user(ir.Text("one")), user(ir.Text("   "), ir.Text("two")), assistant(ir.Text("")),
                  assistant(ir.Text("three")), user(ir.Text("four")))
    assert body(req)["messages"] == [
        {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
        {"role": "assistant", "content": [{"text": "three"}]},
        {"role": "user", "content": [{"text": "four"}]},
    ]


def test_a_turn_left_empty_is_dropped_and_its_neighbours_merge():
    """Known gateway bug 13: empty text blocks are never sent ("text field is blank")."""
    req = request(user(ir.Text("a")), assistant(ir.Text(" \n")), user(ir.Text("b")))
    assert body(req)["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]


def test_prefill_loses_its_trailing_whitespace():
    req = request(user(ir.Text("Hi")), assistant(ir.Text("Sure: ")))
    assert body(req)["messages"][-1] == {"role": "assistant", "content": [{"text": "Sure:"}]}


def test_inference_config_stop_sequences_and_max_tokens():
    req = request(max_tokens=50, temperature=1.7, top_p=0.9, stop=("END", "", "STOP"))
    assert body(req)["inferenceConfig"] == {"maxTokens": 50, "temperature": 1.0, "topP": 0.9,
                                            "stopSequences": ["END", "STOP"]}


def test_top_k_goes_to_claude_only():
    assert body(request(top_k=5))["additionalModelRequestFields"] == {"top_k": 5}
    assert "additionalModelRequestFields" not in body(request(top_k=5), NOVA)


def test_tools_and_each_tool_choice():
    req = request(tools=(WEATHER, ir.Tool("noop")), tool_choice=ir.ToolChoice("auto"))
    assert body(req)["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "get_weather", "description": "Current weather", "inputSchema": {"json": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}},
            {"toolSpec": {"name": "noop", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        ],
        "toolChoice": {"auto": {}}}
    assert "toolChoice" not in body(request(tools=(WEATHER,)))["toolConfig"]
    assert body(request(tools=(WEATHER,), tool_choice=ir.ToolChoice("required")))["toolConfig"]["toolChoice"] \
        == {"any": {}}
    assert body(request(tools=(WEATHER,), tool_choice=ir.ToolChoice("tool", "get_weather")))["toolConfig"][
        "toolChoice"] == {"tool": {"name": "get_weather"}}
    assert "toolConfig" not in body(request(tools=(WEATHER,), tool_choice=ir.ToolChoice("none")))


def test_tool_names_outside_the_charset_are_refused():
    with pytest.raises(ProxyError) as caught:
        bc.build_body(request(tools=(ir.Tool("get.weather"),)), Target("bedrock", CLAUDE))
    assert caught.value.kind is ErrorKind.invalid_request and caught.value.param == "tools[0].name"


TOOL_TURNS = (
    user(ir.Text("Weather in Paris and London?")),
    assistant(ir.Text("Checking."), ir.ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
              ir.ToolCall("call_2", "get_weather", '{"city": "London"}')),
    tool(ir.ToolResult("call_1", (ir.Text('{"temp_c": 18}'),)),
         ir.ToolResult("call_2", (ir.Text("no data"),), is_error=True)),
)


def test_tool_calls_and_results():
    assert body(request(*TOOL_TURNS, tools=(WEATHER,)))["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris and London?"}]},
        {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "London"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": '{"temp_c": 18}'}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "no data"}], "status": "error"}}]},
    ]


def test_results_stay_ahead_of_user_text_when_turns_merge():
    req = request(*TOOL_TURNS[:2], user(ir.Text("Be quick.")), TOOL_TURNS[2], user(ir.Text("Thanks")))
    content = body(req, NOVA)["messages"][2]["content"]
    assert [next(iter(b)) for b in content] == ["toolResult", "toolResult", "text", "text"]
    assert content[2:] == [{"text": "Be quick."}, {"text": "Thanks"}]


def test_images_in_tool_results_and_an_empty_result():
    req = request(user(ir.Text("Show me")), assistant(ir.ToolCall("call_1", "screenshot", "")),
                  tool(ir.ToolResult("call_1", (ir.Text("here"), ir.Image(data=PNG_B64, media_type="image/png")))),
                  assistant(ir.ToolCall("call_2", "screenshot", "{}")), tool(ir.ToolResult("call_2")))
    messages = body(req)["messages"]
    assert messages[1]["content"] == [{"toolUse": {"toolUseId": "call_1", "name": "screenshot", "input": {}}}]
    assert messages[2]["content"] == [{"toolResult": {"toolUseId": "call_1", "content": [
        {"text": "here"}, {"image": {"format": "png", "source": {"bytes": PNG_B64}}}]}}]
    assert messages[4]["content"] == [{"toolResult": {"toolUseId": "call_2", "content": []}}]


def test_tool_history_without_definitions_declares_them():
    assert body(request(*TOOL_TURNS))["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Declared by the proxy for the conversation history.",
        "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    # tool_choice none with a tool history: the definitions must go, without a choice
    assert body(request(*TOOL_TURNS, tools=(WEATHER,), tool_choice=ir.ToolChoice("none")))["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather", "inputSchema": {
            "json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}]}


def test_foreign_tool_ids_are_rewritten_alike_in_call_and_result():
    odd = "call/with spaces" + "x" * 70
    req = request(user(ir.Text("go")), assistant(ir.ToolCall(odd, "get_weather", "{}")),
                  tool(ir.ToolResult(odd, (ir.Text("ok"),))))
    messages = body(req)["messages"]
    wire_id = messages[1]["content"][0]["toolUse"]["toolUseId"]
    assert wire_id == messages[2]["content"][0]["toolResult"]["toolUseId"] == bc.wire_tool_id(odd)
    assert len(wire_id) <= 64 and wire_id.startswith("call_with_spaces")
    assert bc.wire_tool_id("tooluse_abc.1:2-3") == "tooluse_abc.1:2-3"


def test_images_inline_from_data_or_data_url():
    req = request(user(ir.Image(data=PNG_B64, media_type="image/png"),
                       ir.Image(url="data:image/jpeg;base64,/9j/4AAQ"), ir.Image(data="R0lGODlhAQ"),
                       ir.Text("describe")))
    assert body(req)["messages"][0]["content"] == [
        {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
        {"image": {"format": "gif", "source": {"bytes": "R0lGODlhAQ"}}},
        {"text": "describe"}]


@pytest.mark.parametrize("image", [ir.Image(url="https://example.com/cat.png"),
                                   ir.Image(data=PNG_B64, media_type="image/tiff")])
def test_url_images_and_other_formats_are_refused(image):
    with pytest.raises(ProxyError) as caught:
        bc.build_body(request(user(ir.Text("see"), image)), Target("bedrock", CLAUDE))
    assert caught.value.kind is ErrorKind.invalid_request and caught.value.param == "messages.0.content.1"


def test_opaque_parts_and_unsupported_fields_are_refused():
    doc = ir.Opaque("anthropic", "document block", {"type": "document"}, "messages.0.content.0")
    with pytest.raises(ProxyError) as caught:
        bc.build_body(request(user(doc)), Target("bedrock", CLAUDE))
    assert caught.value.param == "messages.0.content.0"
    with pytest.raises(ProxyError) as caught:
        bc.build_body(request(n=2), Target("bedrock", CLAUDE))
    assert caught.value.param == "n"
    with pytest.raises(ProxyError) as caught:
        bc.build_body(request(response_format=ir.ResponseFormat("json_object")), Target("bedrock", CLAUDE))
    assert caught.value.param == "response_format"


SIGNATURE = "EqQBCkYIBxgCIkBW3kF0bW9jaw=="


def test_thinking_with_claude_rules():
    req = request(reasoning=ir.Reasoning(effort="low"), temperature=0.5, top_p=0.5, max_tokens=1000,
                  tools=(WEATHER,), tool_choice=ir.ToolChoice("required"))
    out = body(req)
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert out["inferenceConfig"] == {"maxTokens": 2048 + 1024}  # no temperature, no top_p < 0.95
    assert out["toolConfig"]["toolChoice"] == {"auto": {}}
    assert body(request(reasoning=ir.Reasoning(budget_tokens=5000), max_tokens=9000, top_p=0.97))[
        "inferenceConfig"] == {"maxTokens": 9000, "topP": 0.97}


def test_thinking_is_claude_only():
    out = body(request(reasoning=ir.Reasoning(effort="high"), temperature=0.5), NOVA)
    assert "additionalModelRequestFields" not in out and out["inferenceConfig"] == {"temperature": 0.5}


def test_signed_reasoning_goes_back_to_claude_on_bedrock_only():
    history = (
        user(ir.Text("What is 6*7?")),
        assistant(ir.Thinking("Multiply.", SIGNATURE, origin="bedrock_converse"),
                  ir.Thinking(redacted="cmVkYWN0ZWQ=", origin="bedrock_converse"),
                  ir.Thinking("from the Anthropic API", "sig-anthropic", origin="anthropic"),
                  ir.Thinking("unsigned", origin="bedrock_converse"),
                  ir.Text("42")),
        user(ir.Text("And 6*8?")),
    )
    req = request(*history, reasoning=ir.Reasoning(budget_tokens=1024))
    assert body(req)["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Multiply.", "signature": SIGNATURE}}},
        {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
        {"text": "42"}]
    assert body(req, NOVA)["messages"][1]["content"] == [{"text": "42"}]


def test_signature_only_reasoning_is_kept():
    """Known gateway bug 8: a signature with empty reasoning text (recent Claude models) is not stripped."""
    req = request(user(ir.Text("Q")), assistant(ir.Thinking("", SIGNATURE, origin="bedrock_converse"),
                                                ir.Text("A")), user(ir.Text("Q2")))
    assert body(req)["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {
        "text": "", "signature": SIGNATURE}}}
    data = events_bytes(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}),
    )
    folded = ir.response_from_events(stream([data]))
    assert folded.parts == (ir.Thinking("", SIGNATURE, origin="bedrock_converse"),)


def test_thinking_is_left_off_when_the_tool_turn_lost_its_reasoning():
    req = request(*TOOL_TURNS, tools=(WEATHER,), reasoning=ir.Reasoning(effort="medium"))
    assert "additionalModelRequestFields" not in body(req)
    signed = (TOOL_TURNS[0], assistant(ir.Thinking("Look up both.", SIGNATURE, origin="bedrock_converse"),
                                       *TOOL_TURNS[1].parts), TOOL_TURNS[2])
    out = body(request(*signed, tools=(WEATHER,), reasoning=ir.Reasoning(effort="medium")))
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert out["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {
        "text": "Look up both.", "signature": SIGNATURE}}}


# ============================================================ parse_response


def reply(content: list, stop_reason: str = "end_turn", **usage) -> bytes:
    usage = {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17, **usage}
    return json.dumps({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason,
                       "usage": usage, "metrics": {"latencyMs": 802}}).encode()


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", ir.FinishReason.stop), ("stop_sequence", ir.FinishReason.stop),
    ("max_tokens", ir.FinishReason.length), ("model_context_window_exceeded", ir.FinishReason.length),
    ("tool_use", ir.FinishReason.tool_calls), ("guardrail_intervened", ir.FinishReason.content_filter),
    ("content_filtered", ir.FinishReason.content_filter), ("malformed_model_output", ir.FinishReason.error),
    ("malformed_tool_use", ir.FinishReason.error),
])
def test_each_stop_reason(stop_reason, finish):
    resp = bc.parse_response(reply([{"text": "Hi"}], stop_reason), request())
    assert resp == ir.Response(id="", model="claude-3-sonnet", parts=(ir.Text("Hi"),), finish_reason=finish,
                               usage=ir.Usage(12, 5), raw_finish_reason=stop_reason)


def test_tool_use_reasoning_and_blank_text():
    content = [{"reasoningContent": {"reasoningText": {"text": "Think.", "signature": SIGNATURE}}},
               {"reasoningContent": {"redactedContent": "cmVk"}},
               {"text": ""},
               {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
               {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {"city": "London"}}}]
    resp = bc.parse_response(reply(content, "tool_use"), request())
    assert resp.parts == (ir.Thinking("Think.", SIGNATURE, origin="bedrock_converse"),
                          ir.Thinking(redacted="cmVk", origin="bedrock_converse"),
                          ir.ToolCall("tooluse_1", "get_weather", '{"city":"Paris"}'),
                          ir.ToolCall("tooluse_2", "get_weather", '{"city":"London"}'))
    assert resp.finish_reason is ir.FinishReason.tool_calls


def test_usage_with_cache_counts():
    resp = bc.parse_response(reply([{"text": "Hi"}], inputTokens=10, outputTokens=5, totalTokens=115,
                                   cacheReadInputTokens=60, cacheWriteInputTokens=40), request())
    assert resp.usage == ir.Usage(input_tokens=110, output_tokens=5, cache_read_tokens=60, cache_write_tokens=40)


def test_stop_sequence_named_by_claude():
    data = json.loads(reply([{"text": "One, two, three"}], "stop_sequence"))
    data["additionalModelResponseFields"] = {"stop_sequence": "four"}
    resp = bc.parse_response(json.dumps(data).encode(), request())
    assert resp.stop_sequence == "four" and resp.finish_reason is ir.FinishReason.stop


@pytest.mark.parametrize("raw", [b"not json", b'{"output": {}}', b"[]"])
def test_malformed_reply_is_a_bad_gateway(raw):
    with pytest.raises(ProxyError) as caught:
        bc.parse_response(raw, request())
    assert caught.value.kind is ErrorKind.bad_gateway


# ============================================================== StreamParser


def stream(chunks: list[bytes]) -> list[ir.Event]:
    framer, parser = EventStreamFramer(), bc.StreamParser(request())
    events: list[ir.Event] = []
    for chunk in chunks:
        for frame in framer.feed(chunk):
            events += parser.feed(frame)
    for frame in framer.close():
        events += parser.feed(frame)
    return events + parser.close()


def events_bytes(*events: tuple[str, dict]) -> bytes:
    return b"".join(encode_event(name, json.dumps({**payload, "p": "abcdef"}).encode()) for name, payload in events)


def test_live_capture_at_every_split(real_samples):
    """Text deltas with no contentBlockStart, usage trailing after messageStop."""
    data = (real_samples / "bedrock" / "converse_stream_live_ok.eventstream").read_bytes()
    expected = [ir.MessageStart("", "claude-3-sonnet"), ir.PartStart(0, "text"), ir.TextDelta(0, "OK"),
                ir.TextDelta(0, "."), ir.PartStop(0),
                ir.MessageStop(ir.FinishReason.stop, ir.Usage(12, 5), raw_finish_reason="end_turn")]
    for chunks in every_split(data):
        assert stream(chunks) == expected


def test_exception_frame_is_a_stream_error(real_samples):
    data = (real_samples / "bedrock" / "converse_stream_exception_frame.eventstream").read_bytes()
    head = events_bytes(("messageStart", {"role": "assistant"}),
                        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}))
    for chunks in every_split(head + data):
        events = stream(chunks)
        assert events[:3] == [ir.MessageStart("", "claude-3-sonnet"), ir.PartStart(0, "text"),
                              ir.TextDelta(0, "Hel")]
        assert len(events) == 4 and isinstance(events[3], ir.StreamError)
    err = events[3].error
    assert (err.kind, err.status, err.code) == (ErrorKind.bad_gateway, 502, "ModelStreamErrorException")
    assert err.message == "Model Stream Error (the model said 500: The model stream failed.)"


@pytest.mark.parametrize("name, kind, status", [
    ("throttlingException", ErrorKind.rate_limit, 429), ("validationException", ErrorKind.invalid_request, 400),
    ("internalServerException", ErrorKind.api_error, 500),
    ("serviceUnavailableException", ErrorKind.overloaded, 503),
    ("modelStreamErrorException", ErrorKind.bad_gateway, 502),
])
def test_each_exception_kind(name, kind, status):
    data = events_bytes(("messageStart", {"role": "assistant"})) + encode_exception(
        name, b'{"message":"Too many tokens, please wait before trying again."}')
    events = stream([data])
    err = events[-1].error
    assert (err.kind, err.status) == (kind, status)
    assert err.message == "Too many tokens, please wait before trying again."


TOOL_STREAM = events_bytes(
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking both."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_A", "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ""}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\": \"Pa"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "ris\"}"}}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_B", "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\": \"London\"}"}}}),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": {"inputTokens": 66, "outputTokens": 28, "totalTokens": 94}, "metrics": {"latencyMs": 9}}),
)


def test_parallel_tool_calls_stay_two_calls_at_every_split():
    """Known gateway bug 5: parallel tool calls from Converse must not collapse into one."""
    expected = [
        ir.MessageStart("", "claude-3-sonnet"),
        ir.PartStart(0, "text"), ir.TextDelta(0, "Checking both."), ir.PartStop(0),
        ir.PartStart(1, "tool_call", id="tooluse_A", name="get_weather"),
        ir.ToolArgumentsDelta(1, '{"city": "Pa'), ir.ToolArgumentsDelta(1, 'ris"}'), ir.PartStop(1),
        ir.PartStart(2, "tool_call", id="tooluse_B", name="get_weather"),
        ir.ToolArgumentsDelta(2, '{"city": "London"}'), ir.PartStop(2),
        ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(66, 28), raw_finish_reason="tool_use"),
    ]
    for chunks in every_split(TOOL_STREAM):
        assert stream(chunks) == expected
    folded = ir.response_from_events(expected)
    assert [p.arguments_object() for p in folded.parts if isinstance(p, ir.ToolCall)] == [
        {"city": "Paris"}, {"city": "London"}]


def test_reasoning_then_text_with_signature_and_metadata_first():
    data = events_bytes(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Short "}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "answer."}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "42"}}),
        ("metadata", {"usage": {"inputTokens": 20, "outputTokens": 17, "totalTokens": 37}, "metrics": {}}),
        ("messageStop", {"stopReason": "stop_sequence",
                         "additionalModelResponseFields": {"delta": {"stop_sequence": "four"}}}),
    )
    assert stream([data]) == [
        ir.MessageStart("", "claude-3-sonnet"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Short "), ir.ThinkingDelta(0, "answer."),
        ir.SignatureDelta(0, SIGNATURE, "bedrock_converse"), ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "42"), ir.PartStop(1),
        ir.MessageStop(ir.FinishReason.stop, ir.Usage(20, 17), stop_sequence="four",
                       raw_finish_reason="stop_sequence"),
    ]


def test_redacted_reasoning_arrives_whole():
    data = events_bytes(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "cmVk"}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}),
    )
    assert stream([data])[1:3] == [ir.PartStart(0, "redacted_thinking", data="cmVk", origin="bedrock_converse"),
                                   ir.PartStop(0)]


def test_a_delta_for_the_next_block_closes_the_open_one():
    data = events_bytes(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "b"}}),
        ("messageStop", {"stopReason": "max_tokens"}),
        ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
    )
    assert stream([data]) == [
        ir.MessageStart("", "claude-3-sonnet"), ir.PartStart(0, "text"), ir.TextDelta(0, "a"), ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "b"), ir.PartStop(1),
        ir.MessageStop(ir.FinishReason.length, ir.Usage(1, 2), raw_finish_reason="max_tokens")]


def test_stream_cut_before_message_stop_is_an_error():
    data = events_bytes(("messageStart", {"role": "assistant"}),
                        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}))
    events = stream([data])
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is ErrorKind.bad_gateway


def test_message_stop_without_metadata_still_finishes():
    data = events_bytes(("messageStart", {"role": "assistant"}), ("messageStop", {"stopReason": "end_turn"}))
    assert stream([data])[-1] == ir.MessageStop(ir.FinishReason.stop, ir.Usage(), raw_finish_reason="end_turn")


def test_malformed_event_payload_is_a_stream_error():
    data = events_bytes(("messageStart", {"role": "assistant"})) + encode_event("contentBlockDelta", b'{"delta":')
    events = stream([data])
    assert isinstance(events[-1], ir.StreamError) and "malformed" in events[-1].error.message


# ================================================================ parse_error


@pytest.mark.parametrize("status, error_type, kind, expected_status", [
    (400, "ValidationException", ErrorKind.invalid_request, 400),
    (403, "AccessDeniedException", ErrorKind.permission, 403),
    (403, "UnrecognizedClientException", ErrorKind.authentication, 401),
    (403, "InvalidSignatureException", ErrorKind.authentication, 401),
    (404, "ResourceNotFoundException", ErrorKind.not_found, 404),
    (408, "ModelTimeoutException", ErrorKind.timeout, 504),
    (424, "ModelErrorException", ErrorKind.bad_gateway, 502),
    (429, "ThrottlingException", ErrorKind.rate_limit, 429),
    (500, "InternalServerException", ErrorKind.api_error, 500),
    (503, "ServiceUnavailableException", ErrorKind.overloaded, 503),
    (418, "SomethingNewException", ErrorKind.invalid_request, 418),
])
def test_http_errors_by_error_type(status, error_type, kind, expected_status):
    headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-RequestId": "r-1"}
    err = bc.parse_error(status, headers, b'{"message":"The provided model identifier is invalid."}')
    assert (err.kind, err.status, err.code) == (kind, expected_status, error_type)
    assert err.message == "The provided model identifier is invalid."


def test_error_type_from_the_body_and_retry_after():
    err = bc.parse_error(429, {"Retry-After": "7"}, b'{"__type":"com.amazon.coral.service#ThrottlingException",'
                                                     b'"message":"Too many requests"}')
    assert (err.kind, err.code, err.retry_after) == (ErrorKind.rate_limit, "ThrottlingException", "7")


def test_error_without_json_keeps_the_status():
    err = bc.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert (err.kind, err.status, err.message) == (ErrorKind.bad_gateway, 502, "<html>Bad Gateway</html>")
