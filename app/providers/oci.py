"""Oracle OCI Generative AI inference (protocols B §3): `POST {base}/20231130/actions/chat`
with a ChatDetails body — `compartmentId` and `servingMode` placed here around the
wire's `chatRequest` (app/protocols/oci.py) — signed with OCI's HTTP signature
(draft-cavage, rsa-sha256) by the `oci` package's signer over the exact bytes sent:
`date (request-target) host content-length content-type x-content-sha256`.

Credentials (`auth`):
- `api_key` (default): an OCI config file and profile (`config_file`, default
  `~/.oci/config`; `profile`, default `DEFAULT`) naming user, tenancy, fingerprint and
  the private key file, as the OCI SDKs and CLI read it.
- `instance_principal`: the compute instance's own identity (a security token the
  signer fetches from the instance metadata service and renews); only on OCI.

Serving: ON_DEMAND with the model id from model_mapping, or DEDICATED when
`endpoint_id` names a dedicated AI cluster endpoint (the model id then only chooses
the request format). The base is `https://inference.generativeai.{region}.oci.oraclecloud.com`
(the region from `region`, else the config file's or the instance's), unless `url`
says otherwise (a private endpoint, the mock).
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from typing import Any

from app.base_url import BaseUrl
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps
from app.protocols.base import UpstreamRequest
from app.providers.base import NEVER_FORWARDED, Call, Provider, Setting, base_before, merge_headers

API_VERSION_PATH = "/20231130"
CHAT_PATH = API_VERSION_PATH + "/actions/chat"
API_KEY, INSTANCE_PRINCIPAL = "api_key", "instance_principal"
_WRITTEN_TAIL = re.compile(r"/20231130(?:/.*)?$")  # a pasted `/20231130/actions/chat` endpoint
# Headers the signature covers: whatever a client forwards under these names is dropped,
# so the signer computes each one over what is actually sent.
_SIGNED = frozenset({"date", "x-date", "content-length", "x-content-sha256", "content-type", "host"})
# What `authorise` drops of a request before signing it: the headers the signer computes
# (content-type stays: the request's own, covered as it is), and every credential.
_RECOMPUTED = (_SIGNED - {"content-type"}) | NEVER_FORWARDED


def default_url(region: str) -> str:
    return f"https://inference.generativeai.{region}.oci.oraclecloud.com"


class OCIGenerativeAI(Provider):
    kind = "oci_cohere"
    wire = "oci"
    url_required = False
    uses_api_key = False
    settings = {
        "compartment_id": Setting(str, required=True, help="the OCID of the compartment the calls are made in"),
        "auth": Setting(str, help="api_key (an OCI config file, the default) or instance_principal",
                        choices=(API_KEY, INSTANCE_PRINCIPAL)),
        "config_file": Setting(str, help="the OCI config file (default ~/.oci/config)"),
        "profile": Setting(str, help="the profile in the config file (default DEFAULT)"),
        "region": Setting(str, help="the OCI region (us-chicago-1); default: the config file's or the instance's"),
        "endpoint_id": Setting(str, help="a dedicated AI cluster endpoint's OCID: DEDICATED serving instead of "
                                         "ON_DEMAND"),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._auth = self.setting("auth", API_KEY)
        self._signer: Any = None
        self._region: str | None = self.setting("region")
        self._lock = threading.Lock()
        # The oci package takes about 1.5 s to import: paid here, when the app is built, rather
        # than by the first request (the event loop would hold every other request meanwhile).
        with contextlib.suppress(ImportError):  # a missing package is each request's configuration error
            import oci  # noqa: F401

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The endpoint (and any prefix): a pasted `/20231130/actions/chat` is dropped."""
        return base_before(url, _WRITTEN_TAIL, "requests go to {base}/20231130/actions/chat")

    def prepare(self, call: Call) -> UpstreamRequest:
        url = self.native_base() + CHAT_PATH
        endpoint_id = self.setting("endpoint_id")
        serving = {"servingType": "DEDICATED", "endpointId": endpoint_id} if endpoint_id else \
            {"servingType": "ON_DEMAND", "modelId": call.model}
        body = dumps({"compartmentId": self.setting("compartment_id"), "servingMode": serving, **call.body})
        forwarded = {k: v for k, v in call.headers.items() if k.lower() not in _SIGNED}
        headers = merge_headers({"Content-Type": "application/json",
                                 "Accept": "text/event-stream" if call.stream else "application/json"}, forwarded)
        return self.authorise(UpstreamRequest("POST", url, headers, body, stream=call.stream))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        """OCI's HTTP signature by the `oci` signer over the request as it will be sent; the URL
        is the one the signer's `(request-target)` covered."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _RECOMPUTED}
        url, signed = sign(self._current_signer(), request.method, request.url, headers, request.body)
        return dataclasses.replace(request, url=url, headers=signed)

    def native_base(self) -> str:
        """`url`, else the region's endpoint (the region may come from the OCI config file or the
        instance, known once the signer is loaded)."""
        if self.backend.url:
            return self.backend.url
        self._current_signer()
        if not self._region:
            raise self._problem("has no region: set `region` (or `url`), or name one in its OCI config file")
        return default_url(self._region)

    def forget_credentials(self, refused: UpstreamRequest) -> bool:
        """An instance principal's security token can be renewed (the next prepare fetches a
        new one); a config file's key cannot."""
        if self._auth != INSTANCE_PRINCIPAL:
            return False
        with self._lock:
            self._signer = None
        return True

    def secrets(self) -> tuple[str, ...]:
        return ()  # the private key never leaves its file; a signature is no secret

    # ------------------------------------------------------------ credentials

    def _current_signer(self) -> Any:
        with self._lock:
            if self._signer is None:
                self._signer = self._load()
            return self._signer

    def _load(self) -> Any:
        try:
            import oci
        except ImportError:
            raise self._problem("needs the `oci` package (pip install 'interchange[oci]')") from None
        if self._auth == INSTANCE_PRINCIPAL:
            try:
                signer = oci.auth.signers.InstancePrincipalsSecurityTokenSigner()
            except Exception as e:  # the metadata service is unreachable off OCI, among others
                raise self._problem(f"could not get an instance principal token ({type(e).__name__})") from None
            self._region = self._region or getattr(signer, "region", None)
            return signer
        try:
            config = oci.config.from_file(self.setting("config_file") or oci.config.DEFAULT_LOCATION,
                                          self.setting("profile") or oci.config.DEFAULT_PROFILE)
            signer = oci.signer.Signer.from_config(config)
        except Exception as e:  # a missing file or profile, a missing key, a wrong pass phrase
            raise self._problem(f"cannot use its OCI config file ({type(e).__name__}: {_first_line(e)})") from None
        self._region = self._region or config.get("region")
        return signer

    def _problem(self, what: str) -> ProxyError:
        return ProxyError(ErrorKind.configuration, f"Backend '{self.backend.name}' {what}.", code="configuration_error")


def sign(signer: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[str, dict[str, str]]:
    """(the URL as signed, `headers` plus the signature headers: `date`, `host`, and for a body
    `content-length` and `x-content-sha256`, `authorization`), computed by `signer` over
    `body` as it is sent."""
    from oci._vendor import requests  # the requests the signer is written for

    prepared = requests.Request(method, url, headers=headers, data=body).prepare()
    signer(prepared)
    return prepared.url, dict(prepared.headers.items())


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [""])[0][:200]
