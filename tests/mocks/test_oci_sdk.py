"""The official `oci` SDK's GenerativeAiInferenceClient against the OCI mock: the
mock accepts what the SDK signs and sends, and the SDK reads every good scenario,
streamed (its SSE client) and not, and the mock's errors as ServiceErrors."""
from __future__ import annotations

import json

import pytest

oci = pytest.importorskip("oci")
models = oci.generative_ai_inference.models

from mocks.oci import CONFIG_FILE  # noqa: E402

COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaaexample"


@pytest.fixture(scope="module")
def client(mock_url):
    config = oci.config.from_file(str(CONFIG_FILE))
    return oci.generative_ai_inference.GenerativeAiInferenceClient(
        config, service_endpoint=mock_url, retry_strategy=oci.retry.NoneRetryStrategy())


def chat(client, request, scenario: str | None = None):
    details = models.ChatDetails(compartment_id=COMPARTMENT, chat_request=request, serving_mode=models.OnDemandServingMode(
        model_id="cohere.command-r-plus-08-2024"))
    headers = {"X-Mock-Scenario": scenario} if scenario else None
    kwargs = {"opc_request_id": "sdk-test"}
    if headers:
        # The SDK has no per-call header argument: the scenario rides on the base client's session.
        client.base_client.session.headers.update(headers)
    try:
        return client.chat(details, **kwargs)
    finally:
        client.base_client.session.headers.pop("X-Mock-Scenario", None)


TOOL = models.CohereTool(name="get_weather", description="Get the current weather", parameter_definitions={
    "location": models.CohereParameterDefinition(type="str", description="City name", is_required=True)})


def test_text(client):
    reply = chat(client, models.CohereChatRequest(message="Hi", max_tokens=100))
    response = reply.data.chat_response
    assert reply.status == 200 and reply.headers["opc-request-id"]
    assert response.text == "Hello! I'm a mock assistant. How can I help you today?"
    assert response.finish_reason == "COMPLETE" and response.usage.prompt_tokens == 12
    assert reply.data.model_id == "cohere.command-r-plus-08-2024"


def test_tool_call_and_its_result(client):
    reply = chat(client, models.CohereChatRequest(message="What's the weather in Paris?", tools=[TOOL]))
    call = reply.data.chat_response.tool_calls[0]
    assert (call.name, call.parameters) == ("get_weather", {"location": "Paris"})
    follow = models.CohereChatRequest(
        message="", tools=[TOOL],
        chat_history=[models.CohereUserMessage(message="What's the weather in Paris?"),
                      models.CohereChatBotMessage(tool_calls=[call])],
        tool_results=[models.CohereToolResult(call=call, outputs=[{"output": "18°C and sunny"}])])
    assert chat(client, follow).data.chat_response.text == "The weather in Paris is 18°C and sunny."


@pytest.mark.parametrize("scenario,text", [("text", "Hello! I'm a mock assistant. How can I help you today?"),
                                           ("after_tool_result", "The weather in Paris is 18°C and sunny.")])
def test_stream(client, scenario, text):
    request = models.CohereChatRequest(message="Hi", is_stream=True,
                                       stream_options=models.StreamOptions(is_include_usage=True))
    reply = chat(client, request, scenario)
    events = [json.loads(event.data) for event in reply.data.events()]
    *deltas, terminal = events
    assert "".join(e["text"] for e in deltas) == text  # UTF-8 intact through the charset-less stream
    assert terminal["finishReason"] == "COMPLETE" and terminal["text"] == text


@pytest.mark.parametrize("scenario,status,code", [("error_429", 429, "TooManyRequests"),
                                                  ("error_400", 400, "InvalidParameter"),
                                                  ("overloaded", 503, "ServiceUnavailable")])
def test_errors_are_service_errors(client, scenario, status, code):
    with pytest.raises(oci.exceptions.ServiceError) as e:
        chat(client, models.CohereChatRequest(message="Hi"), scenario)
    assert (e.value.status, e.value.code) == (status, code)


def test_a_request_the_service_refuses(client):
    bad = models.CohereChatRequest(message="Hi", tools=[models.CohereTool(name="get-weather", description="x")])
    with pytest.raises(oci.exceptions.ServiceError) as e:
        chat(client, bad)
    assert (e.value.status, e.value.code) == (400, "InvalidParameter") and "get-weather" in e.value.message
