"""Each provider kind as a specification of the upstream request it makes: for
a backend block in config (through the real loader, so url normalisation and
settings apply) and one call, the exact method, URL, headers and body bytes;
config validation of each kind's own settings; the registry's start-up check."""
from __future__ import annotations

import json
import re
import textwrap

import pytest

import app.providers as providers
from app.config import ConfigError, check_config, load_config
from app.errors import ProxyError
from app.providers import KINDS, provider_class
from app.providers.base import COUNT_TOKENS, Call, Provider

AWS_KEY_ID, AWS_SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FORWARDED = {"X-Trace": "t-1", "content-type": "text/plain", "AUTHORIZATION": "Bearer client-key",
             "api-key": "client-key", "x-api-key": "client-key", "X-Goog-Api-Key": "client-key",
             "x-amz-security-token": "client-token"}


def backend(tmp_path, block: str, name: str = "b"):
    """The BackendConfig that `[backends.<name>]` + block loads to."""
    path = tmp_path / "c.toml"
    path.write_text(f"[backends.{name}]\n" + textwrap.dedent(block))
    return load_config(path).backends[name]


def prepared(tmp_path, block: str, model: str, body: dict, *, stream: bool = False, action: str = "generate",
             headers: dict | None = None):
    b = backend(tmp_path, block)
    return provider_class(b.kind)(b).prepare(Call(model=model, body=body, stream=stream, action=action,
                                                  headers=headers or {}))


def problems(tmp_path, block: str) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text("[backends.b]\n" + textwrap.dedent(block))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [p for p in e.value.problems if p != "backends: at least one backend is required"]


def lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


# ------------------------------------------------------------------ Azure OpenAI

AZURE = 'kind = "azure_openai"\napi_key = "az-key-123456"\n'


@pytest.mark.parametrize("url", ["https://res.openai.azure.com", "https://res.openai.azure.com/",
                                 "https://res.openai.azure.com/openai",
                                 "https://res.openai.azure.com/openai/deployments/other/chat/completions"])
def test_azure_deployments_form(tmp_path, url):
    r = prepared(tmp_path, AZURE + f'url = "{url}"\n', "gpt-4o", BODY, headers=FORWARDED)
    assert r.method == "POST"
    assert r.url == "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert lower(r.headers) == {"content-type": "application/json", "api-key": "az-key-123456", "x-trace": "t-1"}
    assert json.loads(r.body) == BODY  # the OpenAI wire body, untouched


def test_azure_api_version_and_encoded_deployment(tmp_path):
    r = prepared(tmp_path, AZURE + 'url = "https://res.openai.azure.com"\napi_version = "2025-01-01-preview"\n',
                 "my deploy/1", BODY)
    assert r.url == ("https://res.openai.azure.com/openai/deployments/my%20deploy%2F1/chat/completions"
                     "?api-version=2025-01-01-preview")


@pytest.mark.parametrize("url", ["https://res.openai.azure.com/openai/v1", "https://res.openai.azure.com/openai/v1/",
                                 "https://res.openai.azure.com/openai/v1/chat/completions"])
def test_azure_v1_form(tmp_path, url):
    r = prepared(tmp_path, AZURE + f'url = "{url}"\nauth = "bearer"\n', "gpt-4o", BODY, stream=True,
                 headers=FORWARDED)
    assert r.url == "https://res.openai.azure.com/openai/v1/chat/completions"  # no dated api-version
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer az-key-123456",
                                "x-trace": "t-1"}
    assert r.stream is True


def test_azure_url_notes(tmp_path):
    (tmp_path / "c.toml").write_text("[backends.b]\n" + AZURE +
                                     'url = "https://res.openai.azure.com/openai/deployments/x/chat/completions"\n'
                                     "[backends.v]\n" + AZURE + 'url = "https://res.openai.azure.com/openai/v1"\n')
    notes, found = check_config(tmp_path / "c.toml")
    assert found == []
    assert notes == ["backends.b.url: https://res.openai.azure.com/openai/deployments/x/chat/completions understood "
                     "as base https://res.openai.azure.com (the deployments API: requests go to "
                     "{base}/openai/deployments/{deployment}/chat/completions)"]


def test_azure_url_with_query_is_refused(tmp_path):
    assert problems(tmp_path, AZURE + 'url = "https://res.openai.azure.com/openai?api-version=2024-10-21"\n') == [
        "backends.b.url: must not carry a query or fragment: give the api-version as api_version"]


def test_azure_settings_validated(tmp_path):
    assert problems(tmp_path, AZURE + 'url = "https://r.example"\nauth = "basic"\napi_version = 3\nregion = "x"\n') \
        == ["backends.b.region: unknown key (allowed: api_key, api_key_env, api_version, auth, capabilities, "
            "catch_all, connect_timeout, forward_headers, kind, model_mapping, options, passthrough, priority, "
            "protocol, timeout, url)",
            "backends.b.api_version: must be a string",
            "backends.b.auth: must be one of api-key, bearer (got 'basic')"]


# ------------------------------------------------------------------ Azure OpenAI Responses

AZURE_RESPONSES = 'kind = "azure_responses"\napi_key = "az-key-123456"\n'
RESPONSES_BODY = {"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]}


@pytest.mark.parametrize("url", ["https://res.openai.azure.com", "https://res.openai.azure.com/openai",
                                 "https://res.openai.azure.com/openai/responses",
                                 "https://res.openai.azure.com/openai/deployments/gpt-5/responses"])
def test_azure_responses_classic_form(tmp_path, url):
    # Responses is no deployments route: the deployment rides in the body's model (protocols §2.8).
    r = prepared(tmp_path, AZURE_RESPONSES + f'url = "{url}"\n', "gpt-5", RESPONSES_BODY, headers=FORWARDED)
    assert r.url == "https://res.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
    assert lower(r.headers) == {"content-type": "application/json", "api-key": "az-key-123456", "x-trace": "t-1"}
    assert json.loads(r.body) == RESPONSES_BODY


def test_azure_responses_api_version_setting(tmp_path):
    r = prepared(tmp_path, AZURE_RESPONSES + 'url = "https://res.openai.azure.com"\napi_version = "preview"\n',
                 "gpt-5", RESPONSES_BODY)
    assert r.url == "https://res.openai.azure.com/openai/responses?api-version=preview"


@pytest.mark.parametrize("url", ["https://res.openai.azure.com/openai/v1", "https://res.openai.azure.com/openai/v1/",
                                 "https://res.openai.azure.com/openai/v1/responses"])
def test_azure_responses_v1_form(tmp_path, url):
    r = prepared(tmp_path, AZURE_RESPONSES + f'url = "{url}"\nauth = "bearer"\n', "gpt-5", RESPONSES_BODY,
                 stream=True, headers=FORWARDED)
    assert r.url == "https://res.openai.azure.com/openai/v1/responses"
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer az-key-123456",
                                "x-trace": "t-1"}
    assert r.stream is True


