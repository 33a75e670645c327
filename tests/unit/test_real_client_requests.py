"""The requests real agent CLIs sent (../shared/real-samples/client-requests: Claude
Code, Gemini CLI, Codex), through their frontend's parse_request and a backend of
every wire's request builder, must be accepted by the strict mock of that backend.

The recordings replace long prose with `<text N chars>`; it is expanded to N
characters of prose, so bodies have their real size. Each converted request is
sent to the mock app in-process (its full pipeline: auth, URL, validation), the
way the proxy would send it: the headers the pipeline forwards, and for a
same-protocol backend both the passthrough body and the rebuilt one."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import Headers

from app.config import load_config
from app.errors import ProxyError
from app.pipeline import Pipeline, _fit_to_backend
from app.protocols import protocol_module
from app.routing import Route, Router
from app.providers.base import Call
from mocks.server import create_app
from tests.conftest import REAL_SAMPLES, REPO
from tests.real_clients import expand_prose, prose

CLIENT_REQUESTS = REAL_SAMPLES / "client-requests"
SAMPLES = sorted(p.name for p in CLIENT_REQUESTS.glob("*.json")) if CLIENT_REQUESTS.is_dir() else []
CONFIG = load_config(REPO / "config-mock.toml")
BACKENDS = ("openai", "anthropic", "gemini", "bedrock", "azure-responses")  # a backend of every wire
# One model of each mock backend (claude-sonnet-4-5 takes mid-conversation system messages).
MODELS = {"openai": "gpt-5-nano", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash",
          "bedrock": "anthropic.claude-3-sonnet-20240229-v1:0", "azure-responses": "gpt-5"}


def load_sample(name: str) -> dict:
    return json.loads((CLIENT_REQUESTS / name).read_text())


def parse_sample(recorded: dict):
    """(frontend module, IR request) as the proxy's endpoint for that path would parse it."""
    path = recorded["path"]
    body = expand_prose(recorded["body"])
    if path == "/v1/messages":
        frontend = protocol_module("anthropic")
        return frontend, frontend.parse_request(body)
    if path == "/v1/responses":
        frontend = protocol_module("openai_responses")
        return frontend, frontend.parse_request(body)
    model, _, action = path.removeprefix("/v1beta/models/").rpartition(":")
    frontend = protocol_module("gemini")
    return frontend, frontend.parse_request(body, model=model, stream=action == "streamGenerateContent")


def upstream_requests(recorded: dict, frontend, req, backend: str) -> list:
    """What the proxy would send to `backend`: the rebuilt request, and for a
    same-protocol backend also the passthrough one (the default)."""
    pipeline = Pipeline(CONFIG, Router(CONFIG))
    route = Route(CONFIG.backends[backend], MODELS[backend], "test")
    req = _fit_to_backend(req, route)  # what the pipeline leaves out for this backend (Codex's web_search)
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
    target = url.path + (f"?{url.query}" if url.query else "")
    # A signed request (Bedrock's SigV4) covers the host and the target as sent (still
    # percent-encoded), which the mock's HTTP server would hand on.
    return client.open(target, base_url=f"{url.scheme}://{url.netloc}", method=upstream.method,
                       data=upstream.body, headers=dict(upstream.headers),
                       environ_overrides={"mocks.raw_target": target})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", SAMPLES or ["(no recorded requests)"])
def test_the_strict_mock_accepts_every_recorded_client_request_converted(real_samples, mock_client, sample,
                                                                        backend):
    recorded = load_sample(sample)
    frontend, req = parse_sample(recorded)
    try:
        upstreams = upstream_requests(recorded, frontend, req, backend)
    except ProxyError:
        missing = req.capabilities() - CONFIG.backends[backend].capabilities
        if not missing:
            raise
        # The router sends it elsewhere (Gemini CLI's JSON-schema classifier and Bedrock).
        pytest.skip(f"{sample} needs {', '.join(sorted(missing))}, which backend {backend!r} does not declare")
    for upstream in upstreams:
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
