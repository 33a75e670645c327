"""Temporary AWS credentials, the two ways a workload without keys gets them, and the
registry the Bedrock emulation's SigV4 check consults (mocks/bedrock.py):

- STS `AssumeRoleWithWebIdentity` (IRSA on EKS; `AWS_WEB_IDENTITY_TOKEN_FILE` +
  `AWS_ROLE_ARN`, with `AWS_ENDPOINT_URL_STS` pointing botocore here): the Query protocol,
  `POST /` with a form body, answered in STS's XML. The web identity token is an OIDC JWT,
  verified for real: RS256 over the test key (mocks/testdata, `sign_web_identity_token`
  makes one), issuer `OIDC_ISSUER`, audience `sts.amazonaws.com`, not expired.
- The container credentials endpoint (EKS Pod Identity's agent, ECS's form:
  `AWS_CONTAINER_CREDENTIALS_FULL_URI` = `{mock}/v1/credentials`, botocore allows
  loopback): `GET` with `Authorization: CONTAINER_AUTHORIZATION_TOKEN` (what
  `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)` holds), JSON credentials.

Each issue is an access key id (`ASIA…`), a secret and a session token, valid until its
expiry: Bedrock accepts a request signed with it only with the session token in
`X-Amz-Security-Token`, and refuses it once expired (ExpiredTokenException).

Test hooks: `GET /_mock/aws` counts each endpoint's requests and the credentials issued;
`POST /_mock/aws {"expires_in": N}` sets the lifetime of credentials issued from then on
(botocore refreshes 15 minutes before expiry, so 905 s tests a refresh in seconds);
`DELETE` resets counters and lifetime (credentials issued stay valid until they expire).
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from urllib.parse import parse_qs

from google.auth import crypt, jwt
from google.auth import exceptions as google_exceptions

from mocks.google_oauth import TEST_SERVICE_ACCOUNT, public_keys

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
OIDC_ISSUER = "https://oidc.eks.us-east-1.amazonaws.com/id/MOCK0123456789ABCDEF"
AUDIENCE = "sts.amazonaws.com"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
DEFAULT_LIFETIME = 3600  # STS's default DurationSeconds
CONTAINER_AUTHORIZATION_TOKEN = "mock-container-authorization-token"
# The prefixes of what this mock issues: tests look for them where secrets must not be.
SECRET_PREFIX, SESSION_TOKEN_PREFIX = "mockStsSecret", "mockStsSession"


class StsError(Exception):
    """A refused STS call: its `<ErrorResponse>` with a status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def xml(self) -> str:
        return (f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>Sender</Type><Code>{self.code}</Code>'
                f'<Message>{escape(self.message)}</Message></Error><RequestId>{_request_id()}</RequestId>'
                "</ErrorResponse>")


@dataclass(frozen=True)
class Issued:
    secret: str
    session_token: str
    expiry: float  # epoch seconds


def sign_web_identity_token(subject: str = "system:serviceaccount:default:interchange", lifetime: int = 3600,
                            issuer: str = OIDC_ISSUER, audience: str = AUDIENCE) -> str:
    """An OIDC token as the EKS token projection writes it, signed with the test key."""
    info = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    signer = crypt.RSASigner.from_string(info["private_key"], info["private_key_id"])
    now = int(time.time())
    return jwt.encode(signer, {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime}
                      ).decode()


