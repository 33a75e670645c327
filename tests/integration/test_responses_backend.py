"""Every frontend through the proxy to the `azure-responses` backend (config-mock.toml:
kind azure_responses, the classic URL form, deployment gpt-5) at the strict mock:
the Responses body the proxy wrote, a two-turn tool loop, reasoning, structured
output, and upstream errors in the client's own envelope. (The URL and auth
forms: tests/integration/test_provider_auth.py test_azure_auth_forms.)"""
from __future__ import annotations

import json

import pytest
import requests

from tests.client_requests import FRONTENDS, client_request, error_message

MODEL = "azure-gpt-5"
MOCK_PROVIDER = "azure_openai_responses"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "client-key"}
WEATHER = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
ANSWER = "The weather in Paris is 18°C and sunny."  # scenarios/openai_responses/after_tool_result.yaml
THOUGHT = "The user wants a short answer. I will answer directly."  # .../thinking.yaml


def last_upstream(stack) -> dict:
    return requests.get(stack.mock_url + "/_mock/requests", params={"provider": MOCK_PROVIDER}, timeout=5).json()[-1]


def post(stack, path: str, body: dict, headers: dict | None = None) -> requests.Response:
    return requests.post(stack.proxy_url + path, json=body, headers=headers or {}, timeout=20)


# ------------------------------------------------------------------ the body the proxy writes

def test_the_responses_body_from_a_chat_request(stack):
    r = post(stack, "/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
        "reasoning_effort": "low", "max_completion_tokens": 500,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER}}})
    assert r.status_code == 200, r.text
    seen = last_upstream(stack)
    assert (seen["path"], seen["query"], seen["status"]) == ("/openai/responses", {"api-version": "2025-04-01-preview"},
                                                             200)
    assert seen["body"] == {
        "model": "gpt-5",  # the deployment, in the body
        "input": [{"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
                  {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}],  # flat
        "max_output_tokens": 500,
        "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER}},
        "store": False, "include": ["reasoning.encrypted_content"]}


# ------------------------------------------------------------------ a two-turn tool loop, every frontend

def turn(frontend: str, history: list | None = None) -> tuple[str, dict, dict]:
    """(path, headers, body): "Weather in Paris?" with the weather tool, and after `history`."""
    q = "Weather in Paris?"
    if frontend == "openai":
        return "/v1/chat/completions", {}, {
            "model": MODEL, "messages": [{"role": "user", "content": q}, *(history or [])],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]}
    if frontend == "openai_responses":
        return "/v1/responses", {}, {"model": MODEL, "input": [{"role": "user", "content": q}, *(history or [])],
                                     "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}]}
    if frontend == "anthropic":
        return "/v1/messages", ANTHROPIC_HEADERS, {
            "model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": q}, *(history or [])],
            "tools": [{"name": "get_weather", "input_schema": WEATHER}]}
    return f"/v1beta/models/{MODEL}:generateContent", {}, {
        "contents": [{"role": "user", "parts": [{"text": q}]}, *(history or [])],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER}]}]}


def the_call(frontend: str, doc: dict) -> tuple[str, dict]:
    """(call id, arguments) of the one get_weather call in a reply."""
    if frontend == "openai":
        (call,) = doc["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        return call["id"], json.loads(call["function"]["arguments"])
    if frontend == "openai_responses":
        (call,) = [i for i in doc["output"] if i["type"] == "function_call"]
        assert call["name"] == "get_weather"
        return call["call_id"], json.loads(call["arguments"])
    if frontend == "anthropic":
        (call,) = [b for b in doc["content"] if b["type"] == "tool_use"]
        assert call["name"] == "get_weather"
        return call["id"], call["input"]
    (part,) = [p for p in doc["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert part["functionCall"]["name"] == "get_weather"
    return part["functionCall"].get("id", ""), part["functionCall"]["args"]


def answered(frontend: str, call_id: str, arguments: dict) -> list:
    result = '{"temp_c": 18, "sky": "sunny"}'
    if frontend == "openai":
        return [{"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": "get_weather", "arguments": json.dumps(arguments)}}]},
                {"role": "tool", "tool_call_id": call_id, "content": result}]
    if frontend == "openai_responses":
        return [{"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": json.dumps(arguments)},
                {"type": "function_call_output", "call_id": call_id, "output": result}]
    if frontend == "anthropic":
        return [{"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "get_weather",
                                                   "input": arguments}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]}]
    return [{"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": arguments}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                             "response": json.loads(result)}}]}]


