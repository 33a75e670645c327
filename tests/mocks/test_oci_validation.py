"""The OCI mock refuses what the service refuses: unsigned or wrongly signed calls
(401 NotAuthenticated), ChatDetails that do not fit the SDK's models or the service's
rules (400 InvalidParameter, 404 for an unknown model), each in OCI's `{code, message}`
envelope; and the proxy's provider and wire module (app/providers/oci.py,
app/protocols/oci.py) send calls it accepts, in both formats, and read its replies,
streamed and not, back to each scenario's `expect`."""
from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import time

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app import ir
from app.config import BackendConfig
from app.protocols import oci as wire
from app.protocols.base import Target
from app.providers import provider_class
from app.providers.base import Call
from app.providers.oci import sign
from app.upstream.framing import SSEFramer
from mocks.oci import CONFIG_FILE, EXTRA_SCENARIOS, OMITTED_SCENARIOS
from tests.mocks.helpers import GOOD_SCENARIOS

COHERE_MODEL = "cohere.command-r-plus-08-2024"
GENERIC_MODEL = "meta.llama-3.3-70b-instruct"
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaaexample"
CHAT = {"apiFormat": "COHERE", "message": "Hi"}
ON_DEMAND = {"servingType": "ON_DEMAND", "modelId": COHERE_MODEL}
TOOL = {"name": "get_weather", "description": "Weather", "parameterDefinitions": {
    "location": {"type": "str", "isRequired": True}}}
PARIS = {"name": "get_weather", "parameters": {"location": "Paris"}}


def details(chat: dict | None = None, **top) -> dict:
    return {"compartmentId": COMPARTMENT, "servingMode": ON_DEMAND, "chatRequest": chat or CHAT, **top}


def own_signer():
    import oci
    return oci.signer.Signer.from_config(oci.config.from_file(str(CONFIG_FILE)))


def signed(mock_url: str, body: bytes, *, signer=None, headers: dict | None = None) -> tuple[str, dict, bytes]:
    url = mock_url + "/20231130/actions/chat"
    url, signed_headers = sign(signer or own_signer(), "POST", url,
                               {"Content-Type": "application/json", **(headers or {})}, body)
    return url, signed_headers, body


def post(mock_url: str, body: dict | bytes, **kwargs) -> requests.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url, headers, data = signed(mock_url, raw, **kwargs)
    return requests.post(url, data=data, headers=headers, timeout=10)


def envelope(reply: requests.Response, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"code", "message"} and reply.json()["code"] == code
    assert reply.headers["opc-request-id"]
    return reply.json()["message"]


# ------------------------------------------------------------------ signatures


def test_a_signed_call_is_answered(mock_url):
    reply = post(mock_url, details())
    assert reply.status_code == 200, reply.text
    assert reply.json()["chatResponse"]["text"] == "Hello! I'm a mock assistant. How can I help you today?"


def _other_key_signer():
    import oci
    config = oci.config.from_file(str(CONFIG_FILE))
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    return oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], None,
                             private_key_content=pem.decode())


def test_wrong_key_changed_byte_stale_date_and_no_signature_are_refused(mock_url):
    body = json.dumps(details()).encode()
    assert "not provided or was incorrect" in envelope(post(mock_url, body, signer=_other_key_signer()), 401,
                                                       "NotAuthenticated")
    url, headers, data = signed(mock_url, body)
    tampered = data.replace(b'"Hi"', b'"Ho"')
    assert "x-content-sha256" in envelope(requests.post(url, data=tampered, headers=headers, timeout=10), 401,
                                          "NotAuthenticated")
    headers = {**headers, "x-content-sha256": base64.b64encode(hashlib.sha256(tampered).digest()).decode()}
    assert "incorrect" in envelope(requests.post(url, data=tampered, headers=headers, timeout=10), 401,
                                   "NotAuthenticated")  # a matching digest, but not the one signed
    stale = email.utils.formatdate(time.time() - 600, usegmt=True)
    assert "more than 5 minutes" in envelope(post(mock_url, body, headers={"date": stale}), 401, "NotAuthenticated")
    assert "not provided" in envelope(requests.post(url, data=body, headers={"Content-Type": "application/json"},
                                                    timeout=10), 401, "NotAuthenticated")


