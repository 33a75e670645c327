"""The OpenRouter mock, as strict as the service: the official `openai` SDK at
`{mock}/api/v1` parses every good scenario (streams open with `: OPENROUTER
PROCESSING` comments and always carry usage), the Bearer key is checked, errors
come in OpenRouter's envelope with integer codes, OpenRouter's own fields are
accepted and checked, and per-model rules (reasoning, images) apply."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from mocks.openrouter import API_KEY
from tests.mocks.helpers import GOOD_SCENARIOS, expected_summary
from tests.mocks.test_openai_sdk import REQUESTS, summary

LLAMA = "meta-llama/llama-3.1-8b-instruct"
R1 = "deepseek/deepseek-r1"
CLAUDE = "anthropic/claude-sonnet-4.5"
USER = [{"role": "user", "content": "Hi"}]
# The OpenAI SDK's requests, on OpenRouter's models: a reasoning one for thinking, a vision one for images.
OR_REQUESTS = {name: {**req, "model": LLAMA} for name, req in REQUESTS.items()}
OR_REQUESTS["thinking"] = {**REQUESTS["thinking"], "model": R1}
OR_REQUESTS["vision"] = {**REQUESTS["vision"], "model": CLAUDE}


@pytest.fixture(scope="module")
def client(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock_url + "/api/v1", api_key=API_KEY, max_retries=0, timeout=10)


def post(mock_url: str, body: dict, key: str | None = API_KEY, **headers) -> requests.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(mock_url + "/api/v1/chat/completions", json=body, headers=headers, timeout=10)


def expected(library, name: str) -> dict:
    out = expected_summary(library.get("openrouter", name).expect)
    out.pop("thinking", None)  # the SDK's types have no slot for it: read from the raw body below
    return out


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_every_good_scenario_through_the_sdk(client, library, name):
    completion = client.chat.completions.create(**OR_REQUESTS[name])
    assert summary(completion) == expected(library, name)
    assert completion.id.startswith("gen-")
    stream = client.chat.completions.create(**OR_REQUESTS[name], stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected(library, name)["text"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected(library, name)["usage"]["output"]


def test_thinking_shows_reasoning_in_replies_and_streams(mock_url, library):
    thinking = library.get("openrouter", "thinking").expect["thinking"]
    message = post(mock_url, OR_REQUESTS["thinking"]).json()["choices"][0]["message"]
    assert message["reasoning"] == thinking
    assert message["reasoning_details"][0] == {"type": "reasoning.text", "text": thinking, "format": "unknown",
                                               "index": 0}
    raw = post(mock_url, {**OR_REQUESTS["thinking"], "stream": True}).text
    assert raw.startswith(": OPENROUTER PROCESSING\n\n")
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("reasoning") or "" for c in chunks if c["choices"]) == thinking


@pytest.mark.parametrize("reasoning", [{"effort": "high"}, {"max_tokens": 2048}, {"enabled": True}])
def test_reasoning_is_ignored_by_a_model_without_it(mock_url, reasoning):
    reply = post(mock_url, {"model": LLAMA, "messages": USER, "reasoning": reasoning})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].startswith("Hello!")
    assert post(mock_url, {"model": R1, "messages": USER, "reasoning": reasoning}).json()["choices"][0][
        "message"]["content"] == "The answer is 42."


def test_images_need_a_vision_model(mock_url):
    reply = post(mock_url, {"model": LLAMA, "messages": OR_REQUESTS["vision"]["messages"]})
    assert (reply.status_code, reply.json()) == (404, {"error": {"code": 404,
                                                                 "message": "No endpoints found that support image input"}})


@pytest.mark.parametrize("key,message", [(None, "No auth credentials found"), ("sk-or-v1-wrong", "User not found.")])
def test_the_key_is_checked(mock_url, key, message):
    reply = post(mock_url, {"model": LLAMA, "messages": USER}, key=key)
    assert (reply.status_code, reply.json()) == (401, {"error": {"code": 401, "message": message}})
    models = requests.get(mock_url + "/api/v1/models", timeout=5,
                          headers={} if key is None else {"Authorization": f"Bearer {key}"})
    assert models.status_code == 401


def test_reasoning_goes_back_in_assistant_turns(mock_url):
    turn = {"role": "assistant", "content": "42", "reasoning": "Hmm.",
            "reasoning_details": [{"type": "reasoning.text", "text": "Hmm."}]}
    assert post(mock_url, {"model": R1, "messages": [*USER, turn, *USER]}).status_code == 200
    reply = post(mock_url, {"model": R1, "messages": [*USER, {**turn, "reasoning": 1}, *USER]})
    assert reply.json() == {"error": {"code": 400, "message": "Invalid type for 'messages[1].reasoning': expected a "
                                                              "string, but got an integer instead."}}


def test_openrouter_fields_are_accepted(mock_url):
    body = {"model": LLAMA, "messages": USER, "models": ["mistralai/mistral-7b-instruct"], "route": "fallback",
            "transforms": ["middle-out"], "provider": {"order": ["deepinfra"], "allow_fallbacks": False,
                                                       "sort": "price"},
            "stream": True, "stream_options": {"include_usage": True}, "top_k": 40}
    assert post(mock_url, body).status_code == 200


@pytest.mark.parametrize("extra,message", [
    ({"colour": "red"}, "Unrecognized request argument supplied: colour"),
    ({"provider": {"fastest": True}}, "Invalid 'provider': unrecognized key 'fastest'."),
    ({"provider": "deepinfra"}, "Invalid 'provider': expected an object."),
    ({"models": ["nope/nope"]}, "nope/nope is not a valid model ID"),
    ({"reasoning": {"effort": "huge"}}, "Invalid 'reasoning.effort': expected one of max, xhigh, high, medium, low, "
                                        "minimal, none."),
    ({"reasoning": {"effort": "low", "max_tokens": 10}}, "Invalid 'reasoning': give effort or max_tokens, not both."),
    ({"model": "meta-llama/llama-9"}, "meta-llama/llama-9 is not a valid model ID"),
    ({"temperature": 3}, "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 "
                         "instead."),
    ({"messages": [{"role": "user", "content": "Hi", "cache": 1}]}, "Unknown parameter: 'messages[0].cache'."),
])
def test_bad_requests_get_openrouters_envelope(mock_url, extra, message):
    reply = post(mock_url, {"model": LLAMA, "messages": USER, **extra})
    assert (reply.status_code, reply.json()) == (400, {"error": {"code": 400, "message": message}})


def test_errors_and_the_402(mock_url):
    for name, status in (("error_402", 402), ("error_429", 429), ("overloaded", 503)):
        reply = post(mock_url, {"model": LLAMA, "messages": USER, "stream": True}, **{"X-Mock-Scenario": name})
        assert reply.status_code == status and reply.json()["error"]["code"] == status
    assert reply.json()["error"]["metadata"] == {"error_type": "provider_overloaded"}


def test_in_stream_error_chunk(mock_url):
    raw = post(mock_url, {"model": LLAMA, "messages": USER, "stream": True},
               **{"X-Mock-Scenario": "error_mid_stream"}).text
    last = json.loads(raw.strip().splitlines()[-1][6:])
    assert last["error"]["code"] == 503 and last["choices"][0]["finish_reason"] == "error"
    assert "[DONE]" not in raw


def test_model_list(mock_url):
    listing = requests.get(mock_url + "/api/v1/models", headers={"Authorization": f"Bearer {API_KEY}"},
                           timeout=5).json()
    models = {m["id"]: m for m in listing["data"]}
    assert LLAMA in models and models[LLAMA]["architecture"]["input_modalities"] == ["text"]
    assert isinstance(models[LLAMA]["pricing"]["prompt"], str)  # USD per token as a decimal string