def test_azure_responses_url_notes(tmp_path):
    (tmp_path / "c.toml").write_text("[backends.b]\n" + AZURE_RESPONSES +
                                     'url = "https://res.openai.azure.com/openai/responses"\n'
                                     "[backends.v]\n" + AZURE_RESPONSES +
                                     'url = "https://res.openai.azure.com/openai/v1/responses"\n')
    notes, found = check_config(tmp_path / "c.toml")
    assert found == []
    assert notes == [
        "backends.b.url: https://res.openai.azure.com/openai/responses understood as base "
        "https://res.openai.azure.com (the classic API: requests go to {base}/openai/responses)",
        "backends.v.url: https://res.openai.azure.com/openai/v1/responses understood as base "
        "https://res.openai.azure.com/openai/v1 (the v1 API: requests go to {base}/responses with the deployment "
        "as model)"]


# ------------------------------------------------------------------ OpenAI Responses

@pytest.mark.parametrize("url,note", [
    ("https://api.openai.com/v1", None),
    ("https://api.openai.com", "https://api.openai.com understood as base https://api.openai.com/v1 (a bare host "
                               "gets the API version /v1: requests go to {base}/responses)"),
    ("https://api.openai.com/v1/responses", "https://api.openai.com/v1/responses understood as base "
     "https://api.openai.com/v1 (the endpoint path is dropped: requests go to {base}/responses)")])
def test_openai_responses_kind(tmp_path, url, note):
    block = f'kind = "openai_responses"\nurl = "{url}"\napi_key = "sk-own-0123456789"\n'
    assert backend(tmp_path, block).notes == ((f"backends.b.url: {note}",) if note else ())
    r = prepared(tmp_path, block, "gpt-5", RESPONSES_BODY, headers=FORWARDED)
    assert r.url == "https://api.openai.com/v1/responses"
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer sk-own-0123456789",
                                "x-trace": "t-1"}
    assert json.loads(r.body) == RESPONSES_BODY


# ------------------------------------------------------------------ Vertex AI

VERTEX = 'project = "proj-1"\naccess_token = "ya29.static-token-abcdef"\n'
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
CLAUDE_BODY = {"model": "claude-sonnet-4-5@20250929", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("location,host", [
    ("us-east5", "https://us-east5-aiplatform.googleapis.com"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ("global", "https://aiplatform.googleapis.com"), ("us", "https://aiplatform.us.rep.googleapis.com"),
    ("eu", "https://aiplatform.eu.rep.googleapis.com")])
@pytest.mark.parametrize("stream", [False, True])
def test_vertex_gemini_urls(tmp_path, location, host, stream):
    r = prepared(tmp_path, f'kind = "vertex_gemini"\nlocation = "{location}"\n' + VERTEX, "models/gemini-2.5-pro",
                 GEMINI_BODY, stream=stream, headers=FORWARDED)
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert r.url == f"{host}/v1/projects/proj-1/locations/{location}/publishers/google/models/gemini-2.5-pro:{method}"
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer ya29.static-token-abcdef",
                                "x-trace": "t-1"}
    assert json.loads(r.body) == GEMINI_BODY


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_anthropic_generate(tmp_path, stream):
    r = prepared(tmp_path, 'kind = "vertex_anthropic"\nlocation = "us-east5"\n' + VERTEX,
                 "claude-sonnet-4-5@20250929", {**CLAUDE_BODY, "stream": stream}, stream=stream, headers=FORWARDED)
    method = "streamRawPredict" if stream else "rawPredict"
    assert r.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/publishers/"
                     f"anthropic/models/claude-sonnet-4-5@20250929:{method}")  # `@` as the anthropic SDK sends it
    # No model (it is in the URL), Vertex's anthropic_version; nothing else changed, in order.
    assert r.body == json.dumps({"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}],
                                 "stream": stream, "anthropic_version": "vertex-2023-10-16"},
                                separators=(",", ":")).encode()
    assert "x-api-key" not in lower(r.headers) and "anthropic-version" not in lower(r.headers)
    assert lower(r.headers)["authorization"] == "Bearer ya29.static-token-abcdef"


def test_vertex_model_ids_stay_one_segment(tmp_path):
    r = prepared(tmp_path, 'kind = "vertex_anthropic"\nlocation = "us-east5"\n' + VERTEX, "../x@1/y:z?q#f", CLAUDE_BODY)
    assert r.url.endswith("/publishers/anthropic/models/..%2Fx@1%2Fy%3Az%3Fq%23f:rawPredict")


def test_vertex_anthropic_keeps_a_given_anthropic_version(tmp_path):
    r = prepared(tmp_path, 'kind = "vertex_anthropic"\nlocation = "global"\n' + VERTEX, "claude-x",
                 {**CLAUDE_BODY, "anthropic_version": "2023-06-01"})
    assert json.loads(r.body)["anthropic_version"] == "2023-06-01"


