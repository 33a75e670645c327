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

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from app.errors import ErrorKind, ProxyError

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


# ------------------------------------------------------------------ the seed's troubleshooting errors
# One wording for both modes (app/routing.py for protocol mode, app/transparent.py for
# transparent), each in the caller's envelope. None carries a secret: they name instances,
# paths and what is missing.


def no_instance(path: str, served: list[str]) -> ProxyError:
    """404: no instance (nor backend) is served at `path`; `served` lists what is."""
    return ProxyError(ErrorKind.not_found, f"No provider instance configured for this path: {path}"
                      f" (served there: {', '.join(served) or 'none'})", code="instance_not_found")


def wrong_mode(instance: InstanceConfig, called: str) -> ProxyError:
    """400: `instance` called at `called`, a path of the other mode."""
    served = ", ".join(e.path for e in instance.endpoints)
    other = PROTOCOL if instance.mode == TRANSPARENT else TRANSPARENT
    return ProxyError(ErrorKind.invalid_request, f"This endpoint requires {instance.mode} mode: instance "
                      f"'{instance.name}' is served in {instance.mode} mode at {served}; {called} is {other} mode",
                      code="wrong_mode")


def wrong_protocol(instance: InstanceConfig, called: str) -> ProxyError:
    """400: a protocol-mode instance called under another protocol's prefix."""
    served = ", ".join(e.path for e in instance.endpoints)
    return ProxyError(ErrorKind.invalid_request, f"Instance '{instance.name}' speaks the {instance.protocol} "
                      f"protocol: it is served at {served} (not {called})", code="wrong_protocol")


def provider_unavailable(instance: InstanceConfig, err: ProxyError) -> ProxyError:
    """503: the instance's provider cannot be called (no credentials, a variable unset); `err`
    is the provider's configuration error, which names what is missing."""
    return ProxyError(ErrorKind.overloaded, f"Provider {instance.type} not available: {err.message}",
                      code="provider_not_available", backend=instance.name)


def translation_failed(instance: InstanceConfig, reason: str) -> ProxyError:
    """502: the upstream reply could not be converted to the client's protocol."""
    t = instance.transformation
    pair = f" ({t.response_from} -> {t.response_to})" if t is not None else ""
    return ProxyError(ErrorKind.bad_gateway, f"Failed to translate the response of instance "
                      f"'{instance.name}'{pair}: {reason}", code="transformation_failed", backend=instance.name)


# ------------------------------------------------------------------ loading
# The seed's `type` -> the provider kinds (app/providers) an instance of it may be built as,
# the default first; the transformation's request_to (or an explicit `kind`) picks another.
TYPE_KINDS: dict[str, tuple[str, ...]] = {
    "bedrock": ("bedrock_converse",),
    "azure": ("azure_openai", "azure_responses"),
    "openai": ("openai", "openai_responses"),
    "anthropic": ("anthropic",),
    "vertex": ("vertex_gemini", "vertex_anthropic"),
    "gemini": ("gemini",),
    "ibm": ("watsonx",),
    "oracle": ("oci_cohere",),
    "openrouter": ("openrouter",),
    "ollama": ("ollama", "ollama_openai"),
    "runpod": ("runpod", "runpod_openai"),
}

# Provider formats a transformation's request_to / response_from may name -> the wire
# module (app/protocols) that speaks it; the seed's names first, then ours.
PROVIDER_FORMATS: dict[str, str] = {
    "bedrock_converse": "bedrock_converse", "anthropic_messages": "anthropic", "vertex_gemini": "gemini",
    "ibm_generation": "watsonx", "oracle_cohere": "oci", "openai": "openai",
    "openai_chat": "openai", "openai_responses": "openai_responses", "anthropic": "anthropic",
    "vertex_anthropic": "anthropic", "gemini": "gemini", "ibm_chat": "watsonx", "watsonx": "watsonx",
    "ollama": "ollama",
}

