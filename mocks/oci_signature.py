"""OCI request signatures (draft-cavage HTTP signatures, rsa-sha256, version 1), checked
the way OCI's front door checks them, independently of the `oci` signer: the signing
string is rebuilt from the request exactly as it arrived (method, raw target, the
headers the client listed) and verified with the public key its keyId names; the body
must match `x-content-sha256` and `content-length`, and `date` must be within five
minutes. Failures are `SignatureError`s; the caller answers 401 NotAuthenticated."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

MAX_CLOCK_SKEW = timedelta(minutes=5)
# What OCI requires a request to sign: every request, and those with a body.
REQUIRED = ("date", "(request-target)", "host")
BODY_REQUIRED = ("content-length", "content-type", "x-content-sha256")
_PARAM = re.compile(r'\s*(\w+)="([^"]*)"\s*(?:,|$)')


class SignatureError(Exception):
    pass


def parse_authorization(value: str) -> dict[str, str]:
    """`Signature k="v",…` -> {k: v}; SignatureError when it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "Signature" or not rest:
        raise SignatureError("The Authorization header must use the Signature scheme.")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:
            raise SignatureError("The Authorization header is not a valid Signature header.")
        params[match.group(1)] = match.group(2)
        pos = match.end()
    return params


def verify(method: str, raw_target: str, headers: Mapping[str, str], body: bytes, *,
           public_keys: Mapping[str, object],
           now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> str:
    """Check a signed request; return the keyId it was signed with. `headers` must look
    names up case-insensitively; `public_keys` maps keyIds to RSA public keys."""
    params = parse_authorization(headers.get("Authorization") or "")
    for name in ("keyId", "signature", "headers", "algorithm"):
        if not params.get(name):
            raise SignatureError(f"The Signature header has no {name}.")
    if params["algorithm"] != "rsa-sha256":
        raise SignatureError(f"Unsupported signature algorithm {params['algorithm']!r}.")
    if params.get("version", "1") != "1":
        raise SignatureError(f"Unsupported signature version {params['version']!r}.")
    key = public_keys.get(params["keyId"])
    if key is None:
        raise SignatureError("The required information to complete authentication was not provided or was "
                             "incorrect.")  # an unknown key names nothing the service will confirm
    signed = params["headers"].lower().split()
    needed = REQUIRED + (BODY_REQUIRED if method.upper() in ("POST", "PUT", "PATCH") else ())
    missing = [name for name in needed if name not in signed]
    if missing:
        raise SignatureError(f"The signature must cover {', '.join(missing)}.")
    absent = [name for name in signed if name != "(request-target)" and headers.get(name) is None]
    if absent:
        raise SignatureError(f"Signed header(s) not in the request: {', '.join(absent)}.")
    _check_date(headers.get("date") or "", now())
    if method.upper() in ("POST", "PUT", "PATCH"):
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("x-content-sha256") != digest:
            raise SignatureError("The x-content-sha256 header does not match the body.")
        if (headers.get("content-length") or "").strip() != str(len(body)):
            raise SignatureError("The content-length header does not match the body.")
    lines = [f"(request-target): {method.lower()} {raw_target}" if name == "(request-target)"
             else f"{name}: {headers.get(name)}" for name in signed]
    try:
        signature = base64.b64decode(params["signature"], validate=True)
        key.verify(signature, "\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[attr-defined]
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureError("The required information to complete authentication was not provided or was "
                             "incorrect.") from None
    return params["keyId"]


def _check_date(value: str, current: datetime) -> None:
    try:
        signed_at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        signed_at = None
    if signed_at is None or signed_at.tzinfo is None:
        raise SignatureError("The date header is missing or not an RFC 1123 date.")
    if abs(current - signed_at) > MAX_CLOCK_SKEW:
        raise SignatureError(f"The request date {value} is more than 5 minutes from the server's clock "
                             f"({current.strftime('%a, %d %b %Y %H:%M:%S GMT')}).")
