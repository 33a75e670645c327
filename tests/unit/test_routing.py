"""Routing order: explicit, model_mapping/registry, capability/auto, default, failed."""
import textwrap

import pytest

from app.config import load_config
from app.errors import ErrorKind, ProxyError
from app.routing import Router

CONFIG = """
[backends.oa]
protocol = "openai"
url = "http://127.0.0.1:1/v1"
api_key = "k"
capabilities = ["text", "tools", "streaming"]
priority = 1
[backends.oa.model_mapping]
"gpt-x" = "gpt-x-2025"

[backends.an]
protocol = "anthropic"
url = "http://127.0.0.1:2"
api_key = "k"
capabilities = ["text", "tools", "streaming", "vision", "thinking"]
priority = 5
catch_all = true

[backends.any]
protocol = "gemini"
url = "http://127.0.0.1:3"
api_key = "k"
priority = 0
catch_all = true

[models.smart]
backend = "an"
api_model = "claude-sonnet-4-5"
max_tokens = 1000
"""

TEXT = frozenset({"text"})


@pytest.fixture
def router(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(textwrap.dedent(CONFIG))
    return Router(load_config(p))


def test_model_mapping(router):
    r = router.route("gpt-x", TEXT)
    assert (r.backend.name, r.upstream_model, r.reason) == ("oa", "gpt-x-2025", "model_mapping")


def test_registry_entry_carries_defaults(router):
    r = router.route("smart", TEXT)
    assert (r.backend.name, r.upstream_model, r.reason, r.entry.max_tokens) == ("an", "claude-sonnet-4-5", "model_mapping", 1000)


def test_mapped_model_missing_a_capability_is_a_clear_400(router):
    with pytest.raises(ProxyError) as e:
        router.route("gpt-x", frozenset({"text", "vision"}))
    assert (e.value.kind, e.value.param, e.value.code) == (ErrorKind.invalid_request, "model", "unsupported_capability")
    assert "vision" in e.value.message


def test_capability_routing_prefers_priority(router):
    r = router.route("unknown-model", frozenset({"text", "vision"}))
    assert (r.backend.name, r.upstream_model, r.reason) == ("an", "unknown-model", "capability")


def test_auto_when_backend_declares_nothing(router):
    r = router.route("unknown-model", frozenset({"text", "json"}))
    assert (r.backend.name, r.reason) == ("any", "auto")


def test_explicit_pin(router):
    r = router.route("gpt-x", TEXT, pinned="oa")
    assert (r.backend.name, r.upstream_model, r.reason) == ("oa", "gpt-x-2025", "explicit")
    r = router.route("whatever", TEXT, pinned="an")
    assert (r.backend.name, r.upstream_model, r.reason) == ("an", "whatever", "explicit")


def test_default_and_failed(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(textwrap.dedent("""
        [backends.oa]
        protocol = "openai"
        url = "http://127.0.0.1:1/v1"
        api_key = "k"
        [backends.oa.model_mapping]
        "gpt-x" = "gpt-x"
    """))
    config = load_config(p)
    with pytest.raises(ProxyError) as e:
        Router(config).route("nope", TEXT)
    assert (e.value.kind, e.value.status, e.value.code, e.value.param) == (ErrorKind.not_found, 404, "model_not_found", "model")
    assert e.value.message == "Model 'nope' is not configured. Available models: gpt-x"
    r = Router(config, default_backend="oa").route("nope", TEXT)
    assert (r.backend.name, r.upstream_model, r.reason) == ("oa", "nope", "default")


def test_unknown_default_backend_is_rejected(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[backends.oa]\nprotocol = "openai"\nurl = "http://x"\napi_key = "k"\n')
    with pytest.raises(ValueError):
        Router(load_config(p), default_backend="ghost")


def test_models_list(router):
    # The registry's names first, in its order (the router seed's GET /models), then the mappings.
    assert [(m.id, m.backend) for m in router.models()] == [("smart", "an"), ("gpt-x", "oa")]


def test_failed_route_message_and_log_carry_a_bounded_escaped_model(tmp_path, caplog):
    p = tmp_path / "c.toml"
    p.write_text('[backends.oa]\nprotocol = "openai"\nurl = "http://127.0.0.1:1/v1"\napi_key = "k"\n')
    head = "evil\nINFO interchange.routing: forged "
    model = head + "x" * 30_000_000
    with caplog.at_level("DEBUG", logger="interchange.routing"), pytest.raises(ProxyError) as e:
        Router(load_config(p)).route(model, TEXT)
    kept = 120 - len(head)
    shown = '"evil\\nINFO interchange.routing: forged ' + "x" * kept + f'"...(+{30_000_000 - kept} chars)'
    assert e.value.message == f"Model '{shown}' is not configured. Available models: none"
    (record,) = caplog.records
    assert record.getMessage() == f"route model={shown} reason=failed"


def test_unknown_pinned_instance_is_escaped(router):
    with pytest.raises(ProxyError) as e:
        router.route("gpt-x", TEXT, pinned="a\r\nb")
    assert (e.value.status, e.value.code, e.value.message) == (
        404, "instance_not_found", 'No provider instance configured for this path: "a\\r\\nb" (served there: oa, an, any)')


def test_route_debug_line_escapes_the_names(router, caplog):
    with caplog.at_level("DEBUG", logger="interchange.routing"):
        router.route("new model\n", TEXT)
    (record,) = caplog.records
    assert record.getMessage() == ('route model="new model\\n" backend=an upstream_model="new model\\n" '
                                   "reason=capability")

