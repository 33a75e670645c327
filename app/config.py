"""Configuration: TOML (or the multi-backend router's YAML) into frozen dataclasses.

Loaded once at start-up; the request path only reads the resulting objects.
Every problem is reported with the exact key it concerns
(`backends.openai.protocol: ...`), so `interchange check-config` can list them all.

API keys are resolved at request time, not at load: a backend whose key is
missing must not keep the others from serving, and the client gets a clear
`configuration_error` naming the variable.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from app.base_url import BaseUrlError
from app.providers import KINDS, provider_class
from app.errors import ErrorKind, ProxyError, redact_url

if TYPE_CHECKING:
    from app.instances import InstanceConfig

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
CAPABILITIES = ("text", "tools", "streaming", "vision", "thinking", "json")

_SERVER_KEYS = {"host", "port", "default_backend", "max_body_bytes", "log_level", "models_file", "head_timeout",
                "keepalive_timeout"}
_BACKEND_KEYS = {"kind", "protocol", "url", "api_key", "api_key_env", "capabilities", "priority", "timeout",
                 "connect_timeout", "model_mapping", "forward_headers", "passthrough", "catch_all", "options"}
_MODEL_KEYS = {"backend", "api_model", "max_tokens", "reasoning_effort", "temperature", "capabilities",
               "deployment_name", "summary_level", "verbosity_level", "truncation_strategy"}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# The multi-backend router's per-model Responses options (seed 002): only the
# Responses wire can say them, so a model on another wire is refused at load.
_RESPONSES_ONLY = {"summary_level": ("auto", "detailed", "concise"), "verbosity_level": ("low", "medium", "high"),
                   "truncation_strategy": ("auto", "disabled")}
_DEPLOYMENT_KINDS = ("azure_openai", "azure_responses")  # kinds whose model id is an Azure deployment
ANTHROPIC_DEFAULT_MAX_TOKENS = 8192  # the router's default for a registry model on the Anthropic wire

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config file is invalid; `problems` lists every `key: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9001
    default_backend: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    log_level: str = "info"
    head_timeout: float = 10.0  # seconds from a request's first byte to the end of its head (slowloris)
    keepalive_timeout: float = 60.0  # seconds an idle kept-alive client connection stays open


@dataclass(frozen=True, slots=True)
class StateConfig:
    """`[state]`: the store shared by every worker (app/state.py). `url` (redis://host:port/db)
    selects Redis; otherwise SQLite at `path` (default: app.state.default_path())."""
    url: str | None = None
    path: str | None = None
    ttl_seconds: float = 30 * 24 * 3600.0  # as long as OpenAI keeps a stored response
    max_entries: int = 100_000  # per namespace; the oldest-written go first


@dataclass(frozen=True, slots=True)
class BackendConfig:
    name: str
    protocol: str  # the wire protocol it speaks (app/protocols), from its kind
    url: str  # the base its provider's paths extend (app/base_url.py), however it was written; "" = derived
    kind: str = ""  # the provider kind (app/providers): how it is reached and authorised; default: protocol
    notes: tuple[str, ...] = ()  # `key: note` where the loader read something other than written (check-config)
    api_key: str | None = field(default=None, repr=False)  # literal, may hold ${ENV} references
    api_key_env: str | None = None
    capabilities: frozenset[str] = frozenset()  # empty: declares none ("auto")
    priority: int = 0
    timeout: float = 120.0  # seconds between bytes from upstream
    connect_timeout: float = 10.0
    model_mapping: Mapping[str, str] = field(default_factory=dict)  # client name -> provider id
    forward_headers: tuple[str, ...] = ()  # client headers passed upstream (allowlist)
    passthrough: bool = True  # same-protocol clients: send their body on unchanged
    catch_all: bool = False  # may serve model names nobody maps (capability routing)
    options: Mapping[str, Any] = field(default_factory=dict)  # protocol-specific
    settings: Mapping[str, Any] = field(default_factory=dict)  # the provider kind's own keys (region, project, ...)
    missing_env: str | None = None  # built from the environment (app/env_config.py) without this variable
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    _key_problem: str | None = field(default=None, init=False, repr=False, compare=False)

    def has(self, needs: frozenset[str]) -> bool:
        """True when this backend can serve a request needing `needs` (none declared: anything)."""
        return not self.capabilities or needs <= self.capabilities

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.protocol)
        # Resolve the key once at load; a missing one is kept as the message to
        # raise per request, so the other backends still serve.
        key, problem = None, None
        if self.missing_env:
            problem = f"{self.missing_env} not set in environment"
        elif self.api_key_env:
            key = os.environ.get(self.api_key_env) or None
            if key is None:
                problem = f"{self.api_key_env} not set in environment"  # the router seed's wording
        elif self.api_key is None:
            problem = f"backend '{self.name}' has no api_key or api_key_env configured"
        else:
            missing: list[str] = []
            key = _interpolate(self.api_key, missing)
            if missing:
                key, problem = None, f"{missing[0]} not set in environment"
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_key_problem", problem)

    def resolved_key(self) -> str | None:
        """The key, or None when it is missing (never raises: for redaction)."""
        return self._key

    def resolve_api_key(self) -> str:
        """The key to send upstream; raises a configuration ProxyError naming what is missing."""
        if self._key is None:
            raise ProxyError(ErrorKind.configuration, self._key_problem, code="configuration_error")
        return self._key


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model-registry entry: a client-facing name bound to one backend's model."""
    name: str
    backend: str
    api_model: str
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    temperature: float | None = None
    capabilities: frozenset[str] | None = None  # narrows the backend's, when given
    deployment_name: str | None = None  # Azure: the deployment called (default: api_model)
    summary_level: str | None = None  # Responses reasoning.summary (auto|detailed|concise)
    # The wire options this model sets for its backend's writer (Responses
    # `verbosity`, `truncation`), merged over the backend's `options`.
    wire_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def upstream_model(self) -> str:
        """The provider model id requests go to: the Azure deployment when one is named."""
        return self.deployment_name or self.api_model


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    backends: Mapping[str, BackendConfig]
    models: Mapping[str, ModelEntry]
    source: str = ""
    state: StateConfig = StateConfig()
    instances: Mapping[str, "InstanceConfig"] = field(default_factory=dict)


# ------------------------------------------------------------------ loading


def load_config(path: str | os.PathLike) -> Config:
    """Load and validate a config file; raises ConfigError listing every problem."""
    config, problems = _load(Path(path))
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def check_config_file(path: str | os.PathLike) -> list[str]:
    """Every problem in a config file, `key: message` each, including API keys that
    would be missing at request time."""
    return check_config(path)[1]


def check_config(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(notes, problems): what the loader understood differently from what was written
    (a backend url normalised to its base), and every problem, `key: message` each."""
    config, problems = _load(Path(path))
    notes: list[str] = []
    if config is not None:
        for b in config.backends.values():
            notes += b.notes
            cls = provider_class(b.kind)
            try:
                cls(b)  # what the app builds at start-up: a kind's own settings rules (watsonx's ids)
            except ValueError as e:
                problems.append(f"backends.{b.name}: {e}")
                continue
            if not cls.uses_api_key or (cls.api_key_optional and b.api_key is None and b.api_key_env is None):
                continue
            try:
                b.resolve_api_key()
            except ProxyError as e:
                key = f"backends.{b.name}.api_key_env" if b.api_key_env else f"backends.{b.name}.api_key"
                problems.append(f"{key}: {e.message}")
    return notes, problems


def _load(path: Path) -> tuple[Config | None, list[str]]:
    try:
        text = path.read_text()
    except OSError as e:
        return None, [f"{path}: cannot read ({e.strerror})"]
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        return None, [f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: {e}"]
    if not isinstance(data, dict):
        return None, [f"{path}: the top level must be a table"]
    problems: list[str] = []
    config = _build(data, path, problems)
    return config, problems


def _build(data: dict, path: Path, problems: list[str]) -> Config:
    _unknown(data, {"server", "backends", "models", "state"}, "", problems)
    server = _server(_table(data.get("server", {}), "server", problems), problems)
    state = _state(_table(data.get("state", {}), "state", problems), problems)
    backends: dict[str, BackendConfig] = {}
    for name, raw in _table(data.get("backends", {}), "backends", problems).items():
        b = _backend(name, _table(raw, f"backends.{name}", problems), problems)
        if b is not None:
            backends[name] = b
    models_raw = dict(_table(data.get("models", {}), "models", problems))
    models_file = _table(data.get("server", {}), "server", []).get("models_file")
    if isinstance(models_file, str):
        extra = _models_yaml(path.parent / _interpolate(models_file, []), problems)
        for k, v in extra.items():
            models_raw.setdefault(k, v)
    models: dict[str, ModelEntry] = {}
    for name, raw in models_raw.items():
        m = _model(name, _table(raw, f"models.{name}", problems), backends, problems)
        if m is not None:
            models[name] = m
    if server.default_backend and server.default_backend not in backends:
        problems.append(f"server.default_backend: unknown backend '{server.default_backend}'"
                        f" (defined: {', '.join(sorted(backends)) or 'none'})")
    if not backends:
        problems.append("backends: at least one backend is required")
    return Config(server=server, backends=backends, models=models, source=str(path), state=state)


def _models_yaml(path: Path, problems: list[str], key: str = "server.models_file") -> dict:
    """The multi-backend router's `models.yaml`: `models: {name: {backend, api_model, ...}}`."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        problems.append(f"{key}: cannot read {path} ({e.strerror})")
        return {}
    except yaml.YAMLError as e:
        problems.append(f"{key}: {path} is not valid YAML: {e}")
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        problems.append(f"{key}: {path} has no 'models' mapping")
        return {}
    return models


def _server(raw: Mapping, problems: list[str]) -> ServerConfig:
    _unknown(raw, _SERVER_KEYS, "server", problems)
    kw: dict[str, Any] = {}
    for key, typ in (("host", str), ("port", int), ("default_backend", str), ("max_body_bytes", int),
                     ("log_level", str)):
        if key in raw:
            v = _typed(raw[key], typ, f"server.{key}", problems)
            if v is not None:
                kw[key] = _interpolate(v, problems, f"server.{key}") if isinstance(v, str) else v
    for key in ("head_timeout", "keepalive_timeout"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                problems.append(f"server.{key}: must be a positive number (seconds)")
            else:
                kw[key] = float(v)
    if "port" in kw and not 0 <= kw["port"] <= 65535:
        problems.append(f"server.port: {kw['port']} is not a TCP port")
        del kw["port"]
    return ServerConfig(**kw)


def _state(raw: Mapping, problems: list[str]) -> StateConfig:
    _unknown(raw, {"url", "path", "ttl_seconds", "max_entries"}, "state", problems)
    kw: dict[str, Any] = {}
    for key in ("url", "path"):
        if key in raw:
            v = _typed(raw[key], str, f"state.{key}", problems)
            if v is not None:
                kw[key] = _interpolate(v, problems, f"state.{key}")
    url = kw.get("url")
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("state.url: must be a redis://host:port/db, rediss:// or unix:// URL")
    if url and kw.get("path"):
        problems.append("state.path: cannot be set together with state.url (one store: Redis or SQLite)")
    if "ttl_seconds" in raw:
        v = raw["ttl_seconds"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            problems.append("state.ttl_seconds: must be a positive number (seconds)")
        else:
            kw["ttl_seconds"] = float(v)
    if "max_entries" in raw:
        v = raw["max_entries"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            problems.append("state.max_entries: must be a positive integer")
        else:
            kw["max_entries"] = v
    return StateConfig(**kw)


def _backend(name: str, raw: Mapping, problems: list[str]) -> BackendConfig | None:
    key = f"backends.{name}"
    ok = True
    kind = raw.get("kind", raw.get("protocol"))
    if "kind" in raw and "protocol" in raw and raw["kind"] != raw["protocol"]:
        problems.append(f"{key}.protocol: give kind (or the older protocol), not both")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    written = "protocol" if "kind" not in raw and "protocol" in raw else "kind"  # name the key as written
    if kind is None:
        problems.append(f"{key}.kind: required (one of {', '.join(KINDS)})")
        ok = False
    elif cls is None:
        problems.append(f"{key}.{written}: unknown {written} {kind!r} (known: {', '.join(KINDS)})")
        ok = False
    _unknown(raw, _BACKEND_KEYS | set(cls.settings if cls else ()), key, problems)
    protocol = cls.wire if cls else None
    settings = _settings(cls, raw, key, problems) if cls else {}
    url, notes = raw.get("url"), []
    if url is None and cls is not None and not cls.url_required:
        url = ""
    elif not isinstance(url, str) or not url:
        problems.append(f"{key}.url: required (the provider's base URL)")
        ok = False
    else:
        url = _interpolate(url, problems, f"{key}.url").rstrip("/")
        if not url.startswith(("http://", "https://")):
            problems.append(f"{key}.url: must start with http:// or https:// (got {redact_url(url)!r})")
            ok = False
        elif "@" in url.partition("://")[2].partition("/")[0].partition("?")[0]:
            # user:password in the URL is never sent (keys go in api_key) and must not be echoed
            problems.append(f"{key}.url: must not contain user:password@ (give the key as api_key or api_key_env)")
            ok = False
        elif cls is not None:
            try:
                understood = cls.base_url(url)
            except BaseUrlError as e:
                problems.append(f"{key}.url: {e}")
                ok = False
            else:
                url = understood.base
                if understood.note:
                    notes.append(f"{key}.url: {understood.note}")
    if cls is not None and not cls.uses_api_key:
        for k in ("api_key", "api_key_env"):
            if k in raw:
                problems.append(f"{key}.{k}: a {kind} backend is not authorised by an API key "
                                f"(its keys: {', '.join(cls.settings)})")
    if "api_key" in raw and "api_key_env" in raw:
        problems.append(f"{key}.api_key: give api_key or api_key_env, not both")
    api_key = _typed(raw.get("api_key"), str, f"{key}.api_key", problems)
    api_key_env = _typed(raw.get("api_key_env"), str, f"{key}.api_key_env", problems)
    if "api_key" not in raw and "api_key_env" not in raw and kind in DEFAULT_KEY_ENV:
        # As the provider's own SDK does: with no key configured, its usual variable.
        api_key_env = DEFAULT_KEY_ENV[kind]
        notes.append(f"{key}.api_key_env: not given; {api_key_env} is read (the provider SDK's usual variable)")
    caps = _capabilities(raw.get("capabilities", []), f"{key}.capabilities", problems)
    mapping_raw = _table(raw.get("model_mapping", {}), f"{key}.model_mapping", problems)
    mapping: dict[str, str] = {}
    for client_name, provider_id in mapping_raw.items():
        if isinstance(provider_id, str) and provider_id:
            mapping[client_name] = provider_id
        else:
            problems.append(f"{key}.model_mapping.{client_name}: must be a non-empty string (the provider's model id)")
    headers = raw.get("forward_headers", [])
    if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        problems.append(f"{key}.forward_headers: must be a list of header names")
        headers = []
    options = _table(raw.get("options", {}), f"{key}.options", problems)
    num = {}
    for k, default in (("priority", 0), ("timeout", 120.0), ("connect_timeout", 10.0)):
        v = raw.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (k != "priority" and v <= 0):
            problems.append(f"{key}.{k}: must be a {'number' if k == 'priority' else 'positive number (seconds)'}")
            v = default
        num[k] = v
    flags = {}
    for k, default in (("passthrough", True), ("catch_all", False)):
        v = raw.get(k, default)
        if not isinstance(v, bool):
            problems.append(f"{key}.{k}: must be true or false")
            v = default
        flags[k] = v
    if not ok:
        return None
    return BackendConfig(
        name=name, protocol=protocol, kind=kind, settings=settings, url=url, notes=tuple(notes), api_key=api_key, api_key_env=api_key_env,
        capabilities=caps, priority=int(num["priority"]), timeout=float(num["timeout"]),
        connect_timeout=float(num["connect_timeout"]), model_mapping=mapping,
        forward_headers=tuple(headers), passthrough=flags["passthrough"], catch_all=flags["catch_all"],
        options={**cls.wire_options, **options},
    )


def _model(name: str, raw: Mapping, backends: Mapping[str, BackendConfig],
           problems: list[str]) -> ModelEntry | None:
    key = f"models.{name}"
    _unknown(raw, _MODEL_KEYS, key, problems)
    backend = raw.get("backend")
    if not isinstance(backend, str):
        problems.append(f"{key}.backend: required (a backend name)")
        return None
    if backend not in backends:
        problems.append(f"{key}.backend: unknown backend {backend!r} (defined: {', '.join(sorted(backends)) or 'none'})")
        return None
    api_model = raw.get("api_model", name)
    if not isinstance(api_model, str) or not api_model:
        problems.append(f"{key}.api_model: must be a non-empty string")
        return None
    max_tokens = _typed(raw.get("max_tokens"), int, f"{key}.max_tokens", problems)
    if max_tokens is not None and max_tokens <= 0:
        problems.append(f"{key}.max_tokens: must be positive")
        max_tokens = None
    effort = _choice(raw, "reasoning_effort", REASONING_EFFORTS, key, problems)
    temperature = raw.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))):
        problems.append(f"{key}.temperature: must be a number")
        temperature = None
    caps = None
    if "capabilities" in raw:
        caps = _capabilities(raw["capabilities"], f"{key}.capabilities", problems)
    b = backends[backend]
    responses = {k: _choice(raw, k, choices, key, problems) for k, choices in _RESPONSES_ONLY.items()}
    for k, v in responses.items():
        if v is not None and b.protocol != "openai_responses":
            problems.append(f"{key}.{k}: backend '{backend}' speaks {b.protocol}, which has no such setting "
                            f"(only an OpenAI Responses backend has)")
    deployment = _typed(raw.get("deployment_name"), str, f"{key}.deployment_name", problems) or None
    if deployment is not None and b.kind not in _DEPLOYMENT_KINDS:
        problems.append(f"{key}.deployment_name: backend '{backend}' (kind {b.kind}) has no deployments "
                        f"(only {', '.join(_DEPLOYMENT_KINDS)} have)")
    if max_tokens is None and b.protocol == "anthropic":
        max_tokens = ANTHROPIC_DEFAULT_MAX_TOKENS
    wire_options = {wire_key: responses[k] for k, wire_key in (("verbosity_level", "verbosity"),
                                                               ("truncation_strategy", "truncation"))
                    if responses[k] is not None}
    return ModelEntry(name=name, backend=backend, api_model=api_model, max_tokens=max_tokens,
                      reasoning_effort=effort, temperature=None if temperature is None else float(temperature),
                      capabilities=caps, deployment_name=deployment, summary_level=responses["summary_level"],
                      wire_options=wire_options)


def _choice(raw: Mapping, name: str, choices: tuple[str, ...], key: str, problems: list[str]) -> str | None:
    value = raw.get(name)
    if value is not None and value not in choices:
        problems.append(f"{key}.{name}: must be one of {', '.join(choices)} (got {value!r})")
        return None
    return value


# ------------------------------------------------------------------ helpers


def _settings(cls, raw: Mapping, key: str, problems: list[str]) -> dict[str, Any]:
    """The provider kind's own keys, typed, `${ENV}` expanded, required ones present."""
    out: dict[str, Any] = {}
    for name, spec in cls.settings.items():
        where = f"{key}.{name}"
        if name not in raw:
            if spec.required:
                problems.append(f"{where}: required for a {cls.kind} backend ({spec.help})")
            continue
        value = _typed(raw[name], spec.type, where, problems)
        if value is None:
            continue
        if isinstance(value, str):
            value = _interpolate(value, problems, where)
        if spec.choices and value not in spec.choices:
            problems.append(f"{where}: must be one of {', '.join(spec.choices)} (got {value!r})")
            continue
        if spec.minimum is not None and value < spec.minimum:
            problems.append(f"{where}: must be at least {spec.minimum} (got {value!r})")
            continue
        out[name] = value
    return out


def _interpolate(value: str, problems: list[str], key: str = "") -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset VAR without default is a problem."""
    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        problems.append(f"{key}: environment variable {var} is not set" if key else var)
        return ""
    return _ENV_REF.sub(sub, value) if "${" in value else value


def _table(value: Any, key: str, problems: list[str]) -> Mapping:
    if isinstance(value, dict):
        return value
    problems.append(f"{key}: must be a table")
    return {}


_TYPE_NAMES = {int: "an integer", dict: "a table", list: "a list"}


def _typed(value: Any, typ: type, key: str, problems: list[str]) -> Any:
    if value is None:
        return None
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        problems.append(f"{key}: must be {_TYPE_NAMES.get(typ, 'a string')}")
        return None
    return value


def _capabilities(value: Any, key: str, problems: list[str]) -> frozenset[str]:
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list (any of {', '.join(CAPABILITIES)})")
        return frozenset()
    caps = set()
    for c in value:
        if c in CAPABILITIES:
            caps.add(c)
        else:
            problems.append(f"{key}: unknown capability {c!r} (known: {', '.join(CAPABILITIES)})")
    return frozenset(caps)


def _unknown(raw: Mapping, allowed: set[str], key: str, problems: list[str]) -> None:
    for k in raw:
        if k not in allowed:
            where = f"{key}.{k}" if key else k
            problems.append(f"{where}: unknown key (allowed: {', '.join(sorted(allowed))})")
