"""One client model per backend of config-mock.toml, for tests that drive every backend
through the proxy with an official SDK, and the mock's provider name for each (to read
back what the proxy sent). Backends added to config-mock.toml join by themselves (their
first model_mapping name); the few listed pick a model the scenarios need (a non-reasoning
OpenAI model; Claude's smallest)."""
from __future__ import annotations

from app.config import load_config
from scripts.matrix.kinds import UPSTREAM_KINDS
from tests.conftest import REPO

CONFIG = load_config(REPO / "config-mock.toml")
_CHOSEN = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
# A registry model narrowing its backend's capabilities is a row of its own (Nova: Bedrock's
# non-Claude family).
_NARROWING = {m.name: m.backend for m in CONFIG.models.values() if m.capabilities is not None}

MODELS: dict[str, str] = {name: _CHOSEN.get(name) or next(iter(b.model_mapping))
                          for name, b in CONFIG.backends.items() if b.model_mapping}
MODELS.update({name: name for name in _NARROWING})
BACKENDS = list(MODELS)
MOCK_PROVIDER: dict[str, str] = {name: UPSTREAM_KINDS[CONFIG.backends[_NARROWING.get(name, name)].kind].mock_provider
                                 for name in MODELS}


def can(backend: str, *needs: str) -> bool:
    """Whether `backend`'s client model serves every capability in `needs`: a narrowing registry
    model by its own capabilities, a backend by its declared ones (none declared: anything)."""
    wanted = frozenset(needs)
    if backend in _NARROWING:
        return wanted <= CONFIG.models[backend].capabilities
    return CONFIG.backends[backend].has(wanted)
