"""Bad input is a 400 naming the field, never an exception of another kind.

A hand fuzz: each frontend's rich request, with every field (at every depth)
replaced by each wrong-typed or out-of-range value, or removed, goes through
the frontend's parse_request and then every backend's body builder and provider (and the
same-protocol passthrough); the only exception allowed is a ProxyError, and
what is built must serialise. Then one regression test per defect found.
"""
from __future__ import annotations

import copy
import json

import pytest

from app.errors import ProxyError
from app.protocols import anthropic, gemini, openai_chat
from tests.upstream_call import Upstream, built

IMG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
OPENAI = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMG,
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "ok",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "res"},
        {"role": "user", "content": "go"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "strict": True, "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": True,
    "max_tokens": 10, "max_completion_tokens": 10, "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "seed": 1,
    "n": 1, "reasoning_effort": "low", "user": "u", "stream": True, "stream_options": {"include_usage": True},
    "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
    "frequency_penalty": 0.1, "presence_penalty": 0.1, "logprobs": False, "metadata": {"a": "b"},
}
ANTHROPIC = {
    "model": "m", "max_tokens": 100,
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMG}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/y.png"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "ok"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                                      "content": [{"type": "text", "text": "r"}]}]}],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object",
                                                                 "properties": {"a": {"type": "integer"}}}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 1, "top_p": 0.9, "top_k": 5,
    "stop_sequences": ["x"], "stream": True, "metadata": {"user_id": "u"},
}
GEMINI = {
    "contents": [
        {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": IMG}},
                                   {"fileData": {"fileUri": "gs://b/x", "mimeType": "image/png"}}]},
        {"role": "model", "parts": [{"text": "t", "thought": True},
                                    {"functionCall": {"name": "f", "args": {"a": 1}, "id": "i1"},
                                     "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": 1}, "id": "i1"}}]}],
    "systemInstruction": {"parts": [{"text": "sys"}]},
    "tools": [{"functionDeclarations": [{"name": "f", "description": "d", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
    "generationConfig": {
        "maxOutputTokens": 10, "temperature": 0.5, "topP": 0.9, "topK": 3, "candidateCount": 1,
        "stopSequences": ["x"], "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"},
        "seed": 1, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        "presencePenalty": 0.1, "frequencyPenalty": 0.1},
}
# Values JSON can carry (orjson reads integers up to 2**64-1 as int, larger ones as float).
WRONG = [None, True, False, 0, -1, 1, 2**31, 2**63, -2**63, 2**64 - 1, 1e19, 1e308, -1e308, 0.5, -0.5, 1e-320,
         "", "x", "image/png", [], {}, [1], ["x"], {"a": 1}, [{}], [[]], {"type": "text"}]
FRONTENDS = {"openai": (openai_chat, OPENAI), "anthropic": (anthropic, ANTHROPIC), "gemini": (gemini, GEMINI)}
BACKENDS = (openai_chat, anthropic, gemini)
TARGET = Upstream(backend="b", base_url="http://up.test", model="upstream-model", api_key="k")


def _paths(obj, prefix=()):
    yield prefix
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in children:
        yield from _paths(value, prefix + (key,))


def _variants(base):
    for path in _paths(base):
        for value in WRONG:
            if not path:
                yield path, value
                continue
            body = copy.deepcopy(base)
            node = body
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            yield path, body
        if path:
            body = copy.deepcopy(base)
            node = body
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            yield path, body


def _exercise(frontend, body, kw) -> int:
    """parse + every build; returns how many steps ran; raises what is not a ProxyError."""
    try:
        req = frontend.parse_request(body, **kw)
    except ProxyError as e:
        assert e.status == 400 and e.message
        return 1
    steps = 1
    for backend in BACKENDS:
        for passthrough in (False, True) if backend is frontend else (False,):
            steps += 1
            try:
                upstream = built(backend, req, TARGET, passthrough=passthrough)
            except ProxyError as e:
                assert e.status == 400
                continue
            json.loads(upstream.body)  # serialised, and valid JSON
    return steps


@pytest.mark.parametrize("name", FRONTENDS)
def test_every_field_with_every_wrong_value_is_a_proxy_error_or_builds(name):
    frontend, base = FRONTENDS[name]
    kw = {"model": "m", "stream": False} if name == "gemini" else {}
    failures = []
    inputs = 0
    for path, body in _variants(base):
        inputs += 1
        try:
            _exercise(frontend, body, kw)
        except Exception as e:  # noqa: BLE001 - collected to show them all at once
            failures.append(f"{'.'.join(map(str, path))}: {type(e).__name__}: {e}")
    assert inputs > 1500
    assert failures == []


def _error(call, *args, **kw) -> ProxyError:
    with pytest.raises(ProxyError) as info:
        call(*args, **kw)
    assert info.value.status == 400
    return info.value


def _with(base: dict, path: tuple, value) -> dict:
    body = copy.deepcopy(base)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


# --------------------------------------------- one regression test per defect

@pytest.mark.parametrize("media_type", [["image/png"], {"a": 1}, 5, None])
def test_anthropic_image_media_type_of_the_wrong_type(media_type):
    body = _with(ANTHROPIC, ("messages", 0, "content", 1, "source", "media_type"), media_type)
    assert _error(anthropic.parse_request, body).param == "messages.0.content.1.source.media_type"


@pytest.mark.parametrize("name", [["f"], {"a": 1}, 5])
def test_openai_tool_choice_name_of_the_wrong_type(name):
    body = _with(OPENAI, ("tool_choice", "function", "name"), name)
    assert _error(openai_chat.parse_request, body).param == "tool_choice.function.name"


@pytest.mark.parametrize("field", ["maxOutputTokens", "topK", "candidateCount", "seed"])
@pytest.mark.parametrize("value", [1e308, -1e308, 2**31, 2**63, 2**64 - 1])
def test_gemini_integers_out_of_int32_range(field, value):
    body = _with(GEMINI, ("generationConfig", field), value)
    err = _error(gemini.parse_request, body, model="m")
    assert err.param == f"generationConfig.{field}"
    assert "must be between" in err.message


@pytest.mark.parametrize("field,value", [("maxOutputTokens", 0), ("maxOutputTokens", -5), ("topK", -1),
                                         ("candidateCount", 0)])
def test_gemini_integers_below_their_minimum(field, value):
    assert _error(gemini.parse_request, _with(GEMINI, ("generationConfig", field), value),
                  model="m").param == f"generationConfig.{field}"


@pytest.mark.parametrize("value", [1e308, 2**31, -2, 2**64 - 1])
def test_gemini_thinking_budget_out_of_range(value):
    body = _with(GEMINI, ("generationConfig", "thinkingConfig", "thinkingBudget"), value)
    assert _error(gemini.parse_request, body, model="m").param == "generationConfig.thinkingConfig.thinkingBudget"


def test_gemini_integer_valued_floats_and_dynamic_budget_still_parse():
    body = _with(_with(GEMINI, ("generationConfig", "maxOutputTokens"), 64.0),
                 ("generationConfig", "thinkingConfig", "thinkingBudget"), -1)
    req = gemini.parse_request(body, model="m")
    assert (req.max_tokens, req.reasoning.budget_tokens) == (64, None)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n"])
@pytest.mark.parametrize("value", [2**31, 2**63, 2**64 - 1, 1e308, 0.5, True, -1])
def test_openai_token_fields_out_of_range_or_of_the_wrong_type(field, value):
    assert _error(openai_chat.parse_request, _with(OPENAI, (field,), value)).param == field


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -2**63 - 1])
def test_openai_seed_outside_int64(value):
    body = _with(OPENAI, ("seed",), value) if value >= -2**63 else _with(OPENAI, ("seed",), float(value))
    assert _error(openai_chat.parse_request, body).param == "seed"


