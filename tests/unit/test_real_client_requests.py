"""The requests real agent CLIs sent (../shared/real-samples/client-requests: Claude
Code, Gemini CLI), through their frontend's parse_request and every backend's
request builder, must be accepted by the strict mock of that backend.

The recordings replace long prose with `<text N chars>`; it is expanded to N
characters of prose, so bodies have their real size. Each converted request is
sent to the mock app in-process (its full pipeline: auth, URL, validation), the
way the proxy would send it: the headers the pipeline forwards, and for a
same-protocol backend both the passthrough body and the rebuilt one.
Codex's requests (OpenAI Responses) wait for the Responses frontend."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import Headers

from app.config import load_config
from app.pipeline import Pipeline
from app.protocols import protocol_module
from app.routing import Route, Router
from app.providers.base import Call
from mocks.server import create_app
from tests.conftest import REAL_SAMPLES, REPO
from tests.real_clients import expand_prose, prose

CLIENT_REQUESTS = REAL_SAMPLES / "client-requests"
SAMPLES = sorted(p.name for p in CLIENT_REQUESTS.glob("*.json")) if CLIENT_REQUESTS.is_dir() else []
CONFIG = load_config(REPO / "config-mock.toml")
BACKENDS = ("openai", "anthropic", "gemini")
# One model of each mock backend (claude-sonnet-4-5 takes mid-conversation system messages).
MODELS = {"openai": "gpt-5-nano", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}

def load_sample(name: str) -> dict:
    recorded = json.loads((CLIENT_REQUESTS / name).read_text())
    if recorded["path"].endswith("/responses"):
        pytest.skip("Codex sends OpenAI Responses requests: there is no Responses frontend yet")
    return recorded


def parse_sample(recorded: dict):
    """(frontend module, IR request) as the proxy's endpoint for that path would parse it."""
    path = recorded["path"]
    body = expand_prose(recorded["body"])
    if path == "/v1/messages":
        frontend = protocol_module("anthropic")
        return frontend, frontend.parse_request(body)
    model, _, action = path.removeprefix("/v1beta/models/").rpartition(":")
    frontend = protocol_module("gemini")
    return frontend, frontend.parse_request(body, model=model, stream=action == "streamGenerateContent")


def upstream_requests(recorded: dict, frontend, req, backend: str) -> list:
    """What the proxy would send to `backend`: the rebuilt request, and for a
    same-protocol backend also the passthrough one (the default)."""
    pipeline = Pipeline(CONFIG, Router(CONFIG))
    route = Route(CONFIG.backends[backend], MODELS[backend], "test")
    target, forwarded = pipeline.target_for(route, Headers(recorded["headers"]))
    provider = pipeline.providers[backend]
    module = protocol_module(provider.wire)
    bodies = [module.build_body(req, target)]
    if module is frontend:
        bodies.append(module.passthrough_body(req, target))
    return [provider.prepare(Call(model=target.model, body=body, stream=req.stream, headers=forwarded))
            for body in bodies]


@pytest.fixture(scope="module")
def mock_client():
    return create_app().test_client()


def post(client, upstream):
    url = urlsplit(upstream.url)
    return client.open(url.path + (f"?{url.query}" if url.query else ""), method=upstream.method,
                       data=upstream.body, headers=dict(upstream.headers))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", SAMPLES or ["(no recorded requests)"])
def test_the_strict_mock_accepts_every_recorded_client_request_converted(real_samples, mock_client, sample,
                                                                        backend):
    recorded = load_sample(sample)
    frontend, req = parse_sample(recorded)
    for upstream in upstream_requests(recorded, frontend, req, backend):
        response = post(mock_client, upstream)
        assert response.status_code == 200, f"{sample} -> {backend}: {response.get_data(as_text=True)[:600]}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_beta_reaches_only_anthropic_backends(real_samples, backend):
    recorded = load_sample("claude-code_other-model_text.json")
    frontend, req = parse_sample(recorded)
    for upstream in upstream_requests(recorded, frontend, req, backend):
        sent = {name.lower(): value for name, value in upstream.headers.items()}
        expected = recorded["headers"]["anthropic-beta"] if backend == "anthropic" else None
        assert sent.get("anthropic-beta") == expected
        # `?beta=true` marks the SDK's beta namespace; the betas themselves travel in the
        # header, and some Anthropic-compatible providers 404 on the query, so it stays here.
        assert "beta=true" not in upstream.url


def test_prose_placeholders_expand_to_their_recorded_length():
    assert expand_prose({"a": ["<text 306 chars>", "Say hello"]}) == {"a": [prose(306), "Say hello"]}
    assert len(prose(306)) == 306 and not prose(306).endswith(" ")
    assert len(prose(5847)) == 5847
