"""The proxy's own credentials for Vertex, Bedrock and Azure, checked for real
by the mock (a subprocess): Google's JWT-bearer grant against the test
service account's public key with tokens counted at the token endpoint, SigV4
recomputed over the bytes received, Azure's api-key / bearer. A credential
the upstream refuses reaches the client as a 502 in its own envelope naming
the backend; a credential the proxy cannot load, as a configuration error
naming the backend; never the secret itself, neither to the client nor to the log."""
from __future__ import annotations

import json
import re
import socket
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from mocks.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from mocks.google_oauth import STATIC_TOKEN
from mocks.ollama import API_KEY as OLLAMA_KEY
from tests.client_requests import FRONTENDS, client_request, error_message
from tests.conftest import ServerProcess
from tests.provider_configs import ISOLATED, service_account

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
WRONG_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGSECRET"
SESSION_TOKEN = "FwoGZXIvYXdzEMockSessionToken0123456789abcdef"
REFUSED_TOKEN = "ya29.revoked-token-0123456789abcdef"


def key_material(path: Path) -> list[str]:
    """Pieces of a key file's private key that must never be shown: some of its base64 lines."""
    lines = json.loads(path.read_text())["private_key"].splitlines()[1:-1]
    return lines[:3] + lines[-2:]


def proxy_for(tmp_path: Path, blocks: str) -> ServerProcess:
    config = tmp_path / "providers.toml"
    config.write_text('[server]\nlog_level = "debug"\n' + textwrap.dedent(blocks))
    return ServerProcess(["serve", "--config", str(config)], env=ISOLATED)


def vertex_blocks(mock_url: str, sa: Path, suffix: str = "") -> str:
    return f"""
        [backends.vertex{suffix}]
        kind = "vertex_gemini"
        url = "{mock_url}"
        project = "interchange-test"
        location = "us-central1"
        credentials_file = "{sa}"
        [backends.vertex{suffix}.model_mapping]
        "vx-gemini{suffix}" = "gemini-2.5-flash"

        [backends.vertex-anthropic{suffix}]
        kind = "vertex_anthropic"
        url = "{mock_url}"
        project = "interchange-test"
        location = "us-east5"
        credentials_file = "{sa}"
        [backends.vertex-anthropic{suffix}.model_mapping]
        "vx-claude{suffix}" = "claude-sonnet-4-5@20250929"
    """


def oauth(mock: ServerProcess) -> dict:
    return requests.get(mock.url + "/_mock/oauth", timeout=5).json()


def post(proxy: ServerProcess, frontend: str, model: str, stream: bool = False) -> requests.Response:
    path, headers, body = client_request(frontend, model, stream)
    return requests.post(proxy.url + path, json=body, headers=headers, timeout=20)


STREAM_ERROR = re.compile(r'"error":\s*\{|event: error|response\.failed')


def assert_text(r: requests.Response, stream: bool) -> None:
    assert r.status_code == 200, r.text
    if stream:
        # No in-stream error in any protocol (a Responses object's `"error": null` is not one).
        assert "Hello" in r.text and not STREAM_ERROR.search(r.text), r.text
    else:
        assert TEXT in r.text


@pytest.fixture
def mock():
    server = ServerProcess(["mock"])
    yield server
    server.stop()


# ------------------------------------------------------------------ Vertex: one token per lifetime

def test_vertex_token_is_fetched_once_for_many_requests(tmp_path, mock):
    sa = service_account(tmp_path, mock.url)
    proxy = proxy_for(tmp_path, vertex_blocks(mock.url, sa))
    try:
        assert oauth(mock)["token_requests"] == 0
        for i in range(30):  # both frontends' worth of traffic, streamed and not
            r = post(proxy, ("openai", "gemini", "anthropic")[i % 3], "vx-gemini", stream=i % 2 == 1)
            assert_text(r, i % 2 == 1)
        assert oauth(mock) == {"token_requests": 1, "tokens_issued": 1, "expires_in": 3599, "revoke_next": 0}
        for i in range(30):
            r = post(proxy, ("anthropic", "openai", "gemini")[i % 3], "vx-claude", stream=i % 2 == 1)
            assert_text(r, i % 2 == 1)
        # One token per backend (each backend keeps its own cache, and names itself in its errors).
        assert oauth(mock)["token_requests"] == 2
        assert "ya29.mock-" not in proxy.output()
    finally:
        proxy.stop()


