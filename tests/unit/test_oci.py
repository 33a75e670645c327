"""The OCI Generative AI wire (app/protocols/oci.py) as a specification: IR requests
in, the exact `chatRequest` out, in both formats (COHERE, GENERIC); ChatResult
replies, SSE streams (at every byte boundary) and error envelopes back to IR."""
from __future__ import annotations

import json

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import oci
from app.protocols.base import Target
from app.upstream.framing import Frame
from tests.conftest import every_split, stream_events

COHERE_MODEL = "cohere.command-r-plus-08-2024"
COHERE_TARGET = Target("oci", COHERE_MODEL)
GENERIC_TARGET = Target("oci", "meta.llama-3.3-70b-instruct")
SCHEMA = {"type": "object", "properties": {"location": {"type": "string", "description": "City name"},
                                           "unit": {"type": ["string", "null"], "enum": ["C", "F"]},
                                           "days": {"type": "integer"}, "hourly": {"type": "boolean"},
                                           "tags": {"type": "array", "items": {"type": "string"}},
                                           "near": {"type": "object"}, "score": {"type": "number"}},
          "required": ["location"]}
WEATHER = ir.Tool("get_weather", "Get the current weather", SCHEMA)


def user(*parts) -> ir.Message:
    return ir.Message("user", tuple(ir.Text(p) if isinstance(p, str) else p for p in parts))


def request(*messages: ir.Message, **kw) -> ir.Request:
    return ir.Request(model="command-r-plus", messages=messages, protocol="openai", **kw)


def chat(req: ir.Request, target: Target = COHERE_TARGET) -> dict:
    body = oci.build_body(req, target)
    assert list(body) == ["chatRequest"]  # compartment and serving mode are the provider's
    return body["chatRequest"]


def refused(req: ir.Request, target: Target = COHERE_TARGET) -> ProxyError:
    with pytest.raises(ProxyError) as e:
        oci.build_body(req, target)
    assert e.value.kind is ErrorKind.invalid_request
    return e.value


# ================================================================ the format


@pytest.mark.parametrize("model,options,expected", [
    (COHERE_MODEL, {}, "COHERE"), ("meta.llama-3.3-70b-instruct", {}, "GENERIC"),
    ("xai.grok-3", {"api_format": "cohere"}, "COHERE"), (COHERE_MODEL, {"api_format": "GENERIC"}, "GENERIC")])
def test_the_format_follows_the_model_unless_configured(model, options, expected):
    assert oci.api_format(Target("oci", model, options)) == expected


def test_an_unknown_configured_format_is_a_configuration_error():
    with pytest.raises(ProxyError) as e:
        oci.build_body(request(user("Hi")), Target("oci", COHERE_MODEL, {"api_format": "COHEREV3"}))
    assert e.value.kind is ErrorKind.configuration and "options.api_format" in e.value.message


# ================================================================ COHERE requests


def test_cohere_text_with_system_and_history():
    req = request(ir.Message("system", (ir.Text("Be brief."),)), user("My name is Ada."),
                  ir.Message("assistant", (ir.Text("Nice to meet you, Ada."),)), user("What is my name?"),
                  max_tokens=100, temperature=0.3, top_p=0.9, top_k=40, seed=7, stop=("four", ""))
    assert chat(req) == {
        "apiFormat": "COHERE", "message": "What is my name?",
        "chatHistory": [{"role": "USER", "message": "My name is Ada."},
                        {"role": "CHATBOT", "message": "Nice to meet you, Ada."}],
        "preambleOverride": "Be brief.", "maxTokens": 100, "temperature": 0.3, "topP": 0.9, "topK": 40, "seed": 7,
        "stopSequences": ["four"]}


def test_cohere_stream_asks_for_usage():
    assert chat(request(user("Hi"), stream=True)) == {"apiFormat": "COHERE", "message": "Hi", "isStream": True,
                                                      "streamOptions": {"isIncludeUsage": True}}


