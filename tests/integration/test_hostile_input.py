"""Hostile client input against the running proxy and mock, per defect class
of issue 9, over every frontend x every configured backend (plain routes and
protocol mode), streamed and not:

- class 1: a model id that could change the upstream request (CR/LF/TAB, `?`,
  `#`, `../`) is a 400 naming `model` in the client's envelope, and nothing
  reaches the provider (the mock's request log shows no new entry);
- class 3: deep JSON and out-of-range numbers are a 400 naming the body or the
  field, on the generation and the count-tokens endpoints (never a 500 or
  Flask's HTML page);
- class 7: a huge or line-breaking model name neither floods nor forges the
  proxy's log, and the error that answers it is small.

New backends in config-mock.toml join the parametrisation through BACKENDS.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests

from app.config import load_config
from app.jsonutil import MAX_DEPTH
from tests.conftest import REPO

_CONFIG = load_config(REPO / "config-mock.toml")
BACKENDS = sorted(_CONFIG.backends)
# A model each backend serves, for requests that must route (plain routes): its first mapped one,
# a chosen one for the first three.
SERVED = {name: next(iter(b.model_mapping)) for name, b in _CONFIG.backends.items()} | \
    {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
FRONTENDS = ["openai", "anthropic", "gemini"]
ROUTES = [None] + BACKENDS  # None: the plain endpoint; a name: protocol mode pinned to that backend
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "client"}

INJECTION = "gemini-2.5-flash:generateContent\tHTTP/1.1\r\nHost:x\r\nContent-Length:0\r\n\r\nDELETE\t/_mock/requests?"
BAD_MODELS = [INJECTION, "../../../v1beta/files/abc?x=", "gemini-2.5-flash#frag", "gemini-2.5-flash?key=x",
              "a\nINFO interchange.routing: forged", "x" * 300, "..", "gemini 2.5"]


def _path(frontend: str, pinned: str | None, model: str, stream: bool, count_tokens: bool = False) -> str:
    prefix = f"/{frontend}/{pinned}" if pinned else ""
    if frontend == "openai":
        return prefix + "/v1/chat/completions"
    if frontend == "anthropic":
        return prefix + ("/v1/messages/count_tokens" if count_tokens else "/v1/messages")
    action = "countTokens" if count_tokens else "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{prefix}/v1beta/models/{quote(model, safe='')}:{action}"


def _body(frontend: str, model: str, stream: bool, **extra) -> dict:
    if frontend == "openai":
        return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}
    if frontend == "anthropic":
        return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
                **extra}
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **extra}


def send(stack, frontend: str, pinned: str | None, model: str, stream: bool, body: dict | bytes | None = None,
         count_tokens: bool = False) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body or _body(frontend, model, stream))
    headers = {"Content-Type": "application/json", **(ANTHROPIC_HEADERS if frontend == "anthropic" else {})}
    return requests.post(stack.proxy_url + _path(frontend, pinned, model, stream, count_tokens), data=data,
                         headers=headers, timeout=30)


def assert_400_naming(frontend: str, r: requests.Response, field: str | None) -> str:
    """The client's own error envelope, status 400, naming `field`; returns the message."""
    assert r.status_code == 400, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    if frontend == "openai":
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["param"] == field
        return body["error"]["message"]
    if frontend == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
        if field:
            assert message.startswith(field + ": ")
        return message
    assert body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400
    if field:
        assert body["error"]["details"][0]["fieldViolations"][0]["field"] == field
    return body["error"]["message"]


def mock_log(stack) -> list[dict]:
    return requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()


# ----------------------------------------------------- class 1: the model id


