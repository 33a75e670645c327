"""The official SDKs as clients of the proxy, for every backend.

Each SDK is pointed at the proxy (base URL) and talks to each configured
backend by model name: non-streamed, streamed with the SDK's own stream
helpers and accumulators, tool calls, and upstream errors surfacing as the
SDK's typed exceptions. The mock's scenarios decide what the backend says.
"""
from __future__ import annotations

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
BACKEND_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
BACKENDS = list(BACKEND_MODELS)
WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string", "description": "City name"}},
                  "required": ["location"]}


def scenario(name: str) -> dict[str, str]:
    return {"X-Mock-Scenario": name}


# ------------------------------------------------------------------ OpenAI SDK


@pytest.fixture(scope="module")
def oa(stack):
    return openai.OpenAI(base_url=stack.proxy_url + "/v1", api_key="client-key", max_retries=0, timeout=20)


OA_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather",
                                               "parameters": WEATHER_SCHEMA}}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_sdk_text(oa, backend):
    r = oa.chat.completions.create(model=BACKEND_MODELS[backend], messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content == TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.model == BACKEND_MODELS[backend]
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_sdk_stream(oa, backend):
    with oa.chat.completions.stream(model=BACKEND_MODELS[backend], messages=[{"role": "user", "content": "Hi"}],
                                    stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_sdk_tool_call(oa, backend, stream):
    kw = dict(model=BACKEND_MODELS[backend], messages=[{"role": "user", "content": "Weather in Paris?"}],
              tools=OA_TOOLS)
    if stream:
        with oa.chat.completions.stream(**kw) as s:
            choice = s.get_final_completion().choices[0]
    else:
        choice = oa.chat.completions.create(**kw).choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_sdk_typed_errors(oa, backend):
    model = BACKEND_MODELS[backend]
    with pytest.raises(openai.RateLimitError) as e:
        oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                   extra_headers=scenario("error_429"))
    assert e.value.response.headers.get("retry-after") == "7"
    with pytest.raises(openai.InternalServerError) as e:
        oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                   extra_headers=scenario("overloaded"))
    assert e.value.status_code == 503
    with pytest.raises(openai.NotFoundError) as e:
        oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model=model, messages=[{"role": "wizard", "content": "Hi"}])
    assert e.value.param and e.value.param.startswith("messages")


# --------------------------------------------------------------- Anthropic SDK


@pytest.fixture(scope="module")
def an(stack):
    return anthropic.Anthropic(base_url=stack.proxy_url, api_key="client-key", max_retries=0, timeout=20)


AN_TOOLS = [{"name": "get_weather", "description": "Get the current weather", "input_schema": WEATHER_SCHEMA}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_sdk_text(an, backend):
    m = an.messages.create(model=BACKEND_MODELS[backend], max_tokens=256,
                           messages=[{"role": "user", "content": "Hi"}])
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == TEXT
    assert m.stop_reason == "end_turn"
    assert m.id.startswith("msg_")
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_sdk_stream(an, backend):
    with an.messages.stream(model=BACKEND_MODELS[backend], max_tokens=256,
                            messages=[{"role": "user", "content": "Hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == TEXT
    assert final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_sdk_tool_call(an, backend, stream):
    kw = dict(model=BACKEND_MODELS[backend], max_tokens=256, tools=AN_TOOLS,
              messages=[{"role": "user", "content": "Weather in Paris?"}])
    if stream:
        with an.messages.stream(**kw) as s:
            m = s.get_final_message()
    else:
        m = an.messages.create(**kw)
    assert m.stop_reason == "tool_use"
    (use,) = [b for b in m.content if b.type == "tool_use"]
    assert use.id and use.name == "get_weather" and use.input == {"location": "Paris"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_sdk_typed_errors(an, backend):
    model = BACKEND_MODELS[backend]
    msgs = [{"role": "user", "content": "Hi"}]
    with pytest.raises(anthropic.RateLimitError) as e:
        an.messages.create(model=model, max_tokens=64, messages=msgs, extra_headers=scenario("error_429"))
    assert e.value.response.headers.get("retry-after") == "7"
    with pytest.raises(anthropic.OverloadedError):
        an.messages.create(model=model, max_tokens=64, messages=msgs, extra_headers=scenario("overloaded"))
    with pytest.raises(anthropic.NotFoundError):
        an.messages.create(model="no-such-model", max_tokens=64, messages=msgs)
    with pytest.raises(anthropic.BadRequestError) as e:
        an.messages.create(model=model, max_tokens=64, messages=[{"role": "system", "content": "x"}])
    assert "messages" in str(e.value)


# ------------------------------------------------------------------ Gemini SDK


@pytest.fixture(scope="module")
def ge(stack):
    return genai.Client(api_key="client-key", http_options=gt.HttpOptions(base_url=stack.proxy_url, timeout=20_000))


GE_TOOL = gt.Tool(function_declarations=[gt.FunctionDeclaration(
    name="get_weather", description="Get the current weather",
    parameters_json_schema=WEATHER_SCHEMA)])
NO_AFC = gt.AutomaticFunctionCallingConfig(disable=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemini_sdk_text(ge, backend):
    r = ge.models.generate_content(model=BACKEND_MODELS[backend], contents="Hi")
    assert r.text == TEXT
    assert r.candidates[0].finish_reason == gt.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count > 0 and r.usage_metadata.candidates_token_count > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemini_sdk_stream(ge, backend):
    chunks = list(ge.models.generate_content_stream(model=BACKEND_MODELS[backend], contents="Hi"))
    assert "".join(c.text or "" for c in chunks) == TEXT
    assert chunks[-1].candidates[0].finish_reason == gt.FinishReason.STOP


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gemini_sdk_tool_call(ge, backend, stream):
    config = gt.GenerateContentConfig(tools=[GE_TOOL], automatic_function_calling=NO_AFC)
    kw = dict(model=BACKEND_MODELS[backend], contents="Weather in Paris?", config=config)
    if stream:
        calls = [fc for c in ge.models.generate_content_stream(**kw) for fc in (c.function_calls or [])]
    else:
        calls = ge.models.generate_content(**kw).function_calls
    (call,) = calls
    assert call.name == "get_weather" and call.args == {"location": "Paris"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemini_sdk_typed_errors(ge, backend):
    model = BACKEND_MODELS[backend]

    def call(name):
        return ge.models.generate_content(
            model=model, contents="Hi",
            config=gt.GenerateContentConfig(http_options=gt.HttpOptions(headers=scenario(name))))

    with pytest.raises(genai_errors.ClientError) as e:
        call("error_429")
    assert (e.value.code, e.value.status) == (429, "RESOURCE_EXHAUSTED")
    with pytest.raises(genai_errors.ServerError) as e:
        call("overloaded")
    assert (e.value.code, e.value.status) == (503, "UNAVAILABLE")
    with pytest.raises(genai_errors.ClientError) as e:
        ge.models.generate_content(model="no-such-model", contents="Hi")
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")
