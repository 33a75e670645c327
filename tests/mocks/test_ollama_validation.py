"""The Ollama mock refuses what Ollama refuses (Go's decoding of the body, the
options' types, `think`/`format` values, unknown models, what a model cannot
do), in Ollama's `{"error": ...}` envelope, checks the optional bearer, lists
its models; its OpenAI-compatible route answers in Ollama's OpenAI envelope;
and the proxy's wire module (app/protocols/ollama) writes bodies it accepts
and reads its replies, streamed (NDJSON) and not, back to each scenario's `expect`."""
from __future__ import annotations

import base64

import pytest
import requests

from app import ir
from app.jsonutil import dumps
from app.protocols import ollama
from app.protocols.base import Target
from app.upstream.ndjson import NDJSONFramer
from mocks.ollama import API_KEY
from tests.mocks.helpers import GOOD_SCENARIOS, png

USER = {"role": "user", "content": "Hi"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def chat(mock_url: str, body: dict | None, raw: bytes | None = None, **headers: str) -> requests.Response:
    data = raw if raw is not None else dumps(body)
    return requests.post(mock_url + "/api/chat", data=data, headers={"Content-Type": "application/json", **headers},
                         timeout=10)


def refusal(mock_url: str, body: dict, status: int = 400) -> str:
    reply = chat(mock_url, body)
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error"}
    return reply.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"messages": [USER]}, "model is required"),
    ({"model": 3, "messages": [USER]}, "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"),
    ({"model": "llama3.2", "messages": "Hi"},
     "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"),
    ({"model": "llama3.2", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
     "json: cannot unmarshal array into Go struct field Message.messages.content of type string"),
    ({"model": "llama3.2", "messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]}]},
     "json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls.function.arguments "
     "of type api.ToolCallFunctionArguments"),
    ({"model": "llama3.2", "messages": [USER], "stream": "yes"},
     "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"),
    ({"model": "llama3.2", "messages": [USER], "options": {"num_predict": "16"}},
     'option "num_predict" must be of type integer'),
    ({"model": "llama3.2", "messages": [USER], "options": {"stop": "four"}},
     'option "stop" must be of an array of strings'),
    ({"model": "llama3.2", "messages": [USER], "options": {"temperature": True}},
     'option "temperature" must be of type float32'),
    ({"model": "llama3.2", "messages": [USER], "format": "yaml"},
     'invalid format: "yaml"; expected "json" or a valid JSON Schema'),
    ({"model": "qwen3", "messages": [USER], "think": "max"}, 'invalid think value: "max"'),
    ({"model": "llama3.2", "messages": [USER], "think": True}, '"llama3.2" does not support thinking'),
    ({"model": "gemma3", "messages": [USER], "tools": [TOOL]}, '"gemma3" does not support tools'),
    ({"model": "llama3.2", "messages": [{"role": "user", "content": "?", "images": [base64.b64encode(png()).decode()]}]},
     '"llama3.2" does not support images'),
    ({"model": "gemma3", "messages": [{"role": "user", "content": "?", "images": ["%%%"]}]},
     "illegal base64 data at input byte 0"),
])
def test_refusals(mock_url, body, message):
    assert refusal(mock_url, body).startswith(message)


def test_unknown_model_is_a_404(mock_url):
    assert refusal(mock_url, {"model": "llama9", "messages": [USER]}, 404) == "model 'llama9' not found"
    assert refusal(mock_url, {"model": "llama3.2:70b", "messages": [USER]}, 404) == "model 'llama3.2:70b' not found"


def test_bodies_that_are_not_json(mock_url):
    assert chat(mock_url, None, raw=b"").json() == {"error": "missing request body"}
    reply = chat(mock_url, None, raw=b"{not json")
    assert reply.status_code == 400 and set(reply.json()) == {"error"}


def test_stream_is_the_default_and_unknown_fields_are_ignored(mock_url):
    reply = chat(mock_url, {"model": "llama3.2:latest", "messages": [USER], "max_tokens": 5})
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/x-ndjson"
    assert reply.text.count("\n") == 5 and reply.text.endswith("\n")
    logged = requests.get(mock_url + "/_mock/requests", params={"provider": "ollama"}, timeout=5).json()
    assert logged[-1]["body"]["max_tokens"] == 5 and logged[-1]["stream"] is True


