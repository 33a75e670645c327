"""The watsonx mock and its IAM service refuse what the real ones refuse, in their envelopes;
every scenario replays in watsonx's wire for chat and text generation, streamed and not, and
the proxy's wire module (app/protocols/watsonx) reads each back to the scenario's `expect`."""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from app import ir
from app.errors import ProxyError
from app.protocols import openai_chat
from app.protocols import watsonx as wx
from mocks.watsonx import API_KEY, GRANT_TYPE
from tests.conftest import stream_events
from tests.mocks.helpers import parse_sse

PROJECT = "8a3f1c2e-5b7d-4e9a-9c1f-2d6b8e4a7c30"
CHAT_MODEL, BASE_MODEL = "ibm/granite-3-8b-instruct", "ibm/granite-3-8b-base"
USER = [{"role": "user", "content": "Hi"}]
CHAT = {"model_id": CHAT_MODEL, "project_id": PROJECT, "messages": USER}
GENERATION = {"model_id": BASE_MODEL, "project_id": PROJECT, "input": "Hi", "parameters": {"max_new_tokens": 50}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
REQ = openai_chat.parse_request({"model": "granite", "messages": USER})


def grant(mock_url: str, form: dict) -> requests.Response:
    return requests.post(mock_url + "/identity/token", data=form, headers={"Accept": "application/json"}, timeout=5)


@pytest.fixture(scope="module")
def token(mock_url) -> str:
    r = grant(mock_url, {"grant_type": GRANT_TYPE, "apikey": API_KEY})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def call(mock_url: str, token: str | None, body: dict, endpoint: str = "chat", *, query: dict | None = None,
         scenario: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if scenario:
        headers["X-Mock-Scenario"] = scenario
    return requests.post(f"{mock_url}/ml/v1/text/{endpoint}", params={"version": "2025-02-11"} if query is None
                         else query, data=json.dumps(body), headers=headers, timeout=10)


def refused(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) == {"errors", "trace", "status_code"} and doc["status_code"] == status
    assert doc["errors"][0]["code"] == code and doc["errors"][0]["more_info"].startswith("https://cloud.ibm.com/")
    return doc["errors"][0]


# ------------------------------------------------------------------ IAM

def test_iam_issues_jwt_shaped_expiring_tokens(mock_url):
    r = grant(mock_url, {"grant_type": GRANT_TYPE, "apikey": API_KEY})
    doc = r.json()
    assert set(doc) == {"access_token", "refresh_token", "token_type", "expires_in", "expiration", "scope"}
    header, payload, signature = doc["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == doc["expires_in"] == 3600 and claims["exp"] == doc["expiration"]


@pytest.mark.parametrize("form,code", [
    ({"grant_type": "client_credentials", "apikey": API_KEY}, "BXNIM0308E"),
    ({"grant_type": GRANT_TYPE}, "BXNIM0109E"),
    ({"grant_type": GRANT_TYPE, "apikey": "not-the-key"}, "BXNIM0415E"),
])
def test_iam_refuses_bad_grants(mock_url, form, code):
    r = grant(mock_url, form)
    assert r.status_code == 400 and r.json()["errorCode"] == code and "not-the-key" not in r.text


# ------------------------------------------------------------------ auth

def test_auth_is_checked(mock_url, token):
    assert call(mock_url, token, CHAT).status_code == 200
    refused(call(mock_url, None, CHAT), 401, "authorization_rejected")
    refused(call(mock_url, "eyJ.forged.token", CHAT), 401, "authorization_rejected")


def test_expired_and_revoked_tokens_are_refused(mock_server):
    url = mock_server.url
    try:
        requests.post(url + "/_mock/iam", json={"expires_in": 1}, timeout=5)
        short = grant(url, {"grant_type": GRANT_TYPE, "apikey": API_KEY}).json()["access_token"]
        assert call(url, short, CHAT).status_code == 200
        time.sleep(1.1)
        refused(call(url, short, CHAT), 401, "authentication_token_expired")
    finally:
        requests.delete(url + "/_mock/iam", timeout=5)
    live = grant(url, {"grant_type": GRANT_TYPE, "apikey": API_KEY}).json()["access_token"]
    requests.post(url + "/_mock/iam", json={"revoke": True}, timeout=5)
    refused(call(url, live, CHAT), 401, "authorization_rejected")


# ------------------------------------------------------------------ strictness


@pytest.fixture
def fresh_token(mock_url) -> str:
    """A token issued now (another test may have revoked the module's)."""
    return grant(mock_url, {"grant_type": GRANT_TYPE, "apikey": API_KEY}).json()["access_token"]


@pytest.mark.parametrize("query,message", [({}, "Missing query parameter 'version'"),
                                           ({"version": "2025/02/11"}, "Invalid version '2025/02/11'"),
                                           ({"version": "2020-01-01"}, "Invalid version '2020-01-01'")])
def test_version_is_required(mock_url, fresh_token, query, message):
    error = refused(call(mock_url, fresh_token, CHAT, query=query), 400, "invalid_request_entity")
    assert error["message"].startswith(message) and error["target"]["name"] == "version"


@pytest.mark.parametrize("endpoint,body,status,code,target", [
    ("chat", {**CHAT, "stream": True}, 400, "json_validation_error", "stream"),
    ("chat", {**CHAT, "model": CHAT_MODEL}, 400, "json_validation_error", "model"),
    ("chat", {**CHAT, "tool_choice": "auto", "tools": [TOOL]}, 400, "json_validation_error", "tool_choice"),
    ("chat", {**CHAT, "tool_choice_option": "any", "tools": [TOOL]}, 400, "json_validation_error",
     "tool_choice_option"),
    ("chat", {**CHAT, "reasoning_effort": "minimal"}, 400, "json_validation_error", "reasoning_effort"),
    ("chat", {**CHAT, "messages": [{"role": "developer", "content": "x"}]}, 400, "json_validation_error",
     "messages[0].role"),
    ("chat", {**CHAT, "messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}, 400,
     "json_validation_error", "messages[0].tool_call_id"),
    ("chat", {**CHAT, "messages": []}, 400, "json_validation_error", "messages"),
    ("chat", {k: v for k, v in CHAT.items() if k != "project_id"}, 400, "json_validation_error", "project_id"),
    ("chat", {**CHAT, "space_id": "s"}, 400, "json_validation_error", "project_id"),
    ("chat", {**CHAT, "model_id": BASE_MODEL}, 400, "model_no_support_for_function", "model_id"),
    ("generation", {**GENERATION, "messages": USER}, 400, "json_validation_error", "messages"),
    ("generation", {**GENERATION, "parameters": {"max_tokens": 5}}, 400, "json_validation_error",
     "parameters.max_tokens"),
    ("generation", {**GENERATION, "input": ["Hi"]}, 400, "json_type_error", "input"),
])
def test_refused_bodies_name_the_field(mock_url, fresh_token, endpoint, body, status, code, target):
    assert refused(call(mock_url, fresh_token, body, endpoint), status, code)["target"]["name"] == target


def test_unknown_models_are_not_found(mock_url, fresh_token):
    error = refused(call(mock_url, fresh_token, {**CHAT, "model_id": "ibm/granite-99b"}), 404, "model_not_supported")
    assert error["message"] == "Model 'ibm/granite-99b' is not supported"


# ------------------------------------------------------------------ every scenario, read back by the wire module

CHAT_GOOD = ("text", "function_calling", "parallel_function_calling", "after_tool_result", "max_tokens",
             "stop_sequence", "vision")
GENERATION_GOOD = ("text", "max_tokens", "stop_sequence")


def summary(resp: ir.Response | list) -> dict:
    if isinstance(resp, list):
        stop = resp[-1]
        assert isinstance(stop, ir.MessageStop), resp[-1]
        text = "".join(e.text for e in resp if isinstance(e, ir.TextDelta))
        names = [e.name for e in resp if isinstance(e, ir.PartStart) and e.kind == "tool_call"]
        return {"text": text, "tools": names, "finish": stop.finish_reason.value,
                "usage": {"input": stop.usage.input_tokens, "output": stop.usage.output_tokens}}
    return {"text": "".join(p.text for p in resp.parts if isinstance(p, ir.Text)),
            "tools": [p.name for p in resp.parts if isinstance(p, ir.ToolCall)], "finish": resp.finish_reason.value,
            "usage": {"input": resp.usage.input_tokens, "output": resp.usage.output_tokens}}


def expected(library, name: str) -> dict:
    e = library.get("openai", name).expect
    return {"text": e["text"], "tools": [c["name"] for c in e["tool_calls"]], "finish": e["finish"],
            "usage": {"input": e["usage"]["input"], "output": e["usage"]["output"]}}


@pytest.mark.parametrize("endpoint,name", [("chat", n) for n in CHAT_GOOD] + [("generation", n) for n in GENERATION_GOOD])
@pytest.mark.parametrize("stream", [False, True])
def test_good_scenarios_read_back_to_their_expect(mock_url, fresh_token, library, endpoint, name, stream):
    body = CHAT if endpoint == "chat" else GENERATION
    r = call(mock_url, fresh_token, body, endpoint + ("_stream" if stream else ""), scenario=name)
    assert r.status_code == 200, r.text
    want = expected(library, name)
    if endpoint == "generation":
        want["finish"] = "length" if name == "max_tokens" else "stop"
    if stream:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        assert {e for e, _ in events} == {"message"} and "[DONE]" not in r.text
        assert r.text.startswith("id: 1\nevent: message\ndata: {")
        got = summary(stream_events(wx.StreamParser(REQ), [r.content]))
    else:
        doc = r.json()
        assert ("results" in doc) is (endpoint == "generation") and doc["model_id"] == body["model_id"]
        got = summary(wx.parse_response(r.content, REQ))
    assert got == want


@pytest.mark.parametrize("name,status,kind", [("error_400", 400, "invalid_request"), ("error_401", 401, "authentication"),
                                              ("error_429", 429, "rate_limit"), ("error_500", 500, "api_error"),
                                              ("overloaded", 503, "overloaded"), ("error_mid_stream", 503, "overloaded")])
@pytest.mark.parametrize("endpoint", ["chat", "chat_stream", "generation", "generation_stream"])
def test_http_errors_are_watsonx_envelopes(mock_url, fresh_token, name, status, kind, endpoint):
    body = CHAT if endpoint.startswith("chat") else GENERATION
    r = call(mock_url, fresh_token, body, endpoint, scenario=name)
    if name == "error_mid_stream" and endpoint.endswith("_stream"):
        events = parse_sse(r.text)
        assert r.status_code == 200 and events[-1][0] == "error"
        streamed = stream_events(wx.StreamParser(REQ), [r.content])
        assert isinstance(streamed[-1], ir.StreamError)
        assert "".join(e.text for e in streamed if isinstance(e, ir.TextDelta)) == "Hello! I'm a mock"
        return
    assert r.status_code == status, r.text
    err = wx.parse_error(r.status_code, r.headers, r.content)
    assert err.kind.value == kind and err.message
    if name == "error_429":
        assert err.retry_after == "7"


@pytest.mark.parametrize("endpoint", ["chat", "chat_stream", "generation", "generation_stream"])
def test_malformed_and_dropped_replies_are_errors(mock_url, fresh_token, endpoint):
    body = CHAT if endpoint.startswith("chat") else GENERATION
    r = call(mock_url, fresh_token, body, endpoint, scenario="malformed_body")
    assert r.status_code == 200
    if endpoint.endswith("_stream"):
        assert isinstance(stream_events(wx.StreamParser(REQ), [r.content])[-1], ir.StreamError)
    else:
        with pytest.raises(ProxyError):
            wx.parse_response(r.content, REQ)
    if endpoint.endswith("_stream"):
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            r = call(mock_url, fresh_token, body, endpoint, scenario="drop_mid_stream")
            r.content
