"""Pipeline pieces that need no server: the passthrough model rewrite, registry defaults,
the same-protocol passthrough of what the IR cannot model."""
import dataclasses
import json

from app import ir
from app.config import BackendConfig, ModelEntry
from app.protocols import anthropic
from app.pipeline import ModelRewriter, _fit_to_backend, _with_registry_defaults
from app.routing import Route
from tests.upstream_call import Upstream, built


def test_rewrites_the_model_key_only():
    rw = ModelRewriter("model", "gpt-4o-mini", "my-alias")
    body = '{"id":"x","model":"gpt-4o-mini","content":"the \\"model\\":\\"gpt-4o-mini\\" text"}'
    assert rw(body) == '{"id":"x","model":"my-alias","content":"the \\"model\\":\\"gpt-4o-mini\\" text"}'


def test_learns_the_dated_id_the_provider_answers_with():
    rw = ModelRewriter("model", "gpt-4o", "alias")
    assert rw('{"model": "gpt-4o-2024-08-06"}') == '{"model": "alias"}'
    assert rw('{"model":"gpt-4o-2024-08-06","x":1}') == '{"model":"alias","x":1}'
    # a tool argument named "model" with another value is left alone
    assert rw('{"input":{"model":"sedan"}}') == '{"input":{"model":"sedan"}}'


def test_an_empty_model_is_not_learnt_as_the_upstream_id():
    # Azure's first stream chunk (prompt filter results) has "model":"": learning it would use up
    # the one id learnt, and the dated id of the chunks that follow would reach the client.
    rw = ModelRewriter("model", "gpt-4o", "alias")
    assert rw('{"choices":[],"id":"","model":"","object":""}') == '{"choices":[],"id":"","model":"","object":""}'
    assert rw('{"id":"c","model":"gpt-4o-2024-11-20","choices":[]}') == '{"id":"c","model":"alias","choices":[]}'


def test_gemini_model_version_field():
    rw = ModelRewriter("modelVersion", "gemini-2.5-flash", "flash")
    assert rw('{"modelVersion": "gemini-2.5-flash"}') == '{"modelVersion": "flash"}'


def test_a_stream_of_chunks_is_rewritten_the_same_by_the_literal_shortcut():
    rw = ModelRewriter("model", "gpt-4o", "alias")
    chunks = ['{"id":"c","model":"gpt-4o-2024-08-06","choices":[{"delta":{"content":"%d"}}]}' % i for i in range(3)]
    assert [rw(c) for c in chunks] == [c.replace("gpt-4o-2024-08-06", "alias") for c in chunks]
    # another spelling of the pair, or two "model" keys, still go through the pattern
    assert rw('{"model" : "gpt-4o-2024-08-06"}') == '{"model" : "alias"}'
    assert rw('{"model":"gpt-4o-2024-08-06","input":{"model":"sedan"}}') == \
        '{"model":"alias","input":{"model":"sedan"}}'
    assert rw('{"model":"gpt-4o-2024-08-06","input":{"model":"gpt-4o"}}') == \
        '{"model":"alias","input":{"model":"alias"}}'


def test_same_name_is_unchanged():
    rw = ModelRewriter("model", "m", "m")
    assert rw('{"model":"m"}') == '{"model":"m"}'


def _route(entry):
    return Route(BackendConfig(name="b", protocol="openai", url="http://x"), "up", "model_mapping", entry)


def test_registry_defaults_fill_only_what_the_client_left_out():
    entry = ModelEntry(name="smart", backend="b", api_model="up", max_tokens=512, reasoning_effort="low",
                       temperature=0.2)
    req = ir.Request(model="smart", messages=(ir.Message("user", (ir.Text("hi"),)),), protocol="openai",
                     temperature=0.9)
    out = _with_registry_defaults(req, _route(entry))
    assert (out.max_tokens, out.reasoning, out.temperature) == (512, ir.Reasoning(effort="low"), 0.9)
    assert _with_registry_defaults(req, _route(None)) is req