def test_openai_seed_keeps_the_int64_range():
    assert openai_chat.parse_request(_with(OPENAI, ("seed",), 2**63 - 1)).seed == 2**63 - 1


@pytest.mark.parametrize("path", [("max_tokens",), ("top_k",), ("thinking", "budget_tokens")])
@pytest.mark.parametrize("value", [2**31, 2**63, 2**64 - 1, 1e308])
def test_anthropic_integers_out_of_range(path, value):
    assert _error(anthropic.parse_request, _with(ANTHROPIC, path, value)).param == ".".join(path)


# ------------------------------------- the same variants through the whole app

@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """The app with one backend per protocol, all at a loopback port that refuses connections."""
    import socket

    from app.config import load_config
    from app.server import create_app
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    cfg = tmp_path_factory.mktemp("cfg") / "c.toml"
    cfg.write_text("".join(f'[backends.{p}]\nprotocol = "{p}"\nurl = "http://127.0.0.1:{port}"\napi_key = "k"\n'
                           for p in ("openai", "anthropic", "gemini")) + "catch_all = true\n")  # gemini: plain routes
    yield create_app(load_config(cfg)).test_client()
    closed.close()


_GENERATE = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@pytest.mark.parametrize("name", FRONTENDS)
def test_every_variant_through_the_app_is_answered_in_the_envelope(app_client, name):
    """Each variant once, pinned in turn to each backend (gemini: streamed every other time) and, every
    fourth, to the count-tokens endpoint (routed to the catch-all gemini backend: Anthropic clients get
    an estimate, Gemini clients the refused backend's 502): never a 5xx of the proxy's own and always JSON."""
    backends = ("openai", "anthropic", "gemini")
    statuses = {}
    for i, (path, body) in enumerate(_variants(FRONTENDS[name][1])):
        backend = backends[i % 3]
        if name == "gemini":
            action = "countTokens" if i % 4 == 3 else "streamGenerateContent?alt=sse" if i % 2 else "generateContent"
            url = f"/v1beta/models/m:{action}" if action == "countTokens" else \
                f"/gemini/{backend}/v1beta/models/m:{action}"
        elif name == "anthropic" and i % 4 == 3:
            url = "/v1/messages/count_tokens"
        else:
            url = f"/{name}/{backend}" + _GENERATE[name]
        r = app_client.post(url, data=json.dumps(body), content_type="application/json")
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.is_json and (r.status_code < 500 or r.status_code == 502), (path, url, r.status_code, r.data[:200])
    assert set(statuses) <= {200, 400, 502}
