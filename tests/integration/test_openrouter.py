"""The OpenRouter backend through the proxy: while OpenRouter sends only its
`: OPENROUTER PROCESSING` comments (a queued model), every client hears a
keep-alive in its own protocol before the first content, and the official SDKs
read those streams unharmed; its in-stream error and its 402 reach clients as
errors in their envelopes."""
from __future__ import annotations

import time

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import types as genai_types

from tests.client_requests import FRONTENDS, client_request, error_message

MODEL = "openrouter-llama-3.1-8b"
TEXT = "Hello! I'm a mock assistant. How can I help you today?"
SLOW = {"X-Mock-Scenario": "processing_keepalive"}  # 3 comments 0.4 s apart, content after 1.2 s
# Each frontend's keep-alive, and what its first content starts with.
KEEPALIVE = {"openai": (b": keep-alive\n\n", b"data: "), "openai_responses": (b": keep-alive\n\n", b"event: "),
             "anthropic": (b'event: ping\ndata: {"type":"ping"}\n\n', b"event: message_start"),
             "gemini": (b"\n", b"data: ")}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_keepalives_reach_the_client_before_the_first_content(stack, frontend):
    path, headers, body = client_request(frontend, MODEL, stream=True)
    started = time.monotonic()
    received: list[tuple[float, bytes]] = []
    with requests.post(stack.proxy_url + path, json=body, headers={**headers, **SLOW}, stream=True, timeout=10) as r:
        assert r.status_code == 200
        for piece in r.iter_content(chunk_size=None):
            received.append((time.monotonic() - started, piece))
    data = b"".join(p for _, p in received)
    keepalive, content = KEEPALIVE[frontend]
    head = data[:data.index(content)]
    assert head == keepalive * 3  # one per upstream comment, nothing else before the content
    assert received[0][0] < 0.9 and received[0][1].startswith(keepalive)  # long before the content (1.2 s)
    assert b" today" in data  # the content's last word: it all arrived after them


def test_official_sdks_read_streams_with_keepalives(stack):
    chat = openai.OpenAI(base_url=stack.proxy_url + "/v1", api_key="k", max_retries=0, timeout=10)
    chunks = chat.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True,
                                          extra_headers=SLOW)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    events = chat.responses.create(model=MODEL, input="Hi", stream=True, extra_headers=SLOW)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT

    claude = anthropic.Anthropic(base_url=stack.proxy_url, api_key="k", max_retries=0, timeout=10)
    with claude.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}],
                                extra_headers=SLOW) as stream:
        assert stream.get_final_text() == TEXT

    gemini = genai.Client(api_key="k", http_options=genai_types.HttpOptions(base_url=stack.proxy_url,
                                                                           headers=SLOW))
    parts = gemini.models.generate_content_stream(model=MODEL, contents="Hi")
    assert "".join(p.text or "" for p in parts) == TEXT


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_the_402_reaches_the_client_as_an_exhausted_quota(stack, frontend):
    path, headers, body = client_request(frontend, MODEL, stream=False)
    r = requests.post(stack.proxy_url + path, json=body, headers={**headers, "X-Mock-Scenario": "error_402"},
                      timeout=10)
    assert r.status_code == 429
    assert "Insufficient credits" in error_message(frontend, r.json())
    if frontend in ("openai", "openai_responses"):
        assert r.json()["error"]["type"] == "insufficient_quota"


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_the_in_stream_error_reaches_the_client_in_its_stream(stack, frontend):
    path, headers, body = client_request(frontend, MODEL, stream=True)
    r = requests.post(stack.proxy_url + path, json=body, headers={**headers, "X-Mock-Scenario": "error_mid_stream"},
                      timeout=10)
    assert r.status_code == 200
    text = r.text
    assert "Hello" in text and "overloaded" in text
    assert "[DONE]" not in text and '"finish_reason":"stop"' not in text
