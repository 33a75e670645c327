"""The official `ollama` Python client pointed at the mock: every good scenario
parses through chat, streamed and not, with exactly the fixture's expected
content; list() reads /api/tags; errors, before a stream and inside one,
raise the client's own ResponseError with Ollama's status; a wrong bearer is
refused; and the OpenAI SDK reaches Ollama's compatible route."""
from __future__ import annotations

import base64

import ollama
import pytest
from openai import OpenAI

from mocks.ollama import API_KEY
from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary, png

MODEL = "qwen3-vl"  # reasons, sees and calls tools: every scenario can be asked of it
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                            "parameters": {"type": "object", "properties": {
                                                "location": {"type": "string"}}, "required": ["location"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
TOOL_TURNS = ASK + [
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                      "arguments": {"location": "Paris"}}}]},
    {"role": "tool", "content": "18C and sunny", "tool_name": "get_weather"}]
HI = [{"role": "user", "content": "Hi"}]
REQUESTS = {  # the chat() arguments that select each scenario (by detection where the mock detects it)
    "text": {"messages": HI},
    "function_calling": {"messages": ASK, "tools": [WEATHER]},
    "parallel_function_calling": {"messages": ASK, "tools": [WEATHER]},
    "after_tool_result": {"messages": TOOL_TURNS, "tools": [WEATHER]},
    "thinking": {"messages": HI, "think": True},
    "max_tokens": {"messages": HI, "options": {"num_predict": 4}},
    "stop_sequence": {"messages": HI, "options": {"stop": ["four"]}},
    "vision": {"messages": [{"role": "user", "content": "What is this?", "images": [base64.b64encode(png()).decode()]}]},
}
NAMED = {"parallel_function_calling", "max_tokens", "stop_sequence"}


def client(mock_url: str, scenario: str | None = None, **headers: str) -> ollama.Client:
    return ollama.Client(host=mock_url, headers={**({"X-Mock-Scenario": scenario} if scenario else {}), **headers},
                         timeout=10)


def summary(responses: list) -> dict:
    text = "".join(r.message.content or "" for r in responses)
    thinking = "".join(r.message.thinking or "" for r in responses)
    calls = [{"name": c.function.name, "arguments": dict(c.function.arguments)}
             for r in responses for c in r.message.tool_calls or []]
    last = responses[-1]
    assert last.done and all(not r.done for r in responses[:-1])
    finish = {"stop": "stop", "length": "length"}[last.done_reason]
    out = {"text": text, "tool_calls": calls, "finish": "tool_calls" if calls and finish == "stop" else finish,
           "usage": {"input": last.prompt_eval_count or 0, "output": last.eval_count or 0}}
    if thinking:
        out["thinking"] = thinking
    return out


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_every_scenario_through_the_client(mock_url, library, name, stream):
    c = client(mock_url, name if name in NAMED else None)
    reply = c.chat(model=MODEL, stream=stream, **REQUESTS[name])
    responses = list(reply) if stream else [reply]
    assert summary(responses) == expected_summary(library.get("ollama", name).expect)
    assert all(r.model == MODEL for r in responses)


def test_list_reads_the_tags(mock_url):
    names = [m.model for m in client(mock_url).list().models]
    assert names == ["llama3.2:latest", "qwen3:latest", "mistral-small3.2:latest", "gemma3:latest", "qwen3-vl:latest"]


@pytest.mark.parametrize("scenario, status", [("error_400", 400), ("error_401", 401), ("error_429", 429),
                                              ("error_500", 500), ("overloaded", 503)])
def test_http_errors_raise_response_error(mock_url, scenario, status):
    with pytest.raises(ollama.ResponseError) as e:
        client(mock_url, scenario).chat(model=MODEL, messages=HI)
    assert e.value.status_code == status


def test_unknown_model_and_refused_thinking(mock_url):
    with pytest.raises(ollama.ResponseError) as e:
        client(mock_url).chat(model="llama9", messages=HI)
    assert (e.value.status_code, e.value.error) == (404, "model 'llama9' not found")
    with pytest.raises(ollama.ResponseError) as e:
        client(mock_url).chat(model="llama3.2", messages=HI, think=True)
    assert (e.value.status_code, e.value.error) == (400, '"llama3.2" does not support thinking')


def test_error_line_inside_a_stream(mock_url):
    received = []
    with pytest.raises(ollama.ResponseError) as e:
        for part in client(mock_url, "error_mid_stream").chat(model=MODEL, messages=HI, stream=True):
            received.append(part.message.content)
    assert "".join(received) == "Hello! I'm a mock"
    assert "unexpected EOF" in e.value.error


def test_bearer_key(mock_url):
    assert client(mock_url, Authorization=f"Bearer {API_KEY}").chat(model=MODEL, messages=HI).done
    with pytest.raises(ollama.ResponseError) as e:
        client(mock_url, Authorization="Bearer wrong").chat(model=MODEL, messages=HI)
    assert (e.value.status_code, e.value.error) == (401, "unauthorized")


def test_openai_sdk_on_the_compatible_route(mock_url):
    sdk = OpenAI(base_url=mock_url + "/v1", api_key=API_KEY)
    reply = sdk.chat.completions.create(model="mistral-small3.2", messages=HI, max_tokens=16)
    assert reply.choices[0].message.content == "Hello! I'm a mock assistant. How can I help you today?"
    chunks = list(sdk.chat.completions.create(model="mistral-small3.2", messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == 12
