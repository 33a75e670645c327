"""The official openai SDK's Responses client (`client.responses`) against the
proxy, for a model of every configured backend (config-mock.toml): plain and
streamed with the SDK's accumulator, function tools over two turns, reasoning
summaries, json_schema output, max_output_tokens, upstream errors as the SDK's
typed exceptions, and Codex's custom and namespace tools on other wires.
"""
from __future__ import annotations

import json

import requests
import openai
import pytest

from tests.backend_models import BACKENDS, MOCK_PROVIDER, MODELS, can

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
# Backends whose wire returns reasoning text (OpenAI and Azure Chat return none to summarise).
REASONING_MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash",
                    "vertex": "vertex-gemini-2.5-pro", "vertex-anthropic": "vertex-claude-sonnet-4-5",
                    "bedrock": "claude-3-sonnet", "azure-responses": "azure-gpt-5"}
WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string", "description": "City name"}},
                  "required": ["location"]}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Get the current weather",
          "parameters": WEATHER_SCHEMA}]


def scenario(name: str) -> dict[str, str]:
    return {"X-Mock-Scenario": name}


@pytest.fixture(scope="module")
def oa(stack):
    return openai.OpenAI(base_url=stack.proxy_url + "/v1", api_key="client-key", max_retries=0, timeout=20)


def streamed(oa, **kw):
    """The SDK's stream helper run to its end: (events, final response), with the
    stream's invariants checked on the way (sequence numbers, every `.done`). An
    incomplete response ends with `response.incomplete`, as OpenAI's does; the SDK's
    get_final_response() only knows `response.completed`, so that one is read off the event."""
    with oa.responses.stream(**kw) as s:
        events = list(s)
        final = s.get_final_response() if events[-1].type == "response.completed" else events[-1].response
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[1] == "response.in_progress"
    assert types[-1] in ("response.completed", "response.incomplete")
    added = [e.item.id for e in events if e.type == "response.output_item.added"]
    done = [e.item.id for e in events if e.type == "response.output_item.done"]
    assert added == done == [item.id for item in final.output]
    for opened, closed in (("response.output_text.delta", "response.output_text.done"),
                           ("response.function_call_arguments.delta", "response.function_call_arguments.done"),
                           ("response.reasoning_summary_text.delta", "response.reasoning_summary_text.done")):
        if opened in types:
            assert closed in types, (opened, types)
    text_parts = [e for e in events if e.type == "response.content_part.added"]
    assert len(text_parts) == types.count("response.content_part.done")
    return events, final


def last_upstream_body(stack, backend: str) -> dict:
    entries = requests.get(stack.mock_url + "/_mock/requests", timeout=5,
                        params={"provider": MOCK_PROVIDER[backend]}).json()
    return entries[-1]["body"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_text(oa, backend):
    r = oa.responses.create(model=MODELS[backend], input="Hi", instructions="Be brief.", temperature=0.5,
                            top_p=0.9, metadata={"ticket": "7"}, store=False, prompt_cache_key="k1")
    assert r.output_text == TEXT
    assert r.status == "completed" and r.incomplete_details is None
    assert r.model == MODELS[backend]
    assert r.id.startswith("resp_")
    assert [item.type for item in r.output] == ["message"]
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if backend != "azure-responses":  # same wire: the mock's fixture reply is relayed as is, echoing nothing
        assert r.metadata == {"ticket": "7"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_stream_text(oa, backend):
    events, final = streamed(oa, model=MODELS[backend], input=[{"role": "user", "content": "Hi"}])
    assert final.output_text == TEXT
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    (done,) = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == TEXT and done.item_id == final.output[0].id
    assert final.status == "completed"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if can(b, "tools")])
