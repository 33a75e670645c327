"""OpenAI Responses protocol module: fixtures in, exact shapes out.

Sections follow the module: parse_request (mapping, Codex's tools, every 400
naming its field, the recorded Codex requests), the frontend writers
(format_response, StreamFormatter fed into the official SDK's own stream
accumulator), the backend writers (build_body,
passthrough_body) and readers (parse_response, StreamParser split at every
byte boundary).
"""
from __future__ import annotations

import json
import re

import httpx2
import openai
import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import openai_responses as r
from app.protocols.base import Target
from app.upstream.framing import Frame
from tests.conftest import every_split, stream_events
from tests.upstream_call import Upstream, built

CREATED = 1760000000
TARGET = Target(backend="azure", model="gpt-5-deploy")
P = r.PROTOCOL


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    for module in (r.response, r.stream_formatter):  # the modules that read the clock
        monkeypatch.setattr(module, "_now", lambda: CREATED)


def body(**fields) -> dict:
    base = {"model": "gpt-5", "input": "Hi"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def user(text: str) -> ir.Message:
    return ir.Message("user", (ir.Text(text),))


WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}
PATCH_FORMAT = {"type": "grammar", "syntax": "lark", "definition": "start: \"*** Begin Patch\" /.+/"}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": PATCH_FORMAT}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
          "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}, "strict": False}]}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}',
        "id": "fc_1", "status": "completed"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c":3}'}


# ====================================================================
# parse_request: mapping
# ====================================================================

def test_string_input_and_instructions():
    req = r.parse_request(body(instructions="Be brief.", max_output_tokens=64, temperature=0.5, top_p=0.9,
                               store=False, user="u1", stream=True))
    assert req.messages == (ir.Message("system", (ir.Text("Be brief."),)), user("Hi"))
    assert (req.protocol, req.model, req.stream, req.max_tokens, req.temperature, req.top_p, req.store, req.user) \
        == (P, "gpt-5", True, 64, 0.5, 0.9, False, "u1")
    assert req.raw["instructions"] == "Be brief."


def test_multi_turn_items_with_a_function_call_output_turn():
    req = r.parse_request(body(tools=[WEATHER], input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules"}]},
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.",
                                                              "annotations": []}]},
        CALL, OUTPUT,
        {"role": "user", "content": [{"type": "input_text", "text": "Thanks"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K",
                                      "detail": "low"}]},
    ]))
    assert req.messages == (
        ir.Message("developer", (ir.Text("Rules"),)),
        user("Weather in Oslo?"),
        ir.Message("assistant", (ir.Text("Checking."), ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}'))),
        ir.Message("tool", (ir.ToolResult("call_1", (ir.Text('{"temp_c":3}'),), name="get_weather"),)),
        ir.Message("user", (ir.Text("Thanks"), ir.Image(data="iVBORw0K", media_type="image/png", detail="low"))),
    )
    assert req.tools == (ir.Tool("get_weather", "Weather for a city", WEATHER["parameters"], False),)


def test_function_call_output_as_a_parts_list():
    req = r.parse_request(body(input=[CALL, {**OUTPUT, "output": [
        {"type": "input_text", "text": "Sunny"}, {"type": "input_image", "image_url": "https://x.test/a.png"}]}]))
    assert req.messages[1] == ir.Message("tool", (ir.ToolResult(
        "call_1", (ir.Text("Sunny"), ir.Image(url="https://x.test/a.png")), name="get_weather"),))


def test_parallel_calls_and_their_outputs_form_one_turn_each():
    second = {**CALL, "call_id": "call_2", "arguments": '{"city":"Rome"}'}
    req = r.parse_request(body(input=[CALL, second, OUTPUT, {**OUTPUT, "call_id": "call_2", "output": "8"}]))
    assert [m.role for m in req.messages] == ["assistant", "tool"]
    assert [p.id for p in req.messages[0].parts] == ["call_1", "call_2"]
    assert [p.call_id for p in req.messages[1].parts] == ["call_1", "call_2"]


def test_reasoning_items_become_thinking_of_this_protocol():
    req = r.parse_request(body(input=[
        {"role": "user", "content": "Hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Step one."},
                                                         {"type": "summary_text", "text": "Step two."}],
         "encrypted_content": "gAAAAenc"},
        {"type": "reasoning", "id": "rs_2", "summary": []},  # id only: nothing to carry
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
    ], reasoning={"effort": "high", "summary": "detailed"}))
    assert req.messages[1] == ir.Message("assistant", (
        ir.Thinking("Step one.\n\nStep two.", "gAAAAenc", origin=P), ir.Text("Hello")))
    assert req.reasoning == ir.Reasoning(effort="high", include_thoughts=True)


def test_custom_tool_is_a_function_of_one_string_argument():
    req = r.parse_request(body(tools=[APPLY_PATCH], tool_choice={"type": "custom", "name": "apply_patch"}, input=[
        {"role": "user", "content": "Add a file"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_p", "name": "apply_patch",
         "input": "*** Begin Patch\n+hi\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "rejected"},
    ]))
    tool = req.tools[0]
    assert (tool.name, tool.kind, tool.input_format, tool.description) == ("apply_patch", "custom", PATCH_FORMAT,
                                                                          "Edit files.")
    assert tool.parameters == r.custom_input_schema(PATCH_FORMAT)
    assert tool.parameters["required"] == ["input"]
    assert PATCH_FORMAT["definition"] in tool.parameters["properties"]["input"]["description"]
    assert req.tool_choice == ir.ToolChoice("tool", "apply_patch")
    call = req.messages[1].parts[0]
    assert call == ir.ToolCall("call_p", "apply_patch", '{"input":"*** Begin Patch\\n+hi\\n"}')
    assert call.arguments_object() == {"input": "*** Begin Patch\n+hi\n"}
    assert req.messages[2].parts[0] == ir.ToolResult("call_p", (ir.Text("rejected"),), name="apply_patch")


def test_namespace_tools_are_flattened_and_calls_in_history_too():
    req = r.parse_request(body(tools=[AGENTS], input=[
        {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "close_agent",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "closed"}]))
    assert req.tools == (ir.Tool("multi_agent_v1__close_agent", None, {"type": "object"}, False,
                                 namespace="multi_agent_v1"),)
    assert req.messages[0].parts[0].name == "multi_agent_v1__close_agent"


def test_hosted_tools_ride_as_opaque_and_codex_ones_are_droppable():
    search = {"type": "web_search", "external_web_access": False}
    tool_search = {"type": "tool_search", "execution": "client", "parameters": {"type": "object"}}
    files = {"type": "file_search", "vector_store_ids": ["vs_1"]}
    req = r.parse_request(body(tools=[WEATHER, search, tool_search, files]))
    assert [t.native for t in req.tools[1:]] == [
        ir.Opaque(P, "web_search tool", search, "tools[1]", droppable=True),
        ir.Opaque(P, "tool_search tool", tool_search, "tools[2]", droppable=True),
        ir.Opaque(P, "file_search tool", files, "tools[3]")]
    # Another protocol's writer gets the function and the file search (which it refuses), not the droppable ones.
    assert [t.name for t in ir.tools_for("anthropic", req.tools)] == ["get_weather", "file_search"]
    assert ir.tools_for(P, req.tools) == req.tools


@pytest.mark.parametrize("choice, expected", [
    ("auto", ir.ToolChoice("auto")), ("none", ir.ToolChoice("none")), ("required", ir.ToolChoice("required")),
    ({"type": "function", "name": "get_weather"}, ir.ToolChoice("tool", "get_weather")),
])
def test_tool_choice(choice, expected):
    assert r.parse_request(body(tools=[WEATHER], tool_choice=choice)).tool_choice == expected


def test_allowed_tools_narrow_the_tools():
    other = {**WEATHER, "name": "get_time"}
    req = r.parse_request(body(tools=[WEATHER, other], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}))
    assert [t.name for t in req.tools] == ["get_time"] and req.tool_choice == ir.ToolChoice("required")