def test_vertex_token_is_refreshed_once_when_stale(tmp_path, mock):
    # google-auth calls a token stale 3 min 45 s (225 s) before it expires: 232 s tokens are stale 7 s after issue.
    assert requests.post(mock.url + "/_mock/oauth", json={"expires_in": 232}, timeout=5).ok
    sa = service_account(tmp_path, mock.url)
    proxy = proxy_for(tmp_path, vertex_blocks(mock.url, sa))
    try:
        for stream in (False, True, False):
            assert_text(post(proxy, "openai", "vx-gemini", stream), stream)
        assert oauth(mock)["token_requests"] == 1
        time.sleep(8)
        for stream in (False, True, False, True):
            assert_text(post(proxy, "gemini", "vx-gemini", stream), stream)
        assert oauth(mock)["token_requests"] == 2  # refreshed exactly once, then reused
    finally:
        proxy.stop()


def test_vertex_concurrent_first_requests_share_one_token_fetch(tmp_path, mock):
    sa = service_account(tmp_path, mock.url)
    proxy = proxy_for(tmp_path, vertex_blocks(mock.url, sa))
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(lambda i: post(proxy, "openai", "vx-gemini", i % 2 == 1), range(16)))
        for i, r in enumerate(replies):
            assert_text(r, i % 2 == 1)
        assert oauth(mock)["token_requests"] == 1  # the others waited for that one
    finally:
        proxy.stop()


def revoke(mock: ServerProcess, next_issued: int = 0) -> int:
    r = requests.post(mock.url + "/_mock/oauth/revoke", json={"next": next_issued}, timeout=5)
    assert r.ok, r.text
    return r.json()["revoked"]


def attempts_at_mock(mock: ServerProcess, provider: str) -> list[int]:
    return [e["status"] for e in requests.get(mock.url + "/_mock/requests", params={"provider": provider},
                                              timeout=5).json()]


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_revoked_token_is_renewed_once_and_the_call_replayed(tmp_path, mock, stream):
    sa = service_account(tmp_path, mock.url)
    proxy = proxy_for(tmp_path, vertex_blocks(mock.url, sa))
    try:
        for model in ("vx-gemini", "vx-claude"):
            assert_text(post(proxy, "openai", model, stream), stream)
        assert oauth(mock)["token_requests"] == 2  # one per backend
        for frontend in FRONTENDS:
            assert revoke(mock) == 2  # both backends' tokens, before their expiry
            for model, provider in (("vx-gemini", "vertex_gemini"), ("vx-claude", "vertex_anthropic")):
                requests.delete(mock.url + "/_mock/requests", timeout=5)
                before = oauth(mock)["token_requests"]
                assert_text(post(proxy, frontend, model, stream), stream)
                assert oauth(mock)["token_requests"] == before + 1  # one new token, for this backend only
                assert attempts_at_mock(mock, provider) == [401, 200]  # refused, then replayed once
                assert_text(post(proxy, frontend, model, stream), stream)  # the new token is kept
                assert oauth(mock)["token_requests"] == before + 1
        assert "ya29.mock-" not in proxy.output()
    finally:
        proxy.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_token_refused_again_after_renewal_is_a_502_naming_the_backend(tmp_path, mock, stream):
    sa = service_account(tmp_path, mock.url)
    proxy = proxy_for(tmp_path, vertex_blocks(mock.url, sa))
    try:
        for frontend in FRONTENDS:
            for model, backend, provider in (("vx-gemini", "vertex", "vertex_gemini"),
                                             ("vx-claude", "vertex-anthropic", "vertex_anthropic")):
                assert_text(post(proxy, frontend, model, stream), stream)
                requests.delete(mock.url + "/_mock/requests", timeout=5)
                before = oauth(mock)["token_requests"]
                revoke(mock, next_issued=1)  # the token in use, and the one the proxy fetches next
                r = post(proxy, frontend, model, stream)
                assert r.status_code == 502, r.text
                assert error_message(frontend, r.json()) == (
                    f"Backend '{backend}' rejected the proxy's credentials (upstream HTTP 401). This is a problem "
                    "with the proxy's configuration for that backend, not with the client's request.")
                if frontend in ("openai", "openai_responses"):
                    assert r.json()["error"]["code"] == "upstream_authentication_error"
                assert "ya29." not in r.text + json.dumps(dict(r.headers))
                assert oauth(mock)["token_requests"] == before + 1  # renewed once, never a loop
                assert attempts_at_mock(mock, provider) == [401, 401]
        assert "ya29.mock-" not in proxy.output()
    finally:
        proxy.stop()