def test_cohere_later_system_message_keeps_its_place():
    req = request(user("One"), ir.Message("assistant", (ir.Text("Two"),)),
                  ir.Message("developer", (ir.Text("Answer in French."),)), user("Three"))
    assert chat(req)["chatHistory"] == [{"role": "USER", "message": "One"}, {"role": "CHATBOT", "message": "Two"},
                                        {"role": "SYSTEM", "message": "Answer in French."}]


def test_cohere_tools_are_flat_parameter_definitions():
    assert chat(request(user("Weather?"), tools=(WEATHER, ir.Tool("now")))) ["tools"] == [
        {"name": "get_weather", "description": "Get the current weather", "parameterDefinitions": {
            "location": {"description": "City name", "type": "str", "isRequired": True},
            "unit": {"description": 'One of: "C", "F"', "type": "str", "isRequired": False},
            "days": {"type": "int", "isRequired": False}, "hourly": {"type": "bool", "isRequired": False},
            "tags": {"type": "List", "isRequired": False}, "near": {"type": "Dict", "isRequired": False},
            "score": {"type": "float", "isRequired": False}}},
        {"name": "now", "description": "now"}]  # the API requires a description


def test_cohere_tool_round_trip_pairs_results_with_their_calls_by_content():
    call = ir.ToolCall("call_1", "get_weather", '{"location": "Paris"}')
    other = ir.ToolCall("call_2", "get_weather", '{"location": "London"}')
    req = request(user("Weather in Paris and London?"), ir.Message("assistant", (ir.Text("Checking."), call, other)),
                  ir.Message("tool", (ir.ToolResult("call_2", (ir.Text("12C"),)),)),
                  ir.Message("tool", (ir.ToolResult("call_1", (ir.Text("18C"),), is_error=True),)),
                  tools=(WEATHER,))
    body = chat(req)
    assert body["message"] == ""
    assert body["chatHistory"] == [
        {"role": "USER", "message": "Weather in Paris and London?"},
        {"role": "CHATBOT", "message": "Checking.", "toolCalls": [
            {"name": "get_weather", "parameters": {"location": "Paris"}},
            {"name": "get_weather", "parameters": {"location": "London"}}]}]
    assert body["toolResults"] == [
        {"call": {"name": "get_weather", "parameters": {"location": "London"}}, "outputs": [{"output": "12C"}]},
        {"call": {"name": "get_weather", "parameters": {"location": "Paris"}}, "outputs": [{"error": "18C"}]}]


def test_cohere_earlier_tool_turns_go_to_history_as_tool_entries():
    call = ir.ToolCall("c1", "get_weather", '{"location": "Paris"}')
    req = request(user("Paris?"), ir.Message("assistant", (call,)),
                  ir.Message("tool", (ir.ToolResult("c1", (ir.Text("18C"),)),)),
                  ir.Message("assistant", (ir.Text("18C in Paris."),)), user("Thanks"), tools=(WEATHER,))
    body = chat(req)
    assert body["message"] == "Thanks" and "toolResults" not in body
    assert body["chatHistory"][1:] == [
        {"role": "CHATBOT", "toolCalls": [{"name": "get_weather", "parameters": {"location": "Paris"}}]},
        {"role": "TOOL", "toolResults": [{"call": {"name": "get_weather", "parameters": {"location": "Paris"}},
                                          "outputs": [{"output": "18C"}]}]},
        {"role": "CHATBOT", "message": "18C in Paris."}]


def test_cohere_result_of_an_unseen_call_uses_its_name():
    req = request(ir.Message("tool", (ir.ToolResult("x", (ir.Text("ok"),), name="lookup"),)), tools=(WEATHER,))
    assert chat(req)["toolResults"] == [{"call": {"name": "lookup", "parameters": {}}, "outputs": [{"output": "ok"}]}]