@pytest.mark.parametrize("fmt, expected", [
    ({"type": "text"}, ir.ResponseFormat("text")),
    ({"type": "json_object"}, ir.ResponseFormat("json_object")),
    ({"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True},
     ir.ResponseFormat("json_schema", {"type": "object"}, "city", True)),
])
def test_text_format(fmt, expected):
    assert r.parse_request(body(text={"format": fmt, "verbosity": "low"})).response_format == expected


def test_codex_top_level_fields_are_accepted_and_kept_raw():
    req = r.parse_request(body(store=False, include=["reasoning.encrypted_content"], prompt_cache_key="s1",
                               metadata={"k": "v"}, parallel_tool_calls=True, client_metadata={"x": "y"},
                               text={"verbosity": "low"}, reasoning={"summary": "auto"}))
    assert (req.store, req.parallel_tool_calls, req.response_format) == (False, True, None)
    assert req.reasoning == ir.Reasoning(include_thoughts=True, optional=True)
    assert req.raw["prompt_cache_key"] == "s1"


@pytest.mark.parametrize("reasoning, expected", [
    # A summary alone asks to see reasoning, not for it: not a thinking requirement at routing.
    ({"summary": "auto"}, ir.Reasoning(include_thoughts=True, optional=True)),
    ({"effort": "medium"}, ir.Reasoning(effort="medium")),
    ({"effort": "low", "summary": "auto"}, ir.Reasoning(effort="low", include_thoughts=True)),
])
def test_reasoning_is_required_only_with_an_effort(reasoning, expected):
    req = r.parse_request(body(reasoning=reasoning))
    assert req.reasoning == expected
    assert ("thinking" in req.capabilities()) is (expected.effort is not None)


def test_call_ids_longer_than_openais_are_accepted():
    # The proxy issued them: a Gemini call's id carries its thought signature (hazard 25).
    long_id = "call_0123456789abcdef0123_ts_" + "A" * 200
    req = r.parse_request(body(input=[{**CALL, "call_id": long_id}, {**OUTPUT, "call_id": long_id}]))
    assert [p.id for p in req.messages[-2].parts] == [long_id]
    assert [p.call_id for p in req.messages[-1].parts] == [long_id]


def test_previous_response_id_is_carried_and_allows_outputs_of_stored_calls():
    req = r.parse_request(body(previous_response_id="resp_9", input=[OUTPUT]))
    assert req.previous_response_id == "resp_9"
    assert req.messages == (ir.Message("tool", (ir.ToolResult("call_1", (ir.Text('{"temp_c":3}'),)),)),)
    assert r.parse_request(body(previous_response_id="resp_9", input=...)).messages == ()


# ====================================================================
# parse_request: validation (every 400 names its field)
# ====================================================================

@pytest.mark.parametrize("fields, param", [
    (dict(model=...), "model"),
    (dict(input=...), "input"),
    (dict(input=[]), "input"),
    (dict(messages=[{"role": "user", "content": "Hi"}]), "messages"),
    (dict(max_tokens=5), "max_tokens"),
    (dict(stop=["x"]), "stop"),
    (dict(n=2), "n"),
    (dict(max_output_tokens=0), "max_output_tokens"),
    (dict(temperature=3), "temperature"),
    (dict(top_p=-1), "top_p"),
    (dict(stream="yes"), "stream"),
    (dict(store="no"), "store"),
    (dict(metadata={"a": 1}), "metadata"),
    (dict(include="reasoning.encrypted_content"), "include"),
    (dict(truncation="sometimes"), "truncation"),
    (dict(conversation="conv_1"), "conversation"),
    (dict(conversation="conv_1", previous_response_id="resp_1"), "conversation"),
    (dict(reasoning={"effort": "huge"}), "reasoning.effort"),
    (dict(reasoning={"summary": "all"}), "reasoning.summary"),
    (dict(text={"verbosity": "loud"}), "text.verbosity"),
    (dict(text={"format": {"type": "json_schema", "schema": {}}}), "text.format.name"),
    (dict(text={"format": {"type": "json_schema", "name": "x"}}), "text.format.schema"),
    (dict(text={"format": {"type": "yaml"}}), "text.format.type"),
    (dict(tools={"type": "function"}), "tools"),
    (dict(tools=[{"type": "function", "function": {"name": "get_weather"}}]), "tools[0].function"),
    (dict(tools=[{"type": "function", "name": "bad name"}]), "tools[0].name"),
    (dict(tools=[WEATHER, WEATHER]), "tools[1].name"),
    (dict(tools=[{"type": "teleport"}]), "tools[0].type"),
    (dict(tools=[{**AGENTS, "tools": [{"type": "web_search"}]}]), "tools[0].tools[0].type"),
    (dict(tools=[{**APPLY_PATCH, "format": {"type": "regex"}}]), "tools[0].format"),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "name": "nope"}), "tool_choice.name"),
    (dict(tools=[WEATHER], tool_choice={"type": "custom", "name": "get_weather"}), "tool_choice.name"),
    (dict(tools=[WEATHER], tool_choice={"type": "web_search"}), "tool_choice.type"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(input=[{"role": "robot", "content": "x"}]), "input[0].role"),
    (dict(input=[{"role": "user", "content": 5}]), "input[0].content"),
    (dict(input=[{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]), "input[0].content[0]"),
    (dict(input=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]), "input[0].content[0]"),
    (dict(input=[{"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}]),
     "input[0].content[0]"),
    (dict(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]),
     "input[0].content[0].image_url"),
    (dict(input=[OUTPUT]), "input[0].call_id"),
    (dict(input=[CALL]), "input[0]"),
    (dict(input=[{**CALL, "call_id": ""}]), "input[0].call_id"),
    (dict(input=[{**CALL, "arguments": {"city": "Oslo"}}, OUTPUT]), "input[0].arguments"),
    (dict(input=[CALL, {**OUTPUT, "output": [{"type": "output_text", "text": "x"}]}]), "input[1].output[0].type"),
    (dict(input=[{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}]), "input[0].input"),
    (dict(input=[{"type": "reasoning", "summary": "thinking"}]), "input[0].summary"),
    (dict(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0]"),
    (dict(input=[{"content": "x"}]), "input[0].type"),
    (dict(instructions=["x"]), "instructions"),
])
def test_invalid_requests_name_the_field(fields, param):
    with pytest.raises(ProxyError) as caught:
        r.parse_request(body(**fields))
    assert caught.value.kind is ErrorKind.invalid_request
    assert caught.value.param == param


def test_format_error_is_the_openai_envelope():
    status, headers, raw = r.format_error(ProxyError(ErrorKind.invalid_request, "bad", param="input[0]"))
    assert (status, headers["Content-Type"]) == (400, "application/json")
    assert json.loads(raw) == {"error": {"message": "bad", "type": "invalid_request_error", "param": "input[0]",
                                         "code": None}}


# ====================================================================
# The recorded Codex requests
# ====================================================================

_PLACEHOLDER = re.compile(r"^<text (\d+) chars>$")


def _expand(value):
    """`<text N chars>` (prose removed when recording) -> N characters of text."""
    if isinstance(value, str):
        m = _PLACEHOLDER.match(value)
        return "x" * int(m.group(1)) if m else value
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def codex_samples(real_samples):
    paths = sorted((real_samples / "client-requests").glob("codex_*.json"))
    assert paths, "no recorded Codex requests"
    return {p.stem: _expand(json.loads(p.read_text())["body"]) for p in paths}


def test_every_recorded_codex_request_parses(real_samples):
    for name, raw in codex_samples(real_samples).items():
        req = r.parse_request(raw)
        assert req.stream and req.store is False and req.model == raw["model"], name
        assert req.messages[0].role == "developer" and req.messages[0].parts[0].text.startswith("x"), name
        kinds = {t.kind for t in req.tools if t.native is None}
        natives = {t.native.data["type"] for t in req.tools if t.native is not None}
        assert "function" in kinds and natives <= {"web_search", "tool_search"}, name
        assert all(t.native.droppable for t in req.tools if t.native is not None), name
        # The whole request can be sent to another protocol's writer once its droppable tools are left out.
        assert not any(t.native for t in ir.tools_for("anthropic", req.tools)), name


def test_recorded_codex_tool_loops_pair_calls_with_outputs(real_samples):
    samples = codex_samples(real_samples)
    fc = r.parse_request(samples["codex_function-call-output"])
    call, result = fc.messages[-2].parts[0], fc.messages[-1].parts[0]
    assert (call.id, call.name, call.arguments_object()) == (
        "call_02e07215b19a426da3d12288", "exec_command", {"cmd": "cat does_not_exist_capture.txt"})
    assert result.call_id == call.id and result.name == "exec_command" and "No such file" in result.text()
    assert any(t.namespace == "multi_agent_v1" and t.name.startswith("multi_agent_v1__") for t in fc.tools)

    custom = r.parse_request(samples["codex_custom-tool-output"])
    call, result = custom.messages[-2].parts[0], custom.messages[-1].parts[0]
    assert call.name == "apply_patch" and call.arguments_object()["input"].startswith("*** Begin Patch\n")
    assert result.call_id == call.id and result.text().startswith("patch rejected")
    patch = next(t for t in custom.tools if t.name == "apply_patch")
    assert patch.kind == "custom" and patch.input_format["syntax"] == "lark"


# ====================================================================
# format_response
# ====================================================================

def parsed(**fields) -> ir.Request:
    return r.parse_request(body(**fields))


def test_format_text_response():
    req = parsed(instructions="Be brief.", store=False, max_output_tokens=100)
    resp = ir.Response("abc", "gpt-5-2025", (ir.Text("Hello!"),),
                       usage=ir.Usage(12, 15, reasoning_tokens=4, cache_read_tokens=8))
    assert r.format_response(resp, req) == {
        "id": "resp_abc", "object": "response", "created_at": CREATED, "status": "completed",
        "background": False, "completed_at": CREATED, "error": None, "incomplete_details": None,
        "instructions": "Be brief.", "max_output_tokens": 100, "model": "gpt-5-2025",
        "output": [{"id": "msg_abc_0", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]}],
        "parallel_tool_calls": True, "previous_response_id": None, "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 15,
                  "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 27},
        "user": None, "metadata": {},
    }


