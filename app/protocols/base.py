"""The shape every protocol module has.

A protocol module (`app/protocols/<name>.py`) knows one wire format in both
directions and nothing of any other. It exposes module-level names:

Frontend side (the proxy speaks it to clients):
    parse_request(body: dict, *, model: str | None = None, stream: bool | None = None) -> ir.Request
        Raises errors.ProxyError (kind invalid_request, `param` naming the field).
        `model`/`stream` come from the URL for protocols that put them there (Gemini).
    format_response(resp: ir.Response, req: ir.Request) -> dict
    StreamFormatter(req: ir.Request, **wire_options)
        .feed(event: ir.Event) -> bytes      frames for the client (b"" when none)
        .relay(frame: Frame) -> bytes        same-protocol passthrough of an upstream frame
        .finish() -> bytes                   end of the client stream (e.g. `]`, `[DONE]` only via events)
        .keepalive() -> bytes                bytes that keep the client's stream alive and mean nothing
                                             (sent while the upstream sends only its own keep-alives)
    format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]
    format_models(models: list[ModelInfo]) -> dict

Backend side (the proxy speaks it to a provider). Bodies only: where a call
goes and how it is authorised is its provider's business (app/providers/):
    build_body(req: ir.Request, target: Target) -> dict
    passthrough_body(req: ir.Request, target: Target) -> dict   (modules with a frontend half)
        Same-protocol hop: `req.raw` with only the model swapped (fidelity first).
    count_tokens_body(req, target) -> dict, parse_count_tokens(body) -> int   (optional: a token counter)
    parse_response(body: bytes, req: ir.Request) -> ir.Response
    StreamParser(req: ir.Request)
        .feed(frame: Frame) -> list[ir.Event]
        .close() -> list[ir.Event]           a StreamError if the stream ended without its terminal event
    parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError
    FORWARDED_CLIENT_HEADERS: tuple[str, ...]
                                             client headers of this protocol that go on to its backends as
                                             they came (Anthropic: anthropic-beta); no other backend gets them
    RESPONSE_MODEL_FIELD: str                JSON key carrying the model name in replies ("model", "modelVersion")
    is_content_frame(frame: Frame) -> bool   a frame the passthrough watcher may leave unparsed

app/protocols/__init__.py checks every module for these names when it is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from app import ir
from app.errors import invalid


@dataclass(frozen=True, slots=True)
class Target:
    """What a wire module knows of the backend it writes for (no URL, no credentials)."""
    backend: str  # backend name from config (for errors and logs)
    model: str  # the provider's model id
    options: Mapping[str, Any] = field(default_factory=dict)  # protocol options from config


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    stream: bool = False


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model a client may ask for, for the models-list endpoints."""
    id: str
    backend: str
    protocol: str
    created: int = 0
    owned_by: str = "interchange"


def opaque_out(part: ir.Opaque, protocol: str, backend_label: str) -> dict:
    """A part, call or tool the IR could not model: sent as the client sent it, in
    place, only to the protocol it came from; elsewhere a 400 naming the client's
    field. `backend_label`: "an OpenAI backend"."""
    if part.protocol != protocol:
        raise invalid(f"{part.kind} cannot be sent to {backend_label}", param=part.where)
    return dict(part.data)


def extras_to_send(req: ir.Request, protocol: str, backend_label: str) -> dict[str, Any]:
    """The one rule every writer applies to `req.extras` (fields of the client's
    protocol with no IR meaning): the writer's own protocol's go out unchanged;
    another protocol's are dropped when optional (they only tune caching, context
    editing or priority, which the target does its own way) and refused with a 400
    naming the field otherwise. `backend_label`: "an OpenAI backend"."""
    own: dict[str, Any] = {}
    for extra in req.extras:
        if extra.protocol == protocol:
            own[extra.name] = extra.value
        elif not extra.optional:
            raise invalid(f"`{extra.name}` cannot be sent to {backend_label}: it changes what the "
                          f"{extra.protocol} API may answer and this backend has no equivalent", param=extra.name)
    return own


def tool_input(call: ir.ToolCall, at: str, wire_name: str) -> dict:
    """A call's arguments as the JSON object a wire that takes tool input as an object
    needs; a 400 at `at` when they are not one. `wire_name`: "Anthropic"."""
    try:
        return call.arguments_object()
    except ValueError:
        raise invalid(f"tool call {call.id} ({call.name}) has arguments that are not a JSON object; "
                      f"{wire_name} needs tool input as an object", param=at) from None


def token_count(value: Any) -> int:
    """A token count read from an upstream reply's usage: the int as sent, 0 when it
    is absent or not an int (a bool is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
