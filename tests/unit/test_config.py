"""Config loading and check-config: every problem named by its exact key."""
import textwrap

import pytest

from app.config import ConfigError, check_config_file, load_config
from app.errors import ErrorKind, ProxyError
from app.providers import KINDS

GOOD = """
[server]
port = 9100
default_backend = "oa"

[backends.oa]
protocol = "openai"
url = "http://127.0.0.1:1/v1/"
api_key = "${TEST_KEY:-fallback-key}"
capabilities = ["text", "tools"]
priority = 5
forward_headers = ["X-Mock-Scenario"]

[backends.oa.model_mapping]
"fast" = "gpt-4o-mini"

[backends.an]
protocol = "anthropic"
url = "http://127.0.0.1:2"
api_key_env = "INTERCHANGE_TEST_MISSING_KEY"

[models.smart]
backend = "an"
api_model = "claude-sonnet-4-5"
max_tokens = 2048
reasoning_effort = "low"
"""


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_loads_into_frozen_dataclasses(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_KEY", raising=False)
    c = load_config(write(tmp_path, GOOD))
    oa = c.backends["oa"]
    assert (c.server.port, c.server.default_provider) == (9100, "oa")  # default_backend: the older spelling
    assert oa.url == "http://127.0.0.1:1/v1"  # trailing slash dropped
    assert oa.capabilities == frozenset({"text", "tools"})
    assert oa.model_mapping == {"fast": "gpt-4o-mini"}
    assert oa.resolve_api_key() == "fallback-key"
    assert c.models["smart"].max_tokens == 2048
    with pytest.raises(AttributeError):
        oa.priority = 1  # frozen


def test_env_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "from-env")
    assert load_config(write(tmp_path, GOOD)).backends["oa"].resolve_api_key() == "from-env"


def test_missing_key_is_a_configuration_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERCHANGE_TEST_MISSING_KEY", raising=False)
    c = load_config(write(tmp_path, GOOD))  # loading still works: other backends serve
    with pytest.raises(ProxyError) as e:
        c.backends["an"].resolve_api_key()
    assert e.value.kind is ErrorKind.configuration
    assert e.value.code == "configuration_error"
    assert "INTERCHANGE_TEST_MISSING_KEY" in e.value.message


def test_check_config_reports_missing_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERCHANGE_TEST_MISSING_KEY", raising=False)
    assert check_config_file(write(tmp_path, GOOD)) == [
        "backends.an.api_key_env: INTERCHANGE_TEST_MISSING_KEY not set in environment"]


def test_the_api_key_never_shows_in_repr(tmp_path):
    c = load_config(write(tmp_path, GOOD))
    assert "fallback-key" not in repr(c)


def test_every_problem_is_named_by_key(tmp_path):
    bad = """
    [server]
    port = "x"
    colour = "blue"
    default_backend = "ghost"

    [backends.a]
    protocol = "opena"
    url = "ftp://x"

    [backends.b]
    url = "http://ok"
    api_key = "k"
    capabilities = ["text", "telepathy"]
    timeout = -1

    [models.m]
    backend = "nope"
    """
    assert check_config_file(write(tmp_path, bad)) == [
        "server.colour: unknown key (allowed: admin_key, default_backend, default_provider, head_timeout, host, "
        "instances_file, keepalive_timeout, log_level, max_body_bytes, models_file, port)",
        "server.port: must be an integer",
        f"backends.a.protocol: unknown protocol 'opena' (known: {', '.join(KINDS)})",
        "backends.a.url: must start with http:// or https:// (got 'ftp://x')",
        f"backends.b.kind: required (one of {', '.join(KINDS)})",
        "backends.b.capabilities: unknown capability 'telepathy' (known: text, tools, streaming, vision, thinking, json)",
        "backends.b.timeout: must be a positive number (seconds)",
        "models.m.backend: unknown backend 'nope' (defined: none)",
        "server.default_backend: unknown backend 'ghost' (defined: none)",
        "backends: at least one backend is required",
    ]