def test_format_keeps_an_upstream_resp_id():
    resp = ir.Response("resp_123", "gpt-5", (ir.Text("x"),))
    assert r.format_response(resp, parsed())["id"] == "resp_123"


def test_format_tool_calls_restore_custom_and_namespace():
    req = parsed(tools=[WEATHER, APPLY_PATCH, AGENTS])
    resp = ir.Response("abc", "m", (
        ir.Text("Let me."),
        ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),
        ir.ToolCall("call_2", "apply_patch", '{"input": "*** Begin Patch\\n"}'),
        ir.ToolCall("call_3", "multi_agent_v1__close_agent", '{"target":"a1"}'),
    ), finish_reason=ir.FinishReason.tool_calls)
    out = r.format_response(resp, req)
    assert out["status"] == "completed"
    assert out["output"][1:] == [
        {"id": "fc_abc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
         "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"id": "ctc_abc_2", "type": "custom_tool_call", "status": "completed", "call_id": "call_2",
         "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"id": "fc_abc_3", "type": "function_call", "status": "completed", "call_id": "call_3",
         "name": "close_agent", "arguments": '{"target":"a1"}', "namespace": "multi_agent_v1"},
    ]
    assert out["tools"] == [WEATHER, APPLY_PATCH, AGENTS]


def test_a_custom_call_answered_without_the_wrapper_passes_its_text_on():
    req = parsed(tools=[APPLY_PATCH])
    resp = ir.Response("abc", "m", (ir.ToolCall("c", "apply_patch", "*** Begin Patch"),))
    assert r.format_response(resp, req)["output"][0]["input"] == "*** Begin Patch"


@pytest.mark.parametrize("summary, provider, expected", [
    ("auto", P, {"id": "rs_abc_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}],
                 "encrypted_content": "ENC"}),
    (..., P, {"id": "rs_abc_0", "type": "reasoning", "summary": [], "encrypted_content": "ENC"}),
    ("auto", "anthropic", {"id": "rs_abc_0", "type": "reasoning",
                           "summary": [{"type": "summary_text", "text": "Think."}]}),
    (..., "anthropic", None),  # nothing to show or carry: no item
])
def test_format_reasoning(summary, provider, expected):
    reasoning = {"effort": "low", "summary": summary} if summary is not ... else {"effort": "low"}
    resp = ir.Response("abc", "m", (ir.Thinking("Think.", "ENC", origin=provider), ir.Text("42")))
    output = r.format_response(resp, parsed(reasoning=reasoning))["output"]
    assert output[:-1] == ([expected] if expected else [])
    assert output[-1]["type"] == "message"


@pytest.mark.parametrize("finish, reason", [(ir.FinishReason.length, "max_output_tokens"),
                                            (ir.FinishReason.content_filter, "content_filter")])
def test_format_incomplete(finish, reason):
    out = r.format_response(ir.Response("abc", "m", (ir.Text("The quick"),), finish_reason=finish), parsed())
    assert (out["status"], out["incomplete_details"], out["output"][0]["status"]) == (
        "incomplete", {"reason": reason}, "incomplete")


