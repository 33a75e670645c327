"""What the admin API (app/admin.py) tells of each backend: its kind, protocol and
models, whether its credentials are present, its state, and this worker's request
and error counts. Read from the config and the pipeline; nothing here calls a
backend or fetches a token.

"Credentials present" is what can be known without a call: an API key resolved (its
variable set), a key or config file that exists, both halves of an AWS key pair. A
credential chain (botocore's, Google's application-default) is only tried by a
request, so it counts as present here."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from app.config import BackendConfig
from app.errors import ProxyError
from app.providers import provider_class

if TYPE_CHECKING:
    from app.pipeline import Pipeline

READY = "ready"
NO_CREDENTIALS = "no credentials"
_FILE_SETTINGS = ("credentials_file", "config_file")  # provider settings naming a credentials file


def credentials_problem(backend: BackendConfig) -> str | None:
    """Why `backend` cannot authorise a call, or None when its credentials are present."""
    cls = provider_class(backend.kind)
    if cls.uses_api_key:
        if cls.api_key_optional and backend.api_key is None and backend.api_key_env is None:
            return None  # sends none (a local Ollama)
        try:
            backend.resolve_api_key()
        except ProxyError as e:
            return e.message
        return None
    for name in _FILE_SETTINGS:
        path = backend.settings.get(name)
        if path and not os.path.isfile(path):
            return f"{name} {path} not found"
    s = backend.settings
    if bool(s.get("aws_access_key_id")) != bool(s.get("aws_secret_access_key")):
        return "aws_access_key_id and aws_secret_access_key must be given together"
    return None


def provider_settings(pipeline: "Pipeline") -> dict[str, Any]:
    """The body of GET /admin/provider-settings."""
    router = pipeline.router
    defaults = router.defaults
    models: dict[str, list[str]] = {}
    for m in router.models():
        models.setdefault(m.backend, []).append(m.id)
    providers = []
    for name, b in pipeline.config.backends.items():
        problem = credentials_problem(b)
        providers.append({"name": name, "kind": b.kind, "protocol": b.protocol, "models": models.get(name, []),
                          "credentials": problem is None, "credentials_problem": problem,
                          "state": READY if problem is None else NO_CREDENTIALS, **pipeline.stats.of(name)})
    return {"default_provider": defaults.current() if defaults is not None else router.default_backend,
            "configured_default": router.default_backend, "providers": providers}
