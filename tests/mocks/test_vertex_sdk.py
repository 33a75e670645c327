"""Vertex AI on the mock, driven by the official clients with real Google
credentials: a service-account key (mocks/testdata) whose token_uri points at
the mock's OAuth2 endpoint, which verifies the signed JWT assertion.

- google-genai with `vertexai=True` (Gemini on the project/location URLs);
- anthropic's `AnthropicVertex` (Claude: rawPredict / streamRawPredict).

Every good scenario parses with the fixture's expected content; one token is
fetched for many calls; expired, forged and missing tokens are refused."""
from __future__ import annotations

import json
import time

import anthropic
import pytest
import requests
from google import genai
from google.genai import errors, types
from google.oauth2 import service_account

from mocks.google_oauth import CLOUD_PLATFORM, STATIC_TOKEN, TEST_SERVICE_ACCOUNT
from tests.mocks import test_anthropic_sdk as anthropic_cases
from tests.mocks import test_gemini_sdk as gemini_cases
from tests.mocks.helpers import GOOD_SCENARIOS

PROJECT = "interchange-test"
LOCATION = "us-central1"
CLAUDE = "claude-sonnet-4-5@20250929"


def service_account_file(tmp_path, mock_url: str):
    info = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({**info, "token_uri": mock_url + "/token"}))
    return path


@pytest.fixture(scope="module")
def credentials(tmp_path_factory, mock_url):
    path = service_account_file(tmp_path_factory.mktemp("vertex"), mock_url)
    return service_account.Credentials.from_service_account_file(str(path), scopes=[CLOUD_PLATFORM])


@pytest.fixture(scope="module")
def gemini(credentials, mock_url) -> genai.Client:
    return genai.Client(vertexai=True, project=PROJECT, location=LOCATION, credentials=credentials,
                        http_options=types.HttpOptions(base_url=mock_url, api_version="v1", timeout=10_000,
                                                       retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture(scope="module")
def claude(credentials, mock_url) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT, credentials=credentials,
                                     base_url=mock_url + "/v1", max_retries=0, timeout=10)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_gemini_on_vertex(gemini, library, name, mock_url):
    requests.delete(mock_url + "/_mock/requests", timeout=5)
    response = gemini.models.generate_content(model=gemini_cases.MODEL, **gemini_cases.REQUESTS[name])
    assert gemini_cases.summary([response]) == gemini_cases.expected(library, name)
    chunks = list(gemini.models.generate_content_stream(model=gemini_cases.MODEL, **gemini_cases.REQUESTS[name]))
    assert gemini_cases.summary(chunks) == gemini_cases.expected(library, name)
    first, second = requests.get(mock_url + "/_mock/requests", timeout=5).json()
    assert first["provider"] == second["provider"] == "vertex_gemini"
    assert first["path"] == (f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
                             f"{gemini_cases.MODEL}:generateContent")
    assert second["path"].endswith(":streamGenerateContent") and second["query"] == {"alt": "sse"}


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_claude_on_vertex(claude, library, name, mock_url):
    request = {**anthropic_cases.REQUESTS[name], "model": CLAUDE}
    message = claude.messages.create(**request)
    assert anthropic_cases.summary(message) == anthropic_cases.expected(library, name)
    with claude.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert anthropic_cases.summary(final) == anthropic_cases.expected(library, name)
    entries = requests.get(mock_url + "/_mock/requests?provider=vertex_anthropic", timeout=5).json()
    assert entries[-1]["path"].endswith(f"/publishers/anthropic/models/{CLAUDE}:streamRawPredict")
    assert "model" not in entries[-1]["body"] and entries[-1]["body"]["anthropic_version"]


def test_token_counting_on_vertex(gemini, claude, mock_url):
    counted = gemini.models.count_tokens(model=gemini_cases.MODEL, contents="Hello there, how are you?")
    assert counted.total_tokens > 0
    claude_count = claude.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "Hello there"}])
    assert claude_count.input_tokens > 0
    gemini_entry = requests.get(mock_url + "/_mock/requests?provider=vertex_gemini", timeout=5).json()[-1]
    assert gemini_entry["path"] == (f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
                                    f"{gemini_cases.MODEL}:countTokens")
    claude_entry = requests.get(mock_url + "/_mock/requests?provider=vertex_anthropic", timeout=5).json()[-1]
    assert claude_entry["path"] == (f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"
                                    "count-tokens:rawPredict")
    assert claude_entry["body"]["model"] == CLAUDE and claude_entry["body"]["anthropic_version"]


