"""The official `openai` SDK pointed at the mock: every good scenario parses,
streamed (SDK stream helper and raw chunk iteration) and not, with exactly
the fixture's expected content; fault scenarios raise the SDK's own errors."""
from __future__ import annotations

import base64
import json
import time

import httpx2
import openai
import pytest

from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary, png

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
USER = [{"role": "user", "content": "Hi"}]
TOOL_TURNS = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18, "sky": "sunny"}'},
]
IMAGE = "data:image/png;base64," + base64.b64encode(png()).decode()


def scenario_header(name: str) -> dict:
    return {"extra_headers": {"X-Mock-Scenario": name}}


# The request that selects each scenario (by detection where the mock detects it).
REQUESTS = {
    "text": dict(model="gpt-4o", messages=USER),
    "function_calling": dict(model="gpt-4o", messages=[{"role": "user", "content": "Weather in Paris?"}],
                             tools=[WEATHER_TOOL]),
    "parallel_function_calling": dict(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL],
                                      **scenario_header("parallel_function_calling")),
    "after_tool_result": dict(model="gpt-4o", messages=TOOL_TURNS, tools=[WEATHER_TOOL]),
    "thinking": dict(model="gpt-5-nano", messages=USER, reasoning_effort="low"),
    "max_tokens": dict(model="gpt-4o", messages=USER, max_tokens=4, **scenario_header("max_tokens")),
    "stop_sequence": dict(model="gpt-4o", messages=USER, stop=["four"], **scenario_header("stop_sequence")),
    "vision": dict(model="gpt-4o-mini", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"}, {"type": "image_url", "image_url": {"url": IMAGE}}]}]),
}


@pytest.fixture(scope="module")
def client(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-key", base_url=mock_url + "/v1", max_retries=0, timeout=10)


def summary(completion) -> dict:
    choice = completion.choices[0]
    calls = [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
             for c in choice.message.tool_calls or []]
    usage = {"input": completion.usage.prompt_tokens, "output": completion.usage.completion_tokens}
    reasoning = completion.usage.completion_tokens_details.reasoning_tokens
    if reasoning:
        usage["reasoning"] = reasoning
    return {"text": choice.message.content or "", "tool_calls": calls, "finish": choice.finish_reason, "usage": usage}


def expected(library, name: str) -> dict:
    out = expected_summary(library.get("openai", name).expect)
    out.pop("thinking", None)
    return out


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_non_streamed(client, library, name):
    completion = client.chat.completions.create(**REQUESTS[name])
    assert summary(completion) == expected(library, name)
    assert completion.model == REQUESTS[name]["model"]
    assert completion.id.startswith("chatcmpl-")


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_stream_helper(client, library, name):
    with client.chat.completions.stream(**REQUESTS[name], stream_options={"include_usage": True}) as stream:
        if name == "max_tokens":
            # The helper refuses to "parse" a cut answer; the completion is on the error.
            with pytest.raises(openai.LengthFinishReasonError) as caught:
                stream.get_final_completion()
            final = caught.value.completion
        else:
            final = stream.get_final_completion()
    assert summary(final) == expected(library, name)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_stream_chunks(client, library, name):
    chunks = list(client.chat.completions.create(**REQUESTS[name], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected(library, name)["text"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices for c in chunks), "no usage chunk unless include_usage was asked for"
    assert all(c.id == chunks[0].id and c.model == REQUESTS[name]["model"] for c in chunks)


# ---------------------------------------------------------------- faults

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name, error, status", [
    ("error_400", openai.BadRequestError, 400),
    ("error_401", openai.AuthenticationError, 401),
    ("error_429", openai.RateLimitError, 429),
    ("error_500", openai.InternalServerError, 500),
    ("overloaded", openai.InternalServerError, 503),
])
def test_http_errors(client, name, error, status, stream):
    with pytest.raises(error) as caught:
        result = client.chat.completions.create(**REQUESTS["text"], stream=stream, **scenario_header(name))
        list(result) if stream else None
    assert caught.value.status_code == status
    assert set(caught.value.body) >= {"message", "type", "param", "code"}
    if name == "error_429":
        assert caught.value.response.headers["retry-after"] == "7"


def test_error_mid_stream(client, library):
    received = []
    with pytest.raises(openai.APIError, match="overloaded"):
        for chunk in client.chat.completions.create(**REQUESTS["text"], stream=True,
                                                    **scenario_header("error_mid_stream")):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == library.get("openai", "error_mid_stream").expect["partial_text"]
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**REQUESTS["text"], **scenario_header("error_mid_stream"))


def test_drop_mid_stream(client, library):
    received = []
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
        for chunk in client.chat.completions.create(**REQUESTS["text"], stream=True,
                                                    **scenario_header("drop_mid_stream")):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == library.get("openai", "drop_mid_stream").expect["partial_text"]
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**REQUESTS["text"], **scenario_header("drop_mid_stream"))


def test_stall_mid_stream_times_out(mock_url):
    quick = openai.OpenAI(api_key="sk-test-key", base_url=mock_url + "/v1", max_retries=0, timeout=1)
    started = time.monotonic()
    with pytest.raises((openai.APITimeoutError, httpx2.ReadTimeout)):
        list(quick.chat.completions.create(**REQUESTS["text"], stream=True, **scenario_header("stall_mid_stream")))
    with pytest.raises(openai.APITimeoutError):
        quick.chat.completions.create(**REQUESTS["text"], **scenario_header("stall_mid_stream"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body(client, stream):
    with pytest.raises((ValueError, openai.APIError)):
        result = client.chat.completions.create(**REQUESTS["text"], stream=stream, **scenario_header("malformed_body"))
        list(result) if stream else None


def test_slow_first_byte(client, library):
    started = time.monotonic()
    completion = client.chat.completions.create(**REQUESTS["text"], **scenario_header("slow_first_byte"))
    assert time.monotonic() - started >= 1.4
    assert summary(completion) == expected(library, "text")
