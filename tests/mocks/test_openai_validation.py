"""OpenAI Chat Completions: every strict rule rejects with the real status
and envelope; valid-but-unusual requests are accepted; auth as OpenAI does it."""
from __future__ import annotations

import copy

import pytest
import requests

from tests.mocks.helpers import AUTH, post

PATH = "/v1/chat/completions"
BASE = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def body(**changes) -> dict:
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def msgs(*messages) -> list:
    return list(messages)


USER = {"role": "user", "content": "Hi"}
ASSISTANT_CALL = {"role": "assistant", "content": None, "tool_calls": [CALL]}

# (id, body, status, expected error fields; `message` is a substring)
CASES = [
    ("missing model", body(model=None), 400, {"message": "you must provide a model parameter"}),
    ("missing messages", body(messages=None), 400, {"param": "messages", "code": "missing_required_parameter"}),
    ("empty messages", body(messages=[]), 400, {"param": "messages", "code": "empty_array"}),
    ("messages not an array", body(messages="Hi"), 400, {"code": "invalid_type"}),
    ("unknown role", body(messages=[{"role": "bot", "content": "x"}]), 400,
     {"param": "messages[0].role", "code": "invalid_value", "message": "Invalid value: 'bot'. Supported values are"}),
    ("content a number", body(messages=[{"role": "user", "content": 42}]), 400,
     {"param": "messages[0].content", "code": "invalid_type", "message": "but got an integer instead"}),
    ("arguments not a string", body(messages=msgs(USER, {"role": "assistant", "tool_calls": [
        {**CALL, "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"})), 400,
     {"param": "messages[1].tool_calls[0].function.arguments", "code": "invalid_type"}),
    ("tool message without tool_calls", body(messages=msgs(USER, {"role": "tool", "tool_call_id": "call_1",
                                                                   "content": "ok"})), 400,
     {"param": "messages.[1].role", "message": "messages with role 'tool' must be a response to a preceeding "
                                               "message with 'tool_calls'"}),
    ("tool_call_id not offered", body(messages=msgs(USER, ASSISTANT_CALL, {"role": "tool", "tool_call_id": "call_9",
                                                                            "content": "ok"})), 400,
     {"param": "messages.[2].tool_call_id", "message": "'tool_call_id' of 'call_9' not found in 'tool_calls'"}),
    ("tool_calls left unanswered", body(messages=msgs(USER, ASSISTANT_CALL, USER)), 400,
     {"param": "messages.[2].role", "message": "An assistant message with 'tool_calls' must be followed by tool "
                                               "messages responding to each 'tool_call_id'. The following "
                                               "tool_call_ids did not have response messages: call_1"}),
    ("tool_calls unanswered at the end", body(messages=msgs(USER, ASSISTANT_CALL)), 400,
     {"message": "did not have response messages: call_1"}),
    ("stream_options without stream", body(stream_options={"include_usage": True}), 400,
     {"param": "stream_options", "message": "only allowed when 'stream' is enabled"}),
    ("max_tokens on a reasoning model", body(model="gpt-5-nano", max_tokens=10), 400,
     {"param": "max_tokens", "code": "unsupported_parameter"}),
    ("temperature on a reasoning model", body(model="gpt-5-nano", temperature=0.5), 400,
     {"param": "temperature", "code": "unsupported_value"}),
    ("reasoning_effort on a non-reasoning model", body(reasoning_effort="low"), 400,
     {"param": "reasoning_effort", "code": "unsupported_parameter"}),
    ("stop with 5 items", body(stop=["a", "b", "c", "d", "e"]), 400,
     {"param": "stop", "code": "array_above_max_length"}),
    ("n below 1", body(n=0), 400, {"param": "n", "code": "integer_below_min_value"}),
    ("n above 128", body(n=129), 400, {"param": "n", "code": "integer_above_max_value"}),
    ("temperature above 2", body(temperature=2.5), 400,
     {"param": "temperature", "code": "decimal_above_max_value", "message": "Expected a value <= 2, but got 2.5"}),
    ("temperature below 0", body(temperature=-0.1), 400, {"param": "temperature", "code": "decimal_below_min_value"}),
    ("top_logprobs without logprobs", body(top_logprobs=3), 400, {"param": "top_logprobs"}),
    ("tool name with a dot", body(tools=[{"type": "function", "function": {"name": "get.weather"}}]), 400,
     {"param": "tools[0].function.name", "code": "invalid_value"}),
    ("tool name too long", body(tools=[{"type": "function", "function": {"name": "f" * 65}}]), 400,
     {"param": "tools[0].function.name", "code": "string_above_max_length"}),
    ("empty tools", body(tools=[]), 400, {"param": "tools", "code": "empty_array"}),
    ("tool_choice without tools", body(tool_choice="auto"), 400, {"param": "tool_choice"}),
    ("unknown top-level field", body(top_k=5), 400, {"message": "Unrecognized request argument supplied: top_k"}),
    ("unknown message field", body(messages=[{"role": "user", "content": "Hi", "cache_control": {}}]), 400,
     {"param": "messages[0].cache_control", "code": "unknown_parameter"}),
    ("image in a system message", body(messages=[{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, USER]), 400,
     {"param": "messages[0]", "message": "Image URLs are only allowed for messages with role 'user'"}),
    ("unsupported inline image", body(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]), 400,
     {"code": "invalid_image_format"}),
    ("assistant with nothing", body(messages=msgs(USER, {"role": "assistant", "content": None}, USER)), 400,
     {"param": "messages.[1].content"}),
    ("unknown model", body(model="gpt-9"), 404,
     {"code": "model_not_found", "message": "The model `gpt-9` does not exist or you do not have access to it."}),
]


@pytest.mark.parametrize("case, request_body, status, fields", CASES, ids=[c[0] for c in CASES])
def test_rejections(mock_url, case, request_body, status, fields):
    response = post(mock_url, "openai", PATH, request_body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    for key, value in fields.items():
        if key == "message":
            assert value in error["message"]
        else:
            assert error[key] == value, (key, error)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", "{\"model\": \"gpt-4o\", \"x\": NaN}".encode()])
def test_body_not_a_json_object(mock_url, raw):
    response = post(mock_url, "openai", PATH, None, raw=raw)
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_body_too_large(mock_url):
    response = post(mock_url, "openai", PATH, None, raw=b"x" * (33 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


ACCEPTED = [
    ("developer and system anywhere", body(messages=[{"role": "developer", "content": "Be brief."}, USER,
                                                     {"role": "system", "content": [{"type": "text", "text": "x"}]}])),
    ("parallel results and text parts", body(
        tools=[TOOL], messages=msgs(USER, {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
                                           "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
                                    {"role": "tool", "tool_call_id": "call_1", "content": "a"},
                                    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text",
                                                                                            "text": "b"}]},
                                    USER))),
    ("nulls mean absent", body(temperature=None, stop=None, tools=None, stream=False)),
    ("stream with usage", body(stream=True, stream_options={"include_usage": True}, n=1, stop="x", seed=1)),
    ("dated snapshot", body(model="gpt-4o-2024-08-06", max_tokens=5, temperature=0)),
    ("reasoning model done right", body(model="gpt-5-nano", max_completion_tokens=50, reasoning_effort="minimal")),
]


@pytest.mark.parametrize("case, request_body", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(mock_url, case, request_body):
    response = post(mock_url, "openai", PATH, request_body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("headers, message", [
    ({}, "You didn't provide an API key"),
    ({"Authorization": "Bearer "}, "You didn't provide an API key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "You didn't provide an API key"),
    ({"Authorization": "Bearer invalid"}, "Incorrect API key provided: invalid."),
])
def test_auth_rejected(mock_url, headers, message):
    response = requests.post(mock_url + PATH, json=BASE, headers=headers, timeout=5)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key" and error["param"] is None
    assert message in error["message"]
    listing = requests.get(mock_url + "/v1/models", headers=headers, timeout=5)
    assert listing.status_code == 401


def test_any_other_key_is_accepted(mock_url):
    response = requests.post(mock_url + PATH, json=BASE, headers={"Authorization": "Bearer whatever"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")


def test_models(mock_url):
    listing = requests.get(mock_url + "/v1/models", headers=AUTH["openai"], timeout=5).json()
    assert listing["object"] == "list"
    assert {m["id"] for m in listing["data"]} == {"gpt-5-nano", "gpt-4o-mini", "gpt-4o"}
    one = requests.get(mock_url + "/v1/models/gpt-4o", headers=AUTH["openai"], timeout=5)
    assert one.json()["id"] == "gpt-4o"
    missing = requests.get(mock_url + "/v1/models/gpt-9", headers=AUTH["openai"], timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
