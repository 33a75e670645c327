"""boto3's `bedrock-runtime` client pointed at the mock: every good scenario
parses through converse and converse_stream with exactly the fixture's
expected content; fault scenarios raise botocore's own typed errors; and the
SigV4 check is real (wrong secret, unknown key, stale date, a changed body
byte, the wrong service are all refused with a 403 in Bedrock's envelope)."""
from __future__ import annotations

import contextlib
import datetime
import time

import boto3
import botocore.auth
import pytest
import requests
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EventStreamError, ReadTimeoutError

from mocks.bedrock import API_KEY
from tests.mocks.helpers import (
    BEDROCK_FINISH, BEDROCK_KEY_ID, BEDROCK_SECRET, GOOD_SCENARIOS, bedrock_post, bedrock_signed, bedrock_usage,
    expected_summary, png, summarize_bedrock_stream,
)

CLAUDE = "anthropic.claude-3-sonnet-20240229-v1:0"
CLAUDE_THINKING = "anthropic.claude-3-7-sonnet-20250219-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
WEATHER = {"toolSpec": {"name": "get_weather", "description": "Current weather for a city", "inputSchema": {"json": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}}
TOOLS = {"tools": [WEATHER]}
USER = [{"role": "user", "content": [{"text": "Hi"}]}]
TOOL_TURNS = [
    {"role": "user", "content": [{"text": "What's the weather in Paris?"}]},
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather",
                                                   "input": {"location": "Paris"}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp_c": 18}}]}}]},
]

# The request that selects each scenario (by detection where the mock detects it).
REQUESTS = {
    "text": dict(modelId=CLAUDE, messages=USER),
    "function_calling": dict(modelId=CLAUDE, messages=USER, toolConfig=TOOLS),
    "parallel_function_calling": dict(modelId=CLAUDE, messages=USER, toolConfig=TOOLS),
    "after_tool_result": dict(modelId=CLAUDE, messages=TOOL_TURNS, toolConfig=TOOLS),
    "thinking": dict(modelId=CLAUDE_THINKING, messages=USER, inferenceConfig={"maxTokens": 2048},
                     additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}}),
    "max_tokens": dict(modelId="amazon.nova-pro-v1:0", messages=USER, inferenceConfig={"maxTokens": 4}),
    "stop_sequence": dict(modelId=CLAUDE, messages=USER, inferenceConfig={"stopSequences": ["four"]}),
    "vision": dict(modelId=CLAUDE, messages=[{"role": "user", "content": [
        {"image": {"format": "png", "source": {"bytes": png()}}}, {"text": "What is in this image?"}]}]),
}
NAMED = {"parallel_function_calling", "max_tokens", "stop_sequence"}  # chosen by header, not detected


def make_client(url: str, secret: str = BEDROCK_SECRET, key_id: str = BEDROCK_KEY_ID, **config):
    return boto3.client("bedrock-runtime", region_name="eu-west-3", endpoint_url=url, aws_access_key_id=key_id,
                        aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}, **{"read_timeout": 10, **config}))


@pytest.fixture(scope="module")
def client(mock_url: str):
    return make_client(mock_url)


@contextlib.contextmanager
def scenario(client, name: str | None):
    """Send X-Mock-Scenario (added before signing, so it is signed like any header)."""
    def add(request, **_):
        request.headers["X-Mock-Scenario"] = name
    if name:
        client.meta.events.register("before-sign.bedrock-runtime.*", add)
    try:
        yield
    finally:
        if name:
            client.meta.events.unregister("before-sign.bedrock-runtime.*", add)


def summary(response: dict) -> dict:
    content = response["output"]["message"]["content"]
    out = {"text": "".join(b["text"] for b in content if "text" in b),
           "tool_calls": [{"name": b["toolUse"]["name"], "arguments": b["toolUse"]["input"]}
                          for b in content if "toolUse" in b],
           "finish": BEDROCK_FINISH[response["stopReason"]], "usage": bedrock_usage(response["usage"])}
    thinking = "".join(b["reasoningContent"]["reasoningText"]["text"] for b in content if "reasoningContent" in b)
    if thinking:
        out["thinking"] = thinking
    return out


