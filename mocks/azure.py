"""Azure OpenAI Chat Completions: the OpenAI wire format at Azure's URLs, with
Azure's auth and api-version rules (protocols §2.8).

- `POST /openai/deployments/{deployment}/chat/completions?api-version=…`: the
  deployment in the path names the model; `api-version` is required (missing:
  404 "Resource not found", as Azure answers; unknown: 400).
- `POST /openai/v1/chat/completions`: the v1 API; the body's `model` is the
  deployment name; no dated api-version (absent, `preview` or `latest`).
- Auth: an `api-key` header, or `Authorization: Bearer <Entra ID token>`.
- Replies are OpenAI's plus Azure's content-filter annotations: a
  `prompt_filter_results` list, `content_filter_results` per choice, and in a
  stream a first chunk with `choices: []` carrying the prompt filter results
  (clients must not take it for a usage chunk or an end).
"""
from __future__ import annotations

from typing import Any, Callable

from mocks.openai import MODELS, OpenAIProvider
from mocks.provider import Call
from mocks.scenarios import ScenarioFrame
from mocks.wire import ApiError

# Deployments of the mock resource: deployment name -> the model it runs.
DEPLOYMENTS = {name: name for name in MODELS} | {"gpt-5": "gpt-5-nano", "chat": "gpt-4o-mini"}
# Dated versions the mock accepts on the deployments form (GA and preview).
API_VERSIONS = frozenset({"2024-02-01", "2024-06-01", "2024-10-21", "2024-08-01-preview", "2024-12-01-preview",
                          "2025-01-01-preview", "2025-03-01-preview", "2025-04-01-preview"})
V1_API_VERSIONS = frozenset({"preview", "latest"})

_SAFE = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
         "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": _SAFE}]


def azure_error(status: int, code: str, message: str) -> ApiError:
    """Azure's own envelope for what its front end rejects (auth, routing, versions)."""
    return ApiError(status, {"error": {"code": code, "message": message}})


class AzureOpenAIProvider(OpenAIProvider):
    name = "azure_openai"
    scenario_set = "openai"

    def authenticate(self, call: Call) -> None:
        key = call.header("api-key")
        if key is None:
            scheme, _, token = (call.header("Authorization") or "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else ""
        if not key or key == "invalid":
            raise azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                              "Make sure to provide a valid key for an active subscription and use a correct "
                              "regional API endpoint for your resource.")

    def validate(self, call: Call) -> None:
        deployment = call.notes.get("deployment")
        validate_azure(call, super().validate, API_VERSIONS, deployment_in_path=deployment)

    def select_body(self, body: Any, call: Call) -> Any:
        if not isinstance(body, dict) or "choices" not in body:
            return body
        choices = [{**c, "content_filter_results": _SAFE} for c in body["choices"]]
        return {**body, "choices": choices, "prompt_filter_results": PROMPT_FILTER_RESULTS}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        first = ScenarioFrame(data={"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                    "prompt_filter_results": PROMPT_FILTER_RESULTS})
        return [first, *super().select_frames(frames, call)]

    def not_found(self, call: Call) -> ApiError:
        return azure_error(404, "404", "Resource not found")


def validate_azure(call: Call, wire_validate: Callable[[Call], None], dated_versions: frozenset[str], *,
                   deployment_in_path: str | None = None, dated_form: bool | None = None) -> None:
    """Azure's own rules, then the wire's (`wire_validate`), of the model the deployment runs.

    The dated form (a deployment in the path, or Responses' classic `/openai/responses`) needs
    an `api-version` from `dated_versions` (missing: Azure's 404); the v1 form takes none (or
    `preview`/`latest`) and names the deployment in the body's `model`. Replies name the
    deployment's model, as Azure's do."""
    version = call.query.get("api-version")
    dated = deployment_in_path is not None if dated_form is None else dated_form
    if dated:
        if version is None:
            raise azure_error(404, "404", "Resource not found")
        if version not in dated_versions:
            raise azure_error(400, "BadRequest", "API version not supported")
    elif version is not None and version not in V1_API_VERSIONS:
        raise azure_error(400, "BadRequest", "API version not supported")
    deployment = deployment_in_path
    if deployment is None:
        deployment = call.body.get("model")
        if not isinstance(deployment, str) or not deployment:
            wire_validate(call)  # the wire's own error for a missing or mistyped model
    if deployment not in DEPLOYMENTS:
        raise _deployment_not_found()
    body = call.body
    call.body = {**body, "model": DEPLOYMENTS[deployment]}
    try:
        wire_validate(call)
    finally:
        call.body = body


def _deployment_not_found() -> ApiError:
    return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you "
                       "created the deployment within the last 5 minutes, please wait a moment and try again.")