def test_vertex_gemini_count_tokens(tmp_path):
    b = backend(tmp_path, 'kind = "vertex_gemini"\nlocation = "us-east5"\n' + VERTEX)
    assert COUNT_TOKENS in provider_class(b.kind).actions
    r = provider_class(b.kind)(b).prepare(Call(model="models/gemini-2.5-pro", body=GEMINI_BODY, action=COUNT_TOKENS))
    assert r.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/publishers/"
                     "google/models/gemini-2.5-pro:countTokens")
    assert (r.headers["Authorization"], json.loads(r.body), r.stream) == (
        "Bearer ya29.static-token-abcdef", GEMINI_BODY, False)


def test_vertex_anthropic_count_tokens(tmp_path):
    b = backend(tmp_path, 'kind = "vertex_anthropic"\nlocation = "us-east5"\n' + VERTEX)
    assert COUNT_TOKENS in provider_class(b.kind).actions
    r = provider_class(b.kind)(b).prepare(Call(model="claude-x", body=CLAUDE_BODY, action=COUNT_TOKENS))
    assert r.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/publishers/"
                     "anthropic/models/count-tokens:rawPredict")
    # The counter keeps the model in the body; anthropic_version goes in as on every rawPredict
    # body (the anthropic SDK's Vertex client sets it on all of them).
    assert json.loads(r.body) == {**CLAUDE_BODY, "anthropic_version": "vertex-2023-10-16"}


@pytest.mark.parametrize("written,base", [
    ("http://127.0.0.1:9/", "http://127.0.0.1:9"), ("https://gw.example/vertex", "https://gw.example/vertex"),
    ("https://us-east5-aiplatform.googleapis.com/v1", "https://us-east5-aiplatform.googleapis.com"),
    ("https://gw.example/p/v1beta1/projects/x/locations/y/publishers/google/models/g:generateContent",
     "https://gw.example/p")])
def test_vertex_url_overrides_the_host(tmp_path, written, base):
    b = backend(tmp_path, f'kind = "vertex_gemini"\nlocation = "us-east5"\nurl = "{written}"\n' + VERTEX)
    assert b.url == base
    assert (b.notes == ()) == (written.rstrip("/") == base)
    r = provider_class(b.kind)(b).prepare(Call(model="g", body=GEMINI_BODY))
    assert r.url == base + "/v1/projects/proj-1/locations/us-east5/publishers/google/models/g:generateContent"


def test_vertex_settings_validated(tmp_path):
    assert problems(tmp_path, 'kind = "vertex_gemini"\napi_key = "k"\nproject = 7\n') == [
        "backends.b.project: must be a string",
        "backends.b.location: required for a vertex_gemini backend (a region (us-east5), a multi-region (us, eu) "
        "or global)",
        "backends.b.api_key: a vertex_gemini backend is not authorised by an API key (its keys: project, location, "
        "credentials_file, access_token, token_uri)"]


# ------------------------------------------------------------------ Bedrock

BEDROCK = f'kind = "bedrock_converse"\nregion = "us-west-2"\naws_access_key_id = "{AWS_KEY_ID}"\n' \
          f'aws_secret_access_key = "{AWS_SECRET}"\n'
CONVERSE_BODY = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model,encoded", [
    ("anthropic.claude-3-sonnet-20240229-v1:0", "anthropic.claude-3-sonnet-20240229-v1%3A0"),
    ("arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
     "arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0")])
def test_bedrock_request_is_signed_as_sent(tmp_path, model, encoded, stream):
    from mocks.sigv4 import verify
    r = prepared(tmp_path, BEDROCK, model, CONVERSE_BODY, stream=stream, headers=FORWARDED)
    action = "converse-stream" if stream else "converse"
    assert r.url == f"https://bedrock-runtime.us-west-2.amazonaws.com/model/{encoded}/{action}"
    headers = lower(r.headers)
    assert set(headers) == {"content-type", "accept", "x-trace", "x-amz-date", "authorization"}
    assert headers["content-type"] == "application/json"  # ours, not the client's text/plain
    assert headers["accept"] == ("application/vnd.amazon.eventstream" if stream else "application/json")
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
    assert "/us-west-2/bedrock/aws4_request" in headers["authorization"]
    assert AWS_SECRET not in json.dumps(r.headers)
    assert r.body == b'{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}'

    class Insensitive(dict):
        def get(self, name, default=None):
            return headers.get(name.lower(), default)
    host = "bedrock-runtime.us-west-2.amazonaws.com"
    # The signature checks out over the raw (still encoded) target, as the service recomputes it.
    signed = Insensitive(headers, host=host)
    headers["host"] = host
    assert verify("POST", r.url.partition(host)[2], signed, r.body, service="bedrock",
                  secrets={AWS_KEY_ID: AWS_SECRET}) == "us-west-2"


def test_bedrock_session_token_is_sent_and_signed(tmp_path):
    r = prepared(tmp_path, BEDROCK + 'aws_session_token = "FwoGZXIvYXdzEXAMPLEsessiontoken"\n', "amazon.nova-pro-v1:0",
                 CONVERSE_BODY, headers=FORWARDED)
    headers = lower(r.headers)
    assert headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLEsessiontoken"  # ours, never the client's
    assert "x-amz-security-token" in headers["authorization"].partition("SignedHeaders=")[2].partition(",")[0]


def test_bedrock_secrets(tmp_path):
    b = backend(tmp_path, BEDROCK + 'aws_session_token = "FwoGZXIvYXdzEXAMPLEsessiontoken"\n')
    p = provider_class(b.kind)(b)
    p.prepare(Call(model="amazon.nova-pro-v1:0", body=CONVERSE_BODY))
    assert set(p.secrets()) == {AWS_SECRET, "FwoGZXIvYXdzEXAMPLEsessiontoken"}
    assert AWS_KEY_ID not in p.secrets()  # an id, not a secret (it names the key in every signature)


@pytest.mark.parametrize("written,base", [
    ("http://127.0.0.1:9", "http://127.0.0.1:9"), ("https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com/",
                                                   "https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com"),
    ("https://bedrock-runtime.us-west-2.amazonaws.com/model/amazon.nova-pro-v1:0/converse",
     "https://bedrock-runtime.us-west-2.amazonaws.com")])
