"""Responses wire names, and the tool-call naming both halves of the module use (namespaces, custom input)."""
from __future__ import annotations

from app import ir


PROTOCOL = "openai_responses"  # the registry name (app/protocols/__init__.py MODULES)
RESPONSE_MODEL_FIELD = "model"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
NAMESPACE_SEPARATOR = "__"


def _flat_name(namespace: str | None, name: str) -> str:
    return name if namespace is None else namespace + NAMESPACE_SEPARATOR + name


def _custom_input(arguments: str) -> str:
    """The raw text of a custom tool call from its IR arguments `{"input": …}`;
    a model that answered without the wrapper gets its text passed on as is."""
    try:
        value = ir.parse_arguments(arguments).get("input")
    except ValueError:
        return arguments
    return value if isinstance(value, str) else arguments