def test_a_signature_must_cover_the_body_headers(mock_url):
    signer = own_signer()
    url, headers, data = signed(mock_url, json.dumps(details()).encode(), signer=signer)
    # The same key over only the generic headers (what a GET signs): not enough for a POST.
    from oci._vendor import requests as vendored
    prepared = vendored.Request("POST", url, headers={"Content-Type": "application/json"}, data=data).prepare()
    signer.without_content_headers(prepared)
    assert 'headers="date (request-target) host"' in prepared.headers["authorization"]
    reply = requests.post(url, data=data, headers=dict(prepared.headers.items()), timeout=10)
    assert "must cover content-length, content-type, x-content-sha256" in envelope(reply, 401, "NotAuthenticated")


def test_unknown_key_id_is_refused(mock_url):
    import oci
    config = oci.config.from_file(str(CONFIG_FILE))
    other = oci.signer.Signer(config["tenancy"], "ocid1.user.oc1..someoneelse", config["fingerprint"],
                              config["key_file"])
    envelope(post(mock_url, details(), signer=other), 401, "NotAuthenticated")


# ------------------------------------------------------------------ ChatDetails


@pytest.mark.parametrize("body,message", [
    (details(stream=True), "Unknown field chatDetails.stream"),
    ({"servingMode": ON_DEMAND, "chatRequest": CHAT}, "chatDetails.compartmentId is required."),
    (details(compartmentId="my-compartment"), "compartmentId 'my-compartment' is not a valid OCID."),
    (details({"apiFormat": "COHERE3", "message": "Hi"}), "chatDetails.chatRequest.apiFormat must be one of COHERE, "
                                                        "COHEREV2, GENERIC"),
    (details({"apiFormat": "COHERE", "messages": []}), "Unknown field chatDetails.chatRequest.messages"),
    (details({"apiFormat": "COHERE"}), "chatDetails.chatRequest.message is required."),
    (details({"apiFormat": "COHERE", "message": "Hi", "maxTokens": "100"}), "maxTokens must be an integer."),
    (details({"apiFormat": "COHERE", "message": "Hi", "chatHistory": [{"role": "ASSISTANT", "message": "x"}]}),
     "chatHistory[0].role must be one of CHATBOT, USER, SYSTEM, TOOL"),
    (details({"apiFormat": "COHERE", "message": "Hi", "promptTruncation": "ON"}),
     "promptTruncation must be one of OFF, AUTO_PRESERVE_ORDER"),
    (details(servingMode={"servingType": "SERVERLESS", "modelId": COHERE_MODEL}),
     "servingMode.servingType must be one of ON_DEMAND, DEDICATED"),
    (details(servingMode={"servingType": "ON_DEMAND"}), "chatDetails.servingMode.modelId is required."),
    (details({"apiFormat": "GENERIC", "messages": [{"role": "USER", "content": [{"type": "TEXT", "text": "Hi"}]}]}),
     f"Model {COHERE_MODEL} does not support apiFormat GENERIC; use COHERE."),
    (details({"apiFormat": "COHERE", "message": "  "}), "chatRequest.message must not be empty."),
    (details({"apiFormat": "COHERE", "message": "Hi", "tools": [{**TOOL, "name": "get-weather"}]}),
     "tools[0].name 'get-weather': valid names contain only"),
    (details({"apiFormat": "COHERE", "message": "Hi", "tools": [{"name": "f", "parameterDefinitions": {}}]}),
     "chatRequest.tools[0].description is required."),
    (details({"apiFormat": "COHERE", "message": "", "tools": [TOOL],
              "chatHistory": [{"role": "USER", "message": "Paris?"}, {"role": "CHATBOT", "toolCalls": [PARIS]}],
              "toolResults": [{"call": {"name": "get_weather", "parameters": {"location": "Rome"}},
                               "outputs": [{"output": "18C"}]}]}),
     "chatRequest.toolResults[0].call does not match a tool call of the preceding CHATBOT message."),
    (details({"apiFormat": "GENERIC", "messages": [{"role": "TOOL", "toolCallId": "c1", "content": []}]},
             servingMode={"servingType": "ON_DEMAND", "modelId": GENERIC_MODEL}),
     "messages[0].toolCallId does not answer a tool call before it."),
    (details({"apiFormat": "GENERIC", "messages": [{"role": "USER", "content": [{"type": "AUDIO"}]}]},
             servingMode={"servingType": "ON_DEMAND", "modelId": GENERIC_MODEL}),
     "content[0].type must be one of TEXT, IMAGE"),
])
def test_refusals(mock_url, body, message):
    assert message in envelope(post(mock_url, body), 400, "InvalidParameter")


