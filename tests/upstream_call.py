"""A wire module's body placed by its provider, as the pipeline does it: for
tests that specify the whole upstream call (URL, headers, body bytes) a
backend of one kind sends for an IR request."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Mapping

from app import ir
from app.config import BackendConfig
from app.protocols import protocol_name
from app.protocols.base import Target, UpstreamRequest
from app.providers import provider_class
from app.providers.base import COUNT_TOKENS, GENERATE, Call


@dataclass(frozen=True)
class Upstream:
    """A backend in a test: where it is, its key, and the Target the wire module sees."""
    backend: str
    base_url: str
    model: str
    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # client headers it forwards
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = None  # default: the wire's own provider

    @property
    def target(self) -> Target:
        return Target(backend=self.backend, model=self.model, options=self.options)


def built(module: ModuleType, req: ir.Request, up: Upstream, *, passthrough: bool = False,
          action: str = GENERATE) -> UpstreamRequest:
    """The upstream request the pipeline would send for `req` on `up`."""
    wire = protocol_name(module)
    if action == COUNT_TOKENS:
        body = module.count_tokens_body(req, up.target)
    elif passthrough:
        body = module.passthrough_body(req, up.target)
    else:
        body = module.build_body(req, up.target)
    backend = BackendConfig(name=up.backend, protocol=wire, kind=up.kind or wire, url=up.base_url,
                            api_key=up.api_key, options=up.options)
    provider = provider_class(backend.kind)(backend)
    return provider.prepare(Call(model=up.model, body=body, stream=req.stream, action=action, headers=up.headers))
