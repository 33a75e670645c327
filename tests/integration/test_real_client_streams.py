"""Streams as the real agent clients need them (../shared/protocols/real-clients.md),
from every backend of config-mock.toml, for every scenario an agent loop meets.

The checkers below encode what each client was observed to insist on, not what
our formatter happens to write: Claude Code drops text whose block is never
closed, ignores tool input placed in content_block_start (only input_json_delta
counts), reads usage 0 without message_stop; Gemini CLI reports INVALID_STREAM
and retries when the last chunk has no finishReason. The requests are shaped like
the clients' own (Claude Code: `?beta=true`, its betas, a mid-conversation system
message, adaptive thinking, cache_control with ttl, context_management, a JSON
metadata.user_id, tool schemas with `$schema`, `exclusiveMinimum`, a free-form
object; Gemini CLI: parametersJsonSchema, thinkingConfig)."""
from __future__ import annotations

import json

import pytest
import requests

from mocks.scenarios import ScenarioLibrary
from tests.conftest import REAL_SAMPLES
from tests.real_clients import claude_code_read, expand_prose, gemini_cli_read

BACKEND_MODELS = {"openai": "gpt-5-nano", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
SCENARIOS = ("text", "function_calling", "parallel_function_calling", "thinking", "max_tokens")
LIBRARY = ScenarioLibrary()
STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
FINISH_REASONS = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}

WEATHER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City name", "minLength": 1},
        "days": {"type": "integer", "exclusiveMinimum": 0, "maximum": 14, "default": 1},
        "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "string", "const": "k"}]},
        "source": {"type": "string", "format": "uri", "pattern": "^https://"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "extra": {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}},
    },
    "required": ["location"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------- what Claude Code needs


def claude_code_body(model: str) -> dict:
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
                   {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Use the tools.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>Be careful.</system-reminder>"},
                                         {"type": "text", "text": "What's the weather in Paris?",
                                          "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Available agents: general-purpose, explore."},
        ],
        "tools": [{"name": "get_weather", "description": "Current weather for a city.",
                   "input_schema": WEATHER_SCHEMA}],
        "metadata": {"user_id": json.dumps({"device_id": "46ab", "account_uuid": "", "session_id": "c396"})},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }


CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01", "x-api-key": "client-key", "x-app": "cli",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
                      "mid-conversation-system-2026-04-07,effort-2025-11-24",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("backend", BACKEND_MODELS)
def test_claude_code_gets_the_stream_it_needs_from_every_backend(stack, backend, scenario):
    response = requests.post(stack.proxy_url + "/v1/messages?beta=true", json=claude_code_body(BACKEND_MODELS[backend]),
                             headers={**CLAUDE_CODE_HEADERS, "X-Mock-Scenario": scenario}, timeout=20)
    assert response.status_code == 200, response.text
    got, problems = claude_code_read(response.text)
    assert problems == []
    expect = LIBRARY.get(backend, scenario).expect
    assert got["tool_calls"] == expect["tool_calls"]
    assert got["stop_reason"] == STOP_REASONS[expect["finish"]]
    assert got["text"] == expect["text"]


# ---------------------------------------------------------------- what Gemini CLI needs