def test_bedrock_url_overrides_the_endpoint(tmp_path, written, base):
    b = backend(tmp_path, BEDROCK + f'url = "{written}"\n')
    assert b.url == base
    assert (b.notes == ()) == (written.rstrip("/") == base)
    r = provider_class(b.kind)(b).prepare(Call(model="amazon.nova-pro-v1:0", body=CONVERSE_BODY))
    assert r.url == base + "/model/amazon.nova-pro-v1%3A0/converse"


def test_bedrock_settings_validated(tmp_path):
    assert problems(tmp_path, 'kind = "bedrock_converse"\napi_key_env = "X"\nprofile = 1\n') == [
        "backends.b.region: required for a bedrock_converse backend (the AWS region (us-east-1))",
        "backends.b.profile: must be a string",
        "backends.b.api_key_env: a bedrock_converse backend is not authorised by an API key (its keys: region, "
        "aws_access_key_id, aws_secret_access_key, aws_session_token, profile)"]


def test_bedrock_half_a_key_pair_is_a_configuration_error(tmp_path):
    b = backend(tmp_path, f'kind = "bedrock_converse"\nregion = "us-east-1"\naws_access_key_id = "{AWS_KEY_ID}"\n')
    with pytest.raises(ProxyError) as e:
        provider_class(b.kind)(b).prepare(Call(model="m", body=CONVERSE_BODY))
    assert e.value.code == "configuration_error" and "Backend 'b'" in e.value.message


# ------------------------------------------------------------------ Ollama

OLLAMA_BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": True}


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_local_server_takes_no_key(tmp_path, stream):
    b = backend(tmp_path, 'kind = "ollama"\n')
    r = provider_class(b.kind)(b).prepare(Call(model="llama3.2", body=OLLAMA_BODY, stream=stream, headers=FORWARDED))
    assert (r.method, r.url, r.stream) == ("POST", "http://127.0.0.1:11434/api/chat", stream)
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1"}  # no client credential either
    assert json.loads(r.body) == OLLAMA_BODY  # the wire body, untouched (streaming is the body's `stream`)
    assert check_config(tmp_path / "c.toml")[1] == []  # no key is no problem for this kind


@pytest.mark.parametrize("written,note", [
    ("https://ollama.example.com", None),
    ("https://ollama.example.com/api/chat", "https://ollama.example.com/api/chat understood as base "
                                            "https://ollama.example.com (requests go to {base}/api/chat)"),
    ("https://gw.example.com/ollama/api", "https://gw.example.com/ollama/api understood as base "
                                          "https://gw.example.com/ollama (requests go to {base}/api/chat)")])
def test_ollama_hosted_with_a_bearer_key(tmp_path, written, note):
    block = f'kind = "ollama"\nurl = "{written}"\napi_key = "ollama-key-0123456789"\n'
    b = backend(tmp_path, block)
    assert b.notes == ((f"backends.b.url: {note}",) if note else ())
    p = provider_class(b.kind)(b)
    r = p.prepare(Call(model="llama3.2", body=OLLAMA_BODY))
    assert r.url == written.partition("/api")[0] + "/api/chat"
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer ollama-key-0123456789"}
    assert p.secrets() == ("ollama-key-0123456789",)


def test_ollama_key_from_a_missing_variable_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OLLAMA_TEST_KEY", raising=False)
    b = backend(tmp_path, 'kind = "ollama"\napi_key_env = "OLLAMA_TEST_KEY"\n')
    with pytest.raises(ProxyError, match="OLLAMA_TEST_KEY not set in environment"):
        provider_class(b.kind)(b).prepare(Call(model="llama3.2", body=OLLAMA_BODY))
    assert check_config(tmp_path / "c.toml")[1] == ["backends.b.api_key_env: OLLAMA_TEST_KEY not set in environment"]


@pytest.mark.parametrize("written,url", [
    ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/chat/completions"),
    ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1/chat/completions"),
    ("http://127.0.0.1:11434/v1/chat/completions", "http://127.0.0.1:11434/v1/chat/completions")])
def test_ollama_openai_route(tmp_path, written, url):
    body = {"model": "mistral-small3.2", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 16,
            "stream": True}
    r = prepared(tmp_path, f'kind = "ollama_openai"\nurl = "{written}"\n', "mistral-small3.2", body, stream=True,
                 headers=FORWARDED)
    assert (r.url, r.stream) == (url, True)
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1"}
    # Ollama reads only max_tokens: the OpenAI wire's max_completion_tokens is renamed, the rest untouched
    assert json.loads(r.body) == {"model": "mistral-small3.2", "messages": [{"role": "user", "content": "Hi"}],
                                  "stream": True, "max_tokens": 16}


@pytest.mark.parametrize("choice, sent", [("auto", {"tools": ["t"]}), ("none", {})])
def test_ollama_openai_has_no_tool_choice(tmp_path, choice, sent):
    body = {"model": "m", "messages": [], "tools": ["t"], "tool_choice": choice}
    r = prepared(tmp_path, 'kind = "ollama_openai"\n', "m", body)
    assert json.loads(r.body) == {"model": "m", "messages": [], **sent}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "t"}}])
def test_ollama_openai_refuses_a_forced_tool_choice(tmp_path, choice):
    with pytest.raises(ProxyError) as e:
        prepared(tmp_path, 'kind = "ollama_openai"\n', "m", {"model": "m", "messages": [], "tools": ["t"],
                                                            "tool_choice": choice})
    assert (e.value.status, e.value.param) == (400, "tool_choice")


def test_ollama_openai_default_url_and_key(tmp_path):
    r = prepared(tmp_path, 'kind = "ollama_openai"\napi_key = "ollama-key-0123456789"\n', "m", BODY)
    assert r.url == "http://127.0.0.1:11434/v1/chat/completions"
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer ollama-key-0123456789"}
    assert json.loads(r.body) == BODY


# ------------------------------------------------------------------ OCI Generative AI