def test_vertex_static_token_from_the_environment(tmp_path, mock):
    # No credentials_file, no access_token: GCP_ACCESS_TOKEN is used as it is, never a token fetch.
    blocks = vertex_blocks(mock.url, Path("unused")).replace('credentials_file = "unused"\n', "")
    config = tmp_path / "static.toml"
    config.write_text(textwrap.dedent(blocks))
    proxy = ServerProcess(["serve", "--config", str(config)], env={**ISOLATED, "GCP_ACCESS_TOKEN": STATIC_TOKEN})
    try:
        for frontend in FRONTENDS:
            for stream in (False, True):
                assert_text(post(proxy, frontend, "vx-gemini", stream), stream)
                assert_text(post(proxy, frontend, "vx-claude", stream), stream)
        assert oauth(mock)["token_requests"] == 0
    finally:
        proxy.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the main proxy: every credential form

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("provider-auth")
    mock = ServerProcess(["mock"])
    good = service_account(tmp, mock.url)
    other = service_account(tmp, mock.url, other_key=True)
    unreachable = service_account(tmp, f"http://127.0.0.1:{closed_port()}", name="unreachable.json")
    blocks = vertex_blocks(mock.url, good) + vertex_blocks(mock.url, other, "-wrong-key") + f"""
        [backends.vertex-adc]
        kind = "vertex_gemini"
        url = "{mock.url}"
        project = "interchange-test"
        location = "us-central1"
        [backends.vertex-adc.model_mapping]
        "vx-adc" = "gemini-2.5-flash"

        [backends.vertex-no-token-endpoint]
        kind = "vertex_gemini"
        url = "{mock.url}"
        project = "interchange-test"
        location = "us-central1"
        credentials_file = "{unreachable}"
        [backends.vertex-no-token-endpoint.model_mapping]
        "vx-no-token-endpoint" = "gemini-2.5-flash"

        [backends.vertex-refused-token]
        kind = "vertex_anthropic"
        url = "{mock.url}"
        project = "interchange-test"
        location = "us-east5"
        access_token = "{REFUSED_TOKEN}"
        [backends.vertex-refused-token.model_mapping]
        "vx-refused-token" = "claude-sonnet-4-5@20250929"

        [backends.vertex-no-file]
        kind = "vertex_gemini"
        url = "{mock.url}"
        project = "interchange-test"
        location = "us-central1"
        credentials_file = "{tmp}/missing/service-account.json"
        [backends.vertex-no-file.model_mapping]
        "vx-no-file" = "gemini-2.5-flash"
    """
    for name, keys in (("bedrock", (ACCESS_KEY_ID, SECRET_ACCESS_KEY, None)),
                       ("bedrock-session", (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)),
                       ("bedrock-wrong-secret", (ACCESS_KEY_ID, WRONG_SECRET, None)), ("bedrock-no-keys", None)):
        creds = ""
        if keys:
            creds = f'aws_access_key_id = "{keys[0]}"\naws_secret_access_key = "{keys[1]}"\n'
            creds += f'aws_session_token = "{keys[2]}"\n' if keys[2] else ""
        blocks += f'\n[backends.{name}]\nkind = "bedrock_converse"\nurl = "{mock.url}"\nregion = "us-east-1"\n' \
                  f'{creds}[backends.{name}.model_mapping]\n"br-{name}" = "anthropic.claude-3-sonnet-20240229-v1:0"\n' \
                  f'"br-{name}-nova" = "amazon.nova-pro-v1:0"\n'
    blocks += f"""
        [backends.bedrock-no-profile]
        kind = "bedrock_converse"
        url = "{mock.url}"
        region = "us-east-1"
        profile = "no-such-profile"
        [backends.bedrock-no-profile.model_mapping]
        "br-no-profile" = "amazon.nova-pro-v1:0"
    """
    # The same five forms for Chat (azure-*, deployment gpt-4o) and Responses (azure-responses*, gpt-5).
    for prefix, kind, deployment in (("azure", "azure_openai", "gpt-4o"), ("azure-responses", "azure_responses", "gpt-5")):
        for suffix, url, extra in (("", mock.url, ""), ("-bearer", mock.url, 'auth = "bearer"\n'),
                                   ("-v1", mock.url + "/openai/v1", ""),
                                   ("-v1-bearer", mock.url + "/openai/v1/", 'auth = "bearer"\n'),
                                   ("-refused", mock.url, "")):
            name = prefix + suffix
            key = "invalid" if suffix == "-refused" else "azure-proxy-key-0123456789"
            blocks += f'\n[backends.{name}]\nkind = "{kind}"\nurl = "{url}"\napi_key = "{key}"\n{extra}' \
                      f'[backends.{name}.model_mapping]\n"az-{name}" = "{deployment}"\n'
    # Ollama: no key (a local server), the mock's key (as a hosted Ollama takes it), a refused one.
    for kind, url in (("ollama", mock.url), ("ollama_openai", mock.url + "/v1")):
        for suffix, key in (("", None), ("-key", OLLAMA_KEY), ("-refused", "ollama-wrong-key-0123456789")):
            name = kind.replace("_", "-") + suffix
            blocks += f'\n[backends.{name}]\nkind = "{kind}"\nurl = "{url}"\n' + \
                      (f'api_key = "{key}"\n' if key else "") + \
                      f'[backends.{name}.model_mapping]\n"ol-{name}" = "{"llama3.2" if kind == "ollama" else "mistral-small3.2"}"\n'
    for name, key in (("openai-responses", "sk-proxy-key-0123456789"), ("openai-responses-refused", "invalid")):
        blocks += f'\n[backends.{name}]\nkind = "openai_responses"\nurl = "{mock.url}"\napi_key = "{key}"\n' \
                  f'[backends.{name}.model_mapping]\n"oa-{name}" = "gpt-4o"\n'
    try:
        proxy = proxy_for(tmp, blocks)
    except Exception:
        mock.stop()
        raise
    yield {"mock": mock, "proxy": proxy, "other_key": other}
    proxy.stop()
    mock.stop()


