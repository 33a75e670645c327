"""The openai SDK through the proxy to each provider kind that needs its own
URLs and credentials (Azure Chat and Responses, Vertex Gemini, Claude on Vertex, Bedrock
Converse, Ollama native and OpenAI-compatible, RunPod's queue and its vLLM worker's OpenAI route), at the strict mock: text, a tool call and streams parse to the
fixtures' content with the SDK's own accumulators."""
from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import ServerProcess
from tests.provider_configs import ISOLATED, kind_blocks, service_account

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
MODELS = ["azure-gpt-4o", "azure-responses-gpt-4o", "vertex-gemini-2.5-pro", "vertex-claude-sonnet-4-5", "claude-3-sonnet", "nova-pro",
          "ollama-llama3.2", "ollama-mistral-small",
          "runpod-mistral-7b", "runpod-openai-mistral-7b"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather",
                                           "parameters": {"type": "object", "required": ["location"],
                                                          "properties": {"location": {"type": "string",
                                                                                      "description": "City name"}}}}}]


@pytest.fixture(scope="module")
def oa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdk-kinds")
    mock = ServerProcess(["mock"])
    config = tmp / "kinds.toml"
    config.write_text(kind_blocks(mock.url, service_account(tmp, mock.url)))
    try:
        proxy = ServerProcess(["serve", "--config", str(config)], env=ISOLATED)
    except Exception:
        mock.stop()
        raise
    yield openai.OpenAI(base_url=proxy.url + "/v1", api_key="client-key", max_retries=0, timeout=20)
    proxy.stop()
    mock.stop()


@pytest.mark.parametrize("model", MODELS)
def test_text(oa, model):
    r = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content == TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.model == model
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_stream(oa, model):
    with oa.chat.completions.stream(model=model, messages=[{"role": "user", "content": "Hi"}],
                                    stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", MODELS)
def test_tool_call(oa, model, stream):
    kw = dict(model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    if stream:
        with oa.chat.completions.stream(**kw) as s:
            choice = s.get_final_completion().choices[0]
    else:
        choice = oa.chat.completions.create(**kw).choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
