"""The official `anthropic` SDK pointed at the mock: every good scenario
parses, streamed (`messages.stream(...).get_final_message()` and the text
stream) and not, with exactly the fixture's expected content; fault
scenarios raise the SDK's own errors."""
from __future__ import annotations

import base64
import time

import anthropic
import httpx2
import pytest

from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary, png

# The SDK warns that the 4.5 models are deprecated; they are the ones the mock emulates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "claude-sonnet-4-5"
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                                 "required": ["location"]}}
USER = [{"role": "user", "content": "Hi"}]
TOOL_TURNS = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
                                       "input": {"location": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A",
                                  "content": '{"temp_c": 18, "sky": "sunny"}'}]},
]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(png()).decode()}}


def scenario_header(name: str) -> dict:
    return {"extra_headers": {"X-Mock-Scenario": name}}


REQUESTS = {
    "text": dict(model=MODEL, max_tokens=1024, messages=USER),
    "function_calling": dict(model=MODEL, max_tokens=1024, messages=USER, tools=[WEATHER_TOOL]),
    "parallel_function_calling": dict(model=MODEL, max_tokens=1024, messages=USER, tools=[WEATHER_TOOL],
                                      **scenario_header("parallel_function_calling")),
    "after_tool_result": dict(model=MODEL, max_tokens=1024, messages=TOOL_TURNS, tools=[WEATHER_TOOL]),
    "thinking": dict(model="claude-opus-4-5", max_tokens=2048, messages=USER,
                     thinking={"type": "enabled", "budget_tokens": 1024}),
    "max_tokens": dict(model=MODEL, max_tokens=4, messages=USER, **scenario_header("max_tokens")),
    "stop_sequence": dict(model=MODEL, max_tokens=1024, messages=USER, stop_sequences=["four"],
                          **scenario_header("stop_sequence")),
    "vision": dict(model="claude-haiku-4-5-20251001", max_tokens=1024, messages=[
        {"role": "user", "content": [IMAGE, {"type": "text", "text": "What is in this image?"}]}]),
}
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


@pytest.fixture(scope="module")
def client(mock_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=mock_url, max_retries=0, timeout=10)


def summary(message) -> dict:
    usage = {"input": message.usage.input_tokens, "output": message.usage.output_tokens}
    if message.usage.output_tokens_details and message.usage.output_tokens_details.thinking_tokens:
        usage["reasoning"] = message.usage.output_tokens_details.thinking_tokens
    out = {"text": "".join(b.text for b in message.content if b.type == "text"),
           "tool_calls": [{"name": b.name, "arguments": b.input} for b in message.content if b.type == "tool_use"],
           "finish": FINISH[message.stop_reason], "usage": usage}
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    if thinking:
        out["thinking"] = thinking
    return out


def expected(library, name: str) -> dict:
    return expected_summary(library.get("anthropic", name).expect)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_non_streamed(client, library, name):
    message = client.messages.create(**REQUESTS[name])
    assert summary(message) == expected(library, name)
    assert message.model == REQUESTS[name]["model"]
    if name == "stop_sequence":
        assert message.stop_sequence == "four"
    if name == "thinking":
        assert message.content[0].signature


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_streamed(client, library, name):
    with client.messages.stream(**REQUESTS[name]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert summary(final) == expected(library, name)
    assert text == expected(library, name)["text"]


# ---------------------------------------------------------------- faults

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name, error, status", [
    ("error_400", anthropic.BadRequestError, 400),
    ("error_401", anthropic.AuthenticationError, 401),
    ("error_429", anthropic.RateLimitError, 429),
    ("error_500", anthropic.InternalServerError, 500),
    ("overloaded", anthropic.OverloadedError, 529),
])
def test_http_errors(client, name, error, status, stream):
    with pytest.raises(error) as caught:
        if stream:
            with client.messages.stream(**REQUESTS["text"], **scenario_header(name)) as s:
                s.get_final_message()
        else:
            client.messages.create(**REQUESTS["text"], **scenario_header(name))
    assert caught.value.status_code == status
    assert caught.value.body["type"] == "error" and caught.value.body["request_id"].startswith("req_")
    if name == "error_429":
        assert caught.value.response.headers["retry-after"] == "7"
        assert caught.value.response.headers["x-should-retry"] == "true"


def test_overloaded_is_also_an_internal_server_error(client):
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**REQUESTS["text"], **scenario_header("overloaded"))


def test_error_mid_stream(client, library):
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(**REQUESTS["text"], **scenario_header("error_mid_stream")) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert "".join(received) == library.get("anthropic", "error_mid_stream").expect["partial_text"]
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**REQUESTS["text"], **scenario_header("error_mid_stream"))


def test_drop_mid_stream(client, library):
    received = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        with client.messages.stream(**REQUESTS["text"], **scenario_header("drop_mid_stream")) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert "".join(received) == library.get("anthropic", "drop_mid_stream").expect["partial_text"]
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(**REQUESTS["text"], **scenario_header("drop_mid_stream"))


def test_stall_mid_stream_times_out(mock_url):
    quick = anthropic.Anthropic(api_key="sk-ant-test", base_url=mock_url, max_retries=0, timeout=1)
    started = time.monotonic()
    with pytest.raises((anthropic.APITimeoutError, httpx2.ReadTimeout)):
        with quick.messages.stream(**REQUESTS["text"], **scenario_header("stall_mid_stream")) as stream:
            stream.get_final_message()
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body(client, stream):
    with pytest.raises((ValueError, anthropic.APIError)):
        if stream:
            with client.messages.stream(**REQUESTS["text"], **scenario_header("malformed_body")) as s:
                s.get_final_message()
        else:
            client.messages.create(**REQUESTS["text"], **scenario_header("malformed_body"))


def test_slow_first_byte(client, library):
    started = time.monotonic()
    message = client.messages.create(**REQUESTS["text"], **scenario_header("slow_first_byte"))
    assert time.monotonic() - started >= 1.4
    assert summary(message) == expected(library, "text")


def test_count_tokens(client):
    count = client.messages.count_tokens(model=MODEL, messages=USER, tools=[WEATHER_TOOL])
    assert count.input_tokens > 0


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "claude-sonnet-4-5-20250929" in ids
    assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"