OCI_CONFIG = "mocks/testdata/oci-config"
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaaexample"
OCI = f'kind = "oci_cohere"\ncompartment_id = "{COMPARTMENT}"\nconfig_file = "{OCI_CONFIG}"\n'
CHAT_REQUEST = {"chatRequest": {"apiFormat": "COHERE", "message": "Hi"}}
OCI_HOST = "inference.generativeai.us-chicago-1.oci.oraclecloud.com"


def _oci_verify(r, host: str):
    """The mock's check of the signature (independent of the oci signer) over the request as sent."""
    from mocks.oci import _test_keys
    from mocks.oci_signature import verify

    class Insensitive(dict):
        def get(self, name, default=None):
            return super().get(name.lower(), default)
    headers = Insensitive(lower(r.headers))
    assert headers["host"] == host
    return verify("POST", r.url.partition(host)[2], headers, r.body, public_keys=_test_keys())


@pytest.mark.parametrize("stream", [False, True])
def test_oci_request_is_chat_details_signed_as_sent(tmp_path, stream):
    r = prepared(tmp_path, OCI, "cohere.command-r-plus-08-2024", CHAT_REQUEST, stream=stream,
                 headers={**FORWARDED, "Date": "Thu, 01 Jan 1970 00:00:00 GMT", "x-content-sha256": "forged"})
    assert r.method == "POST" and r.url == f"https://{OCI_HOST}/20231130/actions/chat"  # the config file's region
    assert r.body == (b'{"compartmentId":"' + COMPARTMENT.encode() + b'","servingMode":{"servingType":"ON_DEMAND",'
                      b'"modelId":"cohere.command-r-plus-08-2024"},"chatRequest":{"apiFormat":"COHERE","message":"Hi"}}')
    headers = lower(r.headers)
    assert set(headers) == {"content-type", "accept", "x-trace", "date", "host", "content-length", "x-content-sha256",
                            "authorization"}
    assert headers["content-type"] == "application/json"  # ours, not the client's text/plain
    assert headers["accept"] == ("text/event-stream" if stream else "application/json")
    assert headers["date"] != "Thu, 01 Jan 1970 00:00:00 GMT" and headers["x-content-sha256"] != "forged"
    assert headers["content-length"] == str(len(r.body))
    auth = headers["authorization"]
    assert auth.startswith('Signature algorithm="rsa-sha256",headers="date (request-target) host content-length '
                           'content-type x-content-sha256",keyId="ocid1.tenancy.oc1..aaaaaaaainterchangetesttenancy/'
                           'ocid1.user.oc1..aaaaaaaainterchangetestuser/')
    assert auth.endswith(',version="1"')
    assert _oci_verify(r, OCI_HOST).startswith("ocid1.tenancy.oc1..")


def test_oci_dedicated_serving_and_region_and_url(tmp_path):
    block = OCI + 'endpoint_id = "ocid1.generativeaiendpoint.oc1.us-chicago-1.amaaaaexample"\nregion = "eu-frankfurt-1"\n'
    r = prepared(tmp_path, block, "cohere.command-r-plus-08-2024", CHAT_REQUEST)
    assert r.url == "https://inference.generativeai.eu-frankfurt-1.oci.oraclecloud.com/20231130/actions/chat"
    assert json.loads(r.body)["servingMode"] == {"servingType": "DEDICATED",
                                                 "endpointId": "ocid1.generativeaiendpoint.oc1.us-chicago-1.amaaaaexample"}
    b = backend(tmp_path, OCI + 'url = "https://private.example.com/genai/20231130/actions/chat"\n')
    assert b.url == "https://private.example.com/genai" and len(b.notes) == 1
    r = provider_class(b.kind)(b).prepare(Call(model="m", body=CHAT_REQUEST))
    assert r.url == "https://private.example.com/genai/20231130/actions/chat"
    _oci_verify(r, "private.example.com")


def test_oci_settings_validated(tmp_path):
    assert problems(tmp_path, 'kind = "oci_cohere"\napi_key = "k"\nauth = "password"\n') == [
        "backends.b.compartment_id: required for a oci_cohere backend (the OCID of the compartment the calls are "
        "made in)",
        "backends.b.auth: must be one of api_key, instance_principal (got 'password')",
        "backends.b.api_key: a oci_cohere backend is not authorised by an API key (its keys: compartment_id, auth, "
        "config_file, profile, region, endpoint_id)"]


@pytest.mark.parametrize("extra", ['config_file = "/nonexistent/oci-config"\n', 'profile = "NOPE"\n'])
def test_oci_unusable_config_file_is_a_configuration_error(tmp_path, extra):
    block = OCI.replace(f'config_file = "{OCI_CONFIG}"\n', "") + extra
    if "profile" in extra:
        block += f'config_file = "{OCI_CONFIG}"\n'
    b = backend(tmp_path, block)
    with pytest.raises(ProxyError) as e:
        provider_class(b.kind)(b).prepare(Call(model="m", body=CHAT_REQUEST))
    assert e.value.code == "configuration_error" and "Backend 'b' cannot use its OCI config file" in e.value.message


def test_oci_instance_principal_signs_and_renews(tmp_path, monkeypatch):
    """The instance's signer (never the real one here: it would call the metadata service)
    is made once, gives the region, and is made anew after a refused call."""
    import oci

    made = []

    class InstanceSigner(oci.signer.Signer):
        def __init__(self):
            config = oci.config.from_file(OCI_CONFIG)
            super().__init__(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])
            self.region = "ap-tokyo-1"
            made.append(self)
    monkeypatch.setattr(oci.auth.signers, "InstancePrincipalsSecurityTokenSigner", InstanceSigner)
    b = backend(tmp_path, f'kind = "oci_cohere"\ncompartment_id = "{COMPARTMENT}"\nauth = "instance_principal"\n')
    p = provider_class(b.kind)(b)
    r = p.prepare(Call(model="m", body=CHAT_REQUEST))
    p.prepare(Call(model="m", body=CHAT_REQUEST))
    assert r.url == "https://inference.generativeai.ap-tokyo-1.oci.oraclecloud.com/20231130/actions/chat"
    _oci_verify(r, "inference.generativeai.ap-tokyo-1.oci.oraclecloud.com")
    assert len(made) == 1
    assert p.forget_credentials(r) is True
    p.prepare(Call(model="m", body=CHAT_REQUEST))
    assert len(made) == 2


