"""The seed documents' own examples (../shared/seeds), as written, with only the hosts pointed at
the mock. Each config below is the seed's block verbatim (checked against the seed file when the
shared folder is present); each request is the seed's own."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest
import requests

from app.config import load_config
from app.env_config import env_config
from app.server import create_app
from tests.conftest import REPO, ServerProcess

SEEDS = REPO.parent / "shared" / "seeds"

# 000_75d49e3733daf4e5.txt, "Configuration Example"
SEED_000_CONFIG = '''\
[backends.openai]
url = "https://api.openai.com"
protocol = "openai"
[backends.openai.model_mapping]
"gpt-5-nano" = "gpt-5-nano"
"gpt-4" = "gpt-4"

[backends.gemini]
url = "https://generativelanguage.googleapis.com"
protocol = "gemini"
[backends.gemini.model_mapping]
"gemini-2.5-flash" = "gemini-2.5-flash"
"gemini-2.0-flash" = "gemini-2.0-flash-exp"
'''

# 001_730fb21e1aa4a428.txt, "Example Usage" / "Configuration"
SEED_001_CONFIG = '''\
[backends.gemini-flash]
url = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
protocol = "gemini"
api_key_env = "GEMINI_API_KEY"

[backends.gemini-flash.model_mapping]
"gpt-4" = "gemini-2.5-flash"
"gpt-4-turbo" = "gemini-2.5-flash"
"gpt-3.5-turbo" = "gemini-2.0-flash"
'''

# 001, "Client Request": the curl's body
SEED_001_CURL_BODY = '''{
    "model": "gpt-4",
    "messages": [{"role": "user", "content": "Hello!"}],
    "max_tokens": 100,
    "stream": true
  }'''

HOSTS = ("https://api.openai.com", "https://generativelanguage.googleapis.com")


@pytest.mark.parametrize("seed,text", [("000_75d49e3733daf4e5.txt", SEED_000_CONFIG),
                                       ("001_730fb21e1aa4a428.txt", SEED_001_CONFIG)])
def test_the_configs_here_are_the_seeds_own(seed, text):
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not present")
    blocks = re.findall(r"```toml\n(.*?)```", (SEEDS / seed).read_text(encoding="utf-8"), re.S)
    assert text in blocks


def seed_app(tmp_path, monkeypatch, stack, config_text):
    """The seed's config with only its hosts pointed at the mock; keys from the environment."""
    for host in HOSTS:
        config_text = config_text.replace(host, stack.mock_url)
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "seed-test-key")
    cfg = tmp_path / "seed.toml"
    cfg.write_text(config_text)
    return create_app(load_config(cfg)).test_client()


def mock_log(stack):
    return requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()


def clear_log(stack):
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5).raise_for_status()