def test_unknown_model_bad_json_and_unknown_path(mock_url):
    body = details(servingMode={"servingType": "ON_DEMAND", "modelId": "cohere.command-z"})
    assert envelope(post(mock_url, body), 404, "NotAuthorizedOrNotFound") == "Entity with key cohere.command-z not found"
    assert "not valid JSON" in envelope(post(mock_url, b"{nope"), 400, "InvalidParameter")
    reply = requests.post(mock_url + "/20231130/actions/chatty", json={}, timeout=10)
    envelope(reply, 404, "NotAuthorizedOrNotFound")


def test_dedicated_serving_is_accepted(mock_url):
    body = details(servingMode={"servingType": "DEDICATED",
                                "endpointId": "ocid1.generativeaiendpoint.oc1.us-chicago-1.amaaaaexample"})
    assert post(mock_url, body).status_code == 200


def test_the_scenario_set():
    from mocks.scenarios import ScenarioLibrary
    names = set(ScenarioLibrary().names("oci"))
    assert names == (set(GOOD_SCENARIOS) - set(OMITTED_SCENARIOS)) | set(EXTRA_SCENARIOS) | {
        "error_400", "error_401", "error_429", "error_500", "overloaded", "slow_first_byte", "stall_mid_stream",
        "drop_mid_stream", "malformed_body", "error_mid_stream"}


# ------------------------------------------------------------------ the proxy's half against the mock

WEATHER = ir.Tool("get_weather", "Get the current weather",
                  {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]})
ASK = ir.Message("user", (ir.Text("What's the weather in Paris?"),))
CALL = ir.ToolCall("call_1", "get_weather", '{"location": "Paris"}')
IR_REQUESTS = {
    "text": ir.Request(model="m", protocol="openai", messages=(ir.Message("user", (ir.Text("Hi"),)),)),
    "function_calling": ir.Request(model="m", protocol="openai", messages=(ASK,), tools=(WEATHER,)),
    "parallel_function_calling": ir.Request(model="m", protocol="openai", messages=(ASK,), tools=(WEATHER,)),
    "after_tool_result": ir.Request(model="m", protocol="openai", tools=(WEATHER,), messages=(
        ASK, ir.Message("assistant", (CALL,)), ir.Message("tool", (ir.ToolResult("call_1", (ir.Text("18°C"),)),)))),
    "max_tokens": ir.Request(model="m", protocol="openai", messages=(ASK,), max_tokens=4),
    "stop_sequence": ir.Request(model="m", protocol="openai", messages=(ASK,), stop=("four",)),
    "json": ir.Request(model="m", protocol="openai", messages=(ASK,), response_format=ir.ResponseFormat("json_object")),
}
NAMED = {"parallel_function_calling", "max_tokens", "stop_sequence"}


