"""No credential the proxy holds reaches a client or the log, whatever an
upstream echoes: every frontend x backend x stream mode x hostile behaviour
(tests/hostile_upstream.py), on plain routes and in protocol mode."""
from __future__ import annotations

import itertools
import textwrap

import pytest
import requests

from app.protocols import MODULES, protocol_module
from app.providers import KINDS
from tests.client_requests import PROTOCOL_FAMILY, client_request
from tests.conftest import ServerProcess
from tests.hostile_upstream import MODES, HostileUpstream

# Every provider kind the proxy has, as a backend, and every wire with a
# frontend half as a frontend: a kind added later is covered here without a
# copy, and fails here until BLOCKS and tests/hostile_upstream.py know it.
# A kind that sends no secret has nothing for an upstream to echo: OCI signs each request with a
# private key that never leaves the proxy (tests/integration/test_oci_backend.py checks it never shows).
SENDS_NO_SECRET = {"oci_cohere"}
PROTOCOLS = tuple(k for k in KINDS if k not in SENDS_NO_SECRET)
FRONTENDS = tuple(p for p in MODULES if hasattr(protocol_module(p), "parse_request"))
# Deliberately not key-shaped (no `sk-` / `AIza` prefix): only the configured
# secret redaction can catch these, not the generic key pattern. For Bedrock
# this is the session token (the one credential SigV4 sends); its secret key
# (AWS_SECRET) never leaves the proxy, and must not reach its log either.
KEYS = {p: f"hostile-{p}-key-{i:02d}5b4aR4tYQ7wZ{i:02d}" for i, p in enumerate(PROTOCOLS)}
AWS_SECRET = "hostileAwsSecret5b4aR4tYQ7wZ0123456789xy"
MODELS = {p: f"h-model-{p}" for p in PROTOCOLS}
# How each kind is reached and authorised (its `url` and credential keys).
BLOCKS = {
    "openai": 'url = "{url}/v1"\napi_key = "{key}"\n',
    "anthropic": 'url = "{url}"\napi_key = "{key}"\n',
    "gemini": 'url = "{url}"\napi_key = "{key}"\n',
    "azure_openai": 'url = "{url}"\napi_key = "{key}"\n',
    "openai_responses": 'url = "{url}/v1"\napi_key = "{key}"\n',
    "azure_responses": 'url = "{url}/openai/v1"\napi_key = "{key}"\nauth = "bearer"\n',
    "vertex_gemini": 'url = "{url}"\nproject = "p"\nlocation = "us-central1"\naccess_token = "{key}"\n',
    "vertex_anthropic": 'url = "{url}"\nproject = "p"\nlocation = "us-east5"\naccess_token = "{key}"\n',
    "bedrock_converse": 'url = "{url}"\nregion = "us-east-1"\naws_access_key_id = "AKIDHOSTILE"\n'
                        'aws_secret_access_key = "' + AWS_SECRET + '"\naws_session_token = "{key}"\n',
    "ollama": 'url = "{url}"\napi_key = "{key}"\n',  # a hosted Ollama: the key as a Bearer token
    "ollama_openai": 'url = "{url}/v1"\napi_key = "{key}"\n',
    "openrouter": 'url = "{url}"\napi_key = "{key}"\n',
    "runpod": 'url = "{url}"\napi_key = "{key}"\nendpoint_id = "ep"\npoll_interval_ms = 10\n',
    "runpod_openai": 'url = "{url}"\napi_key = "{key}"\nendpoint_id = "ep"\n',
    "watsonx": 'url = "{url}"\niam_url = "{url}"\napi_key = "{key}"\nproject_id = "p"\n',
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    upstream = HostileUpstream()
    config = tmp_path_factory.mktemp("hostile") / "hostile.toml"
    blocks = ['[server]\nlog_level = "debug"\n']
    for kind, key in KEYS.items():
        blocks.append(f'\n[backends.hb-{kind}]\nkind = "{kind}"\n' + BLOCKS[kind].format(url=upstream.url, key=key)
                      + textwrap.dedent(f"""
            timeout = 5
            forward_headers = ["X-Hostile"]
            [backends.hb-{kind}.model_mapping]
            "{MODELS[kind]}" = "{MODELS[kind]}"
        """))
    config.write_text("".join(blocks))
    proxy = ServerProcess(["serve", "--config", str(config)])
    yield proxy
    proxy.stop()
    upstream.stop()


def leaks(text: str) -> list[str]:
    """Every form of a configured key found in `text`: whole, its head, its tail."""
    found = []
    for key in (*KEYS.values(), AWS_SECRET):
        for form in (key, key[:10], key[-6:]):
            if form in text:
                found.append(form)
    return found


CELLS = list(itertools.product(FRONTENDS, KEYS, (False, True), MODES))


@pytest.mark.parametrize("frontend,backend,stream,mode", CELLS,
                         ids=[f"{f}-{b}-{'stream' if s else 'plain'}-{m}" for f, b, s, m in CELLS])
def test_no_key_reaches_the_client(hostile, frontend, backend, stream, mode):
    # Plain routes by model name, and protocol mode pinning the backend by URL.
    for prefix in ("", f"/{PROTOCOL_FAMILY.get(frontend, frontend)}/hb-{backend}"):
        path, headers, body = client_request(frontend, MODELS[backend], stream, prefix)
        r = requests.post(hostile.url + path, json=body, headers={**headers, "X-Hostile": mode}, timeout=20)
        raw = r.content.decode("utf-8", "replace")
        shown = raw + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        assert leaks(shown) == [], f"{path} {mode}: {shown[:2000]}"
        assert r.status_code < 600 and "Traceback" not in raw
        if "Retry-After" in r.headers:
            assert r.headers["Retry-After"].isdigit()
        if mode == "auth":
            # The upstream refused the proxy's key: a gateway error naming the backend, never a 401.
            assert r.status_code == 502, raw
            assert f"hb-{backend}" in raw
        elif mode == "content":
            assert r.status_code == 200, raw  # the hostile upstream speaks this backend's protocol
            assert "[REDACTED]" in raw


def test_no_key_reaches_the_log(hostile):
    # Runs after the cells above (same module, declared last): the log has seen every one of them.
    requests.post(hostile.url + "/v1/chat/completions", json={"model": "h-gpt", "messages": [
        {"role": "user", "content": "Hi"}]}, headers={"X-Hostile": "error_body"}, timeout=20)
    log = hostile.output()
    assert "upstream error" in log  # the log did record the failures...
    assert leaks(log) == []  # ...and none of the keys