SEARCH_TOOL = {"name": "search", "description": "Search the web",
               "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}


def gemini_request(tools: bool) -> dict:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello!" if not tools else "Search for cats"}]}]}
    if tools:
        body["tools"] = [{"functionDeclarations": [SEARCH_TOOL]}]
    return body


def openai_request(model: str, tools: bool) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello!" if not tools else "Search for cats"}]}
    if tools:
        body["tools"] = [{"type": "function", "function": SEARCH_TOOL}]
    return body


# Seed 000's four cells, and the mock log lines it shows for them ("Detected scenario: …").
@pytest.mark.parametrize("frontend,model,tools,scenario,path", [
    ("gemini", "gpt-5-nano", False, "openai/text", "/v1/chat/completions"),
    ("gemini", "gpt-5-nano", True, "openai/function_calling", "/v1/chat/completions"),
    ("openai", "gemini-2.5-flash", False, "gemini/text", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ("openai", "gemini-2.5-flash", True, "gemini/function_calling", "/v1beta/models/gemini-2.5-flash:generateContent"),
], ids=["gemini-openai-text", "gemini-openai-tools", "openai-gemini-text", "openai-gemini-tools"])
def test_seed_000_cross_protocol_cells(tmp_path, monkeypatch, stack, frontend, model, tools, scenario, path):
    client = seed_app(tmp_path, monkeypatch, stack, SEED_000_CONFIG)
    clear_log(stack)
    if frontend == "gemini":
        r = client.post(f"/v1beta/models/{model}:generateContent", json=gemini_request(tools))
    else:
        r = client.post("/v1/chat/completions", json=openai_request(model, tools))
    assert r.status_code == 200, r.get_data(as_text=True)
    (entry,) = mock_log(stack)
    assert (f"{entry['provider']}/{entry['scenario']}", entry["path"]) == (scenario, path)
    data = r.get_json()
    if frontend == "gemini":
        (part,) = data["candidates"][0]["content"]["parts"]
        if tools:
            assert (part["functionCall"]["name"], part["functionCall"]["args"]) == ("get_weather", {"location": "Paris"})
        else:
            assert part == {"text": "Hello! I'm a mock assistant. How can I help you today?"}
        assert entry["body"]["model"] == "gpt-5-nano"
    else:
        message = data["choices"][0]["message"]
        if tools:
            (call,) = message["tool_calls"]
            assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == \
                ("get_weather", {"location": "Paris"})
        else:
            assert message["content"] == "Hello! I'm a mock assistant. How can I help you today?"
        assert data["model"] == "gemini-2.5-flash"


def test_seed_001_streamed_gpt4_curl_reaches_gemini_flash(tmp_path, monkeypatch, stack):
    client = seed_app(tmp_path, monkeypatch, stack, SEED_001_CONFIG)
    clear_log(stack)
    r = client.post("/v1/chat/completions", data=SEED_001_CURL_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    frames = [line[len("data: "):] for line in r.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "Hello! I'm a mock assistant. How can I help you today?"
    assert {c["model"] for c in chunks} == {"gpt-4"}  # the name the client asked for
    (entry,) = mock_log(stack)
    assert (entry["provider"], entry["scenario"], entry["path"], entry["query"]) == \
        ("gemini", "text", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"alt": "sse"})
    assert entry["body"]["generationConfig"]["maxOutputTokens"] == 100


# ---------------------------------------------------------------- seed 002: the multi-backend router

SEED_002 = "002_2ac9e0b02df7ec36.txt"

# 002, "Adding a New Model"
SEED_002_MODELS_YAML = '''\
models:
  my-new-model:
    backend: anthropic  # or azure
    api_model: claude-sonnet-4.5-20250514
    max_tokens: 8192
'''

# 002, "Model Configuration Options"
SEED_002_OPTIONS = '''\
**Azure models:**
- `backend`: "azure"
- `api_model`: Azure model name (e.g., "gpt-5")
- `reasoning_effort`: "minimal" | "low" | "medium" | "high"
- `deployment_name`: (optional) Azure deployment name
- `summary_level`: (optional) "auto" | "detailed" | "concise"
- `verbosity_level`: (optional) "low" | "medium" | "high"
- `truncation_strategy`: (optional) "auto" | "disabled"

**Anthropic models:**
- `backend`: "anthropic"
- `api_model`: Anthropic model ID (e.g., "claude-sonnet-4.5-20250514")
- `max_tokens`: (optional) Default max tokens (default: 8192)
'''

# 002, "Usage Examples": the two curls' bodies, as written
SEED_002_CURL_BODY = '''{
    "model": "%s",
    "messages": [{"role": "user", "content": "Hello!"}],
    "stream": true
  }'''

SERVICE_KEY = "seed-service-key-0123456789"
AZURE_EFFORTS = {"gpt-high": "high", "gpt-medium": "medium", "gpt-low": "low", "gpt-minimal": "minimal"}


def test_seed_002_models_yaml_and_options_are_the_seeds_own():
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not present")
    text = (SEEDS / SEED_002).read_text(encoding="utf-8")
    assert SEED_002_MODELS_YAML in re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert SEED_002_OPTIONS in text


def _options(kind: str) -> dict[str, list[str]]:
    """The seed's option names for Azure or Anthropic models, with the values it lists (quoted)."""
    section = SEED_002_OPTIONS.split(f"**{kind} models:**\n")[1].split("\n\n")[0]
    return {m.group(1): re.findall(r'"([^"]+)"', m.group(2))
            for m in re.finditer(r"^- `(\w+)`: (.*)$", section, re.M)}


def _load_models(tmp_path, backends: str, models_yaml: str):
    (tmp_path / "models.yaml").write_text(models_yaml)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nmodels_file = "models.yaml"\n' + backends)
    return load_config(cfg)


ANTHROPIC_BACKEND = '[backends.anthropic]\nkind = "anthropic"\nurl = "http://127.0.0.1:1"\napi_key = "k"\n'
AZURE_BACKEND = ('[backends.azure]\nkind = "azure_responses"\nurl = "http://127.0.0.1:1"\napi_key = "k"\n')


def test_seed_002_models_yaml_example_loads_with_its_max_tokens(tmp_path):
    config = _load_models(tmp_path, ANTHROPIC_BACKEND, SEED_002_MODELS_YAML)
    m = config.models["my-new-model"]
    assert (m.backend, m.api_model, m.max_tokens) == ("anthropic", "claude-sonnet-4.5-20250514", 8192)


def test_seed_002_anthropic_options_and_their_default(tmp_path):
    assert _options("Anthropic") == {"backend": ["anthropic"], "api_model": ["claude-sonnet-4.5-20250514"],
                                     "max_tokens": []}
    config = _load_models(tmp_path, ANTHROPIC_BACKEND,
                          "models:\n  c:\n    backend: anthropic\n    api_model: claude-x\n")
    assert config.models["c"].max_tokens == 8192  # "(default: 8192)"


def test_seed_002_every_azure_option_value_loads(tmp_path):
    options = _options("Azure")
    assert list(options) == ["backend", "api_model", "reasoning_effort", "deployment_name", "summary_level",
                             "verbosity_level", "truncation_strategy"]
    read = {"reasoning_effort": lambda m: m.reasoning_effort, "summary_level": lambda m: m.summary_level,
            "verbosity_level": lambda m: m.wire_options["verbosity"],
            "truncation_strategy": lambda m: m.wire_options["truncation"]}
    assert {k for k, v in options.items() if len(v) > 1} == set(read)
    for option, values in ((k, options[k]) for k in read):
        for value in values:
            config = _load_models(tmp_path, AZURE_BACKEND, f"models:\n  m:\n    backend: azure\n"
                                  f"    api_model: gpt-5\n    deployment_name: dep\n    {option}: {value}\n")
            m = config.models["m"]
            assert (read[option](m), m.api_model, m.upstream_model) == (value, "gpt-5", "dep")


def seed_002_app(monkeypatch, stack, config="config-mock.toml"):
    monkeypatch.setenv("MOCK_URL", stack.mock_url)
    return create_app(load_config(REPO / config), service_key=SERVICE_KEY).test_client()


def curl_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {SERVICE_KEY}"}


def sse_text(data: str) -> str:
    frames = [line[len("data: "):] for line in data.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in map(json.loads, frames[:-1]) if c["choices"])


def _post_curl(client, model: str):
    return client.post("/chat/completions", data=SEED_002_CURL_BODY % model, headers=curl_headers())


def _check_anthropic_curl(client, stack):
    clear_log(stack)
    r = _post_curl(client, "claude-sonnet-4-5")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert sse_text(r.get_data(as_text=True)) == "Hello! I'm a mock assistant. How can I help you today?"
    (entry,) = mock_log(stack)
    assert (entry["provider"], entry["path"], entry["body"]["model"]) == ("anthropic", "/v1/messages",
                                                                         "claude-sonnet-4-5")
    assert "authorization" not in entry["headers"]  # the service key stays here
    return entry


def _check_azure_curls(client, stack):
    for model, effort in AZURE_EFFORTS.items():
        clear_log(stack)
        r = _post_curl(client, model)
        assert r.status_code == 200, r.get_data(as_text=True)
        # Above minimal effort the mock replays its thinking scenario; a Chat client sees its
        # answer (Chat has no field for the reasoning summary).
        expected = "Hello! I'm a mock assistant. How can I help you today?" if effort == "minimal" \
            else "The answer is 42."
        assert sse_text(r.get_data(as_text=True)) == expected
        (entry,) = mock_log(stack)
        assert entry["path"].endswith("/responses")
        assert entry["body"]["reasoning"] == {"effort": effort}
        assert "authorization" not in entry["headers"]


def _check_errors(client, models: list[str], default: str | None = None):
    """The seed's not-found for an unknown model; with a default provider (that does not know the
    model either: it was asked), the same error saying so."""
    r = client.post("/chat/completions", headers=curl_headers(),
                    data='{"model": "unknown-model", "messages": [{"role": "user", "content": "Hello!"}]}')
    assert r.status_code == 404
    why = "" if default is None else (f", and the default provider '{default}' does not know it "
                                      "(The model `unknown-model` does not exist)")
    assert r.get_json() == {"error": {
        "message": f"Model 'unknown-model' is not configured{why}. Available models: {', '.join(models)}",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


def _check_service_key(client):
    body = SEED_002_CURL_BODY % "claude-sonnet-4-5"
    for headers in ({"Content-Type": "application/json"},
                    {"Content-Type": "application/json", "Authorization": "Bearer wrong"},
                    {"Content-Type": "application/json", "Authorization": SERVICE_KEY}):
        r = client.post("/chat/completions", data=body, headers=headers)
        assert r.status_code == 401
        error = r.get_json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        assert SERVICE_KEY not in r.get_data(as_text=True)
    assert client.get("/models").status_code == 401
    assert client.get("/health").status_code == 200  # open: load balancers probe it without a key
    # Each SDK's own key header, as its clients send the key.
    r = client.post("/v1/messages", headers={"x-api-key": SERVICE_KEY, "anthropic-version": "2023-06-01"},
                    json={"model": "claude-sonnet-4-5", "max_tokens": 50,
                          "messages": [{"role": "user", "content": "Hello!"}]})
    assert r.status_code == 200, r.get_data(as_text=True)
    r = client.post("/v1/messages", headers={"x-api-key": "wrong", "anthropic-version": "2023-06-01"},
                    json={"model": "claude-sonnet-4-5", "max_tokens": 50,
                          "messages": [{"role": "user", "content": "Hello!"}]})
    assert (r.status_code, r.get_json()["type"], r.get_json()["error"]["type"]) == \
        (401, "error", "authentication_error")
    r = client.post("/v1beta/models/claude-sonnet-4-5:generateContent", headers={"x-goog-api-key": "wrong"},
                    json={"contents": [{"parts": [{"text": "Hello!"}]}]})
    assert (r.status_code, r.get_json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    r = client.post(f"/v1beta/models/claude-sonnet-4-5:generateContent?key={SERVICE_KEY}",
                    json={"contents": [{"parts": [{"text": "Hello!"}]}]})
    assert r.status_code == 200, r.get_data(as_text=True)


def _check_models_list(client, first: list[str]):
    r = client.get("/models", headers={"Authorization": f"Bearer {SERVICE_KEY}"})
    assert r.status_code == 200
    data = r.get_json()
    assert data["object"] == "list"
    ids = [m["id"] for m in data["data"]]
    assert ids[:len(first)] == first
    assert {m["object"] for m in data["data"]} == {"model"}
    return ids


def test_seed_002_curls_against_config_mock(monkeypatch, stack):
    client = seed_002_app(monkeypatch, stack)
    _check_anthropic_curl(client, stack)
    ids = _check_models_list(client, list(AZURE_EFFORTS))
    assert "claude-sonnet-4-5" in ids
    _check_errors(client, ids, default="runpod")  # config-mock.toml's default provider (seed 003)
    # The seed's router has no default provider: its example as written, with config-mock's turned off.
    config = load_config(REPO / "config-mock.toml")
    no_default = dataclasses.replace(config, server=dataclasses.replace(config.server, default_provider=None))
    _check_errors(create_app(no_default, service_key=SERVICE_KEY).test_client(), ids)
    _check_service_key(client)
    _check_azure_curls(client, stack)


ENV_ONLY = ("MODEL_CONFIG_PATH", "AZURE_API_KEY", "AZURE_BASE_URL", "AZURE_DEPLOYMENT", "AZURE_API_VERSION",
            "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "SERVICE_API_KEY")


def env_only_env(stack) -> dict[str, str]:
    """The seed's environment variables, with its hosts pointed at the mock."""
    return {"MODEL_CONFIG_PATH": "app/models.yaml", "AZURE_API_KEY": "your-azure-key",
            "AZURE_BASE_URL": stack.mock_url, "AZURE_DEPLOYMENT": "gpt-5", "AZURE_API_VERSION": "2025-04-01-preview",
            "ANTHROPIC_API_KEY": "your-anthropic-key", "ANTHROPIC_BASE_URL": stack.mock_url,
            "SERVICE_API_KEY": SERVICE_KEY}


SHIPPED = ["gpt-high", "gpt-medium", "gpt-low", "gpt-minimal", "claude-sonnet-4-5", "claude-opus-4-5",
           "claude-haiku-4-5"]


def test_seed_002_env_only_serve_runs_the_curls(stack):
    """`interchange serve` with no --config, only the seed's environment: the real process."""
    proxy = ServerProcess(["serve"], env=env_only_env(stack))
    try:
        class Client:  # the test-client calls above, over HTTP
            def post(self, path, data=None, json=None, headers=None):
                return _Reply(requests.post(proxy.url + path, data=data, json=json, headers=headers, timeout=10))

            def get(self, path, headers=None):
                return _Reply(requests.get(proxy.url + path, headers=headers, timeout=10))
        client = Client()
        _check_anthropic_curl(client, stack)
        _check_azure_curls(client, stack)
        assert _check_models_list(client, SHIPPED) == SHIPPED
        _check_errors(client, SHIPPED)
        _check_service_key(client)
    finally:
        proxy.stop()


class _Reply:
    """A requests response with the Flask test-response methods the checks use."""

    def __init__(self, r: requests.Response):
        self.status_code, self._r = r.status_code, r

    def get_data(self, as_text=False):
        return self._r.text if as_text else self._r.content

    def get_json(self):
        return self._r.json()


def _env_only_app(monkeypatch, stack, unset: tuple[str, ...] = ()):
    for var, value in env_only_env(stack).items():
        monkeypatch.setenv(var, value)
    for var in unset:
        monkeypatch.delenv(var)
    return create_app(env_config()).test_client()


@pytest.mark.parametrize("var,model", [("ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
                                       ("AZURE_API_KEY", "gpt-high"), ("AZURE_BASE_URL", "gpt-low")])
def test_seed_002_missing_variable_is_a_configuration_error(monkeypatch, stack, var, model):
    client = _env_only_app(monkeypatch, stack, unset=(var,))
    clear_log(stack)
    r = _post_curl(client, model)
    assert r.status_code == 500
    assert r.get_json() == {"error": {"message": f"{var} not set in environment", "type": "configuration_error",
                                      "param": None, "code": "configuration_error"}}
    assert mock_log(stack) == []  # nothing was sent
    assert _post_curl(client, "claude-haiku-4-5" if var != "ANTHROPIC_API_KEY" else "gpt-high").status_code == 200


def test_seed_002_env_only_builds_only_the_backends_its_models_name(tmp_path, monkeypatch, stack):
    (tmp_path / "models.yaml").write_text("models:\n  claude-sonnet-4-5:\n    backend: anthropic\n"
                                          "    api_model: claude-sonnet-4-5\n")
    for var in ENV_ONLY:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODEL_CONFIG_PATH", str(tmp_path / "models.yaml"))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stack.mock_url)
    config = env_config()
    assert list(config.backends) == ["anthropic"]
    assert config.models["claude-sonnet-4-5"].max_tokens == 8192
    client = create_app(config).test_client()  # no SERVICE_API_KEY: open
    r = client.post("/chat/completions", data=SEED_002_CURL_BODY % "claude-sonnet-4-5",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 500
    assert r.get_json()["error"] == {"message": "ANTHROPIC_API_KEY not set in environment",
                                     "type": "configuration_error", "param": None, "code": "configuration_error"}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "your-anthropic-key")
    clear_log(stack)
    r = create_app(env_config()).test_client().post(
        "/chat/completions", data=SEED_002_CURL_BODY % "claude-sonnet-4-5", headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_data(as_text=True)
    (entry,) = mock_log(stack)
    assert (entry["body"]["model"], entry["body"]["max_tokens"]) == ("claude-sonnet-4-5", 8192)