# Client protocols a transformation's request_from / response_to may name -> the
# protocol-mode prefix (app/routes.PROTOCOL_MODES) its clients call under.
CLIENT_PROTOCOLS: dict[str, str] = {
    "openai": "openai", "openai_chat": "openai", "openai_responses": "openai",
    "anthropic": "anthropic", "anthropic_messages": "anthropic", "gemini": "gemini",
}

# How each type is authorised: the authentication types it takes, the first its default
# when `authentication` is absent, and where an absent key comes from (its SDK's variable).
AUTH_TYPES: dict[str, tuple[str, ...]] = {
    "bedrock": ("aws_sigv4",), "azure": ("api_key", "bearer_token"), "openai": ("bearer_token",),
    "anthropic": ("api_key",), "vertex": ("gcp_oauth2",), "gemini": ("api_key",), "ibm": ("api_key",),
    "oracle": ("oci_signature",), "openrouter": ("bearer_token",), "ollama": ("none", "bearer_token"),
    "runpod": ("bearer_token",),
}
KEY_ENV: dict[str, str] = {
    "azure": "AZURE_OPENAI_API_KEY", "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY", "ibm": "WATSONX_APIKEY", "openrouter": "OPENROUTER_API_KEY",
    "runpod": "RUNPOD_API_KEY",
}
# The one header each api_key type's provider sends its key in (ibm: none, the key buys IAM tokens).
API_KEY_HEADERS: dict[str, str | None] = {"azure": "api-key", "anthropic": "x-api-key",
                                          "gemini": "x-goog-api-key", "ibm": None}
# The public API of the kinds whose backends must write their url: an instance may leave it out.
DEFAULT_URLS: dict[str, str] = {"openai": "https://api.openai.com/v1", "openai_responses": "https://api.openai.com/v1",
                                "anthropic": "https://api.anthropic.com",
                                "gemini": "https://generativelanguage.googleapis.com",
                                "openrouter": "https://openrouter.ai"}
SIGV4_SERVICES = ("bedrock-runtime", "bedrock")  # the endpoint prefix, or the signing name itself
AWS_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")  # where botocore looks when no region is written

# The seed's keys where the provider kind calls its setting otherwise.
_REGION_SETTING = {"bedrock_converse": "region", "vertex_gemini": "location", "vertex_anthropic": "location",
                   "watsonx": "region", "oci_cohere": "region"}
_PROJECT_SETTING = {"vertex_gemini": "project", "vertex_anthropic": "project", "watsonx": "project_id"}
_INSTANCE_KEYS = {"type", "kind", "mode", "protocol", "region", "base_url", "endpoint", "project_id",
                  "authentication", "endpoints", "transformation", "metrics", "model_mapping"}
# BackendConfig keys an instance may also set, as a backend does.
_BACKEND_KEYS = {"capabilities", "timeout", "connect_timeout", "forward_headers", "passthrough", "options"}
# aws_sigv4's own keys -> the Bedrock settings they are (absent: botocore's credential chain).
_AWS_KEYS = {"access_key_id": "aws_access_key_id", "secret_access_key": "aws_secret_access_key",
             "session_token": "aws_session_token", "profile": "profile"}
