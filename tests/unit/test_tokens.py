"""Count-tokens endpoints answer every failure in the client's envelope."""
import pytest

from app import tokens
from app.config import load_config
from app.server import create_app

CONFIG = """
[backends.oa]
protocol = "openai"
url = "http://127.0.0.1:9/v1"
api_key = "k"
[backends.oa.model_mapping]
"gpt-x" = "gpt-x"
"""


@pytest.fixture
def client(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(CONFIG)
    return create_app(load_config(p)).test_client()


def _explode(_req):
    raise RuntimeError("a bug")


def test_an_unexpected_failure_is_the_anthropic_envelope_not_flasks_page(client, monkeypatch):
    monkeypatch.setattr(tokens, "estimate_tokens", _explode)
    r = client.post("/v1/messages/count_tokens", json={"model": "gpt-x", "messages": [{"role": "user",
                                                                                       "content": "hi"}]})
    assert (r.status_code, r.headers["Content-Type"]) == (500, "application/json")
    assert r.get_json() == {"type": "error", "error": {"type": "api_error", "message": "Internal proxy error."}}


def test_an_unexpected_failure_is_the_gemini_envelope(client, monkeypatch):
    monkeypatch.setattr(tokens, "estimate_tokens", _explode)
    r = client.post("/v1beta/models/gpt-x:countTokens", json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 500 and r.get_json()["error"]["message"] == "Internal proxy error."


def test_estimate_without_a_failure(client):
    r = client.post("/v1beta/models/gpt-x:countTokens", json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert (r.status_code, r.get_json(), r.headers["X-Interchange-Token-Count"]) == (
        200, {"totalTokens": 5}, "estimate")
