"""Model name + needed capabilities (+ a pinned instance) -> Route, with the reason.

Order (each decision is labelled for logs and metrics):
  explicit       a protocol-mode path pinned the backend
  model_mapping  the model is in the registry or a backend's model_mapping
  capability     a `catch_all` backend with the needed capabilities, highest priority first
  auto           the same, for a catch_all backend that declares no capabilities
  default        the default provider: server.default_provider (or --backend), unless an admin
                 switched it at runtime (app/default_provider.py, read only by requests that get here)
  failed         nothing fits: the client's not-found error, listing what it can ask for

Tables are built once per config; `route()` is dictionary lookups.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from app.config import BackendConfig, Config, ModelEntry
from app.instances import PROTOCOL, TRANSPARENT, InstanceConfig, InstancePath, no_instance, wrong_mode, wrong_protocol
from app.default_provider import DefaultProvider
from app.errors import ErrorKind, ProxyError
from app.logfields import log_field
from app.protocols.base import ModelInfo
from app.state import LazyStore

log = logging.getLogger("interchange.routing")


@dataclass(frozen=True, slots=True)
class Route:
    backend: BackendConfig
    upstream_model: str
    reason: str
    entry: ModelEntry | None = None  # registry defaults, when the name came from the registry
    instance: InstanceConfig | None = None  # the provider instance a protocol-mode path pinned


@dataclass(frozen=True, slots=True)
class _Candidate:
    backend: BackendConfig
    upstream_model: str
    entry: ModelEntry | None = None


@dataclass
class Router:
    config: Config
    default_backend: str | None = None  # the configured default provider (overrides the config's)
    state: LazyStore | None = None  # where a runtime switch of the default is kept; None: no switch
    defaults: DefaultProvider | None = field(default=None, init=False)
    _by_model: dict[str, list[_Candidate]] = field(default_factory=dict, init=False)
    _catch_all: list[BackendConfig] = field(default_factory=list, init=False)
    _endpoints: dict[str, InstanceConfig] = field(default_factory=dict, init=False)  # "/openai/x" -> instance

    def __post_init__(self) -> None:
        backends = self.config.backends
        for entry in self.config.models.values():
            self._by_model.setdefault(entry.name, []).append(
                _Candidate(backends[entry.backend], entry.upstream_model, entry))
        for b in sorted(backends.values(), key=lambda b: -b.priority):
            for client_name, provider_id in b.model_mapping.items():
                self._by_model.setdefault(client_name, []).append(_Candidate(b, provider_id))
        self._catch_all = [b for b in sorted(backends.values(), key=lambda b: -b.priority) if b.catch_all]
        self._endpoints = {e.path: i for i in self.config.instances.values() for e in i.endpoints}
        self._transparent = sorted(((e, i) for i in self.config.instances.values() if i.mode == TRANSPARENT
                                    for e in i.endpoints), key=lambda pair: -len(pair[0].path))
        if self.default_backend is None:
            self.default_backend = self.config.server.default_provider
        if self.default_backend is not None and self.default_backend not in backends:
            raise ValueError(f"default backend '{self.default_backend}' is not defined "
                             f"(defined: {', '.join(sorted(backends))})")
        if self.state is not None:
            self.defaults = DefaultProvider(backends, self.default_backend, self.state)

    def route(self, model: str, needs: frozenset[str], pinned: str | None = None,
              prefix: str | None = None) -> Route:
        """Pick the backend for `model`; raises ProxyError (not_found / invalid_request) when none fits.
        `pinned`: the path segment after a protocol-mode `prefix` (see `pin`)."""
        route = self._decide(model, needs, pinned, prefix)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("route model=%s backend=%s upstream_model=%s reason=%s",
                      log_field(model), route.backend.name, log_field(route.upstream_model), route.reason)
        return route

    def pin(self, segment: str, prefix: str | None = None) -> tuple[BackendConfig, InstanceConfig | None]:
        """What `/{prefix}/{segment}/…` pins: the instance whose endpoint that is, else the instance
        named `segment`, else the backend so named. Raises the client's 404 when nothing is there,
        a 400 for an instance of the other mode or of another protocol."""
        called = f"/{prefix}/{segment}" if prefix is not None else segment
        instance = self._endpoints.get(called) if prefix is not None else None
        if instance is None:
            instance = self.config.instances.get(segment)
            if instance is not None and instance.mode != PROTOCOL:
                raise wrong_mode(instance, called)
            if instance is not None and prefix is not None and instance.protocol != prefix:
                raise wrong_protocol(instance, called)
        if instance is not None:
            return instance.backend, instance
        backend = self.config.backends.get(segment)
        if backend is None:
            under = [p for p in self._endpoints if prefix is not None and p.startswith(f"/{prefix}/")]
            backends = [f"/{prefix}/{b}" if prefix else b for b in self.config.backends]
            raise no_instance(log_field(called), list(dict.fromkeys(under + backends)))
        return backend, None

    def route_transparent(self, path: str) -> tuple[InstancePath, InstanceConfig] | None:
        """The transparent instance a raw request path is at or under (the longest endpoint path
        wins), with that endpoint; None when no transparent instance serves it. The decision is
        `explicit` (the URL names the instance), logged as every routing decision is."""
        for endpoint, instance in self._transparent:
            if path == endpoint.path or path.startswith(endpoint.path + "/"):
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("route transparent path=%s instance=%s reason=explicit", log_field(path), instance.name)
                return endpoint, instance
        return None

    def _decide(self, model: str, needs: frozenset[str], pinned: str | None, prefix: str | None) -> Route:
        if pinned is not None:
            backend, instance = self.pin(pinned, prefix)
            if instance is not None:  # not in the model tables: only its own mapping
                return Route(backend, backend.model_mapping.get(model, model), "explicit", instance=instance)
            mapped = next((c for c in self._by_model.get(model, ()) if c.backend is backend), None)
            return Route(backend, mapped.upstream_model if mapped else model, "explicit",
                         mapped.entry if mapped else None)
        candidates = self._by_model.get(model)
        if candidates:
            for c in candidates:
                caps = c.entry.capabilities if c.entry and c.entry.capabilities else None
                if c.backend.has(needs) and (caps is None or needs <= caps):
                    return Route(c.backend, c.upstream_model, "model_mapping", c.entry)
            have = candidates[0].entry.capabilities if candidates[0].entry and candidates[0].entry.capabilities \
                else candidates[0].backend.capabilities
            missing = sorted(needs - have) if have else []
            log.info("route model=%s reason=failed missing=%s", log_field(model), ",".join(missing))
            raise ProxyError(ErrorKind.invalid_request,
                             f"The model `{log_field(model)}` does not support {', '.join(missing) or 'this request'}"
                             f" (backend '{candidates[0].backend.name}').",
                             param="model", code="unsupported_capability")
        for b in self._catch_all:
            if b.has(needs):
                return Route(b, model, "capability" if b.capabilities else "auto")
        default = self.defaults.current() if self.defaults is not None else self.default_backend
        if default is not None:
            b = self.config.backends[default]
            if b.has(needs):
                return Route(b, model, "default")
        raise self._failed(model)

    def unknown_at_default(self, model: str, backend: str, answer: str) -> ProxyError:
        """The client's not-found, as `failed` gives it, for a model the default provider
        (`backend`) did not know either: its answer quoted, what the client can ask for listed."""
        return self._not_found(model, f"Model '{log_field(model)}' is not configured, and the default provider "
                                      f"'{backend}' does not know it ({answer.rstrip('.')})")

    def _failed(self, model: str, why: str | None = None) -> ProxyError:
        log.info("route model=%s reason=failed", log_field(model))
        return self._not_found(model, why)

    def _not_found(self, model: str, why: str | None = None) -> ProxyError:
        names = ", ".join(m.id for m in self.models())
        # The multi-backend router's wording (seed 002), which its clients match on.
        what = why or f"Model '{log_field(model)}' is not configured"
        message = f"{what}. Available models: {names or 'none'}"
        return ProxyError(ErrorKind.not_found, message, param="model", code="model_not_found")

    def models(self) -> list[ModelInfo]:
        """Every client-facing model name, for the models-list endpoints: the registry's
        in its file's order, then the backends' model_mapping names."""
        return [ModelInfo(id=name, backend=cands[0].backend.name, protocol=cands[0].backend.protocol)
                for name, cands in self._by_model.items()]

    def backend_named(self, name: str) -> BackendConfig | None:
        return self.config.backends.get(name)

