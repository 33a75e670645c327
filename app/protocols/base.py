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
    format_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]
    format_models(models: list[ModelInfo]) -> dict

Backend side (the proxy speaks it to a provider):
    build_request(req: ir.Request, target: Target) -> UpstreamRequest
    passthrough_request(req: ir.Request, target: Target) -> UpstreamRequest
        Same-protocol hop: send `req.raw` with only the model swapped (fidelity first).
    parse_response(body: bytes, req: ir.Request) -> ir.Response
    StreamParser(req: ir.Request)
        .feed(frame: Frame) -> list[ir.Event]
        .close() -> list[ir.Event]           a StreamError if the stream ended without its terminal event
    parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError
    FORWARDED_CLIENT_HEADERS: tuple[str, ...]
                                             client headers of this protocol that go on to its backends as
                                             they came (Anthropic: anthropic-beta); no other backend gets them
    RESPONSE_MODEL_FIELD: str                JSON key carrying the model name in replies ("model", "modelVersion")
    STREAM_FRAMING: str                      "sse" (later: "aws-eventstream")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from app import ir
from app.errors import MIN_SECRET_LENGTH, invalid


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how one upstream call goes; built by the pipeline from config + route."""
    backend: str  # backend name from config (for errors and logs)
    base_url: str  # as configured, no trailing slash
    model: str  # the provider's model id
    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # forwarded client headers
    options: Mapping[str, Any] = field(default_factory=dict)  # protocol options from config

    def secrets(self) -> tuple[str, ...]:
        """What must never reach a client or a log: the credentials of this call."""
        key = self.api_key
        return (key,) if key and len(key) >= MIN_SECRET_LENGTH else ()


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