def reply_text(frontend: str, doc: dict) -> str:
    if frontend == "openai":
        return doc["choices"][0]["message"]["content"]
    if frontend == "openai_responses":
        return "".join(c["text"] for i in doc["output"] if i["type"] == "message" for c in i["content"])
    if frontend == "anthropic":
        return "".join(b["text"] for b in doc["content"] if b["type"] == "text")
    return "".join(p.get("text", "") for p in doc["candidates"][0]["content"]["parts"] if not p.get("thought"))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_tool_loop(stack, frontend):
    path, headers, body = turn(frontend)
    r = post(stack, path, body, headers)
    assert r.status_code == 200, r.text
    call_id, arguments = the_call(frontend, r.json())
    assert arguments == {"location": "Paris"}
    path, headers, body = turn(frontend, answered(frontend, call_id, arguments))
    r = post(stack, path, body, headers)
    assert r.status_code == 200, r.text
    assert reply_text(frontend, r.json()) == ANSWER
    items = last_upstream(stack)["body"]["input"]
    call, output = items[1], items[2]  # the mock pairs them by call_id, as the real API does
    assert (call["type"], call["name"], json.loads(call["arguments"])) == ("function_call", "get_weather", arguments)
    assert (output["type"], output["call_id"], json.loads(output["output"])) == (
        "function_call_output", call["call_id"], {"temp_c": 18, "sky": "sunny"})


# ------------------------------------------------------------------ reasoning

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_thinking_is_the_reasoning_summary(stack, stream):
    r = post(stack, "/v1/messages", {"model": MODEL, "max_tokens": 4000, "stream": stream,
                                     "thinking": {"type": "enabled", "budget_tokens": 2048},
                                     "messages": [{"role": "user", "content": "Hi"}]}, ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    sent = last_upstream(stack)["body"]
    assert sent["reasoning"]["summary"] == "auto" and sent["reasoning"]["effort"] in ("low", "medium")
    if stream:
        deltas = [json.loads(line[6:])["delta"] for line in r.text.splitlines()
                  if line.startswith("data: ") and '"content_block_delta"' in line]
        assert "".join(d.get("thinking", "") for d in deltas) == THOUGHT
        assert "".join(d.get("text", "") for d in deltas) == "The answer is 42."
    else:
        blocks = r.json()["content"]
        assert [b["type"] for b in blocks] == ["thinking", "text"]
        assert blocks[0]["thinking"] == THOUGHT and blocks[1]["text"] == "The answer is 42."


def test_chat_reasoning_tokens_in_usage(stack):
    r = post(stack, "/v1/chat/completions", {"model": MODEL, "reasoning_effort": "medium",
                                             "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["choices"][0]["message"]["content"] == "The answer is 42."
    assert doc["usage"]["completion_tokens_details"]["reasoning_tokens"] == 12
    assert last_upstream(stack)["body"]["reasoning"] == {"effort": "medium"}  # no summary unasked


# ------------------------------------------------------------------ upstream errors and cut answers

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_rate_limit_keeps_retry_after(stack, frontend, stream):
    path, headers, body = client_request(frontend, MODEL, stream)
    r = post(stack, path, body, {**headers, "X-Mock-Scenario": "error_429"})
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "7"
    assert "Rate limit reached" in error_message(frontend, r.json())


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_bad_request_is_a_400_in_the_clients_envelope(stack, frontend):
    path, headers, body = client_request(frontend, MODEL, False)
    r = post(stack, path, body, {**headers, "X-Mock-Scenario": "error_400"})
    assert r.status_code == 400, r.text
    assert "exceeds the context window" in error_message(frontend, r.json())
    if frontend in ("openai", "openai_responses"):
        assert r.json()["error"]["param"] == "input"


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_response_failed_mid_stream_ends_the_clients_stream_with_an_error(stack, frontend):
    path, headers, body = client_request(frontend, MODEL, True)
    r = post(stack, path, body, {**headers, "X-Mock-Scenario": "error_mid_stream"})
    assert r.status_code == 200  # the stream had begun
    assert "overloaded" in r.text.lower() and "Hello" in r.text


def test_response_incomplete_is_a_length_finish(stack):
    for stream in (False, True):
        r = post(stack, "/v1/chat/completions", {"model": MODEL, "stream": stream,
                                                 "messages": [{"role": "user", "content": "Hi"}]},
                 {"X-Mock-Scenario": "max_tokens"})
        assert r.status_code == 200, r.text
        assert '"finish_reason":"length"' in r.text.replace(" ", "")