@pytest.mark.parametrize("body,status", [
    ({"anthropic_version": "vertex-2023-10-16", "model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}]},
     200),
    ({"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}]}, 400),  # no anthropic_version
    ({"anthropic_version": "vertex-2023-10-16", "messages": [{"role": "user", "content": "Hi"}]}, 400),  # no model
    ({"anthropic_version": "vertex-2023-10-16", "model": CLAUDE, "messages": [], "max_tokens": 5}, 400),
])
def test_claude_count_tokens_is_strict(mock_url, body, status):
    url = f"{mock_url}/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    assert requests.post(url, json=body, timeout=5).status_code == 401  # no token
    r = requests.post(url, json=body, headers={"Authorization": f"Bearer {STATIC_TOKEN}"}, timeout=5)
    assert r.status_code == status, r.text


@pytest.mark.parametrize("body,status", [
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "systemInstruction": {"parts": [{"text": "Be"}]},
      "tools": [{"functionDeclarations": [{"name": "f"}]}], "generationConfig": {"temperature": 1}}, 200),
    ({"generateContentRequest": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}, 400),  # the Gemini API's
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "toolConfig": {}}, 400),
    ({"contents": []}, 400),
])
def test_gemini_count_tokens_is_vertexs_request(mock_url, body, status):
    r = requests.post(f"{mock_url}/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
                      f"{gemini_cases.MODEL}:countTokens", json=body,
                      headers={"Authorization": f"Bearer {STATIC_TOKEN}"}, timeout=5)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json() == {"totalTokens": 1, "totalBillableCharacters": 4,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}]}


def test_faults_raise_typed_errors(gemini, claude):
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.generate_content(model=gemini_cases.MODEL, contents="Hi", config=gemini_cases.config("error_429"))
    assert caught.value.code == 429
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(**{**anthropic_cases.REQUESTS["text"], "model": CLAUDE},
                               extra_headers={"X-Mock-Scenario": "overloaded"})


def test_one_token_per_lifetime_and_a_refresh_when_it_expires(tmp_path, mock_url):
    requests.delete(mock_url + "/_mock/oauth", timeout=5)
    requests.post(mock_url + "/_mock/oauth", json={"expires_in": 240}, timeout=5)
    try:
        path = service_account_file(tmp_path, mock_url)
        creds = service_account.Credentials.from_service_account_file(str(path), scopes=[CLOUD_PLATFORM])
        client = anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT, credentials=creds,
                                           base_url=mock_url + "/v1", max_retries=0, timeout=10)
        for _ in range(5):
            client.messages.create(**{**anthropic_cases.REQUESTS["text"], "model": CLAUDE})
        assert requests.get(mock_url + "/_mock/oauth", timeout=5).json()["token_requests"] == 1
        # google-auth refreshes 3 min 45 s before expiry: a 240 s token is stale 15 s after issue.
        creds.expiry = creds.expiry.replace(year=creds.expiry.year - 1)
        client.messages.create(**{**anthropic_cases.REQUESTS["text"], "model": CLAUDE})
        assert requests.get(mock_url + "/_mock/oauth", timeout=5).json()["token_requests"] == 2
    finally:
        requests.delete(mock_url + "/_mock/oauth", timeout=5)


def test_expired_token_is_refused(mock_url, tmp_path):
    requests.post(mock_url + "/_mock/oauth", json={"expires_in": 1}, timeout=5)
    try:
        path = service_account_file(tmp_path, mock_url)
        creds = service_account.Credentials.from_service_account_file(str(path), scopes=[CLOUD_PLATFORM])
        import google.auth.transport.requests
        creds.refresh(google.auth.transport.requests.Request())
    finally:
        requests.delete(mock_url + "/_mock/oauth", timeout=5)
    time.sleep(1.2)
    client = anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT, access_token=creds.token,
                                       base_url=mock_url + "/v1", max_retries=0, timeout=10)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(**{**anthropic_cases.REQUESTS["text"], "model": CLAUDE})
    assert caught.value.body["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("method", ["generateContent", "countTokens"])
@pytest.mark.parametrize("token,status", [(None, 401), ("ya29.forged", 401), (STATIC_TOKEN, 200)])
def test_bearer_is_checked(mock_url, token, status, method):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(f"{mock_url}/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
                      f"{gemini_cases.MODEL}:{method}", headers=headers, timeout=5,
                      json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    assert r.status_code == status, r.text


def test_forged_assertion_is_refused(mock_url):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives import serialization
    from google.auth import crypt, jwt
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    now = int(time.time())
    claims = {"iss": info["client_email"], "scope": CLOUD_PLATFORM, "aud": "https://oauth2.googleapis.com/token",
              "iat": now, "exp": now + 3600}
    forged = jwt.encode(crypt.RSASigner.from_string(other, info["private_key_id"]), claims).decode()
    r = requests.post(mock_url + "/token", timeout=5, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": forged})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize("body,message", [
    ({"model": "claude-sonnet-4-5", "anthropic_version": "vertex-2023-10-16"}, "model: Extra inputs"),
    ({}, "anthropic_version: Field required"),
    ({"anthropic_version": "vertex-2099"}, "anthropic_version: Input should be"),
    ({"anthropic_version": "vertex-2023-10-16", "stream": True}, "stream: must be"),
])
def test_claude_body_rules(mock_url, body, message):
    r = requests.post(f"{mock_url}/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"
                      f"{CLAUDE}:rawPredict", headers={"Authorization": f"Bearer {STATIC_TOKEN}"}, timeout=5,
                      json={"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}], **body})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message), r.text