def _exchange(mock_url: str, req: ir.Request, model: str, headers: dict | None = None) -> requests.Response:
    backend = BackendConfig(name="oci", protocol="oci", kind="oci_cohere", url=mock_url,
                            settings={"compartment_id": COMPARTMENT, "config_file": str(CONFIG_FILE)})
    provider = provider_class("oci_cohere")(backend)
    up = provider.prepare(Call(model=model, body=wire.build_body(req, Target("oci", model)), stream=req.stream,
                               headers=headers or {}))
    return requests.post(up.url, data=up.body, headers=dict(up.headers), timeout=10)


def _summary(resp: ir.Response) -> dict:
    return {"text": "".join(p.text for p in resp.parts if isinstance(p, ir.Text)),
            "tool_calls": [{"name": p.name, "arguments": json.loads(p.arguments)} for p in resp.parts
                           if isinstance(p, ir.ToolCall)],
            "finish": resp.finish_reason.value,
            "usage": {"input": resp.usage.input_tokens, "output": resp.usage.output_tokens}}


@pytest.mark.parametrize("model", [COHERE_MODEL, GENERIC_MODEL])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(IR_REQUESTS))
def test_wire_module_round_trip(mock_url, library, name, stream, model):
    req = ir.Request(**{**{f: getattr(IR_REQUESTS[name], f) for f in ("model", "protocol", "messages", "tools",
                                                                      "max_tokens", "stop", "response_format")},
                        "stream": stream})
    reply = _exchange(mock_url, req, model, {"X-Mock-Scenario": name} if name in NAMED else None)
    assert reply.status_code == 200, reply.text
    if stream:
        assert reply.headers["Content-Type"] == "text/event-stream"  # no charset: the parser reads bytes
        framer, parser = SSEFramer(), wire.StreamParser(req)
        events = [e for f in framer.feed(reply.content) + framer.close() for e in parser.feed(f)] + parser.close()
        resp = ir.response_from_events(events)
    else:
        resp = wire.parse_response(reply.content, req)
    expect = library.get("oci", name).expect
    assert _summary(resp) == {k: expect[k] for k in ("text", "tool_calls", "finish", "usage")}
    ids = [p.id for p in resp.parts if isinstance(p, ir.ToolCall)]
    assert len(set(ids)) == len(ids) and all(ids)


def test_wire_module_errors_from_the_mock(mock_url):
    req = IR_REQUESTS["text"]
    for name, kind, status in (("error_400", "invalid_request", 400), ("error_401", "authentication", 401),
                               ("error_429", "rate_limit", 429), ("error_500", "api_error", 500),
                               ("overloaded", "overloaded", 503)):
        reply = _exchange(mock_url, req, COHERE_MODEL, {"X-Mock-Scenario": name})
        err = wire.parse_error(reply.status_code, reply.headers, reply.content)
        assert (err.kind.value, err.status) == (kind, status)
    assert wire.parse_error(429, (r := _exchange(mock_url, req, COHERE_MODEL, {"X-Mock-Scenario": "error_429"})).headers,
                            r.content).retry_after == "7"
    streamed = ir.Request(model="m", protocol="openai", messages=req.messages, stream=True)
    reply = _exchange(mock_url, streamed, COHERE_MODEL, {"X-Mock-Scenario": "error_mid_stream"})
    framer, parser = SSEFramer(), wire.StreamParser(streamed)
    events = [e for f in framer.feed(reply.content) + framer.close() for e in parser.feed(f)] + parser.close()
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind.value == "overloaded"
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hello! I'm a mock"


def test_stream_usage_only_when_asked(mock_url):
    body = details({"apiFormat": "COHERE", "message": "Hi", "isStream": True})
    events = [json.loads(line[6:]) for line in post(mock_url, body).text.split("\n\n") if line.startswith("data: ")]
    assert "finishReason" in events[-1] and "usage" not in events[-1]
    body["chatRequest"]["streamOptions"] = {"isIncludeUsage": True}
    events = [json.loads(line[6:]) for line in post(mock_url, body).text.split("\n\n") if line.startswith("data: ")]
    assert events[-1]["usage"] == {"promptTokens": 12, "completionTokens": 15, "totalTokens": 27}