def test_oci_config_file_without_a_region_is_a_configuration_error(tmp_path):
    config = tmp_path / "oci-config"
    config.write_text("\n".join(line for line in open(OCI_CONFIG).read().splitlines() if not line.startswith("region")))
    b = backend(tmp_path, OCI.replace(OCI_CONFIG, str(config)))
    with pytest.raises(ProxyError) as e:
        provider_class(b.kind)(b).prepare(Call(model="m", body=CHAT_REQUEST))
    assert e.value.code == "configuration_error"
    assert e.value.message == "Backend 'b' cannot use its OCI config file (InvalidConfig: {'region': 'missing'})."


def test_oci_config_file_key_is_not_renewed_and_nothing_is_secret(tmp_path):
    b = backend(tmp_path, OCI)
    p = provider_class(b.kind)(b)
    r = p.prepare(Call(model="m", body=CHAT_REQUEST))
    assert p.forget_credentials(r) is False and p.secrets() == ()


# ------------------------------------------------------------------ OpenRouter

OPENROUTER = 'kind = "openrouter"\napi_key = "sk-or-v1-own-0123456789"\n'


@pytest.mark.parametrize("url", ["https://openrouter.ai", "https://openrouter.ai/", "https://openrouter.ai/api/v1",
                                 "https://openrouter.ai/api/v1/chat/completions"])
def test_openrouter_request(tmp_path, url):
    r = prepared(tmp_path, OPENROUTER + f'url = "{url}"\n', "meta-llama/llama-3.1-8b-instruct", BODY, stream=True,
                 headers=FORWARDED)
    assert (r.method, r.url, r.stream) == ("POST", "https://openrouter.ai/api/v1/chat/completions", True)
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer sk-or-v1-own-0123456789",
                                "x-trace": "t-1"}
    assert json.loads(r.body) == BODY  # the OpenAI wire body, untouched


def test_openrouter_attribution_and_routing_defaults(tmp_path):
    block = OPENROUTER + textwrap.dedent("""\
        url = "https://openrouter.ai"
        http_referer = "https://app.example"
        title = "Interchange"
        models = ["mistralai/mistral-7b-instruct"]
        transforms = ["middle-out"]
        route = "fallback"
        [backends.b.provider]
        order = ["deepinfra", "together"]
        allow_fallbacks = false
        """)
    r = prepared(tmp_path, block, "m", BODY)
    assert lower(r.headers) == {"content-type": "application/json", "authorization": "Bearer sk-or-v1-own-0123456789",
                                "http-referer": "https://app.example", "x-title": "Interchange"}
    assert json.loads(r.body) == {**BODY, "models": ["mistralai/mistral-7b-instruct"], "transforms": ["middle-out"],
                                  "route": "fallback", "provider": {"order": ["deepinfra", "together"],
                                                                    "allow_fallbacks": False}}
    # The client's own preferences (an OpenAI client's body goes on as it came) win over the defaults.
    own = {**BODY, "provider": {"sort": "price"}}
    assert json.loads(prepared(tmp_path, block, "m", own).body)["provider"] == {"sort": "price"}


def test_openrouter_writes_the_reasoning_object(tmp_path):
    b = backend(tmp_path, OPENROUTER + 'url = "https://openrouter.ai"\n')
    assert b.options == {"reasoning_object": True}  # the kind's wire option, from the registry


def test_openrouter_url_note_and_settings_validated(tmp_path):
    (tmp_path / "c.toml").write_text("[backends.b]\n" + OPENROUTER + 'url = "https://openrouter.ai/api/v1"\n')
    assert check_config(tmp_path / "c.toml") == (
        ["backends.b.url: https://openrouter.ai/api/v1 understood as base https://openrouter.ai "
         "(requests go to {base}/api/v1/chat/completions)"], [])
    assert problems(tmp_path, OPENROUTER + 'url = "https://openrouter.ai"\ntitle = 3\nprovider = "deepinfra"\n'
                    'models = "m"\nregion = "x"\n')[1:] == [
        "backends.b.title: must be a string", "backends.b.provider: must be a table",
        "backends.b.models: must be a list"]

# ------------------------------------------------------------------ RunPod Serverless

RUNPOD = 'kind = "runpod"\napi_key = "rp-key-0123456789"\nendpoint_id = "ep-1"\n'
CHAT_BODY = {"model": "mistralai/Mistral-7B-Instruct-v0.3", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("stream,tail", [(False, "/runsync?wait=60000"), (True, "/run")])
def test_runpod_job_submission(tmp_path, stream, tail):
    """The OpenAI Chat body as the vLLM worker's OpenAI-route input; not streamed, /runsync
    held half the backend's timeout (120 s by default); streamed, /run (polled at /stream)."""
    body = {**CHAT_BODY, "stream": stream}
    r = prepared(tmp_path, RUNPOD, "mistralai/Mistral-7B-Instruct-v0.3", body, stream=stream, headers=FORWARDED)
    assert (r.method, r.url) == ("POST", "https://api.runpod.ai/v2/ep-1" + tail)
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1",
                                "authorization": "Bearer rp-key-0123456789"}
    assert r.body == json.dumps({"input": {"openai_route": "/v1/chat/completions", "openai_input": body}},
                                separators=(",", ":")).encode()


@pytest.mark.parametrize("timeout,wait", [(1, "1000"), (30, "15000"), (900, "300000")])
def test_runpod_runsync_wait_stays_within_the_backend_timeout_and_runpods_range(tmp_path, timeout, wait):
    r = prepared(tmp_path, RUNPOD + f"timeout = {timeout}\n", "m", CHAT_BODY)
    assert r.url == f"https://api.runpod.ai/v2/ep-1/runsync?wait={wait}"


