"""One module per wire protocol, the same shape each (see base.py).

Each module is checked for that shape when it is first imported (at start-up:
the pipeline loads the wire of every configured backend), so a missing piece
fails there, never at request time."""
from __future__ import annotations

import importlib
from types import ModuleType

# config `protocol` value -> module implementing it
MODULES = {
    "openai": "app.protocols.openai_chat",
    "anthropic": "app.protocols.anthropic",
    "gemini": "app.protocols.gemini",
    "bedrock_converse": "app.protocols.bedrock_converse",
    "openai_responses": "app.protocols.openai_responses",
    "ollama": "app.protocols.ollama",
    "oci": "app.protocols.oci",
    "watsonx": "app.protocols.watsonx",
}

# The backend half every module has; the frontend half, when a module has one.
BACKEND_NAMES = ("build_body", "parse_response", "StreamParser", "parse_error", "is_content_frame",
                 "RESPONSE_MODEL_FIELD", "FORWARDED_CLIENT_HEADERS")
FRONTEND_NAMES = ("parse_request", "format_response", "StreamFormatter", "format_error", "format_models",
                  "passthrough_body")

_loaded: dict[str, ModuleType] = {}


def protocol_module(name: str) -> ModuleType:
    """The module for a protocol name (imported and checked on first use)."""
    module = _loaded.get(name)
    if module is None:
        module = importlib.import_module(MODULES[name])
        check_shape(name, module)
        _loaded[name] = module
    return module


def check_shape(name: str, module: ModuleType) -> None:
    """Raise TypeError naming what `module` lacks of the protocol module shape."""
    missing = [n for n in BACKEND_NAMES if not hasattr(module, n)]
    if hasattr(module, "parse_request"):
        missing += [n for n in FRONTEND_NAMES if not hasattr(module, n)]
    if missing:
        raise TypeError(f"protocol module {name} ({module.__name__}) lacks {', '.join(missing)}")


def protocol_name(module: ModuleType) -> str:
    """The config/metrics name of a protocol module ("openai" for openai_chat)."""
    for name, path in MODULES.items():
        if module.__name__ == path:
            return name
    return module.__name__.rsplit(".", 1)[-1]