def test_bearer_is_optional_but_checked(mock_url):
    body = {"model": "llama3.2", "messages": [USER], "stream": False}
    assert chat(mock_url, body).status_code == 200
    assert chat(mock_url, body, Authorization=f"Bearer {API_KEY}").status_code == 200
    for wrong in ("Bearer other-key", API_KEY):
        reply = chat(mock_url, body, Authorization=wrong)
        assert (reply.status_code, reply.json()) == (401, {"error": "unauthorized"})


def test_tags_lists_the_pulled_models(mock_url):
    reply = requests.get(mock_url + "/api/tags", timeout=5)
    assert reply.status_code == 200
    models = reply.json()["models"]
    assert [m["name"] for m in models][:2] == ["llama3.2:latest", "qwen3:latest"]
    assert set(models[0]) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert len(models[0]["digest"]) == 64 and models[0]["details"]["family"] == "llama"


def test_unknown_path_is_in_ollama_envelope(mock_url):
    reply = requests.post(mock_url + "/api/generate-nothing", json={}, timeout=5)
    assert (reply.status_code, reply.json()) == (404, {"error": "404 page not found"})


# ------------------------------------------------------------------ the OpenAI-compatible route

def compat(mock_url: str, body: dict) -> requests.Response:
    return requests.post(mock_url + "/v1/chat/completions", json=body, timeout=10)


def test_compat_route_answers_for_ollama_models(mock_url):
    reply = compat(mock_url, {"model": "mistral-small3.2", "messages": [USER]})
    assert reply.status_code == 200 and reply.json()["model"] == "mistral-small3.2"
    assert "x-request-id" not in reply.headers  # not OpenAI's reply


