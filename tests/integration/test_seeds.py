"""The seed documents' own examples (../shared/seeds), as written, with only the hosts pointed at
the mock. Each config below is the seed's block verbatim (checked against the seed file when the
shared folder is present); each request is the seed's own."""
from __future__ import annotations

import json
import re

import pytest
import requests

from app.config import load_config
from app.server import create_app
from tests.conftest import REPO

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