def test_format_refuses_a_failed_turn():
    with pytest.raises(ProxyError) as caught:
        r.format_response(ir.Response("a", "m", (), finish_reason=ir.FinishReason.error,
                                      raw_finish_reason="MALFORMED_FUNCTION_CALL"), parsed())
    assert caught.value.kind is ErrorKind.bad_gateway


def test_refusal_shares_the_message_item():
    out = r.format_response(ir.Response("a", "m", (ir.Text("Well"), ir.Refusal("No."))), parsed())
    assert out["output"][0]["content"][1] == {"type": "refusal", "refusal": "No."}


# ====================================================================
# StreamFormatter, read back by the official SDK
# ====================================================================

def sse_events(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            event, payload = block.split("\n")
            assert event.startswith("event: ") and payload.startswith("data: ")
            out.append((event[7:], json.loads(payload[6:])))
    return out


def sdk_stream(data: bytes, **params):
    """The SDK's `responses.stream()` over our bytes: its events and the accumulated final response."""
    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=data))
    client = openai.OpenAI(api_key="k", base_url="http://proxy.test/v1", max_retries=0,
                           http_client=httpx2.Client(transport=transport))
    with client.responses.stream(model="gpt-5", input="Hi", **params) as stream:
        events = list(stream)
        final = stream._state._completed_response
    return events, final


def formatted(req: ir.Request, events: list[ir.Event]) -> bytes:
    f = r.StreamFormatter(req, created=CREATED)
    return b"".join(f.feed(e) for e in events) + f.finish()


def ir_text_events(*texts: str, finish=ir.FinishReason.stop) -> list[ir.Event]:
    out: list[ir.Event] = [ir.MessageStart("abc", "gpt-5"), ir.PartStart(0, "text")]
    out += [ir.TextDelta(0, t) for t in texts]
    return out + [ir.PartStop(0), ir.MessageStop(finish, ir.Usage(12, len(texts)))]


def test_stream_text_event_sequence():
    data = formatted(parsed(stream=True), ir_text_events("Hel", "lo"))
    events = sse_events(data)
    assert [e for e, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert all(payload["type"] == event for event, payload in events)
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    assert b"[DONE]" not in data
    added, delta, done = events[2][1], events[4][1], events[8][1]
    assert added == {"type": "response.output_item.added", "output_index": 0, "sequence_number": 2, "item": {
        "id": "msg_abc_0", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}
    assert delta == {"type": "response.output_text.delta", "item_id": "msg_abc_0", "output_index": 0,
                     "content_index": 0, "delta": "Hel", "logprobs": [], "sequence_number": 4}
    assert done["item"]["content"] == [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]
    final = events[-1][1]["response"]
    assert (final["status"], final["output"], final["usage"]["output_tokens"]) == ("completed", [done["item"]], 2)

    sdk_events, response = sdk_stream(data)
    assert response.output_text == "Hello" and response.id == "resp_abc"
    assert [e.snapshot for e in sdk_events if e.type == "response.output_text.delta"] == ["Hel", "Hello"]


def test_stream_tools_reasoning_custom_and_namespace_through_the_sdk():
    req = parsed(stream=True, tools=[WEATHER, APPLY_PATCH, AGENTS], reasoning={"effort": "low", "summary": "auto"})
    data = formatted(req, [
        ir.MessageStart("abc", "gpt-5"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Plan"), ir.ThinkingDelta(0, "ned."),
        ir.SignatureDelta(0, "ENC", P), ir.PartStop(0),
        ir.PartStart(1, "tool_call", id="call_1", name="get_weather"),
        ir.ToolArgumentsDelta(1, '{"city":'), ir.ToolArgumentsDelta(1, '"Oslo"}'), ir.PartStop(1),
        ir.PartStart(2, "tool_call", id="call_2", name="apply_patch"),
        ir.ToolArgumentsDelta(2, '{"input":"*** Begin'), ir.ToolArgumentsDelta(2, ' Patch\\n"}'), ir.PartStop(2),
        ir.PartStart(3, "tool_call", id="call_3", name="multi_agent_v1__close_agent"),
        ir.ToolArgumentsDelta(3, "{}"), ir.PartStop(3),
        ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(64, 14, reasoning_tokens=5)),
    ])
    names = [e for e, _ in sse_events(data)]
    assert names[2:9] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
                          "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                          "response.output_item.done"]
    assert "response.function_call_arguments.done" in names and "response.custom_tool_call_input.done" in names

    sdk_events, response = sdk_stream(data)
    reasoning, weather, patch, agent = response.output
    assert (reasoning.summary[0].text, reasoning.encrypted_content) == ("Planned.", "ENC")
    assert (weather.type, weather.call_id, weather.name, weather.arguments) == (
        "function_call", "call_1", "get_weather", '{"city":"Oslo"}')
    assert (patch.type, patch.call_id, patch.name, patch.input) == (
        "custom_tool_call", "call_2", "apply_patch", "*** Begin Patch\n")
    assert (agent.type, agent.name, agent.namespace, agent.arguments) == (
        "function_call", "close_agent", "multi_agent_v1", "{}")
    assert response.usage.output_tokens_details.reasoning_tokens == 5
    assert [e.snapshot for e in sdk_events if e.type == "response.function_call_arguments.delta"] == [
        '{"city":', '{"city":"Oslo"}', "{}"]


def test_stream_hides_reasoning_text_unless_a_summary_was_asked_for():
    data = formatted(parsed(stream=True, reasoning={"effort": "low"}), [
        ir.MessageStart("abc", "m"), ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "secret"),
        ir.SignatureDelta(0, "ENC", P), ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "42"), ir.PartStop(1), ir.MessageStop(ir.FinishReason.stop)])
    assert b"secret" not in data
    _, response = sdk_stream(data)
    assert (response.output[0].summary, response.output[0].encrypted_content) == ([], "ENC")
    assert response.output_text == "42"


def test_stream_reasoning_with_nothing_to_show_or_carry_gets_no_item():
    data = formatted(parsed(stream=True, reasoning={"effort": "low"}), [
        ir.MessageStart("abc", "m"), ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "secret"),
        ir.SignatureDelta(0, "anthropic-sig", "anthropic"), ir.PartStop(0),
        ir.PartStart(1, "text"), ir.TextDelta(1, "42"), ir.PartStop(1), ir.MessageStop(ir.FinishReason.stop)])
    assert b"secret" not in data and b"anthropic-sig" not in data and b'"type":"reasoning"' not in data
    events, response = sdk_stream(data)
    assert [item.type for item in response.output] == ["message"] and response.output[0].id == "msg_abc_0"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_stream_incomplete_for_max_tokens():
    data = formatted(parsed(stream=True), ir_text_events("The", " quick", finish=ir.FinishReason.length))
    event, payload = sse_events(data)[-1]
    assert event == "response.incomplete"
    assert (payload["response"]["status"], payload["response"]["incomplete_details"]) == (
        "incomplete", {"reason": "max_output_tokens"})
    assert payload["response"]["output"][0]["status"] == "incomplete"
    sdk_events, response = sdk_stream(data)
    assert response is None and sdk_events[-1].type == "response.incomplete"
    assert sdk_events[-1].response.output[0].content[0].text == "The quick"


