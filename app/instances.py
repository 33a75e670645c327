"""Provider instances (the dual-mode gateway seed): a named provider with its own
region, endpoint, authentication and metric labels, served at its own paths in
one of two modes.

  transparent  /transparent/{provider}/*  the provider's native API passed through
               untouched, with only the instance's authentication added
               (app/transparent.py)
  protocol     /{protocol}/{instance}/*   a client protocol converted for the pinned
               instance through the IR, routing decision `explicit`

An instance is built into a `BackendConfig` of a provider kind (app/providers), so
it is reached and authorised exactly as a backend of that kind is; what it adds is
where it is served and how it is counted. Instances are not routed to by model
name: only their paths reach them.

Written as `[instances.NAME]` tables in the TOML config, or as the seed's
`configs/provider-instances.yaml` (`instances: {NAME: {...}}`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from app.config import BackendConfig

TRANSPARENT = "transparent"
PROTOCOL = "protocol"
MODES = (TRANSPARENT, PROTOCOL)

# The labels every instance's requests are counted with (the seed's per-instance
# metrics), before the instance's own extra `metrics.labels`.
METRIC_LABELS = ("provider", "mode", "protocol", "region", "instance")


@dataclass(frozen=True, slots=True)
class InstancePath:
    """One `endpoints` entry: a path prefix the instance is served under, and its methods."""
    path: str  # "/transparent/bedrock", "/openai/bedrock_us1": no trailing slash
    methods: tuple[str, ...] = ("GET", "POST")


@dataclass(frozen=True, slots=True)
class Authentication:
    """`authentication`: how the instance's calls are authorised. The secret itself
    (`key` / `token`, by `${ENV}`) lives in the backend it is built into."""
    type: str  # aws_sigv4 | api_key | bearer_token | gcp_oauth2 | none
    header: str | None = None  # api_key: the header it goes in (api-key, x-api-key)
    service: str | None = None  # aws_sigv4: the signing name (bedrock-runtime)
    region: str | None = None  # aws_sigv4: the signing region


@dataclass(frozen=True, slots=True)
class Transformation:
    """`transformation` (protocol mode): the client protocol in and out, the provider
    format in and out; checked at load against what the instance's type speaks."""
    request_from: str
    request_to: str
    response_from: str
    response_to: str
    default_max_tokens: int | None = None  # `options.default_max_tokens`: when the client gives none


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    name: str
    type: str  # the seed's provider type: bedrock, azure, openai, anthropic, vertex, gemini, ibm, ...
    mode: str  # TRANSPARENT | PROTOCOL
    backend: "BackendConfig"  # what it is built into: kind, url, settings, key (named after the instance)
    authentication: Authentication
    endpoints: tuple[InstancePath, ...]
    protocol: str | None = None  # protocol mode: the client protocol it is served in ("openai")
    region: str | None = None
    transformation: Transformation | None = None
    metrics_enabled: bool = True
    extra_labels: Mapping[str, str] = field(default_factory=dict)  # `metrics.labels` beyond METRIC_LABELS

    def metric_labels(self) -> dict[str, str]:
        """The label values its requests are counted with: METRIC_LABELS, then the extra ones."""
        labels = {"provider": self.type, "mode": self.mode, "protocol": self.protocol or "",
                  "region": self.region or "", "instance": self.name}
        labels.update({k: v for k, v in self.extra_labels.items() if k not in labels})
        return labels