def requests_at_mock(stack, provider: str) -> list[dict]:
    return requests.get(stack["mock"].url + "/_mock/requests", params={"provider": provider}, timeout=5).json()


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("model", ["vx-gemini-wrong-key", "vx-claude-wrong-key"])
def test_vertex_wrong_key_is_a_502_naming_the_backend(stack, frontend, model):
    backend = "vertex-anthropic-wrong-key" if "claude" in model else "vertex-wrong-key"
    for stream in (False, True):
        r = post(stack["proxy"], frontend, model, stream)
        assert r.status_code == 502, r.text
        message = error_message(frontend, r.json())
        assert message == (f"Backend '{backend}' could not get a Google access token: the token endpoint answered "
                           "invalid_grant: Invalid JWT Signature. This is a problem with the proxy's credentials for "
                           "that backend, not with the client's request.")
        shown = r.text + json.dumps(dict(r.headers))
        assert not [piece for piece in key_material(stack["other_key"]) if piece in shown]


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vertex_unreachable_token_endpoint_is_a_502_naming_the_backend(stack, frontend):
    r = post(stack["proxy"], frontend, "vx-no-token-endpoint")
    assert r.status_code == 502, r.text
    message = error_message(frontend, r.json())
    assert message == ("Backend 'vertex-no-token-endpoint' could not get a Google access token: the token endpoint "
                       "could not be reached (ConnectionError). This is a problem with the proxy's credentials for "
                       "that backend, not with the client's request.")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vertex_refused_token_is_a_502_naming_the_backend(stack, frontend):
    for stream in (False, True):
        r = post(stack["proxy"], frontend, "vx-refused-token", stream)
        assert r.status_code == 502, r.text
        assert error_message(frontend, r.json()) == (
            "Backend 'vertex-refused-token' rejected the proxy's credentials (upstream HTTP 401). This is a problem "
            "with the proxy's configuration for that backend, not with the client's request.")
        assert REFUSED_TOKEN not in r.text + json.dumps(dict(r.headers))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vertex_without_application_default_credentials_is_a_configuration_error(stack, frontend):
    # GOOGLE_APPLICATION_CREDENTIALS names a missing file (ISOLATED): google-auth stops there.
    r = post(stack["proxy"], frontend, "vx-adc")
    assert r.status_code == 500, r.text
    assert error_message(frontend, r.json()) == ("Backend 'vertex-adc' has no usable Google credentials: "
                                                 "application-default credentials could not be loaded "
                                                 "(DefaultCredentialsError).")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vertex_unreadable_credentials_file_is_a_configuration_error(stack, frontend):
    r = post(stack["proxy"], frontend, "vx-no-file")
    assert r.status_code == 500, r.text
    message = error_message(frontend, r.json())
    assert message.startswith("Backend 'vertex-no-file' has no usable Google credentials: the credentials_file ")
    assert "could not be loaded (FileNotFoundError)" in message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vertex_with_the_service_account(stack, frontend, stream):
    assert_text(post(stack["proxy"], frontend, "vx-gemini", stream), stream)
    assert_text(post(stack["proxy"], frontend, "vx-claude", stream), stream)


