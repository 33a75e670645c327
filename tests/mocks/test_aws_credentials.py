"""The mock's temporary AWS credentials, driven by boto3: STS AssumeRoleWithWebIdentity
verifies the OIDC token for real and issues credentials that the Bedrock emulation then
accepts only with their session token and only until they expire; the container
credentials endpoint wants its authorization token."""
from __future__ import annotations

import json
import time

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from mocks.aws_credentials import (
    CONTAINER_AUTHORIZATION_TOKEN, OIDC_ISSUER, SECRET_PREFIX, SESSION_TOKEN_PREFIX, sign_web_identity_token)
from mocks.google_oauth import TEST_SERVICE_ACCOUNT

ROLE = "arn:aws:iam::123456789012:role/interchange-bedrock"
MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"
TEXT = "Hello! I'm a mock assistant. How can I help you today?"
NO_RETRIES = Config(retries={"total_max_attempts": 1})


def sts(mock_url: str):
    return boto3.client("sts", region_name="us-east-1", endpoint_url=mock_url,
                        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))


def assume(mock_url: str, token: str, role: str = ROLE) -> dict:
    return sts(mock_url).assume_role_with_web_identity(RoleArn=role, RoleSessionName="interchange-test",
                                                       WebIdentityToken=token)


def converse(mock_url: str, key_id: str, secret: str, session_token: str | None) -> dict:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=mock_url, aws_access_key_id=key_id,
                          aws_secret_access_key=secret, aws_session_token=session_token, config=NO_RETRIES)
    return client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}])


def error_code(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["ResponseMetadata"]["HTTPStatusCode"], caught.value.response["Error"]["Code"]


@pytest.fixture
def aws(mock_url):
    requests.delete(mock_url + "/_mock/aws", timeout=5)
    yield lambda: requests.get(mock_url + "/_mock/aws", timeout=5).json()
    requests.delete(mock_url + "/_mock/aws", timeout=5)


def test_web_identity_credentials_sign_bedrock_calls_with_their_session_token(mock_url, aws):
    reply = assume(mock_url, sign_web_identity_token())
    creds = reply["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert creds["SecretAccessKey"].startswith(SECRET_PREFIX) and creds["SessionToken"].startswith(SESSION_TOKEN_PREFIX)
    assert 3590 < (creds["Expiration"].timestamp() - time.time()) <= 3600
    assert reply["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/interchange-bedrock/interchange-test"
    assert reply["SubjectFromWebIdentityToken"] == "system:serviceaccount:default:interchange"
    answer = converse(mock_url, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert answer["output"]["message"]["content"] == [{"text": TEXT}]
    # Without its session token, or with another, the key is refused.
    assert error_code(lambda: converse(mock_url, creds["AccessKeyId"], creds["SecretAccessKey"], None)) == (
        403, "UnrecognizedClientException")
    assert error_code(lambda: converse(mock_url, creds["AccessKeyId"], creds["SecretAccessKey"],
                                       SESSION_TOKEN_PREFIX + "forged")) == (403, "UnrecognizedClientException")
    assert error_code(lambda: converse(mock_url, creds["AccessKeyId"], SECRET_PREFIX + "wrong",
                                       creds["SessionToken"])) == (403, "InvalidSignatureException")
    assert aws() == {"web_identity_requests": 1, "container_requests": 0, "issued": 1, "expires_in": 3600}


def test_expired_credentials_are_refused(mock_url, aws):
    assert requests.post(mock_url + "/_mock/aws", json={"expires_in": 1}, timeout=5).ok
    creds = assume(mock_url, sign_web_identity_token())["Credentials"]
    time.sleep(1.1)
    assert error_code(lambda: converse(mock_url, creds["AccessKeyId"], creds["SecretAccessKey"],
                                       creds["SessionToken"])) == (403, "ExpiredTokenException")


def _other_key_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    kid = json.loads(TEST_SERVICE_ACCOUNT.read_text())["private_key_id"]  # the known key id, another key
    now = int(time.time())
    return jwt.encode(crypt.RSASigner.from_string(pem, kid), {"iss": OIDC_ISSUER, "aud": "sts.amazonaws.com",
                                                              "sub": "x", "iat": now, "exp": now + 600}).decode()


@pytest.mark.parametrize("token,role,code", [
    (lambda: sign_web_identity_token(lifetime=-10), ROLE, "ExpiredTokenException"),
    (lambda: sign_web_identity_token(audience="someone-else"), ROLE, "InvalidIdentityToken"),
    (lambda: sign_web_identity_token(issuer="https://oidc.example/other"), ROLE, "InvalidIdentityToken"),
    (_other_key_token, ROLE, "InvalidIdentityToken"),
    (lambda: "not-a-jwt", ROLE, "InvalidIdentityToken"),
    (sign_web_identity_token, "arn:aws:iam::123:role/short-account", "ValidationError"),
], ids=["expired", "audience", "issuer", "forged", "garbage", "role-arn"])
def test_sts_refuses_what_sts_refuses(mock_url, aws, token, role, code):
    assert error_code(lambda: assume(mock_url, token(), role)) == (400, code)
    assert aws()["issued"] == 0


def test_container_credentials_want_the_authorization_token(mock_url, aws):
    assert requests.get(mock_url + "/v1/credentials", timeout=5).status_code == 401
    assert requests.get(mock_url + "/v1/credentials", headers={"Authorization": "forged"}, timeout=5).status_code == 401
    r = requests.get(mock_url + "/v1/credentials", headers={"Authorization": CONTAINER_AUTHORIZATION_TOKEN}, timeout=5)
    assert r.status_code == 200, r.text
    creds = r.json()
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"}
    answer = converse(mock_url, creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"])
    assert answer["output"]["message"]["content"] == [{"text": TEXT}]
    assert aws() == {"web_identity_requests": 0, "container_requests": 3, "issued": 1, "expires_in": 3600}