def test_runpod_job_operations(tmp_path):
    b = backend(tmp_path, RUNPOD + 'url = "http://127.0.0.1:9"\n')
    p = provider_class(b.kind)(b)
    assert [(r.method, r.url, lower(r.headers), r.body) for r in (
        p.job_request("GET", "status", "abc-1-u1"), p.job_request("GET", "stream", "a/b?c"),
        p.job_request("POST", "cancel", "sync-9"))] == [
        ("GET", "http://127.0.0.1:9/v2/ep-1/status/abc-1-u1", {"authorization": "Bearer rp-key-0123456789"}, b""),
        ("GET", "http://127.0.0.1:9/v2/ep-1/stream/a%2Fb%3Fc", {"authorization": "Bearer rp-key-0123456789"}, b""),
        ("POST", "http://127.0.0.1:9/v2/ep-1/cancel/sync-9", {"authorization": "Bearer rp-key-0123456789"}, b"")]


@pytest.mark.parametrize("kind,tail", [("runpod", "/runsync?wait=60000"),
                                       ("runpod_openai", "/openai/v1/chat/completions")])
@pytest.mark.parametrize("written", ["https://api.runpod.ai", "https://api.runpod.ai/v2/other/runsync",
                                     "https://api.runpod.ai/v2/other/openai/v1"])
def test_runpod_url_is_the_host_and_the_endpoint_comes_from_endpoint_id(tmp_path, kind, tail, written):
    b = backend(tmp_path, RUNPOD.replace("runpod", kind, 1) + f'url = "{written}"\n')
    assert b.url == "https://api.runpod.ai"
    assert bool(b.notes) == (written != "https://api.runpod.ai")
    r = provider_class(b.kind)(b).prepare(Call(model="m", body=CHAT_BODY))
    assert r.url == "https://api.runpod.ai/v2/ep-1" + tail


def test_runpod_openai_route(tmp_path):
    r = prepared(tmp_path, RUNPOD.replace("runpod", "runpod_openai", 1), "m", CHAT_BODY, headers=FORWARDED)
    assert (r.method, r.url) == ("POST", "https://api.runpod.ai/v2/ep-1/openai/v1/chat/completions")
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1",
                                "authorization": "Bearer rp-key-0123456789"}
    assert r.body == json.dumps(CHAT_BODY, separators=(",", ":")).encode()


def test_runpod_settings_validated(tmp_path):
    assert problems(tmp_path, 'kind = "runpod"\napi_key = "k"\npoll_interval_ms = "fast"\njob_timeout = 1.5\n') == [
        "backends.b.endpoint_id: required for a runpod backend (the serverless endpoint's id)",
        "backends.b.poll_interval_ms: must be an integer", "backends.b.job_timeout: must be an integer"]
    assert problems(tmp_path, 'kind = "runpod_openai"\napi_key = "k"\n') == [
        "backends.b.endpoint_id: required for a runpod_openai backend (the serverless endpoint's id)"]
    assert problems(tmp_path, RUNPOD + "poll_interval_ms = 0\njob_timeout = -5\n") == [
        "backends.b.poll_interval_ms: must be at least 10 (got 0)", "backends.b.job_timeout: must be at least 1 (got -5)"]

# ------------------------------------------------------------------ IBM watsonx.ai

WATSONX = """\
kind = "watsonx"
api_key = "wx-api-key-0123456789"
project_id = "p-1"
"""
IAM = "https://iam.cloud.ibm.com/identity/token"
WX_BODY = {"model_id": "ibm/granite-3-8b-instruct", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def iam():
    """IBM Cloud IAM, faked at the HTTP layer: each grant answers a new token valid for an hour."""
    import time

    import responses
    issued = []

    def grant(request):
        issued.append(request.body)
        return 200, {}, json.dumps({"access_token": f"iam-token-{len(issued)}", "token_type": "Bearer",
                                    "expires_in": 3600, "expiration": int(time.time()) + 3600})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake.add_callback(responses.POST, IAM, callback=grant)
        fake.add_callback(responses.POST, "https://iam.example.test/identity/token", callback=grant)
        yield issued


@pytest.mark.parametrize("stream,path,accept", [(False, "/ml/v1/text/chat", "application/json"),
                                                (True, "/ml/v1/text/chat_stream", "text/event-stream")])
def test_watsonx_chat_request(tmp_path, iam, stream, path, accept):
    r = prepared(tmp_path, WATSONX, "ibm/granite-3-8b-instruct", WX_BODY, stream=stream, headers=FORWARDED)
    assert r.method == "POST"
    assert r.url == f"https://us-south.ml.cloud.ibm.com{path}?version=2025-02-11"
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1", "accept": accept,
                                "authorization": "Bearer iam-token-1"}
    assert json.loads(r.body) == {**WX_BODY, "project_id": "p-1"}
    assert r.stream is stream
    assert iam == ["grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=wx-api-key-0123456789"]


@pytest.mark.parametrize("stream,path", [(False, "/ml/v1/text/generation"), (True, "/ml/v1/text/generation_stream")])
def test_watsonx_generation_request_in_a_space_region_and_version(tmp_path, iam, stream, path):
    block = WATSONX.replace('project_id = "p-1"', 'space_id = "s-1"\nregion = "eu-de"\nversion = "2025-10-01"\n'
                                                   'iam_url = "https://iam.example.test/"')
    body = {"model_id": "ibm/granite-3-8b-base", "input": "<|start_of_role|>user…", "parameters": {}}
    r = prepared(tmp_path, block, "ibm/granite-3-8b-base", body, stream=stream)
    assert r.url == f"https://eu-de.ml.cloud.ibm.com{path}?version=2025-10-01"
    assert json.loads(r.body) == {**body, "space_id": "s-1"}
    assert len(iam) == 1


