"""The route table (app/routes.py) and what the server derives from it."""
from __future__ import annotations

import pytest

from app import routes
from app.protocols import MODULES


def test_every_endpoint_names_a_protocol_an_action_and_a_protocol_mode():
    actions = {routes.GENERATE, routes.MODEL_ACTION, routes.COUNT_TOKENS, routes.MODELS, routes.METRICS,
               routes.HEALTH}
    for ep in routes.ENDPOINTS:
        assert ep.protocol in MODULES, ep
        assert ep.action in actions, ep
        assert ep.pinned_as is None or ep.pinned_as in routes.PROTOCOL_MODES, ep
    assert len({(ep.rule, m) for ep in routes.ENDPOINTS for m in ep.methods}) == sum(
        len(ep.methods) for ep in routes.ENDPOINTS)


def test_the_fast_paths_dict_holds_the_exact_generation_paths():
    assert routes.exact_generation_paths() == {
        "/v1/chat/completions": "openai", "/chat/completions": "openai", "/v1/responses": "openai_responses",
        "/responses": "openai_responses", "/v1/messages": "anthropic"}
    assert routes.model_action_prefixes() == {"/v1beta/models/": "gemini", "/v1/models/": "gemini"}


def test_pinned_rules():
    pinned = [routes.pinned_rule(ep) for ep in routes.ENDPOINTS if ep.pinned_as]
    # The OpenAI paths with and without /v1: the openai SDK with base_url .../openai/<instance> drops it.
    assert pinned == ["/openai/<instance>/v1/chat/completions", "/openai/<instance>/chat/completions",
                      "/openai/<instance>/v1/responses", "/openai/<instance>/responses",
                      "/anthropic/<instance>/v1/messages", "/gemini/<instance>/v1beta/models/<path:model_action>",
                      "/gemini/<instance>/v1/models/<path:model_action>", "/openai/<instance>/v1/models",
                      "/openai/<instance>/models"]


@pytest.mark.parametrize("tail,expected", [
    ("gemini-2.5-flash:generateContent", ("gemini-2.5-flash", False)),
    ("models/gemini-2.5-flash:streamGenerateContent", ("gemini-2.5-flash", True)),
    ("tunedModels/x:generateContent", ("tunedModels/x", False)),
    ("gemini-2.5-flash:countTokens", None),  # the Flask view's
    ("gemini-2.5-flash:embedContent", None),
    ("gemini-2.5-flash", None),
    (":generateContent", None),
    ("models/:generateContent", None),
    ("a/:generateContent", None),
    ("/gemini-2.5-flash:generateContent", None),  # `//` in the path: Flask answers it
    ("a//b:generateContent", None),
    ("gémini:generateContent", None),  # werkzeug decodes non-ASCII paths its own way
])
def test_fast_model_action(tail, expected):
    assert routes.fast_model_action(tail) == expected


@pytest.mark.parametrize("path,protocol", [
    ("/v1/messages/batches", "anthropic"),
    ("/V1/MESSAGES", "anthropic"),
    ("/v1beta/files", "gemini"),
    ("/v1/models/x:GenerateContent", "gemini"),
    ("/x:streamGenerateContent", "gemini"),
    ("/v1/embeddings", "openai"),
    ("/v1/responses/resp_1/cancel", "openai"),
    ("/anthropic/inst/v1/chat/completions", "anthropic"),
    ("/Gemini/inst/v1/messages", "gemini"),
    ("/openai/inst/v1/messages", "openai"),
    ("/", "openai"),
    ("", "openai"),
])
def test_the_envelope_for_a_path_no_rule_serves(path, protocol):
    assert routes.protocol_for_path(path) == protocol
