"""Anthropic Messages: every strict rule rejects with the real status,
message and envelope (including the recorded orphan tool_result 400);
valid-but-unusual requests are accepted; auth as Anthropic does it."""
from __future__ import annotations

import base64
import copy
import json

import pytest
import requests

from tests.mocks.helpers import AUTH, png, post

PATH = "/v1/messages"
BASE = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
USER = {"role": "user", "content": "Hi"}


def body(**changes) -> dict:
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def use(*ids: str) -> dict:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "get_weather", "input": {}}
                                             for i in ids]}


def result(*ids: str, text_first: bool = False) -> dict:
    blocks = [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in ids]
    if text_first:
        blocks.insert(0, {"type": "text", "text": "Here you go"})
    return {"role": "user", "content": blocks}


PNG_B64 = base64.b64encode(png()).decode()

CASES = [
    ("missing max_tokens", body(max_tokens=None), "max_tokens: Field required"),
    ("system role", body(messages=[{"role": "system", "content": "Be brief."}, USER]),
     'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as '
     'an input message role.'),
    ("tool role", body(messages=[{"role": "tool", "content": "x"}]), "messages.0.role: Input should be 'user' or "
                                                                     "'assistant'"),
    ("empty text block", body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
     "messages: text content blocks must be non-empty"),
    ("whitespace text block", body(messages=[{"role": "user", "content": [{"type": "text", "text": " \n"}]}]),
     "messages: text content blocks must contain non-whitespace text"),
    ("empty non-final message", body(messages=[{"role": "user", "content": []},
                                               {"role": "assistant", "content": "Hi"}, USER]),
     "messages.0: all messages must have non-empty content except for the optional final assistant message"),
    ("final assistant trailing whitespace", body(messages=[USER, {"role": "assistant", "content": "The answer is "}]),
     "messages: final assistant content cannot end with trailing whitespace"),
    ("tool_result not answering the previous turn", body(tools=TOOLS, messages=[USER, result("toolu_1")]),
     "messages.0.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1. Each `tool_result` "
     "block must have a corresponding `tool_use` block in the previous message."),
    ("tool_use without results after it", body(tools=TOOLS, messages=[USER, use("toolu_1", "toolu_2"),
                                                                      result("toolu_1")]),
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_2. Each "
     "`tool_use` block must have a corresponding `tool_result` block in the next message."),
    ("tool_use followed by plain text", body(tools=TOOLS, messages=[USER, use("toolu_1"), USER]),
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."),
    ("tool_results not first", body(tools=TOOLS, messages=[USER, use("toolu_1"), result("toolu_1", text_first=True)]),
     "messages.2: Did not find 1 tool_result block(s) at the beginning of this message. Messages following "
     "tool_use blocks must begin with a matching number of tool_result blocks."),
    ("tool_use id pattern", body(tools=TOOLS, messages=[USER, use("call.1|x"), result("call_1")]),
     "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"),
    ("tool blocks without tools", body(messages=[USER, use("toolu_1"), result("toolu_1")]),
     "Requests which include `tool_use` or `tool_result` blocks must define tools."),
    ("tool name pattern", body(tools=[{"name": "get.weather", "input_schema": {"type": "object"}}]),
     "tools.0.custom.name: String should match pattern"),
    ("temperature above 1", body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
    ("budget below 1024", body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 512}),
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ("budget not below max_tokens", body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 2048}),
     "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ("thinking with forced tool use", body(max_tokens=4096, tools=TOOLS, tool_choice={"type": "any"},
                                           thinking={"type": "enabled", "budget_tokens": 1024}),
     "Thinking may not be enabled when tool_choice forces tool use."),
    ("thinking with temperature", body(max_tokens=4096, temperature=0.5,
                                       thinking={"type": "enabled", "budget_tokens": 1024}),
     "`temperature` may only be set to 1 when thinking is enabled"),
    ("image media type", body(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG_B64}}]}]),
     "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
     "or 'image/webp'"),
    ("image bytes not the declared type", body(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_B64}}]}]),
     "The image was specified using the image/jpeg media type, but the image appears to be a image/png image"),
    ("thinking block without signature", body(messages=[USER, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hi"}]}, USER]),
     "messages.1.content.0.thinking.signature: Field required"),
    ("extra top-level field", body(n=2), "n: Extra inputs are not permitted"),
    ("max_tokens above the model limit", body(max_tokens=100000),
     "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for "
     "claude-sonnet-4-5-20250929"),
]


@pytest.mark.parametrize("case, request_body, message", CASES, ids=[c[0] for c in CASES])
def test_rejections(mock_url, case, request_body, message):
    response = post(mock_url, "anthropic", PATH, request_body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["type"] == "error" and payload["request_id"].startswith("req_")
    assert payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["request-id"] == payload["request_id"]


def test_recorded_orphan_tool_result(mock_url, real_samples):
    """The real API's answer to this exact request is recorded: we must give the same."""
    exchanges = json.loads((real_samples / "anthropic-exchanges" / "orphan_tool_result_400.json").read_text())
    recorded = next(e for e in exchanges if e["response"]["status_code"] == 400)
    response = post(mock_url, "anthropic", PATH, recorded["request"]["body"])
    assert response.status_code == 400
    assert response.json()["error"] == recorded["response"]["body"]["error"]


def test_unknown_model(mock_url):
    response = post(mock_url, "anthropic", PATH, body(model="claude-x-9"))
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "model: claude-x-9"}


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b""])
def test_body_not_a_json_object(mock_url, raw):
    response = post(mock_url, "anthropic", PATH, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_body_too_large(mock_url):
    response = post(mock_url, "anthropic", PATH, None, raw=b"x" * (33 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


ACCEPTED = [
    ("consecutive user turns are merged", body(messages=[USER, {"role": "user", "content": [{"type": "text",
                                                                                             "text": "More"}]}])),
    ("prefill", body(messages=[USER, {"role": "assistant", "content": "The answer is"}])),
    ("empty final assistant", body(messages=[USER, {"role": "assistant", "content": ""}])),
    ("parallel results then text", body(tools=TOOLS, messages=[USER, use("toolu_1", "toolu_2"), {
        "role": "user", "content": result("toolu_2", "toolu_1")["content"] + [{"type": "text", "text": "Go on"}]}])),
    ("thinking round trip", body(max_tokens=4096, tools=TOOLS, thinking={"type": "enabled", "budget_tokens": 1024},
                                 messages=[USER, {"role": "assistant", "content": [
                                     {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                     {"type": "tool_use", "id": "toolu_vrtx_01", "name": "get_weather",
                                      "input": {}}]}, result("toolu_vrtx_01")])),
    ("system blocks and sampling", body(system=[{"type": "text", "text": "Be brief.",
                                                 "cache_control": {"type": "ephemeral"}}],
                                        temperature=1, top_p=0.9, top_k=5, stop_sequences=["four"],
                                        metadata={"user_id": "u1"})),
    ("dated model id", body(model="claude-haiku-4-5-20251001")),
]


@pytest.mark.parametrize("case, request_body", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(mock_url, case, request_body):
    response = post(mock_url, "anthropic", PATH, request_body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("headers, status, kind, message", [
    ({"anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"),
    ({"anthropic-version": "2023-06-01", "x-api-key": "invalid"}, 401, "authentication_error", "invalid x-api-key"),
    ({"x-api-key": "k"}, 400, "invalid_request_error", "anthropic-version: header is required"),
])
def test_auth_rejected(mock_url, headers, status, kind, message):
    response = requests.post(mock_url + PATH, json=BASE, headers=headers, timeout=5)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"] == {"type": kind, "message": message}


def test_bearer_token_is_accepted(mock_url):
    headers = {"Authorization": "Bearer oauth-token", "anthropic-version": "2023-06-01"}
    assert requests.post(mock_url + PATH, json=BASE, headers=headers, timeout=5).status_code == 200


def test_count_tokens(mock_url):
    counted = post(mock_url, "anthropic", PATH + "/count_tokens", {"model": BASE["model"], "messages": BASE["messages"]})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    rejected = post(mock_url, "anthropic", PATH + "/count_tokens", BASE)
    assert rejected.status_code == 400
    assert rejected.json()["error"]["message"] == "max_tokens: Extra inputs are not permitted"


def test_models(mock_url):
    listing = requests.get(mock_url + "/v1/models", headers=AUTH["anthropic"], timeout=5).json()
    assert listing["has_more"] is False
    assert [m["id"] for m in listing["data"]] == ["claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101",
                                                   "claude-haiku-4-5-20251001"]
    assert all(m["type"] == "model" for m in listing["data"])
    no_version = requests.get(mock_url + "/v1/models", headers={"x-api-key": "k"}, timeout=5)
    assert no_version.status_code == 400 and no_version.json()["type"] == "error"