def test_watsonx_token_is_reused_and_in_the_secrets(tmp_path, iam):
    b = backend(tmp_path, WATSONX)
    provider = provider_class(b.kind)(b)
    assert provider.secrets() == ("wx-api-key-0123456789",)  # nothing fetched yet
    for _ in range(5):
        refused = provider.prepare(Call(model="m", body=WX_BODY))
    assert len(iam) == 1
    assert provider.secrets() == ("wx-api-key-0123456789", "iam-token-1")
    assert provider.forget_credentials(refused) is True  # a refused token is dropped: the next call fetches
    assert lower(provider.prepare(Call(model="m", body=WX_BODY)).headers)["authorization"] == "Bearer iam-token-2"


@pytest.mark.parametrize("written,base", [
    ("https://us-south.ml.cloud.ibm.com", "https://us-south.ml.cloud.ibm.com"),
    ("https://private.us-south.ml.cloud.ibm.com/ml/v1/text/chat", "https://private.us-south.ml.cloud.ibm.com"),
    ("https://gw.example/watsonx/ml/v1", "https://gw.example/watsonx"),
])
def test_watsonx_url_overrides_the_region(tmp_path, iam, written, base):
    r = prepared(tmp_path, WATSONX + f'url = "{written}"\n', "m", WX_BODY)
    assert r.url == base + "/ml/v1/text/chat?version=2025-02-11"


@pytest.mark.parametrize("extra,error", [
    ('space_id = "s-1"\n', "give exactly one of project_id and space_id"),
    ('version = "2025/02/11"\n', "version must be a date YYYY-MM-DD"),
    ('[b.options.prompt_templates]\n"m" = "mistral"\n', "unknown template 'mistral' (known: granite, llama3)"),
])
def test_watsonx_settings_refused_at_start_up(tmp_path, extra, error):
    b = backend(tmp_path, WATSONX + extra.replace("[b.", "[backends.b."))
    with pytest.raises(ValueError, match=re.escape(error)):
        provider_class(b.kind)(b)
    # check-config says so too, naming the backend, before anything is served
    (problem,) = check_config(tmp_path / "c.toml")[1]
    assert problem.startswith("backends.b: backend b: ") and error in problem


def test_watsonx_needs_a_scope_and_a_key(tmp_path):
    b = backend(tmp_path, 'kind = "watsonx"\nspace_id = "s"\napi_key_env = "WX_UNSET_KEY_FOR_TEST"\n')
    with pytest.raises(ProxyError) as e:
        provider_class(b.kind)(b).prepare(Call(model="m", body=WX_BODY))
    assert e.value.code == "configuration_error" and "WX_UNSET_KEY_FOR_TEST" in e.value.message
    b = backend(tmp_path, 'kind = "watsonx"\napi_key = "k"\n')
    with pytest.raises(ValueError, match="give exactly one of project_id and space_id"):
        provider_class(b.kind)(b)


# ------------------------------------------------------------------ the first-party kinds

@pytest.mark.parametrize("block,url,auth", [
    ('kind = "openai"\nurl = "https://api.openai.com"\napi_key = "sk-own-0123456789"\n',
     "https://api.openai.com/v1/chat/completions", {"authorization": "Bearer sk-own-0123456789"}),
    ('kind = "anthropic"\nurl = "https://api.anthropic.com/v1"\napi_key = "sk-ant-own-0123456789"\n',
     "https://api.anthropic.com/v1/messages", {"x-api-key": "sk-ant-own-0123456789", "anthropic-version": "2023-06-01"}),
    ('protocol = "gemini"\nurl = "https://generativelanguage.googleapis.com/v1beta"\napi_key = "AIza-own-0123456789"\n',
     "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent", {"x-goog-api-key": "AIza-own-0123456789"}),
])
def test_first_party_kinds(tmp_path, block, url, auth):
    r = prepared(tmp_path, block, "g", BODY, headers=FORWARDED)
    assert r.url == url
    assert lower(r.headers) == {"content-type": "application/json", "x-trace": "t-1", **auth}


# ------------------------------------------------------------------ the registry

def test_every_kind_is_registered_and_named_for_itself():
    assert sorted(KINDS) == ["anthropic", "azure_openai", "azure_responses", "bedrock_converse", "gemini",
                             "oci_cohere", "ollama", "ollama_openai", "openai", "openai_responses", "openrouter",
                             "runpod", "runpod_openai", "vertex_anthropic", "vertex_gemini", "watsonx"]
    assert all(cls.kind == kind for kind, cls in KINDS.items())


def test_the_stream_framing_each_kind_declares():
    assert {kind: cls.framing for kind, cls in KINDS.items()} == {
        "openai": "sse", "anthropic": "sse", "gemini": "sse", "azure_openai": "sse", "vertex_gemini": "sse",
        "vertex_anthropic": "sse", "bedrock_converse": "aws-eventstream", "openai_responses": "sse",
        "azure_responses": "sse", "ollama": "ndjson", "ollama_openai": "sse", "oci_cohere": "sse",
        "openrouter": "sse", "runpod": "sse", "runpod_openai": "sse", "watsonx": "sse"}


def test_the_actions_each_kind_offers():
    counting = {kind for kind, cls in KINDS.items() if COUNT_TOKENS in cls.actions}
    assert counting == {"anthropic", "vertex_anthropic", "vertex_gemini"}


def test_registry_refuses_a_provider_missing_a_piece():
    class NoPrepare(Provider):
        kind, wire = "broken", "openai"

    class BadWire(Provider):
        kind, wire = "broken", "smoke-signals"

        def prepare(self, call):
            raise NotImplementedError

        def authorise(self, request):
            raise NotImplementedError

    class BadFraming(BadWire):
        wire, framing = "openai", "carrier-pigeon"

    with pytest.raises(TypeError, match=r"provider broken: NoPrepare does not implement \['authorise', 'prepare'\]"):
        providers._check({"broken": NoPrepare})
    with pytest.raises(TypeError, match="provider broken: unknown wire protocol 'smoke-signals'"):
        providers._check({"broken": BadWire})
    with pytest.raises(TypeError, match="provider broken: unknown stream framing 'carrier-pigeon'"):
        providers._check({"broken": BadFraming})
