"""AWS Signature Version 4, checked the way an AWS front door checks it: the
signature is recomputed with botocore's own signer over the request exactly
as it arrived (method, raw path and query, the signed headers, the body
bytes) and compared. Failures are `SigV4Error`s carrying AWS's error code and
message; the caller wraps them in its service's envelope."""
from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_CLOCK_SKEW = timedelta(minutes=5)
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 (?P<params>.+)$")
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class SigV4Error(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code  # UnrecognizedClientException, InvalidSignatureException, ...
        self.message = message


def verify(method: str, raw_target: str, headers: Mapping[str, str], body: bytes, *, service: str,
           secrets: Mapping[str, str], now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> str:
    """Check a SigV4-signed request; return the region it was signed for.

    `raw_target` is the request target as sent (path still percent-encoded, query
    included): the signature covers that, not a decoded path. `secrets` maps
    access key ids to secret keys. `headers` must look names up case-insensitively."""
    match = _AUTH.match(headers.get("Authorization") or "")
    if match is None:
        raise SigV4Error("IncompleteSignatureException", "Authorization header requires the AWS4-HMAC-SHA256 "
                         "scheme with 'Credential', 'SignedHeaders' and 'Signature' parameters.")
    params = dict(p.strip().partition("=")[::2] for p in match.group("params").split(","))
    if not {"Credential", "SignedHeaders", "Signature"} <= params.keys():
        raise SigV4Error("IncompleteSignatureException", "Authorization header requires 'Credential', "
                         "'SignedHeaders' and 'Signature' parameters.")
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SigV4Error("IncompleteSignatureException",
                         f"Credential should be of the form AKID/date/region/service/aws4_request: {params['Credential']}")
    access_key, scope_date, region, scope_service, _ = scope
    secret = secrets.get(access_key)
    if secret is None:
        raise SigV4Error("UnrecognizedClientException", "The security token included in the request is invalid.")
    if scope_service != service:
        raise SigV4Error("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'.")
    signed = params["SignedHeaders"].split(";")
    if "host" not in signed:
        raise SigV4Error("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the "
                         "AWS Authorization.")
    amz_date = headers.get("X-Amz-Date") or ""
    try:
        signed_at = datetime.strptime(amz_date, _DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise SigV4Error("IncompleteSignatureException", "Authorization requires a valid X-Amz-Date header "
                         "(YYYYMMDDTHHMMSSZ).") from None
    if scope_date != amz_date[:8]:
        raise SigV4Error("InvalidSignatureException", f"Date in Credential scope does not match YYYYMMDD from "
                         f"ISO-8601 version of date from HTTP: '{scope_date}' != '{amz_date[:8]}', from "
                         f"'{amz_date}'.")
    current = now()
    if signed_at < current - MAX_CLOCK_SKEW:
        raise SigV4Error("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                         f"{(current - MAX_CLOCK_SKEW).strftime(_DATE_FORMAT)} "
                         f"({current.strftime(_DATE_FORMAT)} - 5 min.)")
    if signed_at > current + MAX_CLOCK_SKEW:
        raise SigV4Error("InvalidSignatureException", f"Signature not yet current: {amz_date} is still later than "
                         f"{(current + MAX_CLOCK_SKEW).strftime(_DATE_FORMAT)} "
                         f"({current.strftime(_DATE_FORMAT)} + 5 min.)")
    missing = [name for name in signed if headers.get(name) is None]
    if missing:
        raise SigV4Error("InvalidSignatureException", f"Signed header(s) not in the request: {', '.join(missing)}.")

    # botocore's signer over the request as received: only the headers the client signed.
    request = AWSRequest(method=method, url=f"http://{headers.get('Host')}{raw_target}", data=body,
                         headers={name: headers.get(name) for name in signed})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, params["Signature"]):
        raise SigV4Error("InvalidSignatureException", "The request signature we calculated does not match the "
                         "signature you provided. Check your AWS Secret Access Key and signing method. Consult the "
                         "service documentation for details.")
    return region
