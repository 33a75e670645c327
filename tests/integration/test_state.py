"""Stored Responses across proxy workers: two proxy processes share one state
store (one SQLite file, or one Redis) and the official openai SDK creates a
response on worker A and continues it with previous_response_id on worker B."""
from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
import requests

from tests.backend_models import BACKENDS, CONFIG, MODELS, can
from tests.conftest import REPO, ServerProcess

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
AFTER_TOOL = "The weather in Paris is 18°C and sunny."
TOOLS = [{"type": "function", "name": "get_weather", "description": "Get the current weather", "strict": False,
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]


def _config(tmp: Path, state: str) -> Path:
    path = tmp / "config.toml"
    path.write_text((REPO / "config-mock.toml").read_text() + "\n[state]\n" + state + "\n")
    return path


def _workers(stack, config: Path):
    a = ServerProcess(["serve", "--config", str(config)], env={"MOCK_URL": stack.mock_url})
    try:
        b = ServerProcess(["serve", "--config", str(config)], env={"MOCK_URL": stack.mock_url})
    except Exception:
        a.stop()
        raise
    return a, b


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def workers(request, stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("state")
    if request.param == "sqlite":
        state = f'path = "{tmp / "state.sqlite3"}"\nttl_seconds = 2'
    else:
        state = f'url = "{request.getfixturevalue("redis_url")}"\nttl_seconds = 2'
    a, b = _workers(stack, _config(tmp, state))
    yield a, b, request.param, tmp
    a.stop()
    b.stop()


def _client(proc: ServerProcess, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.url + "/v1", api_key="client-key", max_retries=0, timeout=20,
                         default_headers=headers or None)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_text_continued_on_the_other_worker(workers, stream, backend):
    a, b, _, _ = workers
    model = MODELS[backend]
    first = _create(_client(a), stream, model=model, input="Hi", instructions="Be brief.")
    assert first.output_text == TEXT and first.id.startswith("resp_")
    second = _create(_client(b), stream, model=model, input="And again?", previous_response_id=first.id)
    assert second.output_text == TEXT
    # A Responses backend gets the conversation, not our id, and its reply goes on as written
    # (previous_response_id null); every other wire's reply is written here and echoes the id.
    same_wire = CONFIG.backends[backend].kind in ("openai_responses", "azure_responses") \
        if backend in CONFIG.backends else False
    assert second.previous_response_id == (None if same_wire else first.id)
    assert second.id != first.id


@pytest.mark.parametrize("backend", [b for b in BACKENDS if can(b, "tools")])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_function_call_output_continued_on_the_other_worker(workers, stream, backend):
    a, b, _, _ = workers
    model = MODELS[backend]
    first = _create(_client(a, **{"X-Mock-Scenario": "function_calling"}), stream,
                    model=model, input="Weather in Paris?", tools=TOOLS)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    # Only the output: the call it answers is in the stored response (on the other worker's store).
    second = _create(_client(b, **{"X-Mock-Scenario": "after_tool_result"}), stream, model=model,
                     previous_response_id=first.id, tools=TOOLS,
                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'}])
    assert second.output_text == AFTER_TOOL


def test_without_the_stored_history_the_tool_output_is_refused(workers):
    """The control for the test above: the output alone names a call nobody made."""
    a, _, _, _ = workers
    with pytest.raises(openai.BadRequestError) as e:
        _client(a).responses.create(model="gpt-4o-mini", tools=TOOLS,
                                    input=[{"type": "function_call_output", "call_id": "call_x", "output": "{}"}])
    assert e.value.body["param"] == "input[0].call_id"


def test_get_and_delete_on_the_other_worker(workers):
    a, b, _, _ = workers
    first = _client(a).responses.create(model="gpt-4o-mini", input="Hi")
    got = _client(b).responses.retrieve(first.id)
    assert got.model_dump() == first.model_dump()
    raw = requests.get(f"{b.url}/responses/{first.id}", timeout=10)  # also without /v1
    assert raw.status_code == 200 and raw.json()["id"] == first.id
    deleted = requests.delete(f"{a.url}/v1/responses/{first.id}", timeout=10)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as e:
        _client(b).responses.retrieve(first.id)
    assert e.value.body == {"message": f"Response with id '{first.id}' not found.",
                            "type": "invalid_request_error", "param": None, "code": None}
    again = requests.delete(f"{b.url}/responses/{first.id}", timeout=10)
    assert again.status_code == 404 and again.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        _client(b).responses.create(model="gpt-4o-mini", input="More", previous_response_id=first.id)
    assert e.value.body["code"] == "previous_response_not_found"


def test_store_false_is_not_stored(workers):
    a, b, _, _ = workers
    first = _client(a).responses.create(model="gpt-4o-mini", input="Hi", store=False)
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        _client(b).responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as e:
        _client(b).responses.create(model="gpt-4o-mini", input="More", previous_response_id=first.id)
    assert e.value.status_code == 400
    assert e.value.body == {"message": f"Previous response with id '{first.id}' not found.",
                            "type": "invalid_request_error", "param": "previous_response_id",
                            "code": "previous_response_not_found"}


def test_an_expired_id_is_not_found(workers):
    a, b, _, _ = workers  # the workers' store keeps responses 2 s
    first = _client(a).responses.create(model="gpt-4o-mini", input="Hi")
    _client(b).responses.retrieve(first.id)
    time.sleep(2.2)
    with pytest.raises(openai.BadRequestError) as e:
        _client(b).responses.create(model="gpt-4o-mini", input="More", previous_response_id=first.id)
    assert e.value.body["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        _client(a).responses.retrieve(first.id)


def test_chat_requests_never_touch_the_store(stack, tmp_path):
    """A store that cannot be opened (its path is a file's child) fails every
    Responses request that stores, while Chat is served: it never opens it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = ServerProcess(["serve", "--config", str(_config(tmp_path, f'path = "{blocker / "state.sqlite3"}"'))],
                         env={"MOCK_URL": stack.mock_url})
    try:
        client = _client(proc)
        chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        assert chat.choices[0].message.content == TEXT
        assert "state store" not in proc.output()
        # The Responses answer still arrives; the failed write is logged, not raised.
        assert client.responses.create(model="gpt-4o-mini", input="Hi").output_text == TEXT
        _wait_for(lambda: "state store: response not stored" in proc.output())
    finally:
        proc.stop()


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _create(client: openai.OpenAI, stream: bool, **kw):
    if not stream:
        return client.responses.create(**kw)
    with client.responses.stream(**kw) as s:
        for _ in s:
            pass
        return s.get_final_response()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_responses_backend_gets_the_conversation_and_not_our_id(workers, stream):
    """Same wire (azure-responses): the response stored is the upstream's own, and the
    continuation reaches it as the whole conversation (the mock stores nothing, so
    an id it got would fail)."""
    a, b, _, _ = workers
    first = _create(_client(a, **{"X-Mock-Scenario": "function_calling"}), stream,
                    model="azure-gpt-5", input="Weather in Paris?", tools=TOOLS)
    call = next(item for item in first.output if item.type == "function_call")
    second = _create(_client(b, **{"X-Mock-Scenario": "after_tool_result"}), stream, model="azure-gpt-5",
                     previous_response_id=first.id, tools=TOOLS,
                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'}])
    assert second.output_text == AFTER_TOOL
    assert _client(a).responses.retrieve(second.id).output_text == AFTER_TOOL


def test_an_id_we_do_not_hold_goes_on_to_a_responses_backend(workers):
    a, _, _, _ = workers
    with pytest.raises(openai.APIStatusError) as e:
        _client(a).responses.create(model="azure-gpt-5", input="Hi", previous_response_id="resp_upstreams_own")
    # The upstream's answer (the mock's 404; ours is a 400 sent without asking it): the id went on.
    assert e.value.status_code == 404
    assert e.value.body["code"] == "previous_response_not_found"
    assert "resp_upstreams_own" in e.value.body["message"]