_AUTH_KEYS = {"type", "header", "key", "token", "service", "region", *_AWS_KEYS}
_TRANSFORMATION_KEYS = {"request_from", "request_to", "response_from", "response_to", "options"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+\Z")  # one path segment, nothing to percent-decode

# Bedrock model ids under the short names clients use (the seed sends `claude-3-sonnet`): a
# Bedrock instance's model_mapping starts from these, and its own entries win. An id not here
# (a newer model, an inference profile such as `eu.anthropic.…`, an ARN) is sent as the client
# wrote it, or mapped in the instance's model_mapping.
BEDROCK_SHORT_NAMES: dict[str, str] = {
    "claude-3-sonnet": "anthropic.claude-3-sonnet-20240229-v1:0",
    "claude-3-7-sonnet": "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "nova-pro": "amazon.nova-pro-v1:0",
    "nova-lite": "amazon.nova-lite-v1:0",
}


def parse_instances(raw: Any, backends: Mapping[str, "BackendConfig"], problems: list[str]
                    ) -> dict[str, InstanceConfig]:
    """`instances` (a TOML table or the seed's YAML mapping) -> InstanceConfig by name; every
    problem appended as `instances.NAME.key: message`."""
    from app.config import _table
    instances: dict[str, InstanceConfig] = {}
    for name, spec in _table(raw, "instances", problems).items():
        key = f"instances.{name}"
        if not isinstance(name, str) or not _SEGMENT.match(name):
            problems.append(f"{key}: an instance name is one URL path segment (letters, digits, . _ ~ -)")
            continue
        if name in backends:
            problems.append(f"{key}: the name is a backend's too (backends.{name}); an instance needs its own")
            continue
        instance = _instance(name, _table(spec, key, problems), key, problems)
        if instance is not None:
            instances[name] = instance
    claimed: dict[str, str] = {}
    for instance in instances.values():
        for i, endpoint in enumerate(instance.endpoints):
            other = claimed.setdefault(endpoint.path, instance.name)
            if other != instance.name:
                problems.append(f"instances.{instance.name}.endpoints[{i}].path: {endpoint.path} is "
                                f"instances.{other}'s already")
    return instances


def extra_label_names(instances: Mapping[str, InstanceConfig]) -> tuple[str, ...]:
    """The union of the instances' extra metric label names (every instance is counted with all)."""
    return tuple(sorted({name for i in instances.values() for name in i.extra_labels}))


def _instance(name: str, raw: Mapping, key: str, problems: list[str]) -> InstanceConfig | None:
    from app.config import _backend
    from app.providers import KINDS

    typ = raw.get("type")
    if typ not in TYPE_KINDS:
        problems.append(f"{key}.type: " + ("required" if typ is None else f"unknown type {typ!r}")
                        + f" (one of {', '.join(TYPE_KINDS)})")
        return None
    mode = raw.get("mode")
    if mode not in MODES:
        problems.append(f"{key}.mode: " + ("required" if mode is None else f"unknown mode {mode!r}")
                        + f" (one of {', '.join(MODES)})")
        return None
    before = len(problems)
    transformation_raw = raw.get("transformation")
    kind = _kind(typ, raw.get("kind"), transformation_raw, key, problems)
    cls = KINDS.get(kind) if kind else None
    allowed = _INSTANCE_KEYS | _BACKEND_KEYS | set(cls.settings if cls else ())
    _unknown_keys(raw, allowed, key, problems)
    protocol = _protocol(mode, raw.get("protocol"), transformation_raw, key, problems)
    transformation = None
    if transformation_raw is not None:
        if mode == TRANSPARENT:
            problems.append(f"{key}.transformation: a transparent instance passes the provider's API through "
                            "untouched (only protocol mode transforms)")
        elif cls is not None and protocol is not None:
            transformation = _transformation(transformation_raw, protocol, cls, key, problems)
    auth, backend_raw, renames = _authentication(typ, raw.get("authentication"), key, problems)
    backend_raw = {**{k: v for k, v in raw.items() if k in _BACKEND_KEYS or (cls and k in cls.settings)},
                   **backend_raw, "kind": kind}
    region = _region(typ, kind, raw, auth, key, problems)
    written_as_setting = "region" not in raw and auth.region is None and _REGION_SETTING.get(kind, "region") in raw
    if region is not None and kind in _REGION_SETTING and not written_as_setting:
        _setting(backend_raw, _REGION_SETTING[kind], region, "region", key, problems)
    if auth.type == "aws_sigv4" and region is not None:
        auth = Authentication(auth.type, service=auth.service, region=region)
    if "project_id" in raw:
        if kind not in _PROJECT_SETTING:
            problems.append(f"{key}.project_id: {_a(typ)} instance has no project (only vertex and ibm have)")
        else:
            _setting(backend_raw, _PROJECT_SETTING[kind], raw["project_id"], "project_id", key, problems)
            renames[_PROJECT_SETTING[kind]] = "project_id"
    if "base_url" in raw and "endpoint" in raw:
        problems.append(f"{key}.endpoint: give base_url or endpoint, not both (the provider's address)")
    renames["url"] = "base_url"
    for written in ("base_url", "endpoint"):
        if written in raw:
            backend_raw["url"] = raw[written]
            renames["url"] = written
    if "url" not in backend_raw and kind in DEFAULT_URLS:
        backend_raw["url"] = DEFAULT_URLS[kind]
    mapping = _model_mapping(typ, raw.get("model_mapping", {}), key, problems)
    if mapping:
        backend_raw["model_mapping"] = mapping
    endpoints = _endpoints(name, mode, protocol, raw.get("endpoints"), key, problems)
    metrics_enabled, extra = _metrics(raw.get("metrics", {}), key, problems)
    if len(problems) > before or cls is None:
        return None
    backend_problems: list[str] = []
    backend = _backend(name, backend_raw, backend_problems, key=key)
    renames.setdefault("kind", "type")
    problems += [_renamed(p, key, renames) for p in backend_problems]
    if backend is None or backend_problems:
        return None
    instance = InstanceConfig(name=name, type=typ, mode=mode, backend=backend, authentication=auth,
                              endpoints=endpoints, protocol=protocol, region=region, transformation=transformation,
                              metrics_enabled=metrics_enabled, extra_labels=extra)
    _check_labels(instance, raw.get("metrics", {}), key, problems)
    return instance


def _kind(typ: str, kind: Any, transformation: Any, key: str, problems: list[str]) -> str | None:
    kinds = TYPE_KINDS[typ]
    if kind is not None:
        if kind not in kinds:
            problems.append(f"{key}.kind: {_a(typ)} instance is one of {', '.join(kinds)} (got {kind!r})")
            return None
        return kind
    request_to = transformation.get("request_to") if isinstance(transformation, dict) else None
    if request_to is None:
        return kinds[0]
    wire = PROVIDER_FORMATS.get(request_to)
    if wire is None:
        problems.append(f"{key}.transformation.request_to: unknown format {request_to!r} "
                        f"(known: {', '.join(PROVIDER_FORMATS)})")
        return None
    from app.providers import KINDS
    for k in kinds:
        if KINDS[k].wire == wire:
            return k
    problems.append(f"{key}.transformation.request_to: {_a(typ)} instance cannot be called in {request_to} "
                    f"(it speaks {', '.join(sorted({_format_of(KINDS[k].wire) for k in kinds}))})")
    return None


def _format_of(wire: str) -> str:
    """The seed's name for a wire (the first format that names it)."""
    return next(name for name, w in PROVIDER_FORMATS.items() if w == wire)


def _protocol(mode: str, protocol: Any, transformation: Any, key: str, problems: list[str]) -> str | None:
    if mode == TRANSPARENT:
        if protocol is not None:
            problems.append(f"{key}.protocol: a transparent instance is called in its provider's own API "
                            "(only protocol mode has a client protocol)")
        return None
    request_from = transformation.get("request_from") if isinstance(transformation, dict) else None
    if protocol is None and request_from is None:
        problems.append(f"{key}.protocol: required in protocol mode (one of {', '.join(_prefixes())})")
        return None
    if protocol is not None and protocol not in _prefixes():
        problems.append(f"{key}.protocol: unknown protocol {protocol!r} (one of {', '.join(_prefixes())})")
        return None
    return protocol if protocol is not None else CLIENT_PROTOCOLS.get(request_from)


def _prefixes() -> tuple[str, ...]:
    from app.routes import PROTOCOL_MODES
    return tuple(PROTOCOL_MODES)


def _transformation(raw: Any, protocol: str, cls, key: str, problems: list[str]) -> Transformation | None:
    from app.config import _table
    key = f"{key}.transformation"
    raw = _table(raw, key, problems)
    _unknown_keys(raw, _TRANSFORMATION_KEYS, key, problems)
    before = len(problems)
    request_from = raw.get("request_from", protocol)
    request_to = raw.get("request_to", _format_of(cls.wire))
    for name, value, known in (("request_from", request_from, CLIENT_PROTOCOLS),
                               ("response_to", raw.get("response_to", request_from), CLIENT_PROTOCOLS),
                               ("response_from", raw.get("response_from", request_to), PROVIDER_FORMATS)):
        if value not in known:
            problems.append(f"{key}.{name}: unknown {'protocol' if known is CLIENT_PROTOCOLS else 'format'} "
                            f"{value!r} (known: {', '.join(known)})")
    if len(problems) > before:
        return None
    response_to, response_from = raw.get("response_to", request_from), raw.get("response_from", request_to)
    if CLIENT_PROTOCOLS[request_from] != protocol:
        problems.append(f"{key}.request_from: {request_from!r} is not the instance's protocol ({protocol}): "
                        f"its clients call under /{protocol}/")
    if CLIENT_PROTOCOLS[response_to] != CLIENT_PROTOCOLS[request_from]:
        problems.append(f"{key}.response_to: a client reads replies in the protocol it sent "
                        f"(request_from {request_from!r}), not {response_to!r}")
    if PROVIDER_FORMATS[response_from] != PROVIDER_FORMATS[request_to]:
        problems.append(f"{key}.response_from: a provider answers in the format it is called in "
                        f"(request_to {request_to!r}), not {response_from!r}")
    default_max_tokens = None
    options = _table(raw.get("options", {}), f"{key}.options", problems)
    _unknown_keys(options, {"default_max_tokens"}, f"{key}.options", problems)
    if "default_max_tokens" in options:
        value = options["default_max_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key}.options.default_max_tokens: must be a positive integer")
        else:
            default_max_tokens = value
    if len(problems) > before:
        return None
    return Transformation(request_from, request_to, response_from, response_to, default_max_tokens)


def _authentication(typ: str, raw: Any, key: str, problems: list[str]
                    ) -> tuple[Authentication, dict[str, Any], dict[str, str]]:
    """(the Authentication, the backend keys it sets, backend key -> the key as written)."""
    from app.config import _table
    types = AUTH_TYPES[typ]
    if raw is None:  # the type's usual: its SDK's variable, credential chain or default file
        auth_type = types[0]
        backend: dict[str, Any] = {}
        if auth_type in ("api_key", "bearer_token") and typ in KEY_ENV:
            backend["api_key_env"] = KEY_ENV[typ]
        header = API_KEY_HEADERS.get(typ) if auth_type == "api_key" else None
        service = SIGV4_SERVICES[0] if auth_type == "aws_sigv4" else None
        return Authentication(auth_type, header=header, service=service), backend, {}
    where = f"{key}.authentication"
    raw = _table(raw, where, problems)
    _unknown_keys(raw, _AUTH_KEYS, where, problems)
    auth_type = raw.get("type")
    if auth_type not in types:
        shown = "required" if auth_type is None else f"{_a(typ)} instance is not authorised by {auth_type!r}"
        problems.append(f"{where}.type: {shown} (it takes {', '.join(types)})")
        return Authentication(str(auth_type)), {}, {}
    fits = {"api_key": {"type", "header", "key"}, "bearer_token": {"type", "token"},
            "gcp_oauth2": {"type", "token"}, "aws_sigv4": {"type", "service", "region", *_AWS_KEYS},
            "oci_signature": {"type"}, "none": {"type"}}[auth_type]
    for k in raw:
        if k in _AUTH_KEYS and k not in fits:
            problems.append(f"{where}.{k}: {auth_type} has no {k} (its keys: {', '.join(sorted(fits))})")
    backend, renames = {}, {}
    header = None
    if auth_type == "api_key":
        usual = API_KEY_HEADERS[typ]
        header = raw.get("header", usual)
        if header is not None and (usual is None or not isinstance(header, str) or header.lower() != usual):
            reads = f"sends its key in {usual}" if usual else "exchanges its key for IAM tokens (no header)"
            problems.append(f"{where}.header: {_a(typ)} instance {reads}, not {header!r}")
        backend["api_key"] = raw["key"] if "key" in raw else None
        renames["api_key"] = "authentication.key"
    elif auth_type in ("bearer_token", "gcp_oauth2"):
        if "token" in raw:
            target = "access_token" if auth_type == "gcp_oauth2" else "api_key"
            backend[target] = raw["token"]
            renames[target] = "authentication.token"
        if auth_type == "bearer_token" and typ == "azure":
            backend["auth"] = "bearer"
    elif auth_type == "aws_sigv4":
        for written, setting in _AWS_KEYS.items():
            if written in raw:
                backend[setting] = raw[written]
                renames[setting] = f"authentication.{written}"
    if backend.get("api_key", "") is None:
        if typ in KEY_ENV:
            backend["api_key_env"] = KEY_ENV[typ]
        del backend["api_key"]
    elif auth_type == "bearer_token" and "api_key" not in backend and typ in KEY_ENV:
        backend["api_key_env"] = KEY_ENV[typ]
    service = raw.get("service", SIGV4_SERVICES[0]) if auth_type == "aws_sigv4" else None
    if service is not None and service not in SIGV4_SERVICES:
        problems.append(f"{where}.service: Bedrock Runtime is signed as {SIGV4_SERVICES[1]} "
                        f"({' or '.join(SIGV4_SERVICES)}), not {service!r}")
    return Authentication(auth_type, header=header.lower() if isinstance(header, str) else None,
                          service=service, region=raw.get("region")), backend, renames


def _region(typ: str, kind: str | None, raw: Mapping, auth: Authentication, key: str,
            problems: list[str]) -> str | None:
    from app.config import _interpolate
    region = raw.get("region")
    if region is not None and not isinstance(region, str):
        problems.append(f"{key}.region: must be a string")
        return None
    if region is not None:
        region = _interpolate(region, problems, f"{key}.region")
    if auth.region is not None:
        signed = _interpolate(auth.region, problems, f"{key}.authentication.region") \
            if isinstance(auth.region, str) else None
        if region is not None and signed != region:
            problems.append(f"{key}.authentication.region: {signed!r} is not the instance's region {region!r} "
                            "(a request is signed for the region it goes to)")
        region = region or signed
    if region is None and typ == "bedrock":
        region = next((os.environ[v] for v in AWS_REGION_ENV if os.environ.get(v)), None)
        if region is None:
            problems.append(f"{key}.region: required for a bedrock instance (or {' / '.join(AWS_REGION_ENV)} "
                            "in the environment)")
    if region is None and kind in ("vertex_gemini", "vertex_anthropic") and isinstance(raw.get("location"), str):
        # Written as the kind's own `location` setting (the backend loader reads it there): it is
        # still the instance's region, for its metric labels.
        return _interpolate(raw["location"], [], f"{key}.location")
    if region is None and kind in ("vertex_gemini", "vertex_anthropic"):
        problems.append(f"{key}.region: required for a vertex instance (its location: us-central1, europe-west4, "
                        "global, ...)")
    return region


def _setting(backend_raw: dict, setting: str, value: Any, written: str, key: str, problems: list[str]) -> None:
    if setting in backend_raw and setting != written:
        problems.append(f"{key}.{setting}: give {written} or {setting}, not both")
    backend_raw[setting] = value


def _model_mapping(typ: str, raw: Any, key: str, problems: list[str]) -> dict[str, Any]:
    from app.config import _table
    own = dict(_table(raw, f"{key}.model_mapping", problems))
    return {**BEDROCK_SHORT_NAMES, **own} if typ == "bedrock" else own


def _endpoints(name: str, mode: str, protocol: str | None, raw: Any, key: str, problems: list[str]
               ) -> tuple[InstancePath, ...]:
    prefix = "transparent" if mode == TRANSPARENT else protocol
    if raw is None:  # served under its name
        return (InstancePath(f"/{prefix}/{name}", ("POST",) if mode == PROTOCOL else ("GET", "POST")),)
    if not isinstance(raw, list) or not raw:
        problems.append(f"{key}.endpoints: must be a list of paths ({{path, methods}} or \"/{prefix}/NAME\")")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"{key}.endpoints[{i}]"
        if isinstance(item, str):
            path, methods = item, ["GET", "POST"]
        elif isinstance(item, dict):
            _unknown_keys(item, {"path", "methods"}, where, problems)
            path, methods = item.get("path"), item.get("methods", ["GET", "POST"])
            where += ".path"
        else:
            problems.append(f"{where}: must be a path or a table with path and methods")
            continue
        if not isinstance(path, str):
            problems.append(f"{where}: required (a path such as /{prefix}/{name})")
            continue
        path = path.rstrip("/")
        head, _, segment = path.removeprefix("/").partition("/")
        if prefix is None:
            continue  # the protocol is missing: reported already
        if not path.startswith("/") or head != prefix or not _SEGMENT.match(segment):
            problems.append(f"{where}: a {mode}-mode endpoint is /{prefix}/ and one path segment "
                            f"(/{prefix}/{name}), not {path!r}")
            continue
        if not isinstance(methods, list) or not methods or any(m not in METHODS for m in methods):
            problems.append(f"{key}.endpoints[{i}].methods: must be a list of HTTP methods ({', '.join(METHODS)})")
            continue
        if mode == PROTOCOL and "POST" not in methods:
            problems.append(f"{key}.endpoints[{i}].methods: a protocol-mode endpoint serves generation by POST")
            continue
        out.append(InstancePath(path, tuple(dict.fromkeys(methods))))
    return tuple(out)


def _metrics(raw: Any, key: str, problems: list[str]) -> tuple[bool, dict[str, str]]:
    from app.config import _interpolate, _table
    raw = _table(raw, f"{key}.metrics", problems)
    _unknown_keys(raw, {"enabled", "labels"}, f"{key}.metrics", problems)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{key}.metrics.enabled: must be true or false")
        enabled = True
    extra: dict[str, str] = {}
    for name, value in _table(raw.get("labels", {}), f"{key}.metrics.labels", problems).items():
        where = f"{key}.metrics.labels.{name}"
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            problems.append(f"{where}: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…)")
        elif name in ("method", "status"):
            problems.append(f"{where}: {name} is the request's own label")
        elif not isinstance(value, str):
            problems.append(f"{where}: must be a string")
        elif name not in METRIC_LABELS:
            extra[name] = _interpolate(value, problems, where)
    return enabled, extra


def _check_labels(instance: InstanceConfig, raw: Any, key: str, problems: list[str]) -> None:
    """The seed writes the built-in labels out too (`provider: bedrock`): they must say what the
    instance is, or the counter would lie."""
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, dict):
        return
    actual = instance.metric_labels()
    for name in METRIC_LABELS:
        if name in labels and isinstance(labels[name], str) and labels[name] != actual[name]:
            problems.append(f"{key}.metrics.labels.{name}: {labels[name]!r} is not the instance's "
                            f"{name} ({actual[name]!r}); the built-in labels come from the instance")


def _unknown_keys(raw: Mapping, allowed: set[str], key: str, problems: list[str]) -> None:
    for k in raw:
        if k not in allowed:
            problems.append(f"{key}.{k}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _renamed(problem: str, key: str, renames: Mapping[str, str]) -> str:
    """A problem the backend loader named by its key, named by the instance key as written."""
    for backend_key, written in renames.items():
        old = f"{key}.{backend_key}"
        if problem.startswith(old) and problem[len(old):len(old) + 1] in (":", "."):
            return f"{key}.{written}" + problem[len(old):]
    return problem


def _a(typ: str) -> str:
    """"a bedrock", "an anthropic": the article the type's name takes."""
    return ("an " if typ[0] in "aeiou" else "a ") + typ