def stream_pairs(response: dict) -> list[tuple[str, dict]]:
    return [next(iter(event.items())) for event in response["stream"]]


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_converse(client, library, name):
    with scenario(client, name if name in NAMED else None):
        response = client.converse(**REQUESTS[name])
    assert summary(response) == expected_summary(library.get("bedrock", name).expect)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["metrics"]["latencyMs"] == 802


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_converse_stream(client, library, name):
    with scenario(client, name if name in NAMED else None):
        response = client.converse_stream(**REQUESTS[name])
        pairs = stream_pairs(response)
    assert summarize_bedrock_stream(pairs) == expected_summary(library.get("bedrock", name).expect)
    assert pairs[0] == ("messageStart", {"role": "assistant"})


def test_thinking_signature_goes_back(client):
    """The reasoning block (with its signature) of a reply is accepted in the next turn."""
    first = client.converse(**REQUESTS["thinking"])
    history = USER + [first["output"]["message"], {"role": "user", "content": [{"text": "And?"}]}]
    again = client.converse(**{**REQUESTS["thinking"], "messages": history})
    assert again["stopReason"] == "end_turn"


def test_model_ids_with_colons_and_slashes_are_signed_as_sent(client, mock_url):
    """An inference-profile ARN: `:` and `/` go percent-encoded in the path, and the signature
    covers the encoded path; the mock decodes the model id for its own use."""
    requests.delete(mock_url + "/_mock/requests", timeout=5)
    assert client.converse(modelId=PROFILE_ARN, messages=USER)["stopReason"] == "end_turn"
    log = requests.get(mock_url + "/_mock/requests", params={"provider": "bedrock"}, timeout=5).json()
    assert log[-1]["path"] == f"/model/{PROFILE_ARN}/converse" and log[-1]["status"] == 200


# ---------------------------------------------------------------- faults

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name, code, status", [
    ("error_400", "ValidationException", 400),
    ("error_401", "UnrecognizedClientException", 403),
    ("error_429", "ThrottlingException", 429),
    ("error_500", "InternalServerException", 500),
    ("overloaded", "ServiceUnavailableException", 503),
])
def test_http_errors(client, library, name, code, status, stream):
    typed = getattr(client.exceptions, code, ClientError)
    with scenario(client, name), pytest.raises(typed) as caught:
        (client.converse_stream if stream else client.converse)(**REQUESTS["text"])
    error = caught.value.response
    assert error["Error"]["Code"] == code and error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Message"] == library.get("bedrock", name).body["message"]
    if name == "error_429":
        assert error["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "7"


def test_error_mid_stream(client, library):
    received = []
    with scenario(client, "error_mid_stream"):
        response = client.converse_stream(**REQUESTS["text"])
        with pytest.raises(EventStreamError) as caught:
            for event in response["stream"]:
                received.append(event.get("contentBlockDelta", {}).get("delta", {}).get("text", ""))
        assert caught.value.response["Error"]["Code"] == "throttlingException"
        assert "".join(received) == library.get("bedrock", "error_mid_stream").expect["partial_text"]
        assert "x-amzn-errortype" not in response["ResponseMetadata"]["HTTPHeaders"]
        with pytest.raises(client.exceptions.ThrottlingException):
            client.converse(**REQUESTS["text"])


def test_drop_mid_stream(client, library):
    received = []
    with scenario(client, "drop_mid_stream"):
        response = client.converse_stream(**REQUESTS["text"])
        with pytest.raises(urllib3.exceptions.ProtocolError):  # botocore lets the stream's own error through
            for event in response["stream"]:
                received.append(event.get("contentBlockDelta", {}).get("delta", {}).get("text", ""))
        assert "".join(received) == library.get("bedrock", "drop_mid_stream").expect["partial_text"]
        with pytest.raises(ConnectionClosedError):
            client.converse(**REQUESTS["text"])


def test_stall_mid_stream_times_out(mock_url):
    quick = make_client(mock_url, read_timeout=1)
    started = time.monotonic()
    with scenario(quick, "stall_mid_stream"):
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):  # botocore lets the stream's own error through
            for _ in quick.converse_stream(**REQUESTS["text"])["stream"]:
                pass
        with pytest.raises(ReadTimeoutError):
            quick.converse(**REQUESTS["text"])
    assert time.monotonic() - started < 5


def test_malformed_body(client):
    """botocore does not raise on JSON it cannot read: it hands back what it could parse, so the
    client sees a reply without its required members (the proxy's parser calls it a bad gateway)."""
    with scenario(client, "malformed_body"):
        response = client.converse(**REQUESTS["text"])
        assert "output" not in response and "stopReason" not in response
        events = list(client.converse_stream(**REQUESTS["text"])["stream"])
    assert events == [{"messageStart": {"role": "assistant"}}, {"contentBlockDelta": {}}]