def test_stream_error_ends_with_an_error_event_and_response_failed():
    events = ir_text_events("Hello")[:3] + [ir.StreamError(ProxyError(ErrorKind.overloaded, "Overloaded"))]
    data = formatted(parsed(stream=True), events)
    names = [e for e, _ in sse_events(data)]
    assert names[-3:] == ["response.output_item.done", "error", "response.failed"]
    error, failed = sse_events(data)[-2:]
    assert error[1] == {"type": "error", "code": "server_is_overloaded", "message": "Overloaded", "param": None,
                        "sequence_number": error[1]["sequence_number"]}
    assert failed[1]["response"]["status"] == "failed"
    assert failed[1]["response"]["error"] == {"code": "server_is_overloaded", "message": "Overloaded"}
    sdk_events, response = sdk_stream(data)
    assert response is None and [e.type for e in sdk_events][-2:] == ["error", "response.failed"]
    assert sdk_events[-1].response.output[0].content[0].text == "Hello"


def test_stream_without_message_start_still_opens_the_response():
    f = r.StreamFormatter(parsed(stream=True), created=CREATED)
    first = sse_events(f.feed(ir.PartStart(0, "text")))
    assert [e for e, _ in first] == ["response.created", "response.in_progress", "response.output_item.added",
                                     "response.content_part.added"]


def test_relay_keeps_event_lines_and_drops_done():
    f = r.StreamFormatter(parsed(stream=True))
    assert f.relay(Frame("response.output_text.delta", '{"a":1}')) == \
        b'event: response.output_text.delta\ndata: {"a":1}\n\n'
    assert f.relay(Frame(None, "[DONE]")) == b""


# ====================================================================
# Backend: build_body / passthrough
# ====================================================================

def ir_req(messages, **fields) -> ir.Request:
    return ir.Request(model="client-model", messages=tuple(messages), protocol="anthropic", **fields)


def test_build_text_body():
    req = ir_req([ir.Message("system", (ir.Text("Be brief."),)), user("Hi")], max_tokens=50, temperature=0.2)
    assert r.build_body(req, TARGET) == {
        "model": "gpt-5-deploy",
        "input": [{"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
                  {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        "max_output_tokens": 50, "temperature": 0.2, "store": False}


@pytest.mark.parametrize("kind, base_url, auth, url", [
    ("openai_responses", "https://api.openai.test/v1", {"Authorization": "Bearer sk-up-1"},
     "https://api.openai.test/v1/responses"),
    ("azure_responses", "https://res.openai.azure.test", {"api-key": "sk-up-1"},
     "https://res.openai.azure.test/openai/responses?api-version=2025-04-01-preview"),
    ("azure_responses", "https://res.openai.azure.test/openai/v1", {"api-key": "sk-up-1"},
     "https://res.openai.azure.test/openai/v1/responses"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_the_whole_upstream_call_of_each_responses_kind(kind, base_url, auth, url, stream):
    up = Upstream(backend="b", base_url=base_url, model="gpt-5-deploy", api_key="sk-up-1", kind=kind,
                  headers={"X-Trace": "t-1", "Authorization": "Bearer client-key"})
    call = built(r, ir_req([user("Hi")], stream=stream), up)
    assert (call.method, call.url, call.stream) == ("POST", url, stream)
    assert call.headers == {"Content-Type": "application/json", "X-Trace": "t-1", **auth}
    assert json.loads(call.body) == {
        "model": "gpt-5-deploy", "input": [{"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": "Hi"}]}],
        "store": False, **({"stream": True} if stream else {})}


def test_build_tool_loop_body_pairs_calls_and_outputs_as_siblings():
    weather = ir.Tool("get_weather", "Weather", {"type": "object"})
    req = ir_req([
        user("Weather?"),
        ir.Message("assistant", (ir.Thinking("hmm", "sig", origin="anthropic"), ir.Text("Checking."),
                                 ir.ToolCall("toolu_1", "get_weather", '{"city":"Oslo"}'))),
        ir.Message("tool", (ir.ToolResult("toolu_1", (ir.Text("3C"),), name="get_weather"),)),
        ir.Message("tool", (ir.ToolResult("toolu_1", (ir.Text("Sunny"), ir.Image(url="https://x.test/i.png"))),)),
    ], tools=(weather,), tool_choice=ir.ToolChoice("tool", "get_weather"), parallel_tool_calls=False, stream=True)
    out = r.build_body(req, TARGET)
    assert out["input"][1:] == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.",
                                                             "annotations": []}]},
        {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "3C"},
        {"type": "function_call_output", "call_id": "toolu_1", "output": [
            {"type": "input_text", "text": "Sunny"}, {"type": "input_image", "image_url": "https://x.test/i.png"}]},
    ]
    assert out["tools"] == [{"type": "function", "name": "get_weather", "parameters": {"type": "object"},
                             "strict": False, "description": "Weather"}]
    assert (out["tool_choice"], out["parallel_tool_calls"], out["stream"]) == (
        {"type": "function", "name": "get_weather"}, False, True)


def test_build_sends_encrypted_reasoning_only_back_to_its_own_protocol():
    req = ir_req([user("Hi"), ir.Message("assistant", (
        ir.Thinking("Sum.", "gAAAA", origin=P), ir.Thinking("other", "sig", origin="anthropic"),
        ir.Thinking("", "gBBBB", origin=P), ir.Text("Hello"))), user("More")],
        reasoning=ir.Reasoning(effort="medium", include_thoughts=True))
    out = r.build_body(req, TARGET)
    assert out["input"][1:3] == [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Sum."}], "encrypted_content": "gAAAA"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gBBBB"}]
    assert out["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]


def test_build_custom_and_namespace_tools_from_a_responses_client():
    req = r.parse_request(body(tools=[APPLY_PATCH, AGENTS, {"type": "web_search"}], input=[
        {"role": "user", "content": "Go"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "ok"}]))
    out = r.build_body(req, TARGET)
    assert out["tools"] == [{"type": "custom", "name": "apply_patch", "description": "Edit files.",
                             "format": PATCH_FORMAT},
                            {"type": "function", "name": "multi_agent_v1__close_agent",
                             "parameters": {"type": "object"}, "strict": False},
                            {"type": "web_search"}]
    assert out["input"][1:] == [
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "ok"}]


@pytest.mark.parametrize("fmt, expected", [
    (ir.ResponseFormat("json_schema", {"type": "object"}, "city", True),
     {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}}),
    (ir.ResponseFormat("json_object"), {"format": {"type": "json_object"}}),
])
def test_build_text_format(fmt, expected):
    assert r.build_body(ir_req([user("Hi")], response_format=fmt), TARGET)["text"] == expected


def test_build_raises_a_limit_below_the_api_minimum():
    assert r.build_body(ir_req([user("Hi")], max_tokens=4), TARGET)["max_output_tokens"] == 16


