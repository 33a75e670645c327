"""The request inspector's Send against the mock server, through POST /admin/inspect on a
running proxy (config-mock.toml, the admin key as a bearer): the upstream reply as received
and the client's reply are what the request path itself gives."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ServerProcess

ADMIN_KEY = "inspector-test-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TEXT = "Hello! I'm a mock assistant. How can I help you today?"  # scenarios/*/text.yaml
CHAT = {"model": "claude-3-sonnet", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    mock = ServerProcess(["mock"])
    try:
        proxy = ServerProcess(["serve", "--config", "config-mock.toml"], env={
            "MOCK_URL": mock.url, "INTERCHANGE_ADMIN_KEY": ADMIN_KEY,
            "XDG_DATA_HOME": str(tmp_path_factory.mktemp("inspector-state"))})
    except Exception:
        mock.stop()
        raise
    yield proxy.url
    proxy.stop()
    mock.stop()


def inspect(proxy: str, **data) -> dict:
    r = requests.post(proxy + "/admin/inspect", json=data, headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_send_shows_the_converse_reply_and_the_chat_completion_a_client_gets(proxy):
    out = inspect(proxy, protocol="openai", request=CHAT, send=True)
    upstream = out["upstream_reply"]
    assert upstream["status"] == 200
    assert upstream["body"]["output"] == {"message": {"role": "assistant", "content": [{"text": TEXT}]}}
    client = out["client_reply"]
    assert (client["status"], client["headers"]) == (200, {"Content-Type": "application/json"})
    # The same request from a real client: the same reply, but for its id and timestamp.
    real = requests.post(proxy + "/v1/chat/completions", json=CHAT, timeout=30).json()
    assert {k: v for k, v in client["body"].items() if k not in ("id", "created")} == \
           {k: v for k, v in real.items() if k not in ("id", "created")}
    assert real["choices"][0]["message"]["content"] == TEXT and real["model"] == "claude-3-sonnet"


def test_an_upstream_error_is_shown_as_received_and_as_the_client_would_get_it(proxy):
    out = inspect(proxy, protocol="anthropic", model="no-such-model", prompt="Hi", send=True)
    assert (out["route"]["backend"], out["route"]["reason"]) == ("runpod", "default")  # config-mock's default
    assert out["upstream_reply"]["status"] == 404
    assert out["upstream_reply"]["body"]["error"]["message"] == "The model `no-such-model` does not exist."
    # As the request path answers it: nobody maps the model and the default provider does not know it.
    assert out["client_reply"]["status"] == 404
    error = out["client_reply"]["body"]["error"]
    assert error["type"] == "not_found_error"
    assert error["message"].startswith("model: Model 'no-such-model' is not configured, and the default provider 'runpod' "
                                       "does not know it (The model `no-such-model` does not exist). "
                                       "Available models: gpt-high, ")
    real = requests.post(proxy + "/v1/messages", timeout=30, headers={"anthropic-version": "2023-06-01"},
                         json={"model": "no-such-model", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hi"}]})
    assert (real.status_code, real.json()) == (404, out["client_reply"]["body"])


def test_a_gemini_client_on_the_openai_backend(proxy):
    out = inspect(proxy, protocol="gemini", model="gpt-5-nano", prompt="Hi", send=True)
    assert out["client_request"]["path"] == "/v1beta/models/gpt-5-nano:generateContent"
    assert out["upstream_reply"]["body"]["object"] == "chat.completion"
    body = out["client_reply"]["body"]
    assert body["candidates"][0]["content"] == {"role": "model", "parts": [{"text": TEXT}]}
    assert body["modelVersion"] == "gpt-5-nano"