def test_the_issue_reproduction_sends_nothing_upstream(stack):
    ok = send(stack, "openai", "gemini", "gemini-2.5-flash", False)  # leaves one entry in the mock's log
    assert ok.status_code == 200, ok.text
    before = mock_log(stack)
    assert before and before[-1]["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"

    r = requests.post(stack.proxy_url + "/openai/gemini/v1/chat/completions",
                      data=json.dumps({"model": INJECTION, "messages": [{"role": "user", "content": "hi"}]}),
                      headers={"Content-Type": "application/json"}, timeout=30)
    message = assert_400_naming("openai", r, "model")
    assert message == ("'model' contains the character U+0009 at position 32; "
                       "a model id has only ASCII letters, digits and . _ : / @ + -.")
    assert mock_log(stack) == before  # not emptied by a smuggled DELETE, and nothing new arrived


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("pinned", ROUTES, ids=lambda p: f"via-{p}" if p else "routed")
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_bad_model_is_a_400_naming_model_and_nothing_reaches_a_provider(stack, frontend, pinned, stream):
    before = len(mock_log(stack))
    for model in BAD_MODELS:
        r = send(stack, frontend, pinned, model, stream)
        message = assert_400_naming(frontend, r, "model")
        assert "\n" not in message and "\r" not in message and len(r.content) < 1024
    assert len(mock_log(stack)) == before


@pytest.mark.parametrize("pinned", ROUTES, ids=lambda p: f"via-{p}" if p else "routed")
@pytest.mark.parametrize("frontend", ["anthropic", "gemini"])
def test_bad_model_on_the_count_tokens_endpoints(stack, frontend, pinned):
    if pinned and frontend == "anthropic":
        pytest.skip("protocol mode has no count_tokens endpoint for Anthropic")
    before = len(mock_log(stack))
    for model in BAD_MODELS:
        r = send(stack, frontend, pinned, model, False, count_tokens=True)
        assert_400_naming(frontend, r, "model")
    assert len(mock_log(stack)) == before


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_real_id_of_each_shape_still_reaches_the_router(stack, frontend):
    """Provider-shaped ids pass the rule; unknown ones are then the router's 404, not a 400."""
    for model in ["anthropic.claude-3-sonnet-20240229-v1:0", "meta-llama/llama-3.1-8b-instruct",
                  "claude-sonnet-4-5@20250929"]:
        r = send(stack, frontend, None, model, False)
        assert r.status_code == 404, r.text


# ------------------------------------------------ class 3: 400s, never 500s


_DEEP = "__deep__"


def _with_deep(body: dict, depth: int) -> bytes:
    """`body` as JSON with its "__deep__" value replaced by arrays nested `depth` levels."""
    return json.dumps(body).replace(f'"{_DEEP}"', "[" * depth + "1" + "]" * depth).encode()


def _numbers(frontend: str) -> list[tuple[str, dict]]:
    """(field named in the error, body extras) for out-of-range numbers."""
    if frontend == "openai":
        return [("max_tokens", {"max_tokens": 1e308}), ("max_completion_tokens", {"max_completion_tokens": 2**40}),
                ("n", {"n": -1}), ("seed", {"seed": 2**64 - 1}), ("temperature", {"temperature": 1e308})]
    if frontend == "anthropic":
        return [("max_tokens", {"max_tokens": 1e308}), ("top_k", {"top_k": 2**63}),
                ("thinking.budget_tokens", {"thinking": {"type": "enabled", "budget_tokens": 2**64 - 1}}),
                ("temperature", {"temperature": -1})]
    return [(f"generationConfig.{k}", {"generationConfig": {k: v}}) for k, v in
            [("maxOutputTokens", 1e308), ("topK", -1e308), ("candidateCount", 2**31), ("seed", 2**63)]] + [
        ("generationConfig.thinkingConfig.thinkingBudget",
         {"generationConfig": {"thinkingConfig": {"thinkingBudget": 1e308}}})]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("pinned", ROUTES, ids=lambda p: f"via-{p}" if p else "routed")
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_out_of_range_numbers_are_a_400_naming_the_field(stack, frontend, pinned, stream):
    model = SERVED[pinned or "openai"]
    for field, extra in _numbers(frontend):
        r = send(stack, frontend, pinned, model, stream, _body(frontend, model, stream, **extra))
        assert_400_naming(frontend, r, field)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("pinned", ROUTES, ids=lambda p: f"via-{p}" if p else "routed")
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_deep_json_is_a_400_naming_the_body(stack, frontend, pinned, stream):
    model = SERVED[pinned or "openai"]
    for depth in (MAX_DEPTH + 1, 255, 1024, 1025):
        body = _with_deep(_body(frontend, model, stream, metadata=_DEEP), depth)
        r = send(stack, frontend, pinned, model, stream, body)
        message = assert_400_naming(frontend, r, None)
        assert message.endswith(f"The request body nests arrays and objects deeper than {MAX_DEPTH} levels.")


@pytest.mark.parametrize("pinned", ROUTES, ids=lambda p: f"via-{p}" if p else "routed")
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_deep_tool_arguments_are_a_400_not_a_500(stack, frontend, pinned):
    """Within the body limit, but text that is parsed again (tool-call arguments, tool results)."""
    model = SERVED[pinned or "openai"]
    deep = '{"a":' + "[" * 300 + "]" * 300 + "}"
    if frontend == "openai":
        body = {"model": model, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "f", "arguments": deep}}]},
            {"role": "tool", "tool_call_id": "c1", "content": deep}]}
    elif frontend == "anthropic":
        body = {"model": model, "max_tokens": 16, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": deep}]}]}
    else:
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                             {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                             {"role": "user", "parts": [{"functionResponse": {"name": "f",
                                                                              "response": {"output": deep}}}]}]}
    r = send(stack, frontend, pinned, model, False, body)
    assert r.status_code in (200, 400), r.text[:300]  # sent on as text, or refused naming the field
    if r.status_code == 400:
        assert_400_naming(frontend, r, r.json().get("error", {}).get("param") if frontend == "openai" else None)