@pytest.mark.parametrize("body, status, message", [
    ({"model": "llama3.2", "messages": [USER], "reasoning_effort": "high"}, 400, '"llama3.2" does not support thinking'),
    ({"model": "mistral-small3.2", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, 400, "invalid image input"),
    ({"model": "mistral-small3.2", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400,
     "invalid message format"),
    ({"model": "gemma3", "messages": [USER], "tools": [TOOL]}, 400, '"gemma3" does not support tools'),
])
def test_compat_refusals(mock_url, body, status, message):
    reply = compat(mock_url, body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error == {"message": message, "type": "invalid_request_error", "param": None, "code": None}


# ------------------------------------------------------------------ the wire module against the mock

WEATHER = ir.Tool("get_weather", "Get the weather", {"type": "object", "properties": {"location": {"type": "string"}}})
CALL = ir.ToolCall("call_1", "get_weather", '{"location": "Paris"}')
HISTORY = (ir.Message("user", (ir.Text("Weather in Paris?"),)), ir.Message("assistant", (CALL,)),
           ir.Message("tool", (ir.ToolResult("call_1", (ir.Text("18C"),)),)))
HI = (ir.Message("user", (ir.Text("Hi"),)),)
IR_REQUESTS = {
    "text": ir.Request("m", (ir.Message("system", (ir.Text("Be brief."),)),) + HI, "openai"),
    "function_calling": ir.Request("m", HISTORY[:1], "openai", tools=(WEATHER,)),
    "parallel_function_calling": ir.Request("m", HISTORY[:1], "openai", tools=(WEATHER,)),
    "after_tool_result": ir.Request("m", HISTORY, "openai", tools=(WEATHER,)),
    "thinking": ir.Request("m", HI, "openai", reasoning=ir.Reasoning(effort="low"), temperature=0.3),
    "max_tokens": ir.Request("m", HI, "openai", max_tokens=4),
    "stop_sequence": ir.Request("m", HI, "openai", stop=("four",)),
    "vision": ir.Request("m", (ir.Message("user", (ir.Text("What is this?"), ir.Image(
        data=base64.b64encode(png()).decode(), media_type="image/png"))),), "openai"),
}
NAMED = {"parallel_function_calling", "max_tokens", "stop_sequence"}
MODEL = "qwen3-vl"  # reasons and sees: every scenario can be asked of it


def _summary(resp: ir.Response) -> dict:
    calls = [{"name": p.name, "arguments": p.arguments_object()} for p in resp.parts if isinstance(p, ir.ToolCall)]
    out = {"text": "".join(p.text for p in resp.parts if isinstance(p, ir.Text)), "tool_calls": calls,
           "finish": resp.finish_reason.value,
           "usage": {"input": resp.usage.input_tokens, "output": resp.usage.output_tokens}}
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ir.Thinking))
    if thinking:
        out["thinking"] = thinking
    return out


def _streamed(req: ir.Request, data: bytes) -> list[ir.Event]:
    framer, parser = NDJSONFramer(), ollama.StreamParser(req)
    return [e for f in framer.feed(data) + framer.close() for e in parser.feed(f)] + parser.close()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_wire_module_round_trip(mock_url, library, name, stream):
    req = ir.Request(**{**{f: getattr(IR_REQUESTS[name], f) for f in ("model", "messages", "protocol", "tools",
                                                                        "max_tokens", "stop", "reasoning",
                                                                        "temperature")}, "stream": stream})
    headers = {"X-Mock-Scenario": name} if name in NAMED else {}
    reply = chat(mock_url, ollama.build_body(req, Target("ollama", MODEL)), **headers)
    assert reply.status_code == 200, reply.text
    logged = requests.get(mock_url + "/_mock/requests", params={"provider": "ollama"}, timeout=5).json()
    assert logged[-1]["scenario"] == name  # the mock detected it from the body alone (or was told)
    if stream:
        assert reply.headers["Content-Type"] == "application/x-ndjson"
        resp = ir.response_from_events(_streamed(req, reply.content))
    else:
        resp = ollama.parse_response(reply.content, req)
    expect = library.get("ollama", name).expect
    assert _summary(resp) == {k: expect[k] for k in ("text", "tool_calls", "finish", "usage", "thinking") if k in expect}


def test_wire_module_errors_from_the_mock(mock_url):
    req = IR_REQUESTS["text"]
    body = ollama.build_body(req, Target("ollama", MODEL))
    for name, kind, status in (("error_429", "rate_limit", 429), ("error_401", "authentication", 401),
                               ("overloaded", "overloaded", 503), ("error_400", "invalid_request", 400),
                               ("error_500", "api_error", 500)):
        reply = chat(mock_url, body, **{"X-Mock-Scenario": name})
        err = ollama.parse_error(reply.status_code, reply.headers, reply.content)
        assert (err.kind.value, err.status) == (kind, status)
    assert ollama.parse_error(429, reply.headers, b'{"error": "x"}').retry_after is None
    reply = chat(mock_url, body, **{"X-Mock-Scenario": "error_429"})
    assert ollama.parse_error(reply.status_code, reply.headers, reply.content).retry_after == "7"
    streamed = ir.Request("m", HI, "openai", stream=True)
    reply = chat(mock_url, ollama.build_body(streamed, Target("ollama", MODEL)), **{"X-Mock-Scenario": "error_mid_stream"})
    assert reply.status_code == 200
    events = _streamed(streamed, reply.content)
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind.value == "api_error"
    assert "unexpected EOF" in events[-1].error.message
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hello! I'm a mock"


def test_wire_module_sends_its_own_thinking_back(mock_url):
    first = ir.Request("m", HI, "openai", reasoning=ir.Reasoning(effort="high"))
    resp = ollama.parse_response(chat(mock_url, ollama.build_body(first, Target("ollama", MODEL))).content, first)
    follow_up = ir.Request("m", HI + (ir.Message("assistant", resp.parts), ir.Message("user", (ir.Text("And?"),))),
                           "openai")
    body = ollama.build_body(follow_up, Target("ollama", MODEL))
    assert body["messages"][1] == {"role": "assistant", "content": "The answer is 42.",
                                   "thinking": "The user wants a short answer. I will answer directly."}
    assert chat(mock_url, body).status_code == 200