# ------------------------------------------------------------------ Bedrock: SigV4

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("backend", ["bedrock", "bedrock-session"])
def test_bedrock_signed_requests_are_accepted(stack, frontend, stream, backend):
    for model in (f"br-{backend}", f"br-{backend}-nova"):
        assert_text(post(stack["proxy"], frontend, model, stream), stream)


def test_bedrock_session_token_is_sent_signed(stack):
    assert_text(post(stack["proxy"], "openai", "br-bedrock-session"), False)
    (last, *_) = reversed(requests_at_mock(stack, "bedrock"))
    # The mock's log masks credentials: the token went (and the mock accepted the signature over it).
    assert last["headers"]["x-amz-security-token"] == "[REDACTED]"
    assert last["headers"]["authorization"] == "AWS4-HMAC-SHA256 [REDACTED]"


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_bedrock_wrong_secret_is_a_502_naming_the_backend(stack, frontend):
    for stream in (False, True):
        r = post(stack["proxy"], frontend, "br-bedrock-wrong-secret", stream)
        assert r.status_code == 502, r.text
        message = error_message(frontend, r.json())
        assert message == ("Backend 'bedrock-wrong-secret' refused the proxy's credentials access (upstream HTTP "
                           "403). This is a problem with the proxy's configuration for that backend, not with the "
                           "client's request.")
        assert WRONG_SECRET not in r.text + json.dumps(dict(r.headers))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_bedrock_without_credentials_is_a_configuration_error(stack, frontend):
    r = post(stack["proxy"], frontend, "br-bedrock-no-keys")
    assert r.status_code == 500, r.text
    assert error_message(frontend, r.json()).startswith("Backend 'bedrock-no-keys' has no AWS credentials: set "
                                                        "aws_access_key_id and aws_secret_access_key")


def test_bedrock_unknown_profile_is_a_configuration_error(stack):
    r = post(stack["proxy"], "openai", "br-no-profile")
    assert r.status_code == 500, r.text
    assert error_message("openai", r.json()) == ("Backend 'bedrock-no-profile': the AWS credential chain failed "
                                                 "(ProfileNotFound).")


# ------------------------------------------------------------------ Azure: api-key, bearer, both URL forms

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("prefix", ["azure", "azure-responses"])
@pytest.mark.parametrize("form", ["", "-bearer", "-v1", "-v1-bearer"])
def test_azure_auth_forms(stack, prefix, form, frontend, stream):
    assert_text(post(stack["proxy"], frontend, f"az-{prefix}{form}", stream), stream)