def test_responses_function_call_two_turns(oa, backend, stream):
    kw = dict(model=MODELS[backend], input="Weather in Paris?", tools=TOOLS, tool_choice="auto",
              parallel_tool_calls=False)
    r = streamed(oa, **kw)[1] if stream else oa.responses.create(**kw)
    (call,) = [item for item in r.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris"}
    assert call.call_id and call.id and call.status == "completed"
    second = dict(model=MODELS[backend], tools=TOOLS, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'}])
    r2 = streamed(oa, **second)[1] if stream else oa.responses.create(**second)
    assert r2.status == "completed"
    assert r2.output_text and not [item for item in r2.output if item.type == "function_call"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", list(REASONING_MODELS))
def test_responses_reasoning_summary(oa, backend, stream):
    kw = dict(model=REASONING_MODELS[backend], input="What is the answer?",
              reasoning={"effort": "low", "summary": "auto"}, max_output_tokens=4096)
    if stream:
        events, r = streamed(oa, **kw)
        summary_deltas = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    else:
        r = oa.responses.create(**kw)
    reasoning = [item for item in r.output if item.type == "reasoning"]
    assert len(reasoning) == 1 and r.output[0].type == "reasoning"
    summary = "".join(s.text for s in reasoning[0].summary)
    assert summary.strip()
    if stream:
        assert summary_deltas == summary
    assert r.output_text.strip()


@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_json_schema(oa, stack, backend):
    fmt = {"type": "json_schema", "name": "city", "strict": True,
           "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                      "additionalProperties": False}}
    if not can(backend, "json"):
        # Backends without the "json" capability: the router says so, in the SDK's typed error.
        with pytest.raises(openai.BadRequestError):
            oa.responses.create(model=MODELS[backend], input="Where?", text={"format": fmt})
        return
    r = oa.responses.create(model=MODELS[backend], input="Where?", text={"format": fmt, "verbosity": "low"})
    assert r.status == "completed" and r.output_text
    if backend != "azure-responses":  # same wire: the mock's fixture reply is relayed as is, echoing nothing
        assert r.text.format.type == "json_schema"
    sent = json.dumps(last_upstream_body(stack, backend))
    assert '"city"' in sent  # the schema went upstream


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_max_output_tokens(oa, backend, stream):
    kw = dict(model=MODELS[backend], input="Tell me a long story", max_output_tokens=16,
              extra_headers=scenario("max_tokens"))
    r = streamed(oa, **kw)[1] if stream else oa.responses.create(**kw)
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text


@pytest.mark.parametrize("backend", BACKENDS)
def test_responses_typed_errors(oa, backend):
    model = MODELS[backend]
    with pytest.raises(openai.RateLimitError) as e:
        oa.responses.create(model=model, input="Hi", extra_headers=scenario("error_429"))
    assert e.value.response.headers.get("retry-after") == "7"
    with pytest.raises(openai.InternalServerError):
        oa.responses.create(model=model, input="Hi", extra_headers=scenario("overloaded"))
    with pytest.raises(openai.RateLimitError):
        with oa.responses.stream(model=model, input="Hi", extra_headers=scenario("error_429")) as s:
            list(s)
    with pytest.raises(openai.NotFoundError) as e:
        oa.responses.create(model="no-such-model", input="Hi")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        oa.responses.create(model=model, input=[{"role": "wizard", "content": "Hi"}])
    assert e.value.param and e.value.param.startswith("input")
    with pytest.raises(openai.BadRequestError) as e:
        oa.responses.create(model=model, input="Hi", temperature="hot")
    assert e.value.param == "temperature"


# ------------------------------------------------------------- hosted tools


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "azure-responses" and can(b, "tools")])
def test_responses_droppable_hosted_tools_left_out(oa, stack, backend):
    """web_search and a client-executed tool_search are dropped for a backend that is not a
    Responses one (the client works without them); the function tool still goes."""
    r = oa.responses.create(model=MODELS[backend], input="Weather in Paris?", tools=[
        {"type": "web_search"}, *TOOLS, {"type": "tool_search", "execution": "client"}])
    (call,) = [item for item in r.output if item.type == "function_call"]
    assert call.name == "get_weather"
    sent = json.dumps(last_upstream_body(stack, backend))
    assert "get_weather" in sent and "web_search" not in sent and "tool_search" not in sent


@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini", "bedrock"])
def test_responses_other_hosted_tool_refused(oa, backend):
    with pytest.raises(openai.BadRequestError) as e:
        oa.responses.create(model=MODELS[backend], input="Hi",
                            tools=[*TOOLS, {"type": "code_interpreter", "container": {"type": "auto"}}])
    assert e.value.param == "tools[1]"


# ----------------------------------------------------------- Codex's extras

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}
NAMESPACE = {"type": "namespace", "name": "files", "description": "File tools",
             "tools": [{"type": "function", "name": "read", "description": "Read a file",
                        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("backend", ["anthropic", "gemini", "bedrock", "openai"])
def test_codex_custom_tool_round_trip(oa, stack, backend, stream):
    """A custom tool goes to another wire as a function of one string argument; the
    mock's call of it comes back as a custom_tool_call with the raw input."""
    custom = {**APPLY_PATCH, "name": "get_weather"}  # the name the mock's fixtures call
    kw = dict(model=MODELS[backend], input="Add hello.txt", tools=[custom, NAMESPACE])
    r = streamed(oa, **kw)[1] if stream else oa.responses.create(**kw)
    (call,) = r.output
    assert call.type == "custom_tool_call" and call.name == "get_weather" and call.call_id
    assert json.loads(call.input) == {"location": "Paris"}  # the mock answers without the wrapper: as is
    sent = json.dumps(last_upstream_body(stack, backend))
    assert '"input"' in sent and "files__read" in sent and "namespace" not in sent


@pytest.mark.parametrize("backend", ["anthropic", "bedrock"])
def test_responses_pinned_to_an_instance(stack, backend):
    """Protocol mode: /openai/{instance}/v1/responses is served by that instance."""
    pinned = openai.OpenAI(base_url=f"{stack.proxy_url}/openai/{backend}/v1", api_key="client-key",
                           max_retries=0, timeout=20)
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5).raise_for_status()
    r = pinned.responses.create(model=MODELS[backend], input="Hi")
    assert r.output_text == TEXT and r.model == MODELS[backend]
    entries = requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()
    assert [e["provider"] for e in entries] == [MOCK_PROVIDER[backend]]


# ------------------------------------------------------- same wire: passthrough


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_to_a_responses_backend_passes_the_body_through(oa, stack, stream):
    """Responses client -> Responses backend (azure-responses): the client's body goes on
    with only the model rewritten to the deployment, hosted tools and Codex's tools
    included, and the reply comes back under the client's model name."""
    body = {"model": "azure-gpt-5", "input": [{"role": "user", "content": "Weather in Paris?"}],
            "instructions": "Be brief.", "tools": [*TOOLS, APPLY_PATCH, NAMESPACE, {"type": "web_search"}],
            "tool_choice": "auto", "parallel_tool_calls": False, "metadata": {"ticket": "7"},
            "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k1",
            "text": {"verbosity": "low"}, "stream": stream}
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5).raise_for_status()
    reply = requests.post(stack.proxy_url + "/v1/responses", json=body, timeout=20)
    assert reply.status_code == 200, reply.text
    (entry,) = requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()
    assert entry["provider"] == "azure_openai_responses"
    assert entry["body"] == {**body, "model": "gpt-5"}
    if stream:
        assert '"model":"azure-gpt-5"' in reply.text.replace(" ", "") and '"gpt-5"' not in reply.text
    else:
        assert reply.json()["model"] == "azure-gpt-5"
