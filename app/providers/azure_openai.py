"""Azure OpenAI (protocols §2.8): OpenAI's wire formats at Azure's URLs, with
Azure's auth. One class per API (Chat Completions, Responses); the URL forms
and the auth are this module's, once.

- v1 form (`url` ending in `/openai/v1`): `{url}{endpoint}` (`/chat/completions`,
  `/responses`), the deployment name in the body's `model`; no dated api-version.
- Dated form (`url` = the resource endpoint), `?api-version={api_version}`:
  Chat Completions at `{endpoint}/openai/deployments/{deployment}/chat/completions`
  (the deployment is the backend's provider model id, model_mapping's value);
  Responses at `{endpoint}/openai/responses`, which is not a deployments route:
  the deployment goes in the body's `model`, and the api-version must be a
  preview one that has Responses (2025-03-01-preview or later, or `preview`).
- Auth: the key in `api-key` (default), or `auth = "bearer"` to send it as
  `Authorization: Bearer` (an Entra ID token in the key's variable).
"""
from __future__ import annotations

import re
from typing import ClassVar

from app.base_url import BaseUrl, BaseUrlError
from app.errors import redact_url
from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, Setting, json_request, with_credentials
from app.upstream.urls import upstream_url

DEFAULT_API_VERSION = "2024-10-21"  # the current GA version of the classic Chat API
DEFAULT_RESPONSES_API_VERSION = "2025-04-01-preview"  # the first dated versions with Responses are previews


def _settings(default_version: str) -> dict[str, Setting]:
    return {
        "api_version": Setting(str, help=f"api-version of the dated form (default {default_version})"),
        "auth": Setting(str, help='"api-key" (default) or "bearer" (an Entra ID token)', choices=("api-key", "bearer")),
    }


def _v1_tail(endpoint: str) -> re.Pattern:
    """`/openai/v1`, with the endpoint path pasted after it or not."""
    return re.compile(r"/openai/v1(?:" + re.escape(endpoint) + r")?/?$")


def _dated_tail(endpoint: str) -> re.Pattern:
    """What may follow the resource endpoint in a pasted dated-form URL (dropped)."""
    ep = re.escape(endpoint)
    return re.compile(r"/openai(?:" + ep + r"|/deployments(?:/[^/]+(?:" + ep + r")?)?)?/?$")


class AzureOpenAI(Provider):
    """Chat Completions."""

    kind = "azure_openai"
    wire = "openai"
    settings = _settings(DEFAULT_API_VERSION)
    endpoint: ClassVar[str] = "/chat/completions"  # under a v1 base
    dated_path: ClassVar[str] = "/openai/deployments/{deployment}/chat/completions"  # under the resource endpoint
    dated_name: ClassVar[str] = "deployments"
    default_api_version: ClassVar[str] = DEFAULT_API_VERSION
    _v1_path: ClassVar[re.Pattern] = _v1_tail(endpoint)
    _dated_path: ClassVar[re.Pattern] = _dated_tail(endpoint)

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._v1 = backend.url.endswith("/openai/v1")
        self._api_version = self.setting("api_version") or self.default_api_version
        self._bearer = self.setting("auth") == "bearer"

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The resource endpoint (dated form) or `…/openai/v1` (v1 form), however written."""
        if "?" in url or "#" in url:
            raise BaseUrlError("must not carry a query or fragment: give the api-version as api_version")
        url = url.rstrip("/")
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        path = "/" + path if path else ""
        origin = f"{scheme}://{host}"
        if match := cls._v1_path.search(path):
            base = origin + path[: match.start()] + "/openai/v1"
            form = "the v1 API: requests go to {base}" + cls.endpoint + " with the deployment as model"
        else:
            match = cls._dated_path.search(path)
            base = origin + (path[: match.start()] if match else path)
            form = f"the {cls.dated_name} API: requests go to {{base}}{cls.dated_path}"
        if base == url:
            return BaseUrl(base)
        return BaseUrl(base, f"{redact_url(url)} understood as base {redact_url(base)} ({form})")

    def prepare(self, call: Call) -> UpstreamRequest:
        if self._v1:
            return self.authorise(json_request(upstream_url(self.backend.url, self.endpoint), {}, call))
        url = upstream_url(self.backend.url, self.dated_path, query={"api-version": self._api_version},
                           deployment=call.model)
        return self.authorise(json_request(url, {}, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        key = self.backend.resolve_api_key()
        return with_credentials(request, {"Authorization": "Bearer " + key} if self._bearer else {"api-key": key})


class AzureResponses(AzureOpenAI):
    """Responses: the deployment is always the body's `model` (the wire module puts it there)."""

    kind = "azure_responses"
    wire = "openai_responses"
    settings = _settings(DEFAULT_RESPONSES_API_VERSION)
    endpoint = "/responses"
    dated_path = "/openai/responses"
    dated_name = "classic"
    default_api_version = DEFAULT_RESPONSES_API_VERSION
    _v1_path = _v1_tail(endpoint)
    _dated_path = _dated_tail(endpoint)
