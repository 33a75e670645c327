"""One module per wire protocol, the same shape each (see base.py)."""
from __future__ import annotations

import importlib
from types import ModuleType

# config `protocol` value -> module implementing it
MODULES = {
    "openai": "app.protocols.openai_chat",
    "anthropic": "app.protocols.anthropic",
    "gemini": "app.protocols.gemini",
    "bedrock_converse": "app.protocols.bedrock_converse",
}


_loaded: dict[str, ModuleType] = {}


def protocol_module(name: str) -> ModuleType:
    """The module for a protocol name (imported on first use)."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = importlib.import_module(MODULES[name])
    return module


def protocol_name(module: ModuleType) -> str:
    """The config/metrics name of a protocol module ("openai" for openai_chat)."""
    for name, path in MODULES.items():
        if module.__name__ == path:
            return name
    return module.__name__.rsplit(".", 1)[-1]
