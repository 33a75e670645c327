"""A bounded, seeded fuzz run over every frontend endpoint: valid requests
with fields replaced by hostile values (wrong types, extreme numbers, control
characters, deep nesting, odd model names), and bodies that are not JSON at
all, sent through the proxy to the strict mock.

What must hold for every input: the proxy's own code never answers 5xx (an
upstream's 5xx would be relayed, but the mock answers bad input with 4xx), and
every error is in the client protocol's own envelope. The run is derandomised
(same inputs every time) and its size is printed with `-s`.
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import load_config
from app.server import create_app
from tests.conftest import REPO

EXAMPLES = int(os.environ.get("INTERCHANGE_FUZZ_EXAMPLES", "120"))
MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "client"}

_OPENAI = {"model": "gpt-4o-mini", "max_tokens": 20, "temperature": 0.5, "stream": False, "stop": ["x"],
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
           "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]}
_ANTHROPIC = {"model": "claude-haiku-4-5", "max_tokens": 20, "system": [{"type": "text", "text": "Be brief."}],
              "temperature": 0.5, "stop_sequences": ["x"], "stream": False,
              "thinking": {"type": "enabled", "budget_tokens": 1024},
              "messages": [{"role": "user", "content": [
                  {"type": "text", "text": "Hi"},
                  {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}],
              "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]}
_GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]},
                        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": "ok"}}}]}],
           "systemInstruction": {"parts": [{"text": "Be brief."}]},
           "generationConfig": {"maxOutputTokens": 20, "temperature": 0.5, "stopSequences": ["x"], "topK": 3,
                                "thinkingConfig": {"thinkingBudget": 128}},
           "tools": [{"functionDeclarations": [{"name": "f", "description": "d", "parameters": {"type": "object"}}]}]}

# (name, path template, base body, headers, envelope checker name); {model} is filled per input.
ENDPOINTS = [
    ("openai_chat", "/v1/chat/completions", _OPENAI, {}, "openai"),
    ("openai_chat_pinned", "/openai/gemini/v1/chat/completions", _OPENAI, {}, "openai"),
    ("anthropic_messages", "/v1/messages", _ANTHROPIC, ANTHROPIC_HEADERS, "anthropic"),
    ("anthropic_count_tokens", "/v1/messages/count_tokens", _ANTHROPIC, ANTHROPIC_HEADERS, "anthropic"),
    ("gemini_generate", "/v1beta/models/{model}:generateContent", _GEMINI, {}, "gemini"),
    ("gemini_stream", "/v1beta/models/{model}:streamGenerateContent?alt=sse", _GEMINI, {}, "gemini"),
    ("gemini_count_tokens", "/v1beta/models/{model}:countTokens", _GEMINI, {}, "gemini"),
]

_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, 2 ** 64, -0.0])
            | st.text(max_size=40) | st.sampled_from(["", "\x00", "\r\n", "../../x", "%0d%0a", "a" * 5000]))
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


_values = _json_values | st.integers(100, 1100).map(_deep)
_models = st.sampled_from(MODELS) | st.text(max_size=30) | st.sampled_from(
    ["a" * 300, "gemini-2.5-flash\r\nX: y", "../../v1beta/files/x?", "gpt-4o-mini#frag", "models/gemini-2.5-flash"])


def _paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (keys and list indexes)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _replace(doc: object, path: tuple, value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = _replace(doc[head], rest, value)
    return copy


@st.composite
def _inputs(draw, base: dict):
    model = draw(_models)
    if draw(st.integers(0, 19)) == 0:  # a body that is not a JSON object at all
        return model, draw(st.binary(max_size=200) | st.sampled_from([b"[]", b"null", b"\"x\"", b"1e999"]))
    doc = {**base, "model": model} if "model" in base else dict(base)
    paths = _paths(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        doc = _replace(doc, path, draw(_values))
        paths = _paths(doc)
    if draw(st.booleans()) and isinstance(doc, dict):
        doc = {**doc, draw(st.text(max_size=10)): draw(_values)}  # an unknown field
    try:
        body = json.dumps(doc).encode()
    except (ValueError, RecursionError):
        body = b"{}"
    return model, body


def _check_envelope(kind: str, status: int, doc: object) -> None:
    assert isinstance(doc, dict), doc
    if kind == "openai":
        assert set(doc) == {"error"} and {"message", "type", "param", "code"} == set(doc["error"]), doc
    elif kind == "anthropic":
        assert doc.get("type") == "error" and {"type", "message"} <= set(doc["error"]), doc
    else:
        assert doc["error"]["code"] == status and {"message", "status"} <= set(doc["error"]), doc


@pytest.fixture(scope="module")
def client(stack):
    os.environ["MOCK_URL"] = stack.mock_url
    try:
        config = load_config(REPO / "config-mock.toml")
    finally:
        del os.environ["MOCK_URL"]
    return create_app(config).test_client()


TOTAL = {"inputs": 0}


@pytest.mark.parametrize("name,path,base,headers,kind", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_fuzzed_requests_get_answers_in_the_clients_envelope(client, name, path, base, headers, kind):
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(_inputs(base))
    def run(case):
        model, body = case
        TOTAL["inputs"] += 1
        url = path.replace("{model}", model.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
                           .replace("\r", "%0D").replace("\n", "%0A") or "x")
        r = client.post(url, data=body, headers={**headers, "Content-Type": "application/json"})
        text = r.get_data(as_text=True)
        assert r.status_code < 500, f"{url} {body[:300]!r} -> {r.status_code} {text[:500]}"
        assert "Traceback" not in text and "<html" not in text.lower()
        if r.status_code >= 400:
            _check_envelope(kind, r.status_code, json.loads(text))
        elif "text/event-stream" in r.headers.get("Content-Type", ""):
            for block in text.split("\n\n"):
                for line in block.split("\n"):
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
        else:
            json.loads(text)

    run()


def test_fuzz_run_size():
    print(f"\nfuzzed inputs: {TOTAL['inputs']} over {len(ENDPOINTS)} endpoints")
    assert TOTAL["inputs"] >= len(ENDPOINTS) * EXAMPLES * 0.9 or TOTAL["inputs"] == 0
