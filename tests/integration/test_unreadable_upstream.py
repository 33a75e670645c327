"""An upstream reply that cannot be read is a failure on every hop, the
same-protocol passthrough included (the watching parser decides): a 502 in
the client's envelope when not streamed, an in-stream error event and no
clean finish when streamed. Every frontend x every configured backend of the
demo config (so a backend added there is covered here too)."""
from __future__ import annotations

import itertools
import json

import pytest
import requests

from app.config import load_config
from tests.conftest import REPO

CONFIG = load_config(REPO / "config-mock.toml")
# A model each configured backend serves (its first mapped name).
BACKEND_MODELS = {name: next(iter(b.model_mapping)) for name, b in CONFIG.backends.items() if b.model_mapping}
FRONTENDS = ("openai", "anthropic", "gemini")
# Plain routes (by model name) and protocol mode (the backend pinned by URL).
CELLS = list(itertools.product(FRONTENDS, BACKEND_MODELS, ("plain", "pinned")))
IDS = [f"{f}-{b}-{how}" for f, b, how in CELLS]


def request_for(frontend: str, backend: str, stream: bool, how: str) -> tuple[str, dict, dict]:
    path, headers, body = _request(frontend, BACKEND_MODELS[backend], stream)
    return (f"/{frontend}/{backend}{path}" if how == "pinned" else path), headers, body


def _request(frontend: str, model: str, stream: bool) -> tuple[str, dict, dict]:
    messages = [{"role": "user", "content": "Hi"}]
    if frontend == "openai":
        return "/v1/chat/completions", {}, {"model": model, "messages": messages, "stream": stream}
    if frontend == "anthropic":
        return ("/v1/messages", {"anthropic-version": "2023-06-01", "x-api-key": "client"},
                {"model": model, "max_tokens": 50, "messages": messages, "stream": stream})
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{action}", {}, {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def envelope_kind(frontend: str, doc: dict) -> str:
    """The error type a client of `frontend` reads from an error body or event."""
    if frontend == "anthropic":
        assert doc["type"] == "error"
        return doc["error"]["type"]
    if frontend == "openai":
        assert set(doc["error"]) == {"message", "type", "param", "code"}
        return doc["error"]["type"]
    assert {"code", "message", "status"} <= set(doc["error"])
    return doc["error"]["status"]


BAD_GATEWAY = {"openai": "bad_gateway", "anthropic": "api_error", "gemini": "UNAVAILABLE"}


@pytest.mark.parametrize("frontend,backend,how", CELLS, ids=IDS)
def test_unreadable_reply_is_a_502(stack, frontend, backend, how):
    path, headers, body = request_for(frontend, backend, False, how)
    r = requests.post(stack.proxy_url + path, json=body, timeout=20,
                      headers={**headers, "X-Mock-Scenario": "malformed_body"})
    assert r.status_code == 502, r.text
    envelope_kind(frontend, r.json())


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if name is not None or data:  # a comment-only block (a keep-alive) dispatches nothing
            events.append((name, "\n".join(data)))
    return events


@pytest.mark.parametrize("frontend,backend,how", CELLS, ids=IDS)
def test_unreadable_stream_frame_ends_in_an_error_event(stack, frontend, backend, how):
    path, headers, body = request_for(frontend, backend, True, how)
    r = requests.post(stack.proxy_url + path, json=body, timeout=20,
                      headers={**headers, "X-Mock-Scenario": "malformed_body"})
    assert r.status_code == 200
    events = sse_events(r.text)
    # Every frame the client got is readable JSON (the broken one was not relayed)...
    for _name, data in events:
        assert data == "[DONE]" or json.loads(data) is not None
    # ...the last is the protocol's error event, and nothing announced a clean finish.
    name, data = events[-1]
    doc = json.loads(data)
    if frontend == "anthropic":
        assert name == "error"
    envelope_kind(frontend, doc)
    assert "[DONE]" not in r.text and "message_stop" not in r.text and '"finishReason"' not in r.text