def test_anthropic_media_type_as_a_list(stack):
    for pinned in ROUTES:
        model = SERVED[pinned or "anthropic"]
        content = [{"type": "image", "source": {"type": "base64", "media_type": ["image/png"], "data": "iVBORw0K"}}]
        body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": content}]}
        r = send(stack, "anthropic", pinned, model, False, body)
        assert_400_naming("anthropic", r, "messages.0.content.0.source.media_type")
        if pinned is None:
            r = send(stack, "anthropic", None, model, False, body, count_tokens=True)
            assert_400_naming("anthropic", r, "messages.0.content.0.source.media_type")


@pytest.mark.parametrize("frontend", ["anthropic", "gemini"])
def test_count_tokens_endpoints_answer_bad_input_in_the_envelope(stack, frontend):
    model = SERVED["gemini" if frontend == "gemini" else "anthropic"]
    for field, extra in _numbers(frontend):
        if field == "max_tokens":
            continue  # not a count_tokens field (the proxy sets its own)
        r = send(stack, frontend, None, model, False, _body(frontend, model, False, **extra), count_tokens=True)
        assert_400_naming(frontend, r, field)
    r = send(stack, frontend, None, model, False, _with_deep(_body(frontend, model, False, metadata=_DEEP), 300),
             count_tokens=True)
    assert_400_naming(frontend, r, None)
    for raw in (b"[" * 2000, b"{", b"", b"[]", b'"x"'):
        r = send(stack, frontend, None, model, False, raw, count_tokens=True)
        assert_400_naming(frontend, r, None)


# ------------------------------------------------------------ class 7: logs


def test_huge_and_line_breaking_models_neither_flood_nor_forge_the_log(stack):
    start = len(stack.proxy.lines)
    for frontend in ("openai", "anthropic"):
        for model in ("x" * 30_000_000, "ok\nERROR interchange.pipeline: forged line", "a\r\nb"):
            r = send(stack, frontend, None, model, False)
            assert_400_naming(frontend, r, "model")
            assert len(r.content) < 1024
    r = send(stack, "gemini", None, "ok\nERROR forged", False)
    assert_400_naming("gemini", r, "model")
    requests.get(stack.proxy_url + "/health", timeout=5)
    written = stack.proxy.lines[start:]
    assert all(len(line) < 2000 for line in written)
    assert not any("forged" in line for line in written)
