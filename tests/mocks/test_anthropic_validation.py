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
SYSTEM = {"role": "system", "content": "From now on, answer in French."}
MID_CONV_SYSTEM = {"type": "mid_conv_system", "content": [{"type": "text", "text": "Answer in French."}]}


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
    ("system role on a model without it", body(model="claude-haiku-4-5", messages=[USER, SYSTEM]),
     "role 'system' is not supported on this model"),
    ("mid_conv_system block on a model without it", body(model="claude-haiku-4-5", messages=[
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, MID_CONV_SYSTEM]}]),
     "role 'system' is not supported on this model"),
    ("system message with an image", body(messages=[USER, {"role": "system", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]),
     "messages.1.content.0: Input tag 'image' found using 'type' does not match any of the expected tags: 'text'"),
    ("whitespace system message", body(messages=[USER, {"role": "system", "content": " "}]),
     "messages: text content blocks must contain non-whitespace text"),
    ("mid_conv_system without content", body(messages=[{"role": "user", "content": [{"type": "mid_conv_system"}]}]),
     "messages.0.content.0.mid_conv_system.content: Field required"),
    ("mid_conv_system in an assistant turn", body(messages=[USER, {"role": "assistant", "content": [
        MID_CONV_SYSTEM]}]),
     "messages.1.content.0: `mid_conv_system` blocks are not allowed in `assistant` messages"),
    ("system between tool_use and its result", body(tools=TOOLS, messages=[USER, use("toolu_1"), SYSTEM,
                                                                           result("toolu_1")]),
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."),
    ("tool role", body(messages=[{"role": "tool", "content": "x"}]), "messages.0.role: Input should be 'user', "
                                                                     "'assistant' or 'system'"),
    ("adaptive thinking with a budget", body(thinking={"type": "adaptive", "budget_tokens": 2048}),
     "thinking.adaptive.budget_tokens: Extra inputs are not permitted"),
    ("thinking display", body(thinking={"type": "adaptive", "display": "full"}),
     "thinking.adaptive.display: Input should be 'summarized' or 'omitted'"),
    ("output_config effort", body(output_config={"effort": "extreme"}),
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    ("output_config extra field", body(output_config={"effort": "high", "verbosity": "low"}),
     "output_config.verbosity: Extra inputs are not permitted"),
    ("output_config format without schema", body(output_config={"format": {"type": "json_schema"}}),
     "output_config.format.schema: Field required"),
    ("output_config format type", body(output_config={"format": {"type": "json_object"}}),
     "output_config.format: Input tag 'json_object' found using 'type' does not match any of the expected tags: "
     "'json_schema'"),
    ("context_management edit type", body(context_management={"edits": [{"type": "clear_everything"}]}),
     "context_management.edits.0: Input tag 'clear_everything' found using 'type' does not match any of the "
     "expected tags: 'clear_tool_uses_20250919', 'clear_thinking_20251015'"),
    ("context_management keep", body(context_management={"edits": [{"type": "clear_thinking_20251015",
                                                                    "keep": "some"}]}),
     "context_management.edits.0.clear_thinking_20251015.keep: Input should be 'all' or a valid dictionary"),
    ("context_management not an object", body(context_management=[]),
     "context_management: Input should be a valid dictionary"),
    ("cache_control ttl", body(system=[{"type": "text", "text": "Be brief.",
                                        "cache_control": {"type": "ephemeral", "ttl": "2h"}}]),
     "system.0.cache_control.ttl: Input should be '5m' or '1h'"),
    ("cache_control type", body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Hi", "cache_control": {"type": "persistent"}}]}]),
     "messages.0.content.0.text.cache_control.type: Input should be 'ephemeral'"),
    ("cache_control extra field", body(cache_control={"type": "ephemeral", "scope": "global"}),
     "cache_control.scope: Extra inputs are not permitted"),
    ("five cache breakpoints", body(system=[{"type": "text", "text": f"Part {i}", "cache_control": {"type": "ephemeral"}}
                                            for i in range(5)]),
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    ("metadata user_id not a string", body(metadata={"user_id": {"device_id": "d"}}),
     "metadata.user_id: Input should be a valid string"),
    ("metadata extra field", body(metadata={"user_id": "u1", "session": "s"}),
     "metadata.session: Extra inputs are not permitted"),
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
    ("mid-conversation system message", body(messages=[USER, SYSTEM, {"role": "assistant", "content": "Bonjour"},
                                                       {"role": "system", "content": [{"type": "text", "text": "Be brief.",
                                                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}, USER])),
    ("mid_conv_system block", body(model="claude-opus-4-5", messages=[
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {**MID_CONV_SYSTEM,
                                                                       "cache_control": {"type": "ephemeral"}}]}])),
    ("Claude Code's 2026 fields", body(
        max_tokens=32000, thinking={"type": "adaptive"}, output_config={"effort": "high"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        metadata={"user_id": '{"device_id":"46ab","account_uuid":"","session_id":"c396"}'},
        cache_control={"type": "ephemeral", "ttl": "5m"})),
    ("context management edits", body(context_management={"edits": [
        {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 30000},
         "keep": {"type": "tool_uses", "value": 3}, "exclude_tools": ["Read"]},
        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 2}}]})),
    ("structured output", body(output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}})),
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
