"""Proxy behaviour at the edges: bad input answered in the client's own
envelope, passthrough fidelity, configuration errors, upstream faults
mid-stream. Every assertion is on the exact wire shape a client sees."""
from __future__ import annotations

import json
import textwrap

import pytest
import requests

from app.config import load_config
from app.server import create_app

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
GEMINI_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "client"}


def post(stack, path, body, headers=None, raw=False):
    data = body if raw else json.dumps(body)
    return requests.post(stack.proxy_url + path, data=data, timeout=20,
                         headers={"Content-Type": "application/json", **(headers or {})})


def mock_log(stack):
    return requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()


def clear_log(stack):
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5)


# ------------------------------------------------------------ bad input


def test_malformed_json_in_each_envelope(stack):
    r = post(stack, OPENAI_PATH, b"{not json", raw=True)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"

    r = post(stack, ANTHROPIC_PATH, b"{not json", ANTHROPIC_HEADERS, raw=True)
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"

    r = post(stack, GEMINI_PATH, b"{not json", raw=True)
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT" and r.json()["error"]["code"] == 400


@pytest.mark.parametrize("path,body,headers,field", [
    (OPENAI_PATH, {"model": "gpt-4o-mini"}, {}, "messages"),
    (OPENAI_PATH, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
     {}, "temperature"),
    (ANTHROPIC_PATH, {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]},
     ANTHROPIC_HEADERS, "max_tokens"),
    (GEMINI_PATH, {"contents": []}, {}, "contents"),
])
def test_missing_or_wrong_fields_are_named(stack, path, body, headers, field):
    r = post(stack, path, body, headers)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_unknown_model_lists_the_available_ones(stack):
    r = post(stack, OPENAI_PATH, {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "gpt-4o-mini" in err["message"] and "claude-haiku-4-5" in err["message"]

    r = post(stack, "/v1beta/models/nope:generateContent", {"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
    assert (r.status_code, r.json()["error"]["status"]) == (404, "NOT_FOUND")


def test_oversized_body_is_413_in_the_client_envelope(stack):
    big = b'{"model":"claude-haiku-4-5","pad":"' + b"x" * (33 * 1024 * 1024) + b'"}'
    r = post(stack, ANTHROPIC_PATH, big, ANTHROPIC_HEADERS, raw=True)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"


def test_unknown_path_and_method(stack):
    r = requests.get(stack.proxy_url + "/v1/nothing-here", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    r = requests.get(stack.proxy_url + OPENAI_PATH, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_n_above_one_across_protocols_is_a_clear_error(stack):
    r = post(stack, OPENAI_PATH, {"model": "claude-haiku-4-5", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"


# ------------------------------------------------------------ fidelity


def test_same_protocol_passthrough_keeps_unknown_fields(stack):
    clear_log(stack)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
            "logprobs": True, "top_logprobs": 2, "metadata": {"k": "v"}, "service_tier": "default"}
    r = post(stack, OPENAI_PATH, body, {"X-Mock-Scenario": "text", "X-Other": "not forwarded"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-4o-mini"
    (entry,) = mock_log(stack)
    assert entry["body"] == body
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers.get("x-mock-scenario") == "text"
    assert "x-other" not in headers


def test_the_reply_names_the_model_the_client_asked_for(stack):
    r = post(stack, ANTHROPIC_PATH, {"model": "gpt-4o-mini", "max_tokens": 50,
                                     "messages": [{"role": "user", "content": "Hi"}]}, ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-4o-mini"


def test_models_lists_in_each_shape(stack):
    oa = requests.get(stack.proxy_url + "/v1/models", timeout=5).json()
    assert oa["object"] == "list" and {"gpt-5-nano", "claude-opus-4-5", "gemini-2.0-flash"} <= {m["id"] for m in oa["data"]}
    an = requests.get(stack.proxy_url + "/v1/models", headers=ANTHROPIC_HEADERS, timeout=5).json()
    assert all(m["type"] == "model" for m in an["data"]) and "has_more" in an
    ge = requests.get(stack.proxy_url + "/v1beta/models", timeout=5).json()
    assert "models/gemini-2.5-flash" in {m["name"] for m in ge["models"]}


def test_count_tokens_estimate_is_labelled(stack):
    r = post(stack, "/v1/messages/count_tokens", {"model": "gpt-4o-mini",
                                                  "messages": [{"role": "user", "content": "Hello there"}]},
             ANTHROPIC_HEADERS)
    assert r.status_code == 200
    assert r.headers["X-Interchange-Token-Count"] == "estimate"
    assert r.json()["input_tokens"] > 0


# ------------------------------------------------------------ faults


def sse_events(r):
    return [line for line in r.iter_lines(decode_unicode=True) if line]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "qwen3-vl"])
def test_drop_mid_stream_becomes_an_in_stream_error(stack, model):
    r = requests.post(stack.proxy_url + OPENAI_PATH, timeout=20, stream=True,
                      headers={"X-Mock-Scenario": "drop_mid_stream"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    lines = sse_events(r)
    assert lines[-1] != "data: [DONE]"
    last = json.loads(lines[-1].removeprefix("data: "))
    assert "error" in last and last["error"]["message"]


# qwen3-vl: Ollama's error arrives as an NDJSON line under the 200
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "qwen3-vl"])
def test_upstream_error_mid_stream_reaches_an_anthropic_client(stack, model):
    r = requests.post(stack.proxy_url + ANTHROPIC_PATH, timeout=20, stream=True,
                      headers={**ANTHROPIC_HEADERS, "X-Mock-Scenario": "error_mid_stream"},
                      json={"model": model, "stream": True, "max_tokens": 100,
                            "messages": [{"role": "user", "content": "Hi"}]})
    lines = sse_events(r)
    assert "event: error" in lines
    assert "event: message_stop" not in lines


def test_malformed_upstream_body_is_a_502(stack):
    r = post(stack, GEMINI_PATH.replace("gemini-2.5-flash", "claude-haiku-4-5"),
             {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, {"X-Mock-Scenario": "malformed_body"})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == 502


# ------------------------------------------------------------ configuration


def test_missing_api_key_is_a_configuration_error(tmp_path, stack, monkeypatch):
    monkeypatch.delenv("INTERCHANGE_ABSENT_KEY", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        [backends.oa]
        protocol = "openai"
        url = "{stack.mock_url}/v1"
        api_key_env = "INTERCHANGE_ABSENT_KEY"
        [backends.oa.model_mapping]
        "gpt-4o-mini" = "gpt-4o-mini"
    """))
    client = create_app(load_config(cfg)).test_client()
    r = client.post(OPENAI_PATH, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500
    err = r.get_json()["error"]
    assert err["code"] == "configuration_error" and "INTERCHANGE_ABSENT_KEY" in err["message"]


def test_upstream_secrets_never_reach_the_client(tmp_path, stack):
    """The mock's 401 echoes nothing secret, but a provider might: our redaction must catch the key."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        [backends.oa]
        protocol = "openai"
        url = "{stack.mock_url}/v1"
        api_key = "sk-secretsecretsecret1234"
        forward_headers = ["X-Mock-Scenario"]
        [backends.oa.model_mapping]
        "gpt-4o-mini" = "gpt-4o-mini"
    """))
    client = create_app(load_config(cfg)).test_client()
    r = client.post(OPENAI_PATH, headers={"X-Mock-Scenario": "error_401"},
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    # The upstream rejected the proxy's key, not the client's: a gateway error naming the backend.
    assert r.status_code == 502
    error = r.get_json()["error"]
    assert error["code"] == "upstream_authentication_error" and "'oa'" in error["message"]
    assert "secretsecret" not in r.get_data(as_text=True)


def test_count_tokens_is_asked_of_an_anthropic_backend(stack):
    clear_log(stack)
    r = post(stack, "/v1/messages/count_tokens", {"model": "claude-haiku-4-5",
                                                  "messages": [{"role": "user", "content": "Hello there"}]},
             ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    assert "X-Interchange-Token-Count" not in r.headers
    assert isinstance(r.json()["input_tokens"], int)
    (entry,) = mock_log(stack)
    assert entry["path"] == "/v1/messages/count_tokens"
    assert entry["body"] == {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hello there"}]}


VERTEX_MODELS = "/v1/projects/interchange-test/locations/{location}/publishers/{publisher}/models/"
GEMINI_COUNTED = {"contents": [{"role": "user", "parts": [{"text": "Hello there, how are you today?"}]}],
                  "systemInstruction": {"parts": [{"text": "Answer in one word."}]},
                  "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "The weather",
                                                        "parameters": {"type": "OBJECT", "properties": {
                                                            "city": {"type": "STRING"}}}}]}],
                  "generationConfig": {"temperature": 0.5}}


@pytest.mark.parametrize("body", [
    {"generateContentRequest": {"model": "models/vertex-gemini-2.5-pro", **GEMINI_COUNTED,
                                "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
                                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                    "threshold": "BLOCK_NONE"}]}},
    {"contents": GEMINI_COUNTED["contents"]},
], ids=["generateContentRequest", "contents"])
def test_gemini_count_tokens_is_asked_of_a_vertex_gemini_backend(stack, body):
    from mocks.gemini import estimate_tokens
    clear_log(stack)
    r = post(stack, "/v1beta/models/vertex-gemini-2.5-pro:countTokens", body)
    assert r.status_code == 200, r.text
    assert "X-Interchange-Token-Count" not in r.headers
    (entry,) = [e for e in mock_log(stack) if e["provider"] == "vertex_gemini"]
    assert entry["path"] == VERTEX_MODELS.format(location="us-central1", publisher="google") + \
        "gemini-2.5-pro:countTokens"
    # Vertex's CountTokensRequest: the counted fields at the top level, what it does not take left out.
    sent = GEMINI_COUNTED if "generateContentRequest" in body else body
    assert entry["body"] == sent
    assert r.json() == {"totalTokens": estimate_tokens(sent)}  # the client's shape, the upstream's count


def test_anthropic_count_tokens_is_asked_of_a_vertex_anthropic_backend(stack):
    from mocks.anthropic import estimate_input_tokens
    clear_log(stack)
    body = {"model": "vertex-claude-sonnet-4-5", "system": "Answer in one word.",
            "messages": [{"role": "user", "content": "Hello there"}]}
    r = post(stack, "/v1/messages/count_tokens", body, ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    assert "X-Interchange-Token-Count" not in r.headers
    (entry,) = [e for e in mock_log(stack) if e["provider"] == "vertex_anthropic"]
    assert entry["path"] == VERTEX_MODELS.format(location="us-east5", publisher="anthropic") + \
        "count-tokens:rawPredict"
    assert entry["body"] == {**body, "model": "claude-sonnet-4-5@20250929", "anthropic_version": "vertex-2023-10-16"}
    assert r.json() == {"input_tokens": estimate_input_tokens(body)}


def short_timeout_app(tmp_path, stack, protocol: str, url: str, model: str):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        [backends.b]
        protocol = "{protocol}"
        url = "{url}"
        api_key = "k"
        timeout = 1
        forward_headers = ["X-Mock-Scenario"]
        [backends.b.model_mapping]
        "{model}" = "{model}"
    """))
    return create_app(load_config(cfg)).test_client()


@pytest.mark.parametrize("protocol,path,model", [("openai", "/v1", "gpt-4o-mini"),
                                                 ("anthropic", "", "claude-haiku-4-5"),
                                                 ("gemini", "", "gemini-2.5-flash")])
def test_stall_mid_stream_ends_in_a_timeout_error_event(tmp_path, stack, protocol, path, model):
    client = short_timeout_app(tmp_path, stack, protocol, stack.mock_url + path, model)
    r = client.post(ANTHROPIC_PATH, headers={**ANTHROPIC_HEADERS, "X-Mock-Scenario": "stall_mid_stream"},
                    json={"model": model, "max_tokens": 50, "stream": True,
                          "messages": [{"role": "user", "content": "Hi"}]}, buffered=False)
    assert r.status_code == 200
    text = b"".join(r.response).decode()
    assert "content_block_delta" in text  # what arrived before the stall was relayed
    assert text.rstrip().endswith("}") and "event: error" in text
    error = json.loads(text.rsplit("event: error\ndata: ", 1)[1].split("\n", 1)[0])
    assert error["error"]["type"] == "timeout_error"
    assert "message_stop" not in text


def test_slow_first_byte_past_the_timeout_is_a_plain_504(tmp_path, stack):
    client = short_timeout_app(tmp_path, stack, "gemini", stack.mock_url, "gemini-2.5-flash")
    r = client.post(OPENAI_PATH, headers={"X-Mock-Scenario": "slow_first_byte"},
                    json={"model": "gemini-2.5-flash", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 504
    assert r.get_json()["error"]["type"] in ("timeout_error", "timeout")
