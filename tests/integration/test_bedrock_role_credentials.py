"""A Bedrock backend with no keys in its config, on a workload's role: botocore's credential
chain through the proxy, against the mock's STS and container credentials endpoint
(mocks/aws_credentials.py), which issue temporary credentials the mock's Bedrock then
accepts only with their session token.

- IRSA (EKS): AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, AWS_ENDPOINT_URL_STS at the mock;
- the container endpoint (EKS Pod Identity, ECS): AWS_CONTAINER_CREDENTIALS_FULL_URI on
  loopback + AWS_CONTAINER_AUTHORIZATION_TOKEN.

Every request succeeds and carries the session token; credentials are fetched once per
lifetime (and once more when botocore finds them near expiry), never logged."""
from __future__ import annotations

import textwrap
import time

import pytest
import requests

from mocks.aws_credentials import CONTAINER_AUTHORIZATION_TOKEN, SECRET_PREFIX, SESSION_TOKEN_PREFIX, \
    sign_web_identity_token
from tests.client_requests import FRONTENDS, client_request
from tests.conftest import ServerProcess
from tests.provider_configs import ISOLATED

ROLE = "arn:aws:iam::123456789012:role/interchange-bedrock"
TEXT = "Hello! I'm a mock assistant. How can I help you today?"
# botocore refreshes temporary credentials 15 minutes (900 s) before they expire.
ADVISORY_REFRESH = 900


@pytest.fixture
def mock():
    server = ServerProcess(["mock"])
    yield server
    server.stop()


def proxy_on_role(tmp_path, mock: ServerProcess, env: dict[str, str]) -> ServerProcess:
    config = tmp_path / "role.toml"
    config.write_text('[server]\nlog_level = "debug"\n' + textwrap.dedent(f"""
        [backends.bedrock-role]
        kind = "bedrock_converse"
        url = "{mock.url}"
        region = "us-east-1"
        [backends.bedrock-role.model_mapping]
        "br-role" = "anthropic.claude-3-sonnet-20240229-v1:0"
        "br-role-nova" = "amazon.nova-pro-v1:0"
    """))
    return ServerProcess(["serve", "--config", str(config)], env={**ISOLATED, **env})


def irsa_env(tmp_path, mock: ServerProcess) -> dict[str, str]:
    token = tmp_path / "web-identity-token"
    token.write_text(sign_web_identity_token())
    return {"AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_ARN": ROLE, "AWS_ROLE_SESSION_NAME": "interchange",
            "AWS_ENDPOINT_URL_STS": mock.url}


def container_env(mock: ServerProcess) -> dict[str, str]:
    return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": mock.url + "/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_AUTHORIZATION_TOKEN}


def aws(mock: ServerProcess) -> dict:
    return requests.get(mock.url + "/_mock/aws", timeout=5).json()


def assert_answers(proxy: ServerProcess, frontend: str, model: str, stream: bool) -> None:
    path, headers, body = client_request(frontend, model, stream)
    r = requests.post(proxy.url + path, json=body, headers=headers, timeout=20)
    assert r.status_code == 200, r.text
    assert ("Hello" if stream else TEXT) in r.text


def bedrock_requests(mock: ServerProcess) -> list[dict]:
    return requests.get(mock.url + "/_mock/requests", params={"provider": "bedrock"}, timeout=5).json()


def assert_nothing_secret_logged(proxy: ServerProcess, web_identity_token: str | None = None) -> None:
    log = proxy.output()
    assert "bedrock-role" in log  # the proxy did log (at debug)...
    for secret in (SECRET_PREFIX, SESSION_TOKEN_PREFIX, CONTAINER_AUTHORIZATION_TOKEN, web_identity_token):
        assert not secret or secret not in log  # ...none of the credentials


@pytest.mark.parametrize("how", ["web_identity", "container"])
def test_bedrock_on_a_role_fetches_credentials_once_and_sends_the_session_token(tmp_path, mock, how):
    env = irsa_env(tmp_path, mock) if how == "web_identity" else container_env(mock)
    proxy = proxy_on_role(tmp_path, mock, env)
    try:
        assert aws(mock)["issued"] == 0  # nothing fetched before the first request
        for frontend in FRONTENDS:
            for stream in (False, True):
                for model in ("br-role", "br-role-nova"):
                    assert_answers(proxy, frontend, model, stream)
        stats = aws(mock)
        assert (stats["issued"], stats[f"{how}_requests"]) == (1, 1)  # one fetch for 16 requests
        sent = bedrock_requests(mock)
        assert len(sent) == 16
        # The mock's log masks credentials: the session token went on every request, signed.
        assert {(e["status"], e["headers"]["x-amz-security-token"], e["headers"]["authorization"]) for e in sent} == {
            (200, "[REDACTED]", "AWS4-HMAC-SHA256 [REDACTED]")}
        token_file = env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        assert_nothing_secret_logged(proxy, open(token_file).read() if token_file else None)
    finally:
        proxy.stop()


@pytest.mark.parametrize("how", ["web_identity", "container"])
def test_bedrock_role_credentials_are_refreshed_once_near_expiry(tmp_path, mock, how):
    # Credentials that live 907 s are inside botocore's 900 s refresh window 7 s after issue.
    assert requests.post(mock.url + "/_mock/aws", json={"expires_in": ADVISORY_REFRESH + 7}, timeout=5).ok
    proxy = proxy_on_role(tmp_path, mock, irsa_env(tmp_path, mock) if how == "web_identity" else container_env(mock))
    try:
        for stream in (False, True, False):
            assert_answers(proxy, "openai", "br-role", stream)
        assert aws(mock)["issued"] == 1
        time.sleep(8)
        for stream in (False, True, False, True):
            assert_answers(proxy, "anthropic", "br-role", stream)
        assert aws(mock)["issued"] == 2  # refreshed exactly once, then reused
    finally:
        proxy.stop()