def test_cohere_json_output():
    fmt = ir.ResponseFormat("json_schema", {"type": "object", "properties": {"a": {"type": "integer"}}}, "answer")
    assert chat(request(user("JSON"), response_format=fmt))["responseFormat"] == {
        "type": "JSON_OBJECT", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    assert chat(request(user("JSON"), response_format=ir.ResponseFormat("json_object")))["responseFormat"] == {
        "type": "JSON_OBJECT"}


def test_cohere_tool_choice_none_leaves_the_tools_out():
    assert "tools" not in chat(request(user("Hi"), tools=(WEATHER,), tool_choice=ir.ToolChoice("none")))


@pytest.mark.parametrize("req,param", [
    (request(user("What is this?", ir.Image(data="iVBORw0KGgo=", media_type="image/png"))), "messages.0.content.1"),
    (request(user("Hi"), tools=(WEATHER,), tool_choice=ir.ToolChoice("required")), "tool_choice"),
    (request(user("Hi"), tools=(WEATHER,), tool_choice=ir.ToolChoice("tool", "get_weather")), "tool_choice"),
    (request(user("Hi"), ir.Message("assistant", (ir.Text("Well,"),))), "messages"),
    (request(ir.Message("tool", (ir.ToolResult("nowhere", (ir.Text("?"),)),))), "messages.0.content.0"),
    (request(user("Hi"), ir.Message("assistant", (ir.ToolCall("c", "f", "[1]"),)),
             ir.Message("tool", (ir.ToolResult("c", (ir.Text("r"),)),))), "messages.1.content.0"),
    (request(ir.Message("user", (ir.Opaque("anthropic", "document block", {}, "messages.0.content.0"),))),
     "messages.0.content.0"),
])
def test_cohere_refuses_what_it_cannot_carry(req, param):
    assert refused(req).param == param


# ================================================================ GENERIC requests


def test_generic_messages_with_content_parts_and_tool_calls():
    call = ir.ToolCall("call_9", "get_weather", '{"location":"Paris"}')
    req = request(ir.Message("system", (ir.Text("Be brief."),)),
                  user("Weather here?", ir.Image(data="iVBORw0KGgo=", media_type="image/png"),
                       ir.Image(url="https://example.com/a.jpg")),
                  ir.Message("assistant", (ir.Thinking("hmm"), call)),
                  ir.Message("tool", (ir.ToolResult("call_9", (ir.Text("18C"),)),)),
                  tools=(ir.Tool("get_weather", "Get the weather", {"type": "object", "properties": {}}),),
                  tool_choice=ir.ToolChoice("tool", "get_weather"), parallel_tool_calls=False,
                  reasoning=ir.Reasoning(effort="xhigh"), max_tokens=50, stop=("END",), stream=True)
    assert chat(req, GENERIC_TARGET) == {
        "apiFormat": "GENERIC",
        "messages": [
            {"role": "SYSTEM", "content": [{"type": "TEXT", "text": "Be brief."}]},
            {"role": "USER", "content": [{"type": "TEXT", "text": "Weather here?"},
                                         {"type": "IMAGE", "imageUrl": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                                         {"type": "IMAGE", "imageUrl": {"url": "https://example.com/a.jpg"}}]},
            {"role": "ASSISTANT", "toolCalls": [{"id": "call_9", "type": "FUNCTION", "name": "get_weather",
                                                 "arguments": '{"location":"Paris"}'}]},
            {"role": "TOOL", "toolCallId": "call_9", "content": [{"type": "TEXT", "text": "18C"}]}],
        "tools": [{"type": "FUNCTION", "name": "get_weather", "description": "Get the weather",
                   "parameters": {"type": "object", "properties": {}}}],
        "toolChoice": {"type": "FUNCTION", "name": "get_weather"}, "isParallelToolCalls": False,
        "maxTokens": 50, "isStream": True, "streamOptions": {"isIncludeUsage": True}, "stop": ["END"],
        "reasoningEffort": "HIGH"}


def test_generic_tool_choice_modes_and_structured_output():
    fmt = ir.ResponseFormat("json_schema", {"type": "object"}, "out", strict=True)
    body = chat(request(user("Hi"), tools=(WEATHER,), tool_choice=ir.ToolChoice("required"), response_format=fmt),
                GENERIC_TARGET)
    assert body["toolChoice"] == {"type": "REQUIRED"}
    assert body["responseFormat"] == {"type": "JSON_SCHEMA",
                                      "jsonSchema": {"name": "out", "schema": {"type": "object"}, "isStrict": True}}


# ================================================================ replies


def result(chat_response: dict) -> bytes:
    return json.dumps({"modelId": COHERE_MODEL, "modelVersion": "1.7", "chatResponse": chat_response}).encode()


def test_cohere_text_reply():
    resp = oci.parse_response(result({"apiFormat": "COHERE", "text": "Hello!", "finishReason": "COMPLETE",
                                      "chatHistory": [], "usage": {"promptTokens": 12, "completionTokens": 3,
                                                                   "totalTokens": 15}}), request(user("Hi")))
    assert resp == ir.Response(id="", model="command-r-plus", parts=(ir.Text("Hello!"),),
                               finish_reason=ir.FinishReason.stop, usage=ir.Usage(12, 3), raw_finish_reason="COMPLETE")


def test_cohere_tool_calls_get_stable_distinct_ids():
    calls = [{"name": "get_weather", "parameters": {"location": "Paris"}}] * 2
    body = result({"apiFormat": "COHERE", "text": "", "toolCalls": calls, "finishReason": "COMPLETE"})
    first = oci.parse_response(body, request(user("Hi")))
    assert [(p.name, json.loads(p.arguments)) for p in first.parts] == [("get_weather", {"location": "Paris"})] * 2
    ids = [p.id for p in first.parts]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert ids == [p.id for p in oci.parse_response(body, request(user("Hi"))).parts]
    assert first.finish_reason is ir.FinishReason.tool_calls


@pytest.mark.parametrize("raw,finish", [
    ("COMPLETE", ir.FinishReason.stop), ("USER_CANCEL", ir.FinishReason.stop), ("MAX_TOKENS", ir.FinishReason.length),
    ("ERROR_LIMIT", ir.FinishReason.length), ("ERROR_TOXIC", ir.FinishReason.content_filter),
    ("ERROR", ir.FinishReason.error), ("SOMETHING_NEW", ir.FinishReason.stop)])
def test_cohere_finish_reasons(raw, finish):
    body = result({"apiFormat": "COHERE", "text": "x", "finishReason": raw, "errorMessage": "why"})
    resp = oci.parse_response(body, request(user("Hi")))
    assert (resp.finish_reason, resp.raw_finish_reason, resp.finish_message) == (finish, raw, "why")


def test_generic_reply_with_reasoning_and_tool_calls():
    body = result({"apiFormat": "GENERIC", "timeCreated": "2025-01-01T00:00:00Z", "choices": [{
        "index": 0, "finishReason": "tool_calls", "message": {
            "role": "ASSISTANT", "reasoningContent": "Think.", "content": [{"type": "TEXT", "text": "Let me see."}],
            "toolCalls": [{"id": "call_a", "type": "FUNCTION", "name": "get_weather", "arguments": '{"location":"Paris"}'},
                          {"type": "FUNCTION", "name": "get_weather", "arguments": '{"location":"Rome"}'}]}}],
        "usage": {"promptTokens": 30, "completionTokens": 20, "completionTokensDetails": {"reasoningTokens": 5},
                  "promptTokensDetails": {"cachedTokens": 10}}})
    resp = oci.parse_response(body, request(user("Hi")))
    assert resp.parts[:3] == (ir.Thinking("Think."), ir.Text("Let me see."),
                              ir.ToolCall("call_a", "get_weather", '{"location":"Paris"}'))
    assert resp.parts[3].id.startswith("call_") and resp.parts[3].arguments == '{"location":"Rome"}'
    assert resp.finish_reason is ir.FinishReason.tool_calls
    assert resp.usage == ir.Usage(30, 20, reasoning_tokens=5, cache_read_tokens=10)


@pytest.mark.parametrize("body", [b"{not json", b'{"modelId": "m"}', result({"apiFormat": "GENERIC", "choices": []})])
def test_malformed_replies_are_bad_gateways(body):
    with pytest.raises(ProxyError) as e:
        oci.parse_response(body, request(user("Hi")))
    assert e.value.kind is ErrorKind.bad_gateway


# ================================================================ streams


def sse(*events: dict, sep: str = "\n\n") -> bytes:
    return "".join(f"data: {json.dumps(e, ensure_ascii=False)}{sep}" for e in events).encode()


def folded(chunks: list[bytes], req: ir.Request | None = None) -> tuple[ir.Response, list]:
    events = stream_events(oci.StreamParser(req or request(user("Hi"), stream=True)), chunks)
    return ir.response_from_events(events), events


COHERE_TEXT_STREAM = sse(
    {"apiFormat": "COHERE", "text": "Héllo"}, {"apiFormat": "COHERE", "text": ", wörld"},
    {"apiFormat": "COHERE", "text": "Héllo, wörld", "chatHistory": [{"role": "CHATBOT", "message": "Héllo, wörld"}],
     "finishReason": "COMPLETE", "usage": {"promptTokens": 5, "completionTokens": 2, "totalTokens": 7}})


def test_cohere_text_stream_at_every_split():
    for chunks in every_split(COHERE_TEXT_STREAM):
        resp, events = folded(chunks)
        assert resp.parts == (ir.Text("Héllo, wörld"),), chunks  # the terminal event's repeat is not added
        assert resp.finish_reason is ir.FinishReason.stop and resp.usage == ir.Usage(5, 2)
        assert not any(isinstance(e, ir.StreamError) for e in events)


def test_cohere_events_separated_by_one_line_end():
    body = COHERE_TEXT_STREAM.replace(b"\n\n", b"\n")
    resp, _ = folded([body])
    assert resp.parts == (ir.Text("Héllo, wörld"),) and resp.usage == ir.Usage(5, 2)


COHERE_TOOL_STREAM = sse(
    {"apiFormat": "COHERE", "text": "I will check."},
    {"apiFormat": "COHERE", "toolCalls": [{"name": "get_weather", "parameters": {"location": "Paris"}},
                                          {"name": "get_weather", "parameters": {"location": "London"}}]},
    {"apiFormat": "COHERE", "text": "I will check.", "finishReason": "COMPLETE",
     "toolCalls": [{"name": "get_weather", "parameters": {"location": "Paris"}},
                   {"name": "get_weather", "parameters": {"location": "London"}}]}) + b"data: [DONE]\n\n"


def test_cohere_tool_stream_at_every_split():
    for chunks in every_split(COHERE_TOOL_STREAM):
        resp, _ = folded(chunks)
        assert [type(p).__name__ for p in resp.parts] == ["Text", "ToolCall", "ToolCall"]
        assert [json.loads(p.arguments) for p in resp.parts[1:]] == [{"location": "Paris"}, {"location": "London"}]
        assert len({p.id for p in resp.parts[1:]}) == 2
        assert resp.finish_reason is ir.FinishReason.tool_calls


def test_cohere_tool_calls_only_on_the_terminal_event():
    resp, _ = folded([sse({"apiFormat": "COHERE", "text": "", "finishReason": "COMPLETE",
                           "toolCalls": [{"name": "f", "parameters": {}}]})])
    assert [(p.name, p.arguments) for p in resp.parts] == [("f", "{}")]
    assert resp.finish_reason is ir.FinishReason.tool_calls


def test_cohere_text_only_on_the_terminal_event():
    resp, _ = folded([sse({"apiFormat": "COHERE", "text": "All at once.", "finishReason": "MAX_TOKENS"})])
    assert resp.parts == (ir.Text("All at once."),) and resp.finish_reason is ir.FinishReason.length


@pytest.mark.parametrize("tail,kind", [
    (b"", ErrorKind.bad_gateway),  # ended without its terminal event
    (b'data: {"apiFormat":"COHERE","text":"cut\n\n', ErrorKind.bad_gateway),
    (b'data: {"code":"TooManyRequests","message":"slow down"}\n\n', ErrorKind.rate_limit),
    (b'data: {"code":"ServiceUnavailable","message":"later"}\n\n', ErrorKind.overloaded)])
def test_stream_failures_are_stream_errors(tail, kind):
    body = sse({"apiFormat": "COHERE", "text": "Hello"}) + tail
    for chunks in every_split(body):
        _, events = folded(chunks)
        assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is kind
        assert [e.text for e in events if isinstance(e, ir.TextDelta)] == ["Hello"]


GENERIC_STREAM = sse(
    {"index": 0, "message": {"role": "ASSISTANT", "reasoningContent": "Hmm."}},
    {"index": 0, "message": {"role": "ASSISTANT", "content": [{"type": "TEXT", "text": "Let me "}]}},
    {"index": 0, "message": {"role": "ASSISTANT", "content": [{"type": "TEXT", "text": "look."}]}},
    {"index": 0, "message": {"role": "ASSISTANT", "toolCalls": [{"id": "call_x", "type": "FUNCTION",
                                                                 "name": "get_weather", "arguments": ""}]}},
    {"index": 0, "message": {"role": "ASSISTANT", "toolCalls": [{"arguments": '{"location":'}]}},
    {"index": 0, "message": {"role": "ASSISTANT", "toolCalls": [{"arguments": '"Paris"}'}]}},
    {"index": 0, "message": {"role": "ASSISTANT", "toolCalls": [{"type": "FUNCTION", "name": "get_time",
                                                                 "arguments": "{}"}]}},
    {"index": 0, "finishReason": "tool_calls", "usage": {"promptTokens": 9, "completionTokens": 8}})


def test_generic_stream_at_every_split():
    for chunks in every_split(GENERIC_STREAM):
        resp, _ = folded(chunks)
        assert resp.parts[:3] == (ir.Thinking("Hmm."), ir.Text("Let me look."),
                                  ir.ToolCall("call_x", "get_weather", '{"location":"Paris"}'))
        assert resp.parts[3].name == "get_time" and resp.parts[3].id.startswith("call_")
        assert resp.finish_reason is ir.FinishReason.tool_calls and resp.usage == ir.Usage(9, 8)


# ================================================================ errors


@pytest.mark.parametrize("status,code,kind", [
    (400, "InvalidParameter", ErrorKind.invalid_request), (401, "NotAuthenticated", ErrorKind.authentication),
    (404, "NotAuthorizedOrNotFound", ErrorKind.not_found), (429, "TooManyRequests", ErrorKind.rate_limit),
    (500, "InternalServerError", ErrorKind.api_error), (503, "ServiceUnavailable", ErrorKind.overloaded),
    (409, "Conflict", ErrorKind.invalid_request)])
def test_error_envelopes(status, code, kind):
    body = json.dumps({"code": code, "message": "Something went wrong."}).encode()
    err = oci.parse_error(status, {"opc-request-id": "R1", "Retry-After": "7"}, body)
    assert (err.kind, err.status, err.code, err.message, err.retry_after) == (
        kind, status, code, "Something went wrong.", "7")


def test_an_error_body_that_is_not_json():
    err = oci.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert (err.kind, err.status, err.message) == (ErrorKind.bad_gateway, 502, "<html>Bad Gateway</html>")


def test_frames_are_never_passed_through_unparsed():
    assert oci.is_content_frame(Frame(None, '{"apiFormat":"COHERE","text":"x"}')) is False


def test_generic_terminal_event_without_a_message():
    body = sse({"index": 0, "message": {"role": "ASSISTANT", "content": [{"type": "TEXT", "text": "The quick"}]}},
               {"index": 0, "finishReason": "length"})
    resp, _ = folded([body])
    assert resp.parts == (ir.Text("The quick"),) and resp.finish_reason is ir.FinishReason.length