def gemini_cli_body() -> dict:
    return {
        "contents": [{"role": "user", "parts": [{"text": "<session_context>Linux</session_context>"},
                                                {"text": "What's the weather in Paris?"}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are an interactive CLI agent."}]},
        "tools": [{"functionDeclarations": [{
            "name": "get_weather", "description": "Current weather for a city.",
            "parametersJsonSchema": {"type": "object", "properties": {
                "location": {"type": "string", "description": "City name"},
                "days": {"type": "integer", "minimum": 1}}, "required": ["location"]}}]}],
        "generationConfig": {"temperature": 1, "topP": 0.95, "topK": 64,
                             "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192}},
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("backend", BACKEND_MODELS)
def test_gemini_cli_gets_the_stream_it_needs_from_every_backend(stack, backend, scenario):
    url = f"{stack.proxy_url}/v1beta/models/{BACKEND_MODELS[backend]}:streamGenerateContent?alt=sse"
    response = requests.post(url, json=gemini_cli_body(), timeout=20,
                             headers={"x-goog-api-key": "client-key", "X-Mock-Scenario": scenario})
    assert response.status_code == 200, response.text
    got, problems = gemini_cli_read(response.text)
    assert problems == []
    expect = LIBRARY.get(backend, scenario).expect
    assert got["tool_calls"] == expect["tool_calls"]
    assert got["finish"] == FINISH_REASONS[expect["finish"]]
    assert got["text"] == expect["text"]


# ---------------------------------------------------------------- the checkers themselves


def _sse(*events: dict) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


START = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3}}}
TOOL_START = {"type": "content_block_start", "index": 0,
              "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}
ARGS = {"type": "content_block_delta", "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": '{"location": "Paris"}'}}
STOP0 = {"type": "content_block_stop", "index": 0}
DELTA = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}
END = {"type": "message_stop"}


def test_claude_code_checker_passes_a_good_stream_and_names_each_missing_piece():
    got, problems = claude_code_read(_sse(START, TOOL_START, ARGS, STOP0, DELTA, END))
    assert (got["tool_calls"], got["stop_reason"], problems) == (
        [{"name": "get_weather", "arguments": {"location": "Paris"}}], "tool_use", [])
    whole_input = {**TOOL_START, "content_block": {**TOOL_START["content_block"], "input": {"location": "Paris"}}}
    assert claude_code_read(_sse(START, whole_input, STOP0, DELTA, END))[1] == [
        "tool_use block 0 carries input in content_block_start (Claude Code ignores it: input must come as "
        "input_json_delta)"]
    assert claude_code_read(_sse(START, TOOL_START, ARGS, DELTA, END))[1] == [
        "blocks [0] still open at message_delta (their content is lost)"]
    assert claude_code_read(_sse(START, TOOL_START, ARGS, STOP0, DELTA))[1] == [
        "the stream does not end with message_stop (Claude Code then reads usage as 0)"]
    assert claude_code_read(_sse(TOOL_START, ARGS, STOP0, END))[1] == [
        "the stream does not open with message_start (Claude Code retries without streaming)",
        "no message_delta with a stop_reason"]


def test_gemini_cli_checker_needs_finish_reason_on_the_last_chunk_only():
    def sse(*chunks):
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    text = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
    last = {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]}
    assert gemini_cli_read(sse(text, last)) == ({"text": "Hi", "tool_calls": [], "finish": "STOP"}, [])
    assert gemini_cli_read(sse(text))[1] == ["the last chunk has no finishReason (Gemini CLI: INVALID_STREAM, retries)"]
    assert gemini_cli_read(sse(last, text))[1] == [
        "chunk 0 of 2 carries a finishReason before the last chunk",
        "the last chunk has no finishReason (Gemini CLI: INVALID_STREAM, retries)"]


# ------------------------------------------------- the recorded requests, through the running proxy

CLIENT_REQUESTS = REAL_SAMPLES / "client-requests"
STREAMED_SAMPLES = sorted(
    p.name for p in CLIENT_REQUESTS.glob("*.json")
    if not p.name.startswith("codex") and "router-classifier" not in p.name) if CLIENT_REQUESTS.is_dir() else []
_HOP_HEADERS = {"host", "content-length", "connection", "accept-encoding"}


@pytest.mark.parametrize("backend", BACKEND_MODELS)
@pytest.mark.parametrize("sample", STREAMED_SAMPLES or ["(no recorded requests)"])
def test_recorded_client_requests_stream_back_what_the_client_needs(real_samples, stack, sample, backend):
    """The recorded bodies and headers, prose expanded, with the model set to one of `backend`'s."""
    recorded = json.loads((CLIENT_REQUESTS / sample).read_text())
    body = expand_prose(recorded["body"])
    headers = {k: v for k, v in recorded["headers"].items() if k.lower() not in _HOP_HEADERS}
    model = BACKEND_MODELS[backend]
    if recorded["path"] == "/v1/messages":
        url = f"{stack.proxy_url}/v1/messages?{recorded['raw_query']}"
        read = claude_code_read
        body["model"] = model
    else:
        action = recorded["path"].rpartition(":")[2]
        url = f"{stack.proxy_url}/v1beta/models/{model}:{action}?{recorded['raw_query']}"
        read = gemini_cli_read
    response = requests.post(url, data=json.dumps(body), headers=headers, timeout=20)
    assert response.status_code == 200, response.text[:600]
    got, problems = read(response.text)
    assert problems == []
    assert got["tool_calls"] or got["text"]