def test_build_reasoning_budget_maps_to_effort():
    out = r.build_body(ir_req([user("Hi")], reasoning=ir.Reasoning(budget_tokens=16000)), TARGET)
    assert out["reasoning"] == {"effort": "high"} and out["include"] == ["reasoning.encrypted_content"]


@pytest.mark.parametrize("fields, param", [
    (dict(stop=("END",)), "stop"),
    (dict(n=2), "n"),
    (dict(tools=(ir.Tool("googleSearch", native=ir.Opaque("gemini", "googleSearch tool", {}, "tools[0]")),)),
     "tools[0]"),
])
def test_build_refuses_what_responses_cannot_carry(fields, param):
    with pytest.raises(ProxyError) as caught:
        r.build_body(ir_req([user("Hi")], **fields), TARGET)
    assert caught.value.param == param


def test_build_refuses_another_protocols_opaque_part():
    doc = ir.Opaque("anthropic", "document block", {"type": "document"}, "messages[0].content[1]")
    with pytest.raises(ProxyError) as caught:
        r.build_body(ir_req([ir.Message("user", (ir.Text("Read"), doc))]), TARGET)
    assert caught.value.param == "messages[0].content[1]"


def test_passthrough_swaps_only_the_model():
    req = r.parse_request(body(stream=True, custom_field={"kept": True}))
    passthrough = r.passthrough_body(req, TARGET)
    assert passthrough == {**req.raw, "model": "gpt-5-deploy"} and passthrough["custom_field"] == {"kept": True}


# ====================================================================
# Backend: parse_response
# ====================================================================

UPSTREAM = {
    "id": "resp_up", "object": "response", "status": "completed", "model": "gpt-5-2025-08-07",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think."}],
         "encrypted_content": "gAAAA"},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Oslo"}', "status": "completed"},
        {"type": "function_call", "id": "fc_2", "call_id": "call_2", "namespace": "multi_agent_v1",
         "name": "close_agent", "arguments": "", "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_3", "name": "apply_patch", "input": "PATCH"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ],
    "usage": {"input_tokens": 291, "input_tokens_details": {"cached_tokens": 128}, "output_tokens": 23,
              "output_tokens_details": {"reasoning_tokens": 7}, "total_tokens": 314},
}


def test_parse_response():
    resp = r.parse_response(json.dumps(UPSTREAM).encode(), ir_req([user("Hi")]))
    assert resp == ir.Response(
        id="resp_up", model="gpt-5-2025-08-07",
        parts=(ir.Thinking("Think.", "gAAAA", origin=P), ir.Text("Checking."),
               ir.ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),
               ir.ToolCall("call_2", "multi_agent_v1__close_agent", "{}"),
               ir.ToolCall("call_3", "apply_patch", '{"input":"PATCH"}')),
        finish_reason=ir.FinishReason.tool_calls,
        usage=ir.Usage(291, 23, reasoning_tokens=7, cache_read_tokens=128), raw_finish_reason="completed")


@pytest.mark.parametrize("reason, finish", [("max_output_tokens", ir.FinishReason.length),
                                            ("content_filter", ir.FinishReason.content_filter)])
def test_parse_incomplete_response(reason, finish):
    doc = {**UPSTREAM, "status": "incomplete", "incomplete_details": {"reason": reason},
           "output": UPSTREAM["output"][1:2]}
    resp = r.parse_response(json.dumps(doc).encode(), ir_req([user("Hi")]))
    assert (resp.finish_reason, resp.raw_finish_reason, resp.parts) == (finish, reason, (ir.Text("Checking."),))


@pytest.mark.parametrize("raw, kind, code", [
    ({**UPSTREAM, "status": "failed", "error": {"code": "rate_limit_exceeded", "message": "Slow down"}},
     ErrorKind.rate_limit, "rate_limit_exceeded"),
    ({**UPSTREAM, "status": "failed", "error": {"code": "server_error", "message": "Oops"}},
     ErrorKind.api_error, "server_error"),
    ({**UPSTREAM, "status": "in_progress"}, ErrorKind.bad_gateway, None),
    ({"id": "x"}, ErrorKind.bad_gateway, None),
    ("not json", ErrorKind.bad_gateway, None),
])
def test_parse_response_failures(raw, kind, code):
    data = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
    with pytest.raises(ProxyError) as caught:
        r.parse_response(data, ir_req([user("Hi")]))
    assert (caught.value.kind, caught.value.code) == (kind, code)


