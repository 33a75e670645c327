"""The multi-backend router's set-up with no TOML (seed 002): a models.yaml
(`MODEL_CONFIG_PATH`, default the shipped app/models.yaml) and its backends
built from the environment, only those the models file names:

    azure      kind azure_responses: AZURE_BASE_URL, AZURE_API_KEY,
               AZURE_API_VERSION (optional), AZURE_DEPLOYMENT (the deployment of
               models that name no deployment_name; default: their api_model)
    anthropic  kind anthropic: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL (optional)

A variable that is missing does not stop the proxy: requests to that backend
get a configuration_error naming it ("AZURE_API_KEY not set in environment").
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from app.config import Config, ConfigError, _build, _models_yaml

SHIPPED_MODELS = Path(__file__).with_name("models.yaml")
ANTHROPIC_URL = "https://api.anthropic.com"
# Stands in for an unset AZURE_BASE_URL (a reserved name that never resolves):
# the backend's requests are refused before any is sent (missing_env).
_UNSET_URL = "https://azure-base-url-not-set.invalid"


def models_path() -> Path:
    return Path(os.environ.get("MODEL_CONFIG_PATH") or SHIPPED_MODELS)


def env_config() -> Config:
    """The Config of `interchange serve` without --config; raises ConfigError."""
    path = models_path()
    problems: list[str] = []
    models = _models_yaml(path, problems, key="MODEL_CONFIG_PATH")
    if problems:
        raise ConfigError(problems)
    named = {m.get("backend") for m in models.values() if isinstance(m, dict)}
    backends, missing = {}, {}
    if "azure" in named:
        backends["azure"], missing["azure"] = _azure()
        deployment = os.environ.get("AZURE_DEPLOYMENT")
        if deployment:
            models = {name: {**m, "deployment_name": deployment}
                      if isinstance(m, dict) and m.get("backend") == "azure" and "deployment_name" not in m else m
                      for name, m in models.items()}
    if "anthropic" in named:
        backends["anthropic"], missing["anthropic"] = _anthropic()
    config = _build({"backends": backends, "models": models}, path, problems)
    if problems:
        raise ConfigError(problems)
    built = {name: dataclasses.replace(b, missing_env=missing[name]) if missing.get(name) else b
             for name, b in config.backends.items()}
    return dataclasses.replace(config, backends=built, source=f"{path} (backends from the environment)")


def _azure() -> tuple[dict, str | None]:
    url = os.environ.get("AZURE_BASE_URL")
    raw = {"kind": "azure_responses", "url": url or _UNSET_URL, "api_key_env": "AZURE_API_KEY"}
    version = os.environ.get("AZURE_API_VERSION")
    if version:
        raw["api_version"] = version
    return raw, None if url else "AZURE_BASE_URL"


def _anthropic() -> tuple[dict, str | None]:
    return {"kind": "anthropic", "url": os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_URL,
            "api_key_env": "ANTHROPIC_API_KEY"}, None