@pytest.mark.parametrize("prefix, mock_provider, dated, v1", [
    ("azure", "azure_openai", "/openai/deployments/gpt-4o/chat/completions", "/openai/v1/chat/completions"),
    ("azure-responses", "azure_openai_responses", "/openai/responses", "/openai/v1/responses")])
def test_azure_credentials_as_the_mock_saw_them(stack, prefix, mock_provider, dated, v1):
    seen = []
    for form in ("", "-bearer", "-v1", "-v1-bearer"):
        assert_text(post(stack["proxy"], "anthropic", f"az-{prefix}{form}"), False)  # the client sends its x-api-key
        last = requests_at_mock(stack, mock_provider)[-1]
        headers = last["headers"]
        seen.append((last["path"], headers.get("api-key"),
                     headers.get("authorization"), headers.get("x-api-key")))
    # The mock's log masks credentials; the client's x-api-key never went.
    assert seen == [(dated, "[REDACTED]", None, None), (dated, None, "Bearer [REDACTED]", None),
                    (v1, "[REDACTED]", None, None), (v1, None, "Bearer [REDACTED]", None)]


@pytest.mark.parametrize("prefix", ["azure", "azure-responses"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_azure_refused_key_is_a_502_naming_the_backend(stack, frontend, prefix):
    r = post(stack["proxy"], frontend, f"az-{prefix}-refused")
    assert r.status_code == 502, r.text
    message = error_message(frontend, r.json())
    assert f"Backend '{prefix}-refused' rejected the proxy's credentials (upstream HTTP 401)" in message
    if frontend in ("openai", "openai_responses"):
        assert r.json()["error"]["code"] == "upstream_authentication_error"


# ------------------------------------------------------------------ OpenAI Responses: a bare host gets /v1

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_openai_responses_kind(stack, frontend, stream):
    assert_text(post(stack["proxy"], frontend, "oa-openai-responses", stream), stream)
    last = requests_at_mock(stack, "openai_responses")[-1]
    assert (last["path"], last["headers"].get("authorization")) == ("/v1/responses", "Bearer [REDACTED]")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_openai_responses_refused_key_is_a_502_naming_the_backend(stack, frontend):
    r = post(stack["proxy"], frontend, "oa-openai-responses-refused")
    assert r.status_code == 502, r.text
    assert "Backend 'openai-responses-refused' rejected the proxy's credentials (upstream HTTP 401)" in \
        error_message(frontend, r.json())


def test_no_credential_reaches_the_log(stack):
    log = stack["proxy"].output()
    assert "upstream error" in log  # the refusals above were logged...
    for secret in (SECRET_ACCESS_KEY, WRONG_SECRET, SESSION_TOKEN, REFUSED_TOKEN, "azure-proxy-key-0123456789",
                   "sk-proxy-key-0123456789",
                   "ya29.mock-",
                   *key_material(stack["other_key"])):
        assert secret not in log  # ...without any credential


# ------------------------------------------------------------------ Ollama: no key, or a bearer key

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("kind, mock_provider", [("ollama", "ollama"), ("ollama-openai", "ollama_openai")])
def test_ollama_without_and_with_a_key(stack, kind, mock_provider, frontend, stream):
    seen = []
    for suffix in ("", "-key"):
        assert_text(post(stack["proxy"], frontend, f"ol-{kind}{suffix}", stream), stream)
        seen.append(requests_at_mock(stack, mock_provider)[-1]["headers"].get("authorization"))
    assert seen == [None, "Bearer [REDACTED]"]  # the client's own credential never goes


@pytest.mark.parametrize("kind", ["ollama", "ollama-openai"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_ollama_refused_key_is_a_502_naming_the_backend(stack, frontend, kind):
    r = post(stack["proxy"], frontend, f"ol-{kind}-refused")
    assert r.status_code == 502, r.text
    assert f"Backend '{kind}-refused' rejected the proxy's credentials (upstream HTTP 401)" in \
        error_message(frontend, r.json())
