"""The request inspector (app/inspector.py): config-mock.toml's backends, nothing sent.
What a client request becomes (route, upstream method, URL, masked headers, body), and bad
input as a 400 naming the field."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from app.config import load_config
from app.inspector import MASK, inspect, masked_header
from app.pipeline import Pipeline
from app.routing import Router

REPO = Path(__file__).resolve().parents[2]
MOCK = "http://127.0.0.1:8888"
AWS_KEY_ID, AWS_SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # config-mock.toml's defaults
CONVERSE_URL = f"{MOCK}/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse"


@pytest.fixture(scope="module")
def pipeline():
    mp = pytest.MonkeyPatch()
    for name in ("MOCK_URL", "BEDROCK_ACCESS_KEY_ID", "BEDROCK_SECRET_ACCESS_KEY", "AWS_REGION", "OPENAI_API_KEY"):
        mp.delenv(name, raising=False)  # config-mock.toml's own defaults
    config = load_config(REPO / "config-mock.toml")
    mp.undo()
    return Pipeline(config, Router(config))


@pytest.fixture
def signed(pipeline, monkeypatch):
    """The requests the Bedrock provider prepares, unmasked, as they would be sent."""
    provider = pipeline.providers["bedrock"]
    made = []
    prepare = provider.prepare

    def recording(call):
        made.append(prepare(call))
        return made[-1]
    monkeypatch.setattr(provider, "prepare", recording)
    return made


def test_an_openai_request_for_bedrock_shows_the_converse_body_and_the_signed_url_masked(pipeline, signed):
    status, out = inspect(pipeline, {"protocol": "openai", "model": "claude-3-sonnet", "prompt": "Hi"})
    assert status == 200
    assert out["client_request"] == {"method": "POST", "path": "/v1/chat/completions", "body": {
        "model": "claude-3-sonnet", "messages": [{"role": "user", "content": "Hi"}]}}
    assert out["route"] == {"backend": "bedrock", "kind": "bedrock_converse", "protocol": "bedrock_converse",
                            "upstream_model": "anthropic.claude-3-sonnet-20240229-v1:0", "reason": "model_mapping",
                            "passthrough": False}
    up = out["upstream_request"]
    assert (up["method"], up["url"]) == ("POST", CONVERSE_URL)
    assert up["body"] == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}  # Converse, not OpenAI
    assert set(up["headers"]) == {"Content-Type", "Accept", "X-Amz-Date", "Authorization"}
    auth = up["headers"]["Authorization"]
    assert re.fullmatch(rf"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/\d{{8}}/us-east-1/bedrock/aws4_request, "
                        rf"SignedHeaders=accept;content-type;host;x-amz-date, Signature=\[MASKED\]", auth), auth
    # What is shown is what was signed, less the signature: it is a real one, and it is nowhere in the answer.
    (sent,) = signed
    signature = dict(sent.headers)["Authorization"].rpartition("Signature=")[2]
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert signature not in json.dumps(out) and AWS_SECRET not in json.dumps(out)
    assert json.loads(sent.body) == up["body"] and sent.url == up["url"]
    assert "upstream_reply" not in out and "client_reply" not in out  # nothing sent unless asked


def test_a_pasted_stream_request_is_shown_as_pasted_and_planned_non_streamed(pipeline):
    pasted = {"model": "claude-3-sonnet", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": "Hi"}]}
    status, out = inspect(pipeline, {"protocol": "openai", "request": json.dumps(pasted)})
    assert status == 200
    assert out["client_request"]["body"] == pasted
    assert out["upstream_request"]["url"] == CONVERSE_URL  # not /converse-stream
    assert out["notes"] and "non-streamed" in out["notes"][0]


@pytest.mark.parametrize("protocol,model,path,wire,url", [
    ("openai_responses", "claude-3-sonnet", "/v1/responses", "bedrock_converse", CONVERSE_URL),
    ("anthropic", "gpt-5-nano", "/v1/messages", "openai", f"{MOCK}/v1/chat/completions"),
    ("gemini", "claude-sonnet-4-5", "/v1beta/models/claude-sonnet-4-5:generateContent", "anthropic",
     f"{MOCK}/v1/messages"),
])
def test_every_client_protocol_composes_its_smallest_request(pipeline, protocol, model, path, wire, url):
    status, out = inspect(pipeline, {"protocol": protocol, "model": model, "prompt": "Hi"})
    assert status == 200, out
    assert out["client_request"]["path"] == path
    assert (out["route"]["protocol"], out["upstream_request"]["url"]) == (wire, url)


def test_the_openai_key_is_masked_and_a_same_wire_hop_says_passthrough(pipeline):
    (key,) = pipeline.providers["openai"].secrets()
    status, out = inspect(pipeline, {"protocol": "openai", "model": "gpt-5-nano", "prompt": "Hi"})
    assert status == 200
    assert out["route"]["passthrough"] is True
    assert out["upstream_request"]["headers"]["Authorization"] == "Bearer " + MASK
    assert key not in json.dumps(out)


@pytest.mark.parametrize("name,value,shown", [
    ("Authorization", "Bearer sk-live-abcdef123456", "Bearer [MASKED]"),
    ("api-key", "abcdef0123456789", "[MASKED]"),
    ("x-goog-api-key", "AIzaSyA-1234567890abcdef", "[MASKED]"),
    ("x-amz-security-token", "FwoGZXIvYXdzEXAMPLE", "[MASKED]"),
    ("authorization", 'Signature version="1",keyId="ocid1.tenancy.oc1..aaa/ocid1.user.oc1..bbb/aa:bb",'
                      'algorithm="rsa-sha256",headers="date (request-target) host",signature="QmFzZTY0+/==="',
     'Signature version="1",keyId="ocid1.tenancy.oc1..aaa/ocid1.user.oc1..bbb/aa:bb",'
     'algorithm="rsa-sha256",headers="date (request-target) host",signature="[MASKED]"'),
    ("X-Trace", "run with proxy-secret-123 today", "run with [REDACTED] today"),  # a secret anywhere else
    ("Content-Type", "application/json", "application/json"),
])
def test_credential_headers_and_secrets_are_masked(name, value, shown):
    assert masked_header(name, value, ("proxy-secret-123",)) == shown


@pytest.mark.parametrize("data,param,stage,message", [
    ({"protocol": "klingon", "model": "m", "prompt": "p"}, "protocol", "input", "Unknown client protocol 'klingon'"),
    ({"protocol": "openai", "request": "{not json"}, "request", "input", "The pasted request: The request body is not valid JSON"),
    ({"protocol": "openai", "request": "[1, 2]"}, "request", "input", "The pasted request: The request body must be a JSON object."),
    ({"protocol": "openai", "request": 7}, "request", "input", "`request` must be a JSON object"),
    ({"protocol": "openai", "prompt": "Hi"}, "model", "input", "Pick a model"),
    ({"protocol": "openai", "model": "gpt-5-nano", "prompt": " "}, "prompt", "input", "Write a prompt"),
    ({"protocol": "gemini", "request": {"contents": []}}, "model", "input", "Gemini generateContent puts the model in the URL"),
    ({"protocol": "openai", "model": "gpt-5-nano", "prompt": "Hi", "send": "yes"}, "send", "input", "`send` must be"),
    ({"protocol": "openai", "request": {"model": "gpt-5-nano", "messages": "Hi"}}, "messages", "parse", ""),
])
def test_bad_input_is_a_400_naming_the_field(pipeline, data, param, stage, message):
    status, out = inspect(pipeline, data)
    assert status == 400
    assert (out["error"]["param"], out["error"]["stage"]) == (param, stage)
    assert out["error"]["message"].startswith(message), out["error"]["message"]


def test_a_request_that_is_not_an_object_is_a_400(pipeline):
    assert inspect(pipeline, ["openai"]) == (400, {"error": {
        "message": "The inspector takes a JSON object: protocol, and model + prompt or request.",
        "param": None, "stage": "input"}})


def test_an_unmapped_model_goes_to_the_default_provider(pipeline):
    status, out = inspect(pipeline, {"protocol": "openai", "model": "no-such-model", "prompt": "Hi"})
    assert status == 200
    # config-mock.toml: default_provider = "runpod" (RunPod's OpenAI-compatible wire: the body passes through)
    assert out["route"] == {"backend": "runpod", "kind": "runpod", "protocol": "openai",
                            "upstream_model": "no-such-model", "reason": "default", "passthrough": True}


def test_a_routing_failure_is_a_400_naming_the_model_and_still_shows_the_client_request(pipeline):
    config = pipeline.config
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, default_provider=None))
    status, out = inspect(Pipeline(config, Router(config)),
                          {"protocol": "anthropic", "model": "no-such-model", "prompt": "Hi"})
    assert status == 400
    assert (out["error"]["param"], out["error"]["stage"]) == ("model", "route")
    assert out["error"]["message"].startswith("Model 'no-such-model' is not configured. Available models: gpt-high, ")
    assert out["client_request"]["body"] == {"model": "no-such-model", "max_tokens": 1024,
                                             "messages": [{"role": "user", "content": "Hi"}]}
    assert "route" not in out


def test_send_to_an_upstream_that_refuses_connections_shows_no_reply_and_the_clients_502(tmp_path):
    import socket
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[backends.an]\nprotocol = "anthropic"\nurl = "http://127.0.0.1:{closed.getsockname()[1]}"\n'
                       f'api_key = "sk-ant-secret-0123456789"\n[backends.an.model_mapping]\n"claude-x" = "claude-x-1"\n')
        config = load_config(cfg)
        status, out = inspect(Pipeline(config, Router(config)),
                              {"protocol": "openai", "model": "claude-x", "prompt": "Hi", "send": True})
    finally:
        closed.close()
    assert status == 200
    assert set(out["upstream_reply"]) == {"error"} and "an" in out["upstream_reply"]["error"]
    assert out["client_reply"]["status"] == 502
    assert out["client_reply"]["body"]["error"]["message"] == out["upstream_reply"]["error"]
    assert out["upstream_request"]["headers"]["x-api-key"] == MASK
    assert "sk-ant-secret" not in json.dumps(out)


def test_a_backend_without_its_credentials_is_a_502_at_prepare_after_the_route(tmp_path, monkeypatch):
    monkeypatch.delenv("INSPECTOR_TEST_UNSET_KEY", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[backends.oa]\nprotocol = "openai"\nurl = "http://127.0.0.1:9/v1"\n'
                   'api_key_env = "INSPECTOR_TEST_UNSET_KEY"\n[backends.oa.model_mapping]\n"gpt-x" = "gpt-x-1"\n')
    config = load_config(cfg)
    status, out = inspect(Pipeline(config, Router(config)), {"protocol": "openai", "model": "gpt-x", "prompt": "Hi"})
    assert status == 502
    assert out["error"]["stage"] == "prepare" and "INSPECTOR_TEST_UNSET_KEY" in out["error"]["message"]
    assert out["route"]["backend"] == "oa" and "upstream_request" not in out