def test_load_config_raises_with_all_problems(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[backends.x]\nprotocol = 'openai'\n"))
    assert e.value.problems == ["backends.x.url: required (the provider's base URL)",
                                "backends: at least one backend is required"]


def test_invalid_toml_is_reported(tmp_path):
    problems = check_config_file(write(tmp_path, "[server\n"))
    assert len(problems) == 1 and "not valid TOML" in problems[0]


def test_router_models_yaml(tmp_path):
    """The multi-backend router's models.yaml format, via server.models_file."""
    (tmp_path / "models.yaml").write_text(textwrap.dedent("""
        models:
          haiku:
            backend: an
            api_model: claude-haiku-4-5
            max_tokens: 512
    """))
    c = load_config(write(tmp_path, """
        [server]
        models_file = "models.yaml"
        [backends.an]
        protocol = "anthropic"
        url = "http://127.0.0.1:2"
        api_key = "k"
    """))
    assert c.models["haiku"].api_model == "claude-haiku-4-5"
    assert c.models["haiku"].max_tokens == 512


def test_whole_config_in_yaml(tmp_path):
    c = load_config(write(tmp_path, """
        backends:
          g:
            protocol: gemini
            url: http://127.0.0.1:3
            api_key: k
        models:
          flash: {backend: g, api_model: gemini-2.5-flash}
    """, name="c.yaml"))
    assert c.models["flash"].backend == "g"


def test_shipped_demo_config_is_valid():
    from tests.conftest import REPO
    assert check_config_file(REPO / "config-mock.toml") == []


def test_credentials_in_a_backend_url_are_refused_and_never_echoed(tmp_path):
    cfg = """
    [backends.a]
    protocol = "openai"
    url = "https://user:s3cret-pass@api.example.com/v1"
    api_key = "k"

    [backends.b]
    protocol = "openai"
    url = "ftp://user:s3cret-pass@files.example.com/x?key=s3cret-key"
    api_key = "k"
    """
    problems = check_config_file(write(tmp_path, cfg))
    assert problems == [
        "backends.a.url: must not contain user:password@ (give the key as api_key or api_key_env)",
        "backends.b.url: must start with http:// or https:// (got 'ftp://***@files.example.com/x')",
        "backends: at least one backend is required",
    ]
    assert not any("s3cret" in p for p in problems)


def test_client_connection_timeouts(tmp_path):
    base = '[backends.a]\nprotocol = "openai"\nurl = "http://h"\napi_key = "k"\n'
    config = load_config(write(tmp_path, '[server]\nhead_timeout = 2.5\nkeepalive_timeout = 5\n' + base))
    assert (config.server.head_timeout, config.server.keepalive_timeout) == (2.5, 5.0)
    defaults = load_config(write(tmp_path, base)).server
    assert (defaults.head_timeout, defaults.keepalive_timeout) == (10.0, 60.0)
    assert check_config_file(write(tmp_path, '[server]\nhead_timeout = 0\nkeepalive_timeout = "1"\n' + base)) == [
        "server.head_timeout: must be a positive number (seconds)",
        "server.keepalive_timeout: must be a positive number (seconds)",
    ]


def test_state_section(tmp_path):
    c = load_config(write(tmp_path, GOOD + '\n[state]\nurl = "redis://10.0.0.5:6379/2"\nttl_seconds = 3600\n'
                                           'max_entries = 50\n'))
    assert (c.state.url, c.state.path, c.state.ttl_seconds, c.state.max_entries) == (
        "redis://10.0.0.5:6379/2", None, 3600.0, 50)
    default = load_config(write(tmp_path, GOOD)).state
    assert (default.url, default.path, default.ttl_seconds, default.max_entries) == (None, None, 2592000.0, 100000)


def test_state_problems_are_named_by_key(tmp_path):
    bad = GOOD + '\n[state]\nurl = "http://redis:6379"\npath = "/tmp/x.db"\nttl_seconds = 0\nmax_entries = true\nsize = 1\n'
    assert [p for p in check_config_file(write(tmp_path, bad)) if p.startswith("state")] == [
        "state.size: unknown key (allowed: max_entries, path, ttl_seconds, url)",
        "state.url: must be a redis://host:port/db, rediss:// or unix:// URL",
        "state.path: cannot be set together with state.url (one store: Redis or SQLite)",
        "state.ttl_seconds: must be a positive number (seconds)",
        "state.max_entries: must be a positive integer",
    ]


def test_router_options_a_backend_cannot_say_are_refused(tmp_path):
    (tmp_path / "models.yaml").write_text(textwrap.dedent("""\
        models:
          c:
            backend: an
            api_model: claude-x
            summary_level: auto
            verbosity_level: low
            truncation_strategy: auto
            deployment_name: dep
          d:
            backend: an
            reasoning_effort: extreme
            verbosity_level: loud
        """))
    p = write(tmp_path, '[server]\nmodels_file = "models.yaml"\n'
                        '[backends.an]\nkind = "anthropic"\nurl = "http://127.0.0.1:1"\napi_key = "k"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    only = "which has no such setting (only an OpenAI Responses backend has)"
    assert e.value.problems == [
        f"models.c.summary_level: backend 'an' speaks anthropic, {only}",
        f"models.c.verbosity_level: backend 'an' speaks anthropic, {only}",
        f"models.c.truncation_strategy: backend 'an' speaks anthropic, {only}",
        "models.c.deployment_name: backend 'an' (kind anthropic) has no deployments "
        "(only azure_openai, azure_responses have)",
        "models.d.reasoning_effort: must be one of none, minimal, low, medium, high, xhigh, max (got 'extreme')",
        "models.d.verbosity_level: must be one of low, medium, high (got 'loud')",
    ]


def _server_block(tmp_path, lines: str):
    return write(tmp_path, "[server]\n" + lines + "\n" + GOOD.split("\n", 4)[4])


def load_problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value.problems


def test_default_provider_and_its_older_spelling(tmp_path):
    assert load_config(_server_block(tmp_path, 'default_provider = "an"')).server.default_provider == "an"
    assert load_config(_server_block(tmp_path, 'default_backend = "an"')).server.default_provider == "an"
    assert load_problems(_server_block(tmp_path, 'default_provider = "an"\ndefault_backend = "an"')) == [
        "server.default_backend: the older spelling of server.default_provider; give one"]
    assert load_problems(_server_block(tmp_path, 'default_provider = "ghost"')) == [
        "server.default_provider: unknown backend 'ghost' (defined: an, oa)"]
    assert load_problems(_server_block(tmp_path, "default_provider = 3")) == [
        "server.default_provider: must be a string"]


def test_admin_key_literal_or_from_its_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERCHANGE_TEST_ADMIN", raising=False)
    assert load_config(_server_block(tmp_path, "")).server.admin_key is None  # absent: admin API off
    literal = load_config(_server_block(tmp_path, 'admin_key = "s3cret-admin"')).server
    assert literal.admin_key == "s3cret-admin" and "s3cret-admin" not in repr(literal)
    with_default = _server_block(tmp_path, 'admin_key = "${INTERCHANGE_TEST_ADMIN:-fallback-admin}"')
    assert load_config(with_default).server.admin_key == "fallback-admin"
    monkeypatch.setenv("INTERCHANGE_TEST_ADMIN", "from-env-admin")
    assert load_config(with_default).server.admin_key == "from-env-admin"
    monkeypatch.delenv("INTERCHANGE_TEST_ADMIN")
    assert load_problems(_server_block(tmp_path, 'admin_key = "${INTERCHANGE_TEST_ADMIN}"')) == [
        "server.admin_key: environment variable INTERCHANGE_TEST_ADMIN is not set"]
    assert load_problems(_server_block(tmp_path, 'admin_key = ""')) == [
        "server.admin_key: must not be empty (leave it out to turn the admin API off)"]
