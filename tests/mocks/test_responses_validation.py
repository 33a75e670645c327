"""The Responses mock refuses what the real API refuses (each with the field
named), and accepts what real clients and our own backend writer send: the
recorded Codex requests and `openai_responses.build_body` for every kind of IR
conversation."""
from __future__ import annotations

import json

import pytest

from app import ir
from app.protocols import openai_responses
from app.protocols.base import Target
from tests.mocks.helpers import post
from tests.unit.test_openai_responses import codex_samples

PROVIDER = "openai_responses"
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


def send(mock_url: str, body: dict, path: str = "/v1/responses", **kwargs):
    return post(mock_url, PROVIDER, path, body, **kwargs)


@pytest.mark.parametrize("fields, status, param, code", [
    (dict(messages=[{"role": "user", "content": "Hi"}]), 400, "messages", "unknown_parameter"),
    (dict(stop=["x"]), 400, "stop", "unknown_parameter"),
    (dict(max_tokens=50), 400, "max_tokens", "unsupported_parameter"),
    (dict(response_format={"type": "json_object"}), 400, "response_format", "unsupported_parameter"),
    (dict(max_output_tokens=4), 400, "max_output_tokens", "integer_below_min_value"),
    (dict(tools=[{"type": "function", "function": {"name": "get_weather"}}]), 400, "tools[0].function",
     "unknown_parameter"),
    (dict(tools=[{"type": "function"}]), 400, "tools[0].name", "missing_required_parameter"),
    (dict(tools=[{"type": "teleport"}]), 400, "tools[0].type", "invalid_value"),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "name": "other"}), 400, "tool_choice.name",
     "invalid_value"),
    (dict(input=[OUTPUT]), 400, "input[0]", None),
    (dict(input=[CALL]), 400, "input", None),
    (dict(input=[{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]), 400,
     "input[0].content[0]", "invalid_value"),
    (dict(input=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]), 400, "input[0].content[0]",
     "invalid_value"),
    (dict(input=[{"role": "tool", "content": "x"}]), 400, "input[0].role", "invalid_value"),
    (dict(input=[{"type": "reasoning", "encrypted_content": "x"}]), 400, "input[0].summary",
     "missing_required_parameter"),
    (dict(text={"format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}), 400,
     "text.format.json_schema", "unknown_parameter"),
    (dict(reasoning={"effort": "low"}), 400, "reasoning.effort", "unsupported_parameter"),  # gpt-4o
    (dict(include=["reasoning.encrypted_content"]), 400, "include", "unsupported_parameter"),
    (dict(previous_response_id="resp_1"), 404, "previous_response_id", "previous_response_not_found"),
    (dict(model="gpt-9"), 404, None, "model_not_found"),
    (dict(input=...), 400, "input", "missing_required_parameter"),
])
def test_refused_with_the_field_named(mock_url, fields, status, param, code):
    body = {"model": "gpt-4o", "input": "Hi", **fields}
    reply = send(mock_url, {k: v for k, v in body.items() if v is not ...})
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_auth_is_required(mock_url):
    reply = send(mock_url, {"model": "gpt-4o", "input": "Hi"}, headers={"Authorization": ""})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


def test_every_recorded_codex_request_is_accepted(mock_url, real_samples):
    for name, body in codex_samples(real_samples).items():
        reply = send(mock_url, {**body, "model": "gpt-5-nano"})
        assert reply.status_code == 200, (name, reply.text[:300])
        assert reply.text.rstrip().endswith("}") and "event: response.completed" in reply.text, name


TARGET = Target(backend="openai", model="gpt-5-nano")
WEATHER_IR = ir.Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def user(text: str) -> ir.Message:
    return ir.Message("user", (ir.Text(text),))


CONVERSATIONS = {
    "text": dict(messages=(ir.Message("system", (ir.Text("Be brief."),)), user("Hi")), max_tokens=4,
                 temperature=1.0),
    "tool_loop": dict(messages=(
        user("Weather?"),
        ir.Message("assistant", (ir.Thinking("hm", "sig", origin="anthropic"), ir.Text("Checking."),
                                 ir.ToolCall("toolu_01abc", "get_weather", '{"city":"Oslo"}'),
                                 ir.ToolCall("toolu_02abc", "get_weather", '{"city":"Rome"}'))),
        ir.Message("tool", (ir.ToolResult("toolu_01abc", (ir.Text("3C"),)),
                            ir.ToolResult("toolu_02abc", (ir.Text("Sun"), ir.Image(url="https://x.test/a.png"))))),
        user("And tomorrow?")), tools=(WEATHER_IR,), tool_choice=ir.ToolChoice("tool", "get_weather"),
        parallel_tool_calls=True),
    "reasoning": dict(messages=(user("Hi"), ir.Message("assistant", (
        ir.Thinking("Sum.", "gAAAA", origin=openai_responses.PROTOCOL), ir.Text("Hello"))), user("More")),
        reasoning=ir.Reasoning(effort="low", include_thoughts=True)),
    "json": dict(messages=(user("City?"),),
                 response_format=ir.ResponseFormat("json_schema", {"type": "object"}, "city", True)),
    "long_call_id": dict(messages=(user("Hi"), ir.Message("assistant", (ir.ToolCall("x" * 80, "get_weather"),)),
                                   ir.Message("tool", (ir.ToolResult("x" * 80, (ir.Text("ok"),)),))),
                         tools=(WEATHER_IR,)),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_our_backend_bodies_are_accepted(mock_url, name, stream):
    req = ir.Request(model="client", protocol="anthropic", stream=stream, **CONVERSATIONS[name])
    reply = send(mock_url, openai_responses.build_body(req, TARGET))
    assert reply.status_code == 200, reply.text[:400]
    if stream:
        events = [json.loads(b.split("\ndata: ", 1)[1]) for b in reply.text.split("\n\n") if b]
        assert events[-1]["type"] in ("response.completed", "response.incomplete")


def test_codex_request_rebuilt_from_the_ir_is_accepted(mock_url, real_samples):
    """Codex -> IR -> Responses backend (not passthrough): custom tools, namespaces, hosted tools, history."""
    for name, body in codex_samples(real_samples).items():
        req = openai_responses.parse_request(body)
        reply = send(mock_url, openai_responses.build_body(req, TARGET))
        assert reply.status_code == 200, (name, reply.text[:400])