def test_parse_error_uses_the_openai_envelope():
    err = r.parse_error(429, {"retry-after": "7"}, json.dumps({"error": {
        "message": "Rate limit", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}).encode())
    assert (err.kind, err.retry_after, err.code) == (ErrorKind.rate_limit, "7", "rate_limit_exceeded")


# ====================================================================
# Backend: StreamParser
# ====================================================================

def sse(*events: dict) -> bytes:
    out = []
    for n, e in enumerate(events):
        e = {**e, "sequence_number": n}
        out.append(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n")
    return "".join(out).encode()


RESPONSE = {"id": "resp_up", "object": "response", "model": "gpt-5-2025-08-07", "status": "in_progress",
            "output": [], "usage": None}
USAGE = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 6,
         "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18}


def lifecycle(*middle: dict, terminal: str = "response.completed", **response) -> bytes:
    return sse({"type": "response.created", "response": RESPONSE},
               {"type": "response.in_progress", "response": RESPONSE}, *middle,
               {"type": terminal, "response": {**RESPONSE, "status": "completed", "usage": USAGE, **response}})


MSG = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
TEXT_STREAM = lifecycle(
    {"type": "response.output_item.added", "output_index": 0, "item": MSG},
    {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "part": {"type": "output_text", "text": "", "annotations": []}},
    {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hé"},
    {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "delta": "llo"},
    {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "text": "Héllo"},
    {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "part": {"type": "output_text", "text": "Héllo", "annotations": []}},
    {"type": "response.output_item.done", "output_index": 0, "item": {**MSG, "status": "completed"}},
)
FC = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "",
      "status": "in_progress"}
RS = {"id": "rs_1", "type": "reasoning", "summary": []}
TOOL_STREAM = lifecycle(
    {"type": "response.output_item.added", "output_index": 0, "item": RS},
    {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
     "part": {"type": "summary_text", "text": ""}},
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
     "delta": "First."},
    {"type": "response.reasoning_summary_part.done", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
     "part": {"type": "summary_text", "text": "First."}},
    {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 1,
     "part": {"type": "summary_text", "text": ""}},
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 1,
     "delta": "Second."},
    {"type": "response.output_item.done", "output_index": 0,
     "item": {**RS, "summary": [{"type": "summary_text", "text": "First."}], "encrypted_content": "gAAAA"}},
    {"type": "response.output_item.added", "output_index": 1, "item": FC},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": '{"city":'},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": '"Oslo"}'},
    {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1,
     "arguments": '{"city":"Oslo"}'},
    {"type": "response.output_item.done", "output_index": 1,
     "item": {**FC, "arguments": '{"city":"Oslo"}', "status": "completed"}},
    {"type": "response.output_item.added", "output_index": 2,
     "item": {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": ""}},
    {"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "output_index": 2, "delta": "*** Begin"},
    {"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "output_index": 2, "delta": ' "Patch"'},
    {"type": "response.output_item.done", "output_index": 2,
     "item": {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch",
              "input": '*** Begin "Patch"'}},
)


def parse_stream(chunks: list[bytes]) -> list[ir.Event]:
    return stream_events(r.StreamParser(ir_req([user("Hi")], stream=True)), chunks)


def test_stream_parser_text_at_every_split():
    expected = [ir.MessageStart("resp_up", "gpt-5-2025-08-07"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hé"),
                ir.TextDelta(0, "llo"), ir.PartStop(0),
                ir.MessageStop(ir.FinishReason.stop, ir.Usage(12, 6, reasoning_tokens=3, cache_read_tokens=4),
                               raw_finish_reason="completed")]
    for chunks in every_split(TEXT_STREAM):
        assert parse_stream(chunks) == expected


def test_stream_parser_reasoning_tools_and_custom_input_at_every_split():
    expected = [
        ir.MessageStart("resp_up", "gpt-5-2025-08-07"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "First."), ir.ThinkingDelta(0, "\n\n"),
        ir.ThinkingDelta(0, "Second."), ir.SignatureDelta(0, "gAAAA", P), ir.PartStop(0),
        ir.PartStart(1, "tool_call", id="call_1", name="get_weather"),
        ir.ToolArgumentsDelta(1, '{"city":'), ir.ToolArgumentsDelta(1, '"Oslo"}'), ir.PartStop(1),
        ir.PartStart(2, "tool_call", id="call_2", name="apply_patch"),
        ir.ToolArgumentsDelta(2, '{"input":"*** Begin \\"Patch\\""}'), ir.PartStop(2),
        ir.MessageStop(ir.FinishReason.tool_calls, ir.Usage(12, 6, reasoning_tokens=3, cache_read_tokens=4),
                       raw_finish_reason="completed"),
    ]
    for chunks in every_split(TOOL_STREAM):
        assert parse_stream(chunks) == expected
    folded = ir.response_from_events(expected)
    assert folded.parts[0] == ir.Thinking("First.\n\nSecond.", "gAAAA", origin=P)
    assert folded.parts[2].arguments_object() == {"input": '*** Begin "Patch"'}


def test_stream_parser_namespaced_call_and_arguments_only_in_done():
    data = lifecycle(
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**FC, "namespace": "multi_agent_v1", "name": "close_agent"}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {**FC, "namespace": "multi_agent_v1", "name": "close_agent", "arguments": '{"target":"a"}'}})
    events = parse_stream([data])
    assert events[1:4] == [ir.PartStart(0, "tool_call", id="call_1", name="multi_agent_v1__close_agent"),
                           ir.ToolArgumentsDelta(0, '{"target":"a"}'), ir.PartStop(0)]


def test_stream_parser_blank_text_opens_no_part():
    data = lifecycle(
        {"type": "response.output_item.added", "output_index": 0, "item": MSG},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": ""}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "\n\n"},
        {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "\n\n"}},
        {"type": "response.output_item.done", "output_index": 0, "item": MSG})
    assert [type(e) for e in parse_stream([data])] == [ir.MessageStart, ir.MessageStop]


@pytest.mark.parametrize("reason, finish", [("max_output_tokens", ir.FinishReason.length),
                                            ("content_filter", ir.FinishReason.content_filter)])
def test_stream_parser_incomplete(reason, finish):
    data = TEXT_STREAM.rsplit(b"event: response.completed", 1)[0] + sse(
        {"type": "response.incomplete", "response": {**RESPONSE, "status": "incomplete",
                                                     "incomplete_details": {"reason": reason}, "usage": USAGE}})
    stop = parse_stream([data])[-1]
    assert (stop.finish_reason, stop.raw_finish_reason, stop.usage.output_tokens) == (finish, reason, 6)


@pytest.mark.parametrize("failure, kind", [
    ({"type": "response.failed", "response": {**RESPONSE, "status": "failed",
                                              "error": {"code": "server_is_overloaded", "message": "Busy"}}},
     ErrorKind.overloaded),
    ({"type": "error", "code": "rate_limit_exceeded", "message": "Busy", "param": None}, ErrorKind.rate_limit),
    ({"type": "error", "error": {"type": "server_error", "code": "server_error", "message": "Busy"}},
     ErrorKind.api_error),
])
def test_stream_parser_failures_mid_stream(failure, kind):
    head = TEXT_STREAM.split(b"event: response.output_text.done", 1)[0]
    for chunks in every_split(head + sse(failure)):
        events = parse_stream(chunks)
        assert events[:3] == [ir.MessageStart("resp_up", "gpt-5-2025-08-07"), ir.PartStart(0, "text"),
                              ir.TextDelta(0, "Hé")]
        assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is kind
        assert events[-1].error.message == "Busy"


def test_stream_parser_truncated_stream_is_an_error_not_a_finish():
    head = TEXT_STREAM.split(b"event: response.output_item.done", 1)[0]
    events = parse_stream([head])
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is ErrorKind.bad_gateway
    assert not any(isinstance(e, ir.MessageStop) for e in events)


def test_stream_parser_ignores_a_trailing_done_after_the_terminal_event():
    events = parse_stream([TEXT_STREAM + b"data: [DONE]\n\n"])
    assert isinstance(events[-1], ir.MessageStop)


def test_is_content_frame():
    assert r.is_content_frame(Frame("response.output_text.delta", '{"delta":"error"}'))
    assert not r.is_content_frame(Frame("response.completed", "{}"))
    assert not r.is_content_frame(Frame("error", "{}"))
    assert not r.is_content_frame(Frame(None, "{}"))


# ====================================================================
# Round trips through the IR
# ====================================================================

def test_responses_backend_stream_to_responses_client_through_the_ir():
    """Upstream events -> IR -> our formatter -> the SDK: what a Responses client sees."""
    req = parsed(stream=True, tools=[WEATHER, APPLY_PATCH], reasoning={"effort": "low", "summary": "auto"})
    parser, formatter = r.StreamParser(req), r.StreamFormatter(req, created=CREATED)
    data = b"".join(formatter.feed(e) for e in stream_events(parser, [TOOL_STREAM]))
    _, response = sdk_stream(data)
    reasoning, call, patch = response.output
    assert (reasoning.summary[0].text, reasoning.encrypted_content) == ("First.\n\nSecond.", "gAAAA")
    assert (call.call_id, call.arguments) == ("call_1", '{"city":"Oslo"}')
    assert (patch.type, patch.input) == ("custom_tool_call", '*** Begin "Patch"')
    assert response.usage.input_tokens_details.cached_tokens == 4


# ====================================================================
# The mock's fixtures, read by this module (the backend half against the same bytes the mock sends)
# ====================================================================

def _fixture_bytes(scenario) -> bytes:
    from mocks.responses import _EventWriter
    from mocks.scenarios import fill
    lookup = lambda name, salt: {"model": "gpt-5-nano", "id": f"ID{salt or ''}"}[name]  # noqa: E731
    writer = _EventWriter()
    return b"".join(writer.frame(f, lookup) for f in scenario.stream) + writer.end()


def _neutral(resp: ir.Response) -> dict:
    finish = {ir.FinishReason.stop: "stop", ir.FinishReason.length: "length",
              ir.FinishReason.tool_calls: "tool_calls"}[resp.finish_reason]
    usage = {"input": resp.usage.input_tokens, "output": resp.usage.output_tokens}
    if resp.usage.reasoning_tokens:
        usage["reasoning"] = resp.usage.reasoning_tokens
    out = {"text": "".join(p.text for p in resp.parts if isinstance(p, ir.Text)),
           "tool_calls": [{"name": p.name, "arguments": p.arguments_object()}
                          for p in resp.parts if isinstance(p, ir.ToolCall)],
           "finish": finish, "usage": usage}
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ir.Thinking))
    if thinking:
        out["thinking"] = thinking
    return out


