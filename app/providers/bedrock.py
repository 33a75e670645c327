"""AWS Bedrock Runtime, Converse API (protocols §1): `{base}/model/{modelId}/converse`
(or `/converse-stream`, answered as a binary AWS event stream), signed with
SigV4 by botocore over the exact bytes sent, as the AWS SDKs sign.

Credentials: `aws_access_key_id` / `aws_secret_access_key` (/ `aws_session_token`)
in the backend's config (usually `${ENV}` references), else botocore's standard
chain (environment, shared config/credentials profile — `profile` picks one —,
web identity / IRSA (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`; `AWS_ENDPOINT_URL_STS`
for a private STS endpoint), container (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) and instance
roles), fetched on the first request and refreshed as botocore does (15 minutes before expiry).
The base is `https://bedrock-runtime.{region}.amazonaws.com` unless `url` says
otherwise (a VPC endpoint, the mock).
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading

from app.base_url import BaseUrl
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps
from app.protocols.base import UpstreamRequest
from app.providers.base import NEVER_FORWARDED, Call, Provider, Setting, base_before, merge_headers
from app.upstream.urls import upstream_url

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
_WRITTEN_TAIL = re.compile(r"/model(?:/.*)?$")  # a pasted `/model/{id}/converse` endpoint
# botocore logs secrets at DEBUG: the signer its canonical request (X-Amz-Security-Token's
# value), the endpoint and parsers the credential chain's exchanges (the web identity token
# sent to STS, the temporary secret and session token it answers). Its loggers stop at INFO,
# whatever our log level.
logging.getLogger("botocore").setLevel(logging.INFO)


class BedrockConverse(Provider):
    kind = "bedrock_converse"
    wire = "bedrock_converse"
    framing = "aws-eventstream"
    url_required = False
    uses_api_key = False
    settings = {
        "region": Setting(str, required=True, help="the AWS region (us-east-1)"),
        "aws_access_key_id": Setting(str, help="with aws_secret_access_key; default: botocore's credential chain"),
        "aws_secret_access_key": Setting(str),
        "aws_session_token": Setting(str),
        "profile": Setting(str, help="a shared config/credentials profile for the credential chain"),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._region = self.setting("region")
        self._base = backend.url or f"https://bedrock-runtime.{self._region}.amazonaws.com"
        self._credentials = None
        self._lock = threading.Lock()

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The endpoint (and any prefix): a pasted `/model/{id}/converse…` is dropped (the model
        comes from model_mapping)."""
        return base_before(url, _WRITTEN_TAIL, "requests go to {base}/model/{model}/converse or /converse-stream, "
                                               "the model from model_mapping")

    def prepare(self, call: Call) -> UpstreamRequest:
        url = upstream_url(self._base, "/model/{model}/converse-stream" if call.stream else "/model/{model}/converse",
                           model=call.model)
        headers = merge_headers({"Content-Type": "application/json",
                                 "Accept": "application/vnd.amazon.eventstream" if call.stream else "application/json"},
                                call.headers)
        return self.authorise(UpstreamRequest("POST", url, headers, dumps(call.body), stream=call.stream))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        """SigV4 by botocore over the request as it will be sent (method, URL path and query as
        written, headers, body bytes). Any credential or `X-Amz-*` header it carries goes first:
        the signature covers only what this signer set."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {k: v for k, v in request.headers.items()
                   if (low := k.lower()) not in NEVER_FORWARDED and not low.startswith("x-amz-")}
        signed = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
        SigV4Auth(self._frozen_credentials(), SERVICE, self._region).add_auth(signed)
        return dataclasses.replace(request, headers=dict(signed.headers.items()))

    def native_base(self) -> str:
        return self._base

    def _frozen_credentials(self):
        with self._lock:
            if self._credentials is None:
                self._credentials = self._load()
        frozen = self._credentials.get_frozen_credentials()  # refreshes temporary credentials when due
        if not frozen.access_key or not frozen.secret_key:
            raise self._missing()
        return frozen

    def _load(self):
        from botocore.credentials import Credentials
        from botocore.session import Session
        key_id, secret = self.setting("aws_access_key_id"), self.setting("aws_secret_access_key")
        if key_id or secret:
            if not (key_id and secret):
                raise ProxyError(ErrorKind.configuration, f"Backend '{self.backend.name}' needs both "
                                 "aws_access_key_id and aws_secret_access_key (or neither, for the credential "
                                 "chain).", code="configuration_error")
            return Credentials(key_id, secret, self.setting("aws_session_token"))
        session = Session(profile=self.setting("profile"))
        try:
            credentials = session.get_credentials()
        except Exception as e:  # botocore raises many kinds here (profile not found, bad config files)
            raise ProxyError(ErrorKind.configuration, f"Backend '{self.backend.name}': the AWS credential chain "
                             f"failed ({type(e).__name__}).", code="configuration_error") from None
        if credentials is None:
            raise self._missing()
        return credentials

    def _missing(self) -> ProxyError:
        return ProxyError(ErrorKind.configuration, f"Backend '{self.backend.name}' has no AWS credentials: set "
                          "aws_access_key_id and aws_secret_access_key, or give the credential chain some "
                          "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, a role).",
                          code="configuration_error")

    def secrets(self) -> tuple[str, ...]:
        out = tuple(s for s in (self.setting("aws_secret_access_key"), self.setting("aws_session_token")) if s)
        if self._credentials is not None:
            frozen = self._credentials.get_frozen_credentials()
            out += tuple(s for s in (frozen.secret_key, frozen.token) if s)
        return out