@dataclass
class TemporaryCredentials:
    lifetime: int = DEFAULT_LIFETIME
    web_identity_requests: int = 0
    container_requests: int = 0
    issued: int = 0
    _keys: dict[str, Issued] = field(default_factory=dict)  # access key id -> what goes with it
    _verifiers: dict[str, tuple[str, bytes]] = field(default_factory=public_keys)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ STS
    def assume_role_with_web_identity(self, form_body: bytes) -> str:
        """The XML answer to an STS Query call, or StsError."""
        with self._lock:
            self.web_identity_requests += 1
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            raise StsError(400, "InvalidAction", f"Could not find operation {form.get('Action')} for version "
                           f"{form.get('Version')}")
        if form.get("Version") != "2011-06-15":
            raise StsError(400, "InvalidAction", "The Version 2011-06-15 is the only one of this API.")
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not form.get(name):
                raise StsError(400, "MissingParameter", f"The request must contain the parameter {name}")
        if not ROLE_ARN.match(form["RoleArn"]):
            raise StsError(400, "ValidationError", f"{form['RoleArn']} is invalid")
        if not SESSION_NAME.match(form["RoleSessionName"]):
            raise StsError(400, "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed "
                           "to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")
        claims = self._verify(form["WebIdentityToken"])
        access_key, issued = self._issue()
        session = form["RoleSessionName"]
        role = form["RoleArn"].rsplit("/", 1)[-1]
        account = form["RoleArn"].split(":")[4]
        return (f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NAMESPACE}"><AssumeRoleWithWebIdentityResult>'
                f"<SubjectFromWebIdentityToken>{escape(claims['sub'])}</SubjectFromWebIdentityToken>"
                f"<Audience>{AUDIENCE}</Audience><AssumedRoleUser>"
                f"<Arn>arn:aws:sts::{account}:assumed-role/{escape(role)}/{escape(session)}</Arn>"
                f"<AssumedRoleId>AROAMOCK0123456789ABC:{escape(session)}</AssumedRoleId></AssumedRoleUser>"
                f"<Credentials><SessionToken>{issued.session_token}</SessionToken>"
                f"<SecretAccessKey>{issued.secret}</SecretAccessKey><Expiration>{_iso(issued.expiry)}</Expiration>"
                f"<AccessKeyId>{access_key}</AccessKeyId></Credentials>"
                f"<Provider>{OIDC_ISSUER.removeprefix('https://')}</Provider>"
                f"</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>{_request_id()}</RequestId>"
                "</ResponseMetadata></AssumeRoleWithWebIdentityResponse>")

    def _verify(self, token: str) -> dict:
        try:
            header = jwt.decode_header(token)
        except (ValueError, google_exceptions.GoogleAuthError):
            raise StsError(400, "InvalidIdentityToken", "The web identity token is not a valid JWT.") from None
        known = self._verifiers.get(header.get("kid", ""))
        if header.get("alg") != "RS256" or known is None:
            raise StsError(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity "
                           "provider, please reference AssumeRoleWithWebIdentity documentation for requirements")
        try:
            claims = jwt.decode(token, certs=known[1], audience=AUDIENCE, clock_skew_in_seconds=0)
        except (ValueError, google_exceptions.GoogleAuthError) as e:
            if "expired" in str(e).lower():
                raise StsError(400, "ExpiredTokenException", "Token expired: current date/time must be before "
                               "the expiration date/time.") from None
            raise StsError(400, "InvalidIdentityToken", "Incorrect token audience" if "audience" in str(e).lower()
                           else "The web identity token's signature is invalid.") from None
        if claims.get("iss") != OIDC_ISSUER:
            raise StsError(400, "InvalidIdentityToken", "No OpenIDConnect provider found in your account for "
                           f"{claims.get('iss')}")
        if not claims.get("sub"):
            raise StsError(400, "InvalidIdentityToken", "The web identity token has no subject.")
        return claims

    # ------------------------------------------------------------ the container endpoint
    def container_credentials(self, authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.container_requests += 1
        if authorization != CONTAINER_AUTHORIZATION_TOKEN:
            return 401, {"message": "Authorization header is missing or not valid."}
        access_key, issued = self._issue()
        return 200, {"AccessKeyId": access_key, "SecretAccessKey": issued.secret, "Token": issued.session_token,
                     "Expiration": _iso(issued.expiry), "AccountId": "123456789012"}

    # ------------------------------------------------------------ issued credentials
    def _issue(self) -> tuple[str, Issued]:
        access_key = "ASIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        with self._lock:
            issued = Issued(SECRET_PREFIX + secrets.token_urlsafe(27)[:27], SESSION_TOKEN_PREFIX +
                            secrets.token_urlsafe(96), time.time() + self.lifetime)
            self._keys[access_key] = issued
            self.issued += 1
        return access_key, issued

    def get(self, access_key: str) -> Issued | None:
        with self._lock:
            return self._keys.get(access_key)

    def stats(self) -> dict:
        with self._lock:
            return {"web_identity_requests": self.web_identity_requests,
                    "container_requests": self.container_requests, "issued": self.issued,
                    "expires_in": self.lifetime}

    def reset(self) -> None:
        with self._lock:
            self.web_identity_requests = self.container_requests = self.issued = 0
            self.lifetime = DEFAULT_LIFETIME


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _request_id() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