def test_slow_first_byte(client, library):
    started = time.monotonic()
    with scenario(client, "slow_first_byte"):
        response = client.converse(**REQUESTS["text"])
    assert time.monotonic() - started >= 1.4
    assert summary(response) == expected_summary(library.get("bedrock", "text").expect)


# ---------------------------------------------------------------- SigV4, checked for real

def test_wrong_secret_is_refused(mock_url):
    with pytest.raises(ClientError) as caught:
        make_client(mock_url, secret="not-the-secret").converse(**REQUESTS["text"])
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidSignatureException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature we calculated does not match" in error["Error"]["Message"]
    assert "not-the-secret" not in error["Error"]["Message"]


def test_session_credentials_are_signed_and_accepted(mock_url, mock_server):
    """Temporary credentials (IRSA, SSO, assumed roles) add X-Amz-Security-Token, which is signed;
    the request log never shows it."""
    client = boto3.client("bedrock-runtime", region_name="us-west-2", endpoint_url=mock_url,
                          aws_access_key_id=BEDROCK_KEY_ID, aws_secret_access_key=BEDROCK_SECRET,
                          aws_session_token="FQoGZXIvYXdzEXAMPLESESSIONTOKEN", config=Config(retries={"total_max_attempts": 1}))
    requests.delete(mock_url + "/_mock/requests", timeout=5)
    assert client.converse(**REQUESTS["text"])["stopReason"] == "end_turn"
    logged = requests.get(mock_url + "/_mock/requests", timeout=5).json()[-1]["headers"]
    assert logged["x-amz-security-token"] == "[REDACTED]" and "FQoGZXIv" not in str(logged)
    assert "Signature=" not in logged["authorization"]


def test_unknown_access_key_is_refused(mock_url):
    with pytest.raises(ClientError) as caught:
        make_client(mock_url, key_id="AKIDUNKNOWN").converse_stream(**REQUESTS["text"])
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_stale_date_is_refused(mock_url, monkeypatch):
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale)
    with pytest.raises(ClientError) as caught:
        make_client(mock_url).converse(**REQUESTS["text"])
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["Error"]["Message"].startswith("Signature expired: ")


def test_a_changed_body_byte_is_refused(mock_url):
    target, headers, data = bedrock_signed(mock_url, CLAUDE, {"messages": USER})
    tampered = data.replace(b'"Hi"', b'"Ho"')
    reply = requests.post(target, data=tampered, headers=headers, timeout=10)
    assert reply.status_code == 403
    assert reply.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    assert set(reply.json()) == {"message"}
    assert requests.post(target, data=data, headers=headers, timeout=10).status_code == 200  # the signed bytes pass


def test_a_changed_signed_header_or_path_is_refused(mock_url):
    target, headers, data = bedrock_signed(mock_url, CLAUDE, {"messages": USER})
    assert requests.post(target, data=data, headers={**headers, "Content-Type": "text/plain"},
                         timeout=10).status_code == 403
    other = target.replace("v1%3A0", "v1:0")  # the same model, but not the path that was signed
    assert requests.post(other, data=data, headers=headers, timeout=10).status_code == 403


def test_wrong_service_scope_and_missing_auth(mock_url):
    reply = bedrock_post(mock_url, CLAUDE, {"messages": USER}, service="bedrock-runtime")
    assert reply.status_code == 403 and "scoped to correct service: 'bedrock'" in reply.json()["message"]
    target, headers, data = bedrock_signed(mock_url, CLAUDE, {"messages": USER})
    del headers["Authorization"]
    reply = requests.post(target, data=data, headers=headers, timeout=10)
    assert reply.status_code == 403 and reply.headers["x-amzn-ErrorType"].startswith(
        "MissingAuthenticationTokenException:")


def test_bedrock_api_key_as_bearer(mock_url):
    url = f"{mock_url}/model/{CLAUDE.replace(':', '%3A')}/converse"
    body = b'{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}'
    good = requests.post(url, data=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert good.status_code == 200 and good.json()["stopReason"] == "end_turn"
    bad = requests.post(url, data=body, headers={"Authorization": "Bearer ABSKwrong"}, timeout=10)
    assert bad.status_code == 403 and bad.headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException:")
