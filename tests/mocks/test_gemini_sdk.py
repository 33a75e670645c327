"""The official `google-genai` SDK pointed at the mock: every good scenario
parses, streamed and not, with exactly the fixture's expected content;
fault scenarios raise the SDK's own errors."""
from __future__ import annotations

import time

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary, png

MODEL = "gemini-2.5-flash"
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city",
    parameters=types.Schema(type="OBJECT", properties={"location": types.Schema(type="STRING")},
                            required=["location"]))])
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
TOOL_TURNS = [
    types.Content(role="user", parts=[types.Part(text="What's the weather in Paris?")]),
    types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(
        name="get_weather", args={"location": "Paris"}))]),
    types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_weather", response={"output": {"temp_c": 18, "sky": "sunny"}})]),
]


def config(scenario: str | None = None, **fields) -> types.GenerateContentConfig:
    headers = {"X-Mock-Scenario": scenario} if scenario else None
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers) if headers else None,
                                       **fields)


REQUESTS = {
    "text": dict(contents="Hi", config=config()),
    "function_calling": dict(contents="Weather in Paris?", config=config(tools=[WEATHER],
                                                                         automatic_function_calling=NO_AFC)),
    "parallel_function_calling": dict(contents="Hi", config=config("parallel_function_calling", tools=[WEATHER],
                                                                   automatic_function_calling=NO_AFC)),
    "after_tool_result": dict(contents=TOOL_TURNS, config=config(tools=[WEATHER], automatic_function_calling=NO_AFC)),
    "thinking": dict(contents="Hi", config=config(thinking_config=types.ThinkingConfig(
        include_thoughts=True, thinking_budget=1024))),
    "max_tokens": dict(contents="Hi", config=config("max_tokens", max_output_tokens=4)),
    "stop_sequence": dict(contents="Hi", config=config("stop_sequence", stop_sequences=["four"])),
    "vision": dict(contents=[types.Part.from_bytes(data=png(), mime_type="image/png"), "What is in this image?"],
                   config=config()),
}


@pytest.fixture(scope="module")
def client(mock_url: str) -> genai.Client:
    return genai.Client(api_key="AIza-test", http_options=types.HttpOptions(
        base_url=mock_url, timeout=10_000, retry_options=types.HttpRetryOptions(attempts=1)))


def summary(responses) -> dict:
    text, thinking, calls, finish, usage = [], [], [], None, None
    for response in responses:
        candidate = response.candidates[0]
        for part in (candidate.content.parts or []) if candidate.content else []:
            if part.function_call:
                calls.append({"name": part.function_call.name, "arguments": part.function_call.args})
            elif part.thought:
                thinking.append(part.text)
            elif part.text is not None:
                text.append(part.text)
        finish = candidate.finish_reason or finish
        usage = response.usage_metadata
    thoughts = usage.thoughts_token_count or 0
    neutral_usage = {"input": usage.prompt_token_count, "output": (usage.candidates_token_count or 0) + thoughts}
    if thoughts:
        neutral_usage["reasoning"] = thoughts
    neutral_finish = {types.FinishReason.STOP: "tool_calls" if calls else "stop",
                      types.FinishReason.MAX_TOKENS: "length"}[finish]
    out = {"text": "".join(text), "tool_calls": calls, "finish": neutral_finish, "usage": neutral_usage}
    if thinking:
        out["thinking"] = "".join(thinking)
    return out


def expected(library, name: str) -> dict:
    return expected_summary(library.get("gemini", name).expect)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_non_streamed(client, library, name):
    response = client.models.generate_content(model=MODEL, **REQUESTS[name])
    assert summary([response]) == expected(library, name)
    assert response.model_version == MODEL
    if name == "function_calling":
        assert response.function_calls[0].id is None  # Gemini 2.x sends no call id
        assert response.candidates[0].content.parts[0].thought_signature


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_streamed(client, library, name):
    chunks = list(client.models.generate_content_stream(model=MODEL, **REQUESTS[name]))
    assert summary(chunks) == expected(library, name)
    assert all(c.response_id == chunks[0].response_id for c in chunks)


def test_thoughts_only_when_asked(client, library):
    request = dict(contents="Hi", config=config(thinking_config=types.ThinkingConfig(thinking_budget=1024)))
    response = client.models.generate_content(model=MODEL, **request)
    assert not any(p.thought for p in response.candidates[0].content.parts)
    assert response.text == expected(library, "thinking")["text"]
    assert response.usage_metadata.thoughts_token_count == expected(library, "thinking")["usage"]["reasoning"]


# ---------------------------------------------------------------- faults

def _run(client, name: str, stream: bool, gen_client=None):
    target = gen_client or client
    if stream:
        return list(target.models.generate_content_stream(model=MODEL, contents="Hi", config=config(name)))
    return target.models.generate_content(model=MODEL, contents="Hi", config=config(name))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name, error, status", [
    ("error_400", errors.ClientError, 400),
    ("error_401", errors.ClientError, 401),
    ("error_429", errors.ClientError, 429),
    ("error_500", errors.ServerError, 500),
    ("overloaded", errors.ServerError, 503),
])
def test_http_errors(client, name, error, status, stream):
    with pytest.raises(error) as caught:
        _run(client, name, stream)
    assert caught.value.code == status
    if name == "error_429":
        assert caught.value.status == "RESOURCE_EXHAUSTED"
        retry = [d for d in caught.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
        assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


def test_error_mid_stream(client, library):
    received = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="Hi",
                                                           config=config("error_mid_stream")):
            received.append(chunk.text or "")
    assert caught.value.code == 503 and caught.value.status == "UNAVAILABLE"
    assert "".join(received) == library.get("gemini", "error_mid_stream").expect["partial_text"]
    with pytest.raises(errors.ServerError):
        _run(client, "error_mid_stream", stream=False)


def test_drop_mid_stream(client, library):
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in client.models.generate_content_stream(model=MODEL, contents="Hi",
                                                           config=config("drop_mid_stream")):
            received.append(chunk.text or "")
    assert "".join(received) == library.get("gemini", "drop_mid_stream").expect["partial_text"]
    with pytest.raises(httpx2.RemoteProtocolError):
        _run(client, "drop_mid_stream", stream=False)


def test_stall_mid_stream_times_out(mock_url):
    quick = genai.Client(api_key="AIza-test", http_options=types.HttpOptions(
        base_url=mock_url, timeout=1000, retry_options=types.HttpRetryOptions(attempts=1)))
    started = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        _run(None, "stall_mid_stream", stream=True, gen_client=quick)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body(client, stream):
    with pytest.raises((ValueError, errors.APIError)):
        _run(client, "malformed_body", stream)


def test_slow_first_byte(client, library):
    started = time.monotonic()
    response = _run(client, "slow_first_byte", stream=False)
    assert time.monotonic() - started >= 1.4
    assert summary([response]) == expected(library, "text")


def test_models_and_count_tokens(client):
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names
    assert client.models.count_tokens(model=MODEL, contents="Hello there, how are you?").total_tokens > 0
