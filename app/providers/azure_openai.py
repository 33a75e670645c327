"""Azure OpenAI Chat Completions (protocols §2.8): the OpenAI wire format at
Azure's URLs, with Azure's auth.

- Deployments form (the classic API, `url` = the resource endpoint):
  `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`;
  the deployment is the backend's provider model id (model_mapping's value).
- v1 form (`url` ending in `/openai/v1`): `{url}/chat/completions`, the
  deployment name in the body's `model`; no dated api-version.
- Auth: the key in `api-key` (default), or `auth = "bearer"` to send it as
  `Authorization: Bearer` (an Entra ID token in the key's variable).
"""
from __future__ import annotations

import re

from app.base_url import BaseUrl, BaseUrlError
from app.errors import redact_url
from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, Setting, json_request
from app.upstream.urls import upstream_url

DEFAULT_API_VERSION = "2024-10-21"  # the current GA version of the classic API
_DEPLOYMENT_PATH = re.compile(r"/openai(?:/deployments(?:/[^/]+(?:/chat/completions)?)?)?/?$")
_V1_PATH = re.compile(r"/openai/v1(?:/chat/completions)?/?$")


class AzureOpenAI(Provider):
    kind = "azure_openai"
    wire = "openai"
    settings = {
        "api_version": Setting(str, help="api-version of the deployments form (default " + DEFAULT_API_VERSION + ")"),
        "auth": Setting(str, help='"api-key" (default) or "bearer" (an Entra ID token)', choices=("api-key", "bearer")),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._v1 = backend.url.endswith("/openai/v1")
        self._api_version = self.setting("api_version") or DEFAULT_API_VERSION
        self._bearer = self.setting("auth") == "bearer"

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The resource endpoint (deployments form) or `…/openai/v1` (v1 form), however written."""
        if "?" in url or "#" in url:
            raise BaseUrlError("must not carry a query or fragment: give the api-version as api_version")
        url = url.rstrip("/")
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        path = "/" + path if path else ""
        origin = f"{scheme}://{host}"
        if _V1_PATH.search(path):
            base = origin + path[: _V1_PATH.search(path).start()] + "/openai/v1"
            form = "the v1 API: requests go to {base}/chat/completions with the deployment as model"
        else:
            match = _DEPLOYMENT_PATH.search(path)
            base = origin + (path[: match.start()] if match else path)
            form = "the deployments API: requests go to {base}/openai/deployments/{deployment}/chat/completions"
        if base == url:
            return BaseUrl(base)
        return BaseUrl(base, f"{redact_url(url)} understood as base {redact_url(base)} ({form})")

    def prepare(self, call: Call) -> UpstreamRequest:
        key = self.backend.resolve_api_key()
        own = {"Authorization": "Bearer " + key} if self._bearer else {"api-key": key}
        if self._v1:
            return json_request(upstream_url(self.backend.url, "/chat/completions"), own, call)
        url = upstream_url(self.backend.url, "/openai/deployments/{deployment}/chat/completions",
                           deployment=call.model, query={"api-version": self._api_version})
        return json_request(url, own, call)
