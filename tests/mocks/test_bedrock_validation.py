"""The Bedrock mock refuses what Converse refuses (the service model's shapes,
then the service's own rules), in Bedrock's envelope; and the proxy's wire
module (app/protocols/bedrock_converse) writes bodies it accepts and reads
its replies, streamed and not, back to each scenario's `expect`."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app import ir
from app.protocols import bedrock_converse
from app.upstream.eventstream import EventStreamFramer
from app.protocols.base import Target
from app.jsonutil import dumps
from mocks.bedrock import SIGNATURE_PREFIX
from mocks.sigv4 import SigV4Error, verify
from tests.mocks.helpers import GOOD_SCENARIOS, bedrock_post, bedrock_signed, png

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-pro-v1:0"
USER = {"role": "user", "content": [{"text": "Hi"}]}
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
USE = {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]}
GOOD_SIGNATURE = base64.b64encode(SIGNATURE_PREFIX + b"x").decode()


def refused(mock_url: str, body: dict, model: str = CLAUDE) -> tuple[str, str]:
    reply = bedrock_post(mock_url, model, body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"message"}
    error_type, _, suffix = reply.headers["x-amzn-ErrorType"].partition(":")
    assert suffix == "http://internal.amazon.com/coral/com.amazon.bedrock/"
    return error_type, reply.json()["message"]


@pytest.mark.parametrize("body, message", [
    ({"messages": [USER], "stream": True}, "Unknown field 'stream' at 'body'."),
    ({"messages": [{"role": "user", "content": [{"text": "Hi"}], "name": "x"}]}, "Unknown field 'name'"),
    ({"messages": [{"role": "tool", "content": [{"text": "Hi"}]}]},
     "Value 'tool' at 'messages.1.member.role' failed to satisfy constraint: Member must satisfy enum value set"),
    ({"messages": [USER], "inferenceConfig": {"temperature": 1.5}},
     "at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"),
    ({"messages": [USER], "inferenceConfig": {"maxTokens": 0}}, "Member must have value greater than or equal to 1"),
    ({"messages": [{"role": "user", "content": [{"text": "Hi", "image": {}}]}]},
     "Member must have exactly one member set"),
    ({"messages": [USER], "toolConfig": {"tools": []}}, "Member must have length greater than or equal to 1"),
    ({"messages": [USER], "toolConfig": {"tools": [{"toolSpec": {"name": "get.weather", "inputSchema": {
        "json": {}}}}]}}, "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"),
    ({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "%%%"}}}]}]},
     "Member must be base64-encoded binary data"),
    ({"messages": [{"role": "user", "content": [{"text": " \n"}]}]},
     "The text field in the ContentBlock object at messages.0.content.0 is blank."),
    ({"messages": [USER], "system": [{"text": "  "}]}, "The text field in the SystemContentBlock object at system.0"),
    ({"messages": [{"role": "user", "content": []}]}, "The content field in the Message object at messages.0 is empty."),
    ({"messages": [{"role": "assistant", "content": [{"text": "Hi"}]}]}, "A conversation must start with a user message."),
    ({"messages": [USER, USER]}, "A conversation must alternate between user and assistant roles."),
    ({"messages": [USER, USE, {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": []}}]}]},
     "The toolConfig field must be defined when using toolUse and toolResult content blocks."),
    ({"messages": [USER, USE, {"role": "user", "content": [{"text": "?"}]}], "toolConfig": TOOLS},
     "Expected toolResult blocks at messages.2.content for the following Ids: t1"),
    ({"messages": [USER, USE, {"role": "user", "content": [
        {"toolResult": {"toolUseId": "t1", "content": []}}, {"toolResult": {"toolUseId": "t2", "content": []}}]}],
      "toolConfig": TOOLS}, "The number of toolResult blocks at messages.2.content exceeds the number of toolUse"),
    ({"messages": [USER, USE, {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [
        {"text": ""}]}}]}], "toolConfig": TOOLS}, "ToolResultContentBlock object at messages.2.content.0"),
    ({"messages": [{"role": "user", "content": [{"image": {"format": "jpeg", "source": {
        "bytes": base64.b64encode(png()).decode()}}}]}]}, "does not match its format 'jpeg'"),
])
def test_refusals(mock_url, body, message):
    error_type, text = refused(mock_url, body)
    assert error_type == "ValidationException" and message in text


@pytest.mark.parametrize("body, model, message", [
    ({"messages": [USER], "additionalModelRequestFields": {"top_k": 5}}, NOVA, "extraneous key [top_k]"),
    ({"messages": [USER], "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 512}}},
     CLAUDE, "budget_tokens: Input should be greater than or equal to 1024"),
    ({"messages": [USER], "inferenceConfig": {"maxTokens": 1024},
      "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     CLAUDE, "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"messages": [USER], "inferenceConfig": {"temperature": 0.2},
      "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     CLAUDE, "`temperature` may only be set to 1 when thinking is enabled"),
    ({"messages": [USER], "toolConfig": {**TOOLS, "toolChoice": {"any": {}}},
      "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     CLAUDE, "Thinking may not be enabled when tool_choice forces tool use"),
    ({"messages": [USER, USE, {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": []}}]}],
      "toolConfig": TOOLS, "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     CLAUDE, "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
    ({"messages": [USER, {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {
        "text": "t", "signature": "c2lnLWFudGhyb3BpYw=="}}}, {"text": "ok"}]}, USER]},
     CLAUDE, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    ({"messages": [USER, {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {
        "text": "t", "signature": GOOD_SIGNATURE}}}, {"text": "ok"}]}, USER]},
     NOVA, "reasoning content is not supported by this model"),
])
def test_model_refusals(mock_url, body, model, message):
    error_type, text = refused(mock_url, body, model)
    assert error_type == "ValidationException"
    assert text.startswith("The model returned the following errors: ") and message in text


def test_own_signature_is_accepted(mock_url):
    body = {"messages": [USER, {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {
        "text": "t", "signature": GOOD_SIGNATURE}}}, {"text": "ok"}]}, USER]}
    assert bedrock_post(mock_url, CLAUDE, body).status_code == 200


def test_unknown_model_and_bad_json(mock_url):
    assert refused(mock_url, {"messages": [USER]}, "anthropic.claude-9") == (
        "ValidationException", "The provided model identifier is invalid.")
    reply = bedrock_post(mock_url, CLAUDE, None, raw=b'{"messages": [')
    assert reply.status_code == 400 and reply.headers["x-amzn-ErrorType"].startswith("SerializationException:")


def test_unknown_path_is_in_bedrock_envelope(mock_url):
    target, headers, data = bedrock_signed(mock_url, CLAUDE, {"messages": [USER]})
    reply = requests.post(target.replace("/converse", "/invoke-something"), data=data, headers=headers, timeout=10)
    assert reply.status_code == 404 and set(reply.json()) == {"message"} and "x-amzn-ErrorType" in reply.headers


# ---------------------------------------------------------------- sigv4 on its own (clock injected)

def _signed_headers() -> tuple[str, dict, bytes]:
    target, headers, data = bedrock_signed("http://bedrock-runtime.eu-west-3.amazonaws.com", CLAUDE, {"messages": []})
    return target.split(".com", 1)[1], {**headers, "Host": "bedrock-runtime.eu-west-3.amazonaws.com"}, data


class _Headers(dict):
    def get(self, name, default=None):
        return next((v for k, v in self.items() if k.lower() == name.lower()), default)


def test_verify_returns_the_signed_region_and_checks_the_clock():
    path, headers, data = _signed_headers()
    headers = _Headers(headers)
    secrets = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    assert verify("POST", path, headers, data, service="bedrock", secrets=secrets) == "us-east-1"
    signed_at = datetime.strptime(headers.get("X-Amz-Date"), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    with pytest.raises(SigV4Error, match="Signature not yet current"):
        verify("POST", path, headers, data, service="bedrock", secrets=secrets,
               now=lambda: signed_at - timedelta(minutes=6))
    assert verify("POST", path, headers, data, service="bedrock", secrets=secrets,
                  now=lambda: signed_at + timedelta(minutes=4)) == "us-east-1"


# ---------------------------------------------------------------- the wire module against the mock

WEATHER = ir.Tool("get_weather", "Current weather", {"type": "object", "properties": {"location": {"type": "string"}}})
HISTORY = (ir.Message("user", (ir.Text("Weather in Paris?"),)),
           ir.Message("assistant", (ir.ToolCall("call_1", "get_weather", '{"location": "Paris"}'),)),
           ir.Message("tool", (ir.ToolResult("call_1", (ir.Text('{"temp_c": 18}'),)),)))
IR_REQUESTS = {
    "text": ir.Request("m", (ir.Message("system", (ir.Text("Be brief."),)), ir.Message("user", (ir.Text("Hi"),))),
                       "openai", temperature=1.5, top_k=3),
    "function_calling": ir.Request("m", HISTORY[:1], "openai", tools=(WEATHER,), tool_choice=ir.ToolChoice("auto")),
    "parallel_function_calling": ir.Request("m", HISTORY[:1], "openai", tools=(WEATHER,)),
    "after_tool_result": ir.Request("m", HISTORY, "openai"),  # no tools declared: the module declares them
    "thinking": ir.Request("m", (ir.Message("user", (ir.Text("Hi"),)),), "openai",
                           reasoning=ir.Reasoning(effort="low"), temperature=0.3),
    "max_tokens": ir.Request("m", (ir.Message("user", (ir.Text("Hi"),)),), "openai", max_tokens=4),
    "stop_sequence": ir.Request("m", (ir.Message("user", (ir.Text("Hi"),)),), "openai", stop=("four",)),
    "vision": ir.Request("m", (ir.Message("user", (ir.Text("What is this?"), ir.Image(
        data=base64.b64encode(png()).decode(), media_type="image/png"))),), "openai"),
}
NAMED = {"parallel_function_calling", "max_tokens", "stop_sequence"}


def _summary(resp: ir.Response) -> dict:
    calls = [{"name": p.name, "arguments": p.arguments_object()} for p in resp.parts if isinstance(p, ir.ToolCall)]
    out = {"text": "".join(p.text for p in resp.parts if isinstance(p, ir.Text)), "tool_calls": calls,
           "finish": resp.finish_reason.value,
           "usage": {"input": resp.usage.input_tokens, "output": resp.usage.output_tokens}}
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ir.Thinking))
    if thinking:
        out["thinking"] = thinking
    return out


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_wire_module_round_trip(mock_url, library, name, stream):
    req = IR_REQUESTS[name]
    headers = {"X-Mock-Scenario": name} if name in NAMED else None
    reply = bedrock_post(mock_url, CLAUDE, None, raw=dumps(bedrock_converse.build_body(req, Target("bedrock", CLAUDE))), stream=stream,
                         headers=headers)
    assert reply.status_code == 200, reply.text
    if stream:
        assert reply.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        framer, parser = EventStreamFramer(), bedrock_converse.StreamParser(req)
        events = [e for f in framer.feed(reply.content) + framer.close() for e in parser.feed(f)] + parser.close()
        resp = ir.response_from_events(events)
    else:
        resp = bedrock_converse.parse_response(reply.content, req)
    expect = library.get("bedrock", name).expect
    assert _summary(resp) == {k: expect[k] for k in ("text", "tool_calls", "finish", "usage", "thinking") if k in expect}


def test_wire_module_errors_from_the_mock(mock_url):
    req = IR_REQUESTS["text"]
    body = dumps(bedrock_converse.build_body(req, Target("bedrock", CLAUDE)))
    for name, kind in (("error_429", "rate_limit"), ("error_401", "authentication"), ("overloaded", "overloaded")):
        reply = bedrock_post(mock_url, CLAUDE, None, raw=body, headers={"X-Mock-Scenario": name})
        err = bedrock_converse.parse_error(reply.status_code, reply.headers, reply.content)
        assert err.kind.value == kind
    reply = bedrock_post(mock_url, CLAUDE, None, raw=body, stream=True, headers={"X-Mock-Scenario": "error_mid_stream"})
    framer, parser = EventStreamFramer(), bedrock_converse.StreamParser(req)
    events = [e for f in framer.feed(reply.content) for e in parser.feed(f)]
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind.value == "rate_limit"
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hello! I'm a mock"


@pytest.mark.parametrize("stream", [False, True])
def test_wire_module_echoes_its_own_reasoning(mock_url, stream):
    """Reasoning read from a Claude-on-Bedrock reply (streamed or not) goes back with its
    signature in the next turn, and the mock verifies the signature is one it issued."""
    first = IR_REQUESTS["thinking"]
    reply = bedrock_post(mock_url, CLAUDE, None, raw=dumps(bedrock_converse.build_body(first, Target("bedrock", CLAUDE))), stream=stream)
    if stream:
        framer, parser = EventStreamFramer(), bedrock_converse.StreamParser(first)
        resp = ir.response_from_events([e for f in framer.feed(reply.content) for e in parser.feed(f)]
                                       + parser.close())
    else:
        resp = bedrock_converse.parse_response(reply.content, first)
    assert isinstance(resp.parts[0], ir.Thinking) and resp.parts[0].signature
    follow_up = ir.Request("m", first.messages + (ir.Message("assistant", resp.parts),
                                                  ir.Message("user", (ir.Text("And?"),))), "openai",
                           reasoning=ir.Reasoning(effort="low"))
    body = dumps(bedrock_converse.build_body(follow_up, Target("bedrock", CLAUDE)))
    assert b"reasoningContent" in body
    assert bedrock_post(mock_url, CLAUDE, None, raw=body).status_code == 200
    # the same parts from the Anthropic API would be refused by the mock: the module leaves them out
    foreign = tuple(ir.Thinking(p.text, p.signature, origin="anthropic") if isinstance(p, ir.Thinking) else p
                    for p in resp.parts)
    other = ir.Request("m", first.messages + (ir.Message("assistant", foreign), ir.Message("user", (ir.Text("?"),))),
                       "anthropic")
    assert b"reasoningContent" not in dumps(bedrock_converse.build_body(other, Target("bedrock", CLAUDE)))
