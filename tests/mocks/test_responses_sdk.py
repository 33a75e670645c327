"""The official `openai` SDK's Responses client pointed at the mock: every good
scenario parses, with `responses.create` and the `responses.stream` helper
(and on Azure's two URL forms with `AzureOpenAI` / a v1 base URL), with exactly
the fixture's expected content; fault scenarios raise the SDK's own errors or
end the stream with `response.failed`."""
from __future__ import annotations

import base64
import json
import time

import httpx2
import openai
import pytest

from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary, png

PROVIDER = "openai_responses"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}, "strict": False}
TOOL_TURNS = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"location": "Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 18, "sky": "sunny"}'},
]
IMAGE = "data:image/png;base64," + base64.b64encode(png()).decode()


def scenario_header(name: str) -> dict:
    return {"extra_headers": {"X-Mock-Scenario": name}}


# The request that selects each scenario (by detection where the mock detects it).
REQUESTS = {
    "text": dict(model="gpt-4o", input="Hi"),
    "function_calling": dict(model="gpt-4o", input="Weather in Paris?", tools=[WEATHER_TOOL]),
    "parallel_function_calling": dict(model="gpt-4o", input="Hi", tools=[WEATHER_TOOL],
                                      **scenario_header("parallel_function_calling")),
    "after_tool_result": dict(model="gpt-4o", input=TOOL_TURNS, tools=[WEATHER_TOOL]),
    "thinking": dict(model="gpt-5-nano", input="Hi", reasoning={"effort": "low", "summary": "auto"}),
    "max_tokens": dict(model="gpt-4o", input="Hi", max_output_tokens=16, **scenario_header("max_tokens")),
    "stop_sequence": dict(model="gpt-4o", input="Hi", **scenario_header("stop_sequence")),
    "vision": dict(model="gpt-4o-mini", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is in this image?"}, {"type": "input_image", "image_url": IMAGE}]}]),
}


@pytest.fixture(scope="module")
def client(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-key", base_url=mock_url + "/v1", max_retries=0, timeout=10)


def summary(response) -> dict:
    calls = [{"name": item.name, "arguments": json.loads(item.arguments)}
             for item in response.output if item.type == "function_call"]
    if response.status == "incomplete":
        finish = {"max_output_tokens": "length", "content_filter": "content_filter"}[
            response.incomplete_details.reason]
    else:
        assert response.status == "completed"
        finish = "tool_calls" if calls else "stop"
    usage = {"input": response.usage.input_tokens, "output": response.usage.output_tokens}
    if response.usage.output_tokens_details.reasoning_tokens:
        usage["reasoning"] = response.usage.output_tokens_details.reasoning_tokens
    out = {"text": response.output_text, "tool_calls": calls, "finish": finish, "usage": usage}
    thinking = "".join(s.text for item in response.output if item.type == "reasoning" for s in item.summary)
    if thinking:
        out["thinking"] = thinking
    return out


def expected(library, name: str) -> dict:
    return expected_summary(library.get(PROVIDER, name).expect)


def streamed(stream_manager) -> tuple[list, object]:
    """Events and the final response; a cut answer (response.incomplete) has no
    response.completed, so its response comes from that event."""
    with stream_manager as stream:
        events = list(stream)
        if events[-1].type == "response.incomplete":
            with pytest.raises(RuntimeError, match="response.completed"):
                stream.get_final_response()
            return events, events[-1].response
        return events, stream.get_final_response()


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_create(client, library, name):
    response = client.responses.create(**REQUESTS[name])
    assert summary(response) == expected(library, name)
    assert response.model == REQUESTS[name]["model"]
    assert response.id.startswith("resp_") and response.object == "response"


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_stream_helper(client, library, name):
    events, final = streamed(client.responses.stream(**REQUESTS[name]))
    assert summary(final) == expected(library, name)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected(library, name)["text"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[0].response.id == final.id


def test_reasoning_summary_only_when_asked_for(client, library):
    asked = client.responses.create(**REQUESTS["thinking"])
    plain = client.responses.create(model="gpt-5-nano", input="Hi", reasoning={"effort": "low"})
    assert summary(asked)["thinking"] == library.get(PROVIDER, "thinking").expect["thinking"]
    assert "thinking" not in summary(plain) and plain.output_text == asked.output_text
    assert plain.output[0].encrypted_content == asked.output[0].encrypted_content
    events, final = streamed(client.responses.stream(model="gpt-5-nano", input="Hi", reasoning={"effort": "low"}))
    assert not any(e.type.startswith("response.reasoning_summary") for e in events)
    assert final.output[0].summary == [] and final.output_text == "The answer is 42."
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_raw_stream_has_event_lines_and_no_done(mock_url):
    import requests
    reply = requests.post(mock_url + "/v1/responses", json={**REQUESTS["text"], "stream": True},
                          headers={"Authorization": "Bearer sk-test-key"}, timeout=10)
    blocks = [b for b in reply.text.split("\n\n") if b]
    assert all(b.startswith("event: ") and "\ndata: " in b for b in blocks)
    assert all(json.loads(b.split("\ndata: ", 1)[1])["type"] == b.split("\n", 1)[0][7:] for b in blocks)
    assert blocks[-1].startswith("event: response.completed") and "[DONE]" not in reply.text


# ---------------------------------------------------------------- Azure's URL forms

AZURE_REQUEST = dict(model="gpt-5", input="Hi")  # `gpt-5` is a deployment of the mock resource


def test_azure_classic_form_with_the_azure_client(mock_url, library):
    azure = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=mock_url, api_version="2025-04-01-preview",
                               max_retries=0, timeout=10)
    response = azure.responses.create(**AZURE_REQUEST)
    assert summary(response) == expected(library, "text") and response.model == "gpt-5-nano"
    _, final = streamed(azure.responses.stream(**AZURE_REQUEST, tools=[WEATHER_TOOL]))
    assert summary(final) == expected(library, "function_calling")
    old = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=mock_url, api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        old.responses.create(**AZURE_REQUEST)
    with pytest.raises(openai.NotFoundError):
        azure.responses.create(model="no-such-deployment", input="Hi")
    bad_key = openai.AzureOpenAI(api_key="invalid", azure_endpoint=mock_url, api_version="2025-04-01-preview",
                                 max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.responses.create(**AZURE_REQUEST)


def test_azure_v1_form_with_a_plain_client(mock_url, library):
    v1 = openai.OpenAI(api_key="azure-key", base_url=mock_url + "/openai/v1", max_retries=0, timeout=10)
    assert summary(v1.responses.create(**AZURE_REQUEST)) == expected(library, "text")
    _, final = streamed(v1.responses.stream(**AZURE_REQUEST))
    assert summary(final) == expected(library, "text")


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
        result = client.responses.create(**REQUESTS["text"], stream=stream, **scenario_header(name))
        list(result) if stream else None
    assert caught.value.status_code == status
    assert set(caught.value.body) >= {"message", "type", "param", "code"}
    if name == "error_429":
        assert caught.value.response.headers["retry-after"] == "7"


def test_response_failed_mid_stream(client, library):
    events = list(client.responses.create(**REQUESTS["text"], stream=True, **scenario_header("error_mid_stream")))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == library.get(PROVIDER, "error_mid_stream").expect["partial_text"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.code == "server_is_overloaded"
    with client.responses.stream(**REQUESTS["text"], **scenario_header("error_mid_stream")) as stream:
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    with pytest.raises(openai.InternalServerError):
        client.responses.create(**REQUESTS["text"], **scenario_header("error_mid_stream"))


def test_drop_mid_stream(client, library):
    received = []
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
        for event in client.responses.create(**REQUESTS["text"], stream=True, **scenario_header("drop_mid_stream")):
            if event.type == "response.output_text.delta":
                received.append(event.delta)
    assert "".join(received) == library.get(PROVIDER, "drop_mid_stream").expect["partial_text"]
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(**REQUESTS["text"], **scenario_header("drop_mid_stream"))


def test_stall_mid_stream_times_out(mock_url):
    quick = openai.OpenAI(api_key="sk-test-key", base_url=mock_url + "/v1", max_retries=0, timeout=1)
    started = time.monotonic()
    with pytest.raises((openai.APITimeoutError, httpx2.ReadTimeout)):
        list(quick.responses.create(**REQUESTS["text"], stream=True, **scenario_header("stall_mid_stream")))
    with pytest.raises(openai.APITimeoutError):
        quick.responses.create(**REQUESTS["text"], **scenario_header("stall_mid_stream"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body(client, stream):
    with pytest.raises((ValueError, openai.APIError)):
        result = client.responses.create(**REQUESTS["text"], stream=stream, **scenario_header("malformed_body"))
        list(result) if stream else None


def test_slow_first_byte(client, library):
    started = time.monotonic()
    response = client.responses.create(**REQUESTS["text"], **scenario_header("slow_first_byte"))
    assert time.monotonic() - started >= 1.4
    assert summary(response) == expected(library, "text")
