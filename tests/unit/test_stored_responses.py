"""Stored Responses in the pipeline: a previous_response_id resolved from the
state store into the conversation the backend gets, and the final response
object a stream formatter keeps for the store."""
from __future__ import annotations

from app import ir
from app.errors import ErrorKind, ProxyError
from app.config import BackendConfig, Config, ServerConfig, StateConfig
from app.jsonutil import dumps, loads
from app.pipeline import Pipeline
from app.protocols import protocol_module
from app.protocols.base import Target
from app.routing import Router
from app.state import RESPONSES as NAMESPACE
from app.upstream.framing import Frame

RESPONSES = protocol_module("openai_responses")
CHAT = protocol_module("openai")

STORED = {
    "context": [{"role": "user", "content": "Weather in Paris?"}],
    "response": {"id": "resp_1", "object": "response", "output": [
        {"id": "msg_1_0", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]},
        {"id": "fc_1_1", "type": "function_call", "status": "completed", "call_id": "call_1",
         "name": "get_weather", "arguments": '{"location":"Paris"}'}]},
}
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]


def pipeline(tmp_path) -> Pipeline:
    config = Config(server=ServerConfig(), backends={"oa": BackendConfig(name="oa", protocol="openai", kind="openai",
                                                               url="http://127.0.0.1:1/v1", api_key="k",
                                                               model_mapping={"gpt-4o-mini": "gpt-4o-mini"})},
                    models={}, state=StateConfig(path=str(tmp_path / "state.sqlite3")))
    return Pipeline(config, Router(config))


def test_previous_response_id_becomes_the_conversation_ahead_of_the_input(tmp_path):
    p = pipeline(tmp_path)
    p.state.get().put(NAMESPACE, "resp_1", dumps(STORED))
    req = RESPONSES.parse_request({"model": "gpt-4o-mini", "previous_response_id": "resp_1", "tools": TOOLS,
                                   "instructions": "Be brief.",
                                   "input": [{"type": "function_call_output", "call_id": "call_1",
                                              "output": '{"temp_c":18}'}]})
    continued, unknown = p._continue(req)
    assert unknown is False
    assert continued.messages == (
        ir.Message("system", (ir.Text("Be brief."),)),  # this request's instructions, not the stored one's
        ir.Message("user", (ir.Text("Weather in Paris?"),)),
        ir.Message("assistant", (ir.Text("Let me check."), ir.ToolCall("call_1", "get_weather", '{"location":"Paris"}'))),
        ir.Message("tool", (ir.ToolResult("call_1", (ir.Text('{"temp_c":18}'),), name="get_weather"),)),
    )
    assert continued.previous_response_id == "resp_1"  # echoed in the reply
    # A Responses backend gets the whole conversation, never an id it does not hold.
    passed = RESPONSES.passthrough_body(continued, Target(backend="b", model="m"))
    assert "previous_response_id" not in passed
    assert passed["input"] == STORED["context"] + STORED["response"]["output"] + req.raw["input"]
    chat = CHAT.build_body(continued, Target(backend="oa", model="gpt-4o-mini"))
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]


def test_an_unknown_id_is_left_for_the_route_to_decide(tmp_path):
    p = pipeline(tmp_path)
    req = RESPONSES.parse_request({"model": "gpt-4o-mini", "previous_response_id": "resp_upstream", "input": "Hi"})
    assert p._continue(req) == (req, True)


def test_the_formatter_keeps_the_final_response_object():
    req = RESPONSES.parse_request({"model": "gpt-4o-mini", "input": "Hi", "stream": True})
    formatter = RESPONSES.StreamFormatter(req, created=1760000000)
    out = b"".join(formatter.feed(e) for e in (
        ir.MessageStart(id="chatcmpl-9", model="gpt-4o-mini"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hello"),
        ir.PartStop(0), ir.MessageStop(ir.FinishReason.stop, ir.Usage(3, 1))))
    assert formatter.final is not None
    last = loads(out.rstrip(b"\n").rsplit(b"data: ", 1)[1])
    assert last["type"] == "response.completed" and last["response"] == formatter.final
    assert formatter.final["id"] == "resp_chatcmpl-9"
    assert formatter.final["output"][0]["content"][0]["text"] == "Hello"


def test_a_relayed_stream_keeps_the_upstream_final_response():
    req = RESPONSES.parse_request({"model": "gpt-4o-mini", "input": "Hi", "stream": True})
    formatter = RESPONSES.StreamFormatter(req)
    response = {"id": "resp_up", "object": "response", "status": "completed", "output": []}
    formatter.relay(Frame("response.created", dumps({"type": "response.created", "response": response}).decode()))
    assert formatter.final is None
    for event in ("response.completed", None):  # with or without an event: line
        formatter.final = None
        formatter.relay(Frame(event, dumps({"type": "response.completed", "response": response}).decode()))
        assert formatter.final == response


def test_a_failed_stream_keeps_nothing():
    req = RESPONSES.parse_request({"model": "gpt-4o-mini", "input": "Hi", "stream": True})
    formatter = RESPONSES.StreamFormatter(req)
    formatter.feed(ir.MessageStart(id="x", model="m"))
    formatter.feed(ir.MessageStop(ir.FinishReason.error, raw_finish_reason="MALFORMED"))
    assert formatter.final is None


class Sent(Exception):
    """Raised by the test client: the request reached the upstream."""


class RecordingClient:
    def __init__(self):
        self.bodies: list[dict] = []

    def send(self, backend, req, client_link=None):
        self.bodies.append(loads(req.body))
        raise ProxyError(ErrorKind.bad_gateway, "test upstream: not answered")


def handle(p: Pipeline, body: dict):
    reply = p.handle(RESPONSES, dumps(body), {})
    return reply.status, loads(reply.body)


def test_an_unknown_id_on_another_wire_is_the_apis_not_found_and_nothing_is_sent(tmp_path):
    p = pipeline(tmp_path)
    p.client = RecordingClient()
    status, body = handle(p, {"model": "gpt-4o-mini", "previous_response_id": "resp_nope", "input": "Hi"})
    assert (status, body) == (400, {"error": {"message": "Previous response with id 'resp_nope' not found.",
                                              "type": "invalid_request_error", "param": "previous_response_id",
                                              "code": "previous_response_not_found"}})
    assert p.client.bodies == []


def test_an_unknown_id_goes_on_to_a_responses_backend_as_the_client_sent_it(tmp_path):
    """The id may be the upstream's own (a Responses backend that stored it)."""
    p = pipeline(tmp_path)
    p.client = RecordingClient()
    provider = p.providers["oa"]
    provider.wire = "openai_responses"  # what a Responses provider kind is, for the pipeline
    status, _ = handle(p, {"model": "gpt-4o-mini", "previous_response_id": "resp_upstream", "input": "Hi"})
    assert status == 502  # the test upstream's answer: the request was sent
    assert p.client.bodies == [{"model": "gpt-4o-mini", "previous_response_id": "resp_upstream", "input": "Hi"}]
    # A stored id is resolved here instead: the upstream gets the conversation, not the id.
    p.state.get().put(NAMESPACE, "resp_1", dumps(STORED))
    handle(p, {"model": "gpt-4o-mini", "previous_response_id": "resp_1", "tools": TOOLS,
               "input": [{"type": "function_call_output", "call_id": "call_1", "output": "18"}]})
    sent = p.client.bodies[-1]
    assert "previous_response_id" not in sent
    assert sent["input"] == STORED["context"] + STORED["response"]["output"] + [
        {"type": "function_call_output", "call_id": "call_1", "output": "18"}]