@pytest.mark.parametrize("name", ["text", "function_calling", "parallel_function_calling", "after_tool_result",
                                  "thinking", "max_tokens", "stop_sequence", "vision"])
def test_mock_fixtures_mean_their_expect_through_this_module(name):
    from mocks.scenarios import ScenarioLibrary, fill
    from tests.mocks.helpers import expected_summary
    scenario = ScenarioLibrary().get("openai_responses", name)
    req = ir_req([user("Hi")], stream=True)
    expected = expected_summary(scenario.expect)
    body = fill(scenario.body, lambda n, salt: {"model": "gpt-5-nano", "id": f"ID{salt or ''}"}[n])
    assert _neutral(r.parse_response(json.dumps(body).encode(), req)) == expected
    data = _fixture_bytes(scenario)
    for chunks in [[data], [data[:len(data) // 3], data[len(data) // 3:]], [bytes([b]) for b in data[:400]]
                   + [data[400:]]]:
        events = parse_stream(chunks)
        assert _neutral(ir.response_from_events(events)) == expected
        assert isinstance(events[-1], ir.MessageStop)
    if name == "thinking":
        thinking = ir.response_from_events(parse_stream([data])).parts[0]
        assert thinking.signature and thinking.origin == P  # goes back to a Responses backend only


def test_mock_failed_and_truncated_fixtures_are_stream_errors():
    from mocks.scenarios import ScenarioLibrary
    library = ScenarioLibrary()
    failed = parse_stream([_fixture_bytes(library.get("openai_responses", "error_mid_stream"))])
    assert isinstance(failed[-1], ir.StreamError) and failed[-1].error.kind is ErrorKind.overloaded
    assert "".join(e.text for e in failed if isinstance(e, ir.TextDelta)) == "Hello! I'm a mock"
    cut = library.get("openai_responses", "drop_mid_stream")
    sent = _fixture_bytes(cut).split(b"\n\n")[:cut.fault.after_frames]  # what the mock sends before the cut
    dropped = parse_stream([b"\n\n".join(sent) + b"\n\n"])
    assert isinstance(dropped[-1], ir.StreamError) and dropped[-1].error.kind is ErrorKind.bad_gateway
    malformed = parse_stream([_fixture_bytes(library.get("openai_responses", "malformed_body"))])
    assert isinstance(malformed[-1], ir.StreamError) and malformed[-1].error.kind is ErrorKind.bad_gateway


# ====================================================================
# Every other protocol's fixture streams, through this module's formatter, read by the SDK
# ====================================================================

def _other_stream(provider: str, scenario) -> bytes:
    from mocks.anthropic import _EventWriter as AnthropicWriter
    from mocks.gemini import _SseWriter as GeminiWriter
    from mocks.openai import _SseWriter as OpenAIWriter
    writer = {"openai": OpenAIWriter, "anthropic": AnthropicWriter, "gemini": GeminiWriter}[provider]()
    lookup = lambda name, salt: {"model": "m", "id": f"ID{salt or ''}"}[name]  # noqa: E731
    return b"".join(writer.frame(f, lookup) for f in scenario.stream) + writer.end()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("name", ["text", "function_calling", "parallel_function_calling", "after_tool_result",
                                  "thinking", "max_tokens", "vision"])
def test_other_backends_streams_reach_a_responses_client(provider, name):
    from app.protocols import protocol_module
    from mocks.scenarios import ScenarioLibrary
    from tests.mocks.helpers import expected_summary
    scenario = ScenarioLibrary().get(provider, name)
    client_req = parsed(stream=True, tools=[{**WEATHER, "name": "get_weather"}],
                        reasoning={"effort": "low", "summary": "auto"})
    backend = protocol_module(provider)
    events = stream_events(backend.StreamParser(client_req), [_other_stream(provider, scenario)])
    data = formatted(client_req, events)
    sdk_events, final = sdk_stream(data)
    final = final or sdk_events[-1].response  # response.incomplete carries the cut answer
    calls = [{"name": i.name, "arguments": json.loads(i.arguments)} for i in final.output if i.type == "function_call"]
    finish = final.incomplete_details.reason if final.status == "incomplete" else ("tool_calls" if calls else "stop")
    got = {"text": final.output_text, "tool_calls": calls,
           "finish": {"max_output_tokens": "length"}.get(finish, finish),
           "usage": {"input": final.usage.input_tokens, "output": final.usage.output_tokens}}
    if final.usage.output_tokens_details.reasoning_tokens:
        got["usage"]["reasoning"] = final.usage.output_tokens_details.reasoning_tokens
    thinking = "".join(s.text for i in final.output if i.type == "reasoning" for s in i.summary)
    if thinking:
        got["thinking"] = thinking
    assert got == expected_summary(scenario.expect)


def test_model_options_verbosity_truncation_and_summary_level_are_written():
    """The router registry's per-model options (config ModelEntry -> target options, IR reasoning)."""
    target = Target(backend="azure", model="gpt-5-deploy", options={"verbosity": "low", "truncation": "auto"})
    req = ir_req([user("Hi")], reasoning=ir.Reasoning(effort="high", include_thoughts=True, summary="detailed"))
    out = r.build_body(req, target)
    assert (out["reasoning"], out["text"], out["truncation"]) == \
        ({"effort": "high", "summary": "detailed"}, {"verbosity": "low"}, "auto")
    fmt = ir.ResponseFormat(type="json_object")
    assert r.build_body(ir_req([user("Hi")], response_format=fmt), target)["text"] == \
        {"format": {"type": "json_object"}, "verbosity": "low"}
    # Same-protocol: what the client set itself wins.
    raw = {"model": "m", "input": "Hi", "text": {"verbosity": "high"}, "truncation": "disabled"}
    out = r.passthrough_body(ir_req([user("Hi")], raw=raw), target)
    assert (out["text"], out["truncation"], out["model"]) == ({"verbosity": "high"}, "disabled", "gpt-5-deploy")
    out = r.passthrough_body(ir_req([user("Hi")], raw={"model": "m", "input": "Hi"}), target)
    assert (out["text"], out["truncation"]) == ({"verbosity": "low"}, "auto")
