"""One module per wire protocol, the same shape each (see base.py)."""
from __future__ import annotations

import importlib
from types import ModuleType

# config `protocol` value -> module implementing it
MODULES = {
    "openai": "app.protocols.openai_chat",
    "anthropic": "app.protocols.anthropic",
    "gemini": "app.protocols.gemini",
}


def protocol_module(name: str) -> ModuleType:
    """The module for a protocol name (imported once, then cached by Python)."""
    return importlib.import_module(MODULES[name])
