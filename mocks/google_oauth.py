"""Google's OAuth2 token endpoint for service accounts (protocols, Google
OAuth2 section): `POST /token` with the JWT-bearer grant, the assertion's
RS256 signature verified for real against the test service account's public
key (mocks/testdata/vertex-service-account.json), and expiring access tokens
that the Vertex emulations then check on every call.

Test hooks: `GET /_mock/oauth` counts token requests and issued tokens;
`POST /_mock/oauth {"expires_in": N}` sets the lifetime of tokens issued from
then on (to test refresh without waiting an hour); `POST /_mock/oauth/revoke
{"next": N}` revokes every token issued so far, and the next N it issues as they
are issued (Google refuses a revoked token with the same 401 as an expired one:
a replay with a fresh token can be refused too); `DELETE` resets counters,
lifetime and N (tokens already issued stay valid until they expire or are revoked).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from google.auth import exceptions as google_exceptions
from google.auth import jwt

TEST_SERVICE_ACCOUNT = Path(__file__).resolve().parent / "testdata" / "vertex-service-account.json"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs for this audience, whatever token_uri says.
AUDIENCE = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_LIFETIME = 3599
# A token valid for as long as the mock runs: what a user puts in GCP_ACCESS_TOKEN.
STATIC_TOKEN = "mock-gcp-access-token"


def public_keys() -> dict[str, tuple[str, bytes]]:
    """key id -> (service account email, public key PEM)."""
    info = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return {info["private_key_id"]: (info["client_email"], public)}


class TokenError(Exception):
    """A refused grant: OAuth2's `{"error", "error_description"}` with a status."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass
class TokenIssuer:
    lifetime: int = DEFAULT_LIFETIME
    token_requests: int = 0
    tokens_issued: int = 0
    revoke_next: int = 0  # tokens still to be revoked as they are issued
    _issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    _keys: dict[str, tuple[str, bytes]] = field(default_factory=public_keys)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def grant(self, form_body: bytes) -> dict:
        """The token response for a form-encoded grant, or TokenError."""
        with self._lock:
            self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            raise TokenError(400, "unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not assertion:
            raise TokenError(400, "invalid_request", "Missing required parameter: assertion")
        claims = self._verify(assertion)
        scopes = str(claims.get("scope", "")).split()
        if CLOUD_PLATFORM not in scopes:
            raise TokenError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29.mock-" + secrets.token_urlsafe(24)
        with self._lock:
            if self.revoke_next:
                self.revoke_next -= 1
                self._issued[token] = 0.0  # issued, and revoked at once
            else:
                self._issued[token] = time.time() + self.lifetime
            self.tokens_issued += 1
        return {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    def _verify(self, assertion: str) -> dict:
        try:
            header = jwt.decode_header(assertion)
        except (ValueError, google_exceptions.GoogleAuthError):
            raise TokenError(400, "invalid_grant", "Invalid JWT: the assertion cannot be decoded.") from None
        known = self._keys.get(header.get("kid", ""))
        if header.get("alg") != "RS256" or known is None:
            raise TokenError(400, "invalid_grant", "Invalid JWT Signature.")
        email, public_key = known
        try:
            claims = jwt.decode(assertion, certs=public_key, audience=AUDIENCE)
        except (ValueError, google_exceptions.GoogleAuthError) as e:
            text = str(e)
            if "expired" in text.lower() or "too early" in text.lower():
                raise TokenError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token "
                                 "(60 minutes) and in a reasonable timeframe.") from None
            raise TokenError(400, "invalid_grant", "Invalid JWT Signature.") from None
        if claims.get("iss") != email:
            raise TokenError(400, "invalid_grant", "Invalid JWT: the issuer is not the key's service account.")
        if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 3600:
            raise TokenError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes).")
        return claims

    def valid(self, token: str) -> bool:
        """True for a token this issuer gave out that has not expired (or the static one)."""
        if token == STATIC_TOKEN:
            return True
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.time() < expiry

    def revoke(self, next_issued: int = 0) -> int:
        """Revoke every token issued so far, and the next `next_issued` as they are issued;
        how many were revoked now."""
        with self._lock:
            live = [token for token, expiry in self._issued.items() if expiry > 0.0]
            for token in live:
                self._issued[token] = 0.0
            self.revoke_next = next_issued
            return len(live)

    def stats(self) -> dict:
        with self._lock:
            return {"token_requests": self.token_requests, "tokens_issued": self.tokens_issued,
                    "expires_in": self.lifetime, "revoke_next": self.revoke_next}

    def reset(self) -> None:
        """Counters, lifetime and pending revocations back to their start; tokens already issued
        stay as they are."""
        with self._lock:
            self.token_requests = self.tokens_issued = self.revoke_next = 0
            self.lifetime = DEFAULT_LIFETIME