def test_a_block_without_ir_form_parses_and_passes_through_unchanged():
    """The pipeline parses every request to route it: a document block must not be a 400
    there, and the same-protocol hop sends the client's body with only the model swapped."""
    document = {"type": "document", "source": {"type": "url", "url": "https://example.com/q3.pdf"},
                "cache_control": {"type": "ephemeral"}}
    body = {"model": "my-claude", "max_tokens": 64, "messages": [
        {"role": "user", "content": [document, {"type": "text", "text": "Summarise."}]}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    req = anthropic.parse_request(body)
    assert req.messages[0].parts[0] == ir.Opaque("anthropic", "document block", document, "messages.0.content.0")
    upstream = built(anthropic, req, Upstream(backend="claude", base_url="https://a.test", model="up", api_key="k"), passthrough=True)
    assert upstream.body == json.dumps({**body, "model": "up"}, separators=(",", ":")).encode()


def test_wsgi_entry_builds_the_app_from_the_environment(monkeypatch):
    import importlib
    import sys
    from tests.conftest import REPO
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(REPO / "config-mock.toml"))
    sys.modules.pop("app.wsgi", None)
    wsgi = importlib.import_module("app.wsgi")
    r = wsgi.application.test_client().get("/health")
    assert r.status_code == 200 and r.get_json()["backends"] == \
        ["anthropic", "azure", "azure-responses", "bedrock", "gemini", "openai", "vertex", "vertex-anthropic", "watsonx"]


def test_adaptive_thinking_is_dropped_only_where_the_backend_cannot_think():
    req = anthropic.parse_request({"model": "m", "max_tokens": 10, "thinking": {"type": "adaptive"},
                                   "messages": [{"role": "user", "content": "Hi"}]})
    assert "thinking" not in req.capabilities()  # routing does not demand it
    thinker = BackendConfig(name="t", protocol="openai", url="http://x", api_key="k",
                            capabilities=frozenset({"text", "thinking"}))
    plain = dataclasses.replace(thinker, name="p", capabilities=frozenset({"text"}))
    assert _fit_to_backend(req, Route(thinker, "m", "model_mapping")).reasoning == req.reasoning
    assert _fit_to_backend(req, Route(plain, "m", "model_mapping")).reasoning is None
    enabled = anthropic.parse_request({"model": "m", "max_tokens": 2000, "messages": [
        {"role": "user", "content": "Hi"}], "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert "thinking" in enabled.capabilities()  # asked for outright: a backend must have it
    assert _fit_to_backend(enabled, Route(plain, "m", "model_mapping")) is enabled


def test_droppable_hosted_tools_go_only_to_their_own_protocol():
    from app.protocols import openai_responses
    fn = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": False}
    req = openai_responses.parse_request({"model": "m", "input": "Hi", "tool_choice": "auto",
                                          "parallel_tool_calls": True, "tools": [fn, {"type": "web_search"}]})
    other = BackendConfig(name="a", protocol="anthropic", url="http://x", api_key="k")
    same = dataclasses.replace(other, name="r", protocol="openai_responses")
    assert [t.name for t in _fit_to_backend(req, Route(other, "m", "model_mapping")).tools] == ["exec_command"]
    assert _fit_to_backend(req, Route(same, "m", "model_mapping")) is req
    # Only the hosted tool: nothing left to choose from or to call in parallel.
    alone = dataclasses.replace(req, tools=req.tools[1:])
    fitted = _fit_to_backend(alone, Route(other, "m", "model_mapping"))
    assert (fitted.tools, fitted.tool_choice, fitted.parallel_tool_calls) == ((), None, None)


def test_registry_summary_level_asks_for_the_reasoning_summary():
    entry = ModelEntry(name="gpt-high", backend="b", api_model="gpt-5", reasoning_effort="high",
                       summary_level="concise")
    req = ir.Request(model="gpt-high", messages=(ir.Message("user", (ir.Text("hi"),)),), protocol="openai")
    assert _with_registry_defaults(req, _route(entry)).reasoning == \
        ir.Reasoning(effort="high", include_thoughts=True, summary="concise")
