"""IBM watsonx.ai (protocols B §2): `{base}/ml/v1/text/chat` (`/text/chat_stream`), or
`/ml/v1/text/generation` (`/text/generation_stream`) for a model the backend renders into a
prompt template (app/protocols/watsonx.py), always with `?version=YYYY-MM-DD`; the body
carries the backend's `project_id` or `space_id` (exactly one). Authorised by an IBM Cloud
IAM bearer token fetched with the backend's API key (ibm_iam.py): one renewal and one replay
when watsonx refuses a token before its expiry (revoked), then the refusal goes to the client.

The base is `https://{region}.ml.cloud.ibm.com` (region default us-south) unless `url` says
otherwise (a private endpoint, the mock); `iam_url` replaces https://iam.cloud.ibm.com.
"""
from __future__ import annotations

import re

from app.base_url import BaseUrl
from app.protocols.base import UpstreamRequest
from app.protocols.watsonx import check_templates
from app.providers.base import Call, FetchedTokenProvider, Setting, base_before, json_request
from app.providers.ibm_iam import DEFAULT_IAM_URL, IamToken
from app.upstream.urls import upstream_url

DEFAULT_VERSION = "2025-02-11"  # a dated API version IBM's documentation examples use
_WRITTEN_TAIL = re.compile(r"/ml(?:/v1(?:/.*)?)?$")  # a pasted `/ml/v1/text/chat` endpoint
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Watsonx(FetchedTokenProvider):
    kind = "watsonx"
    wire = "watsonx"
    url_required = False
    settings = {
        "project_id": Setting(str, help="the watsonx project id (or space_id, not both)"),
        "space_id": Setting(str, help="a deployment space id (or project_id, not both)"),
        "region": Setting(str, help="the IBM Cloud region of the default URL (default us-south)"),
        "version": Setting(str, help=f"the API version date, YYYY-MM-DD (default {DEFAULT_VERSION})"),
        "iam_url": Setting(str, help=f"the IAM token service (default {DEFAULT_IAM_URL})"),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        project, space = self.setting("project_id"), self.setting("space_id")
        if bool(project) == bool(space):
            raise ValueError(f"backend {backend.name}: give exactly one of project_id and space_id")
        self._scope = {"project_id": project} if project else {"space_id": space}
        self._version = self.setting("version") or DEFAULT_VERSION
        if not _VERSION.match(self._version):
            raise ValueError(f"backend {backend.name}: version must be a date YYYY-MM-DD (got {self._version!r})")
        check_templates(backend.options, backend.name)
        self._base = backend.url or f"https://{self.setting('region') or 'us-south'}.ml.cloud.ibm.com"
        self._token = IamToken(backend.name, backend.resolve_api_key, self.setting("iam_url") or DEFAULT_IAM_URL)

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The host (and any gateway prefix): a pasted `/ml/v1/…` endpoint is dropped."""
        return base_before(url, _WRITTEN_TAIL, "requests go to {base}/ml/v1/text/chat or /ml/v1/text/generation "
                                               "(and their _stream forms) with the version setting")

    def prepare(self, call: Call) -> UpstreamRequest:
        api = "generation" if "input" in call.body else "chat"  # the wire module chose by the model's template
        path = f"/ml/v1/text/{api}_stream" if call.stream else f"/ml/v1/text/{api}"
        url = upstream_url(self._base, path, query={"version": self._version})
        body = {**call.body, **self._scope}
        own = {"Accept": "text/event-stream" if call.stream else "application/json"}
        return self.authorise(json_request(url, own, call, body))

    def native_base(self) -> str:
        return self._base

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.backend.resolved_key(), self._token.current()) if s)
