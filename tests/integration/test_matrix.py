"""The cross-protocol matrix in the test suite: the session's mock and proxy, every frontend x backend x capability cell through them, one test per
`frontend -> backend` row so a failure names its row and lists its cells' reasons.

Also checks the runner itself: that its readers catch broken framing (a matrix
that cannot fail proves nothing), the n/a rule, the JSON report and --help."""
from __future__ import annotations

import base64
import dataclasses
import json

import pytest
import requests

from app.config import load_config
from app.protocols import openai_chat, openai_responses
from app.protocols.base import Target
from scripts import matrix
from scripts.matrix.run import Matrix
from tests.conftest import REPO

CONFIG = load_config(REPO / "config-mock.toml")
ROWS = [(f, b, m.name if m else None) for f in matrix.FRONTENDS for b in CONFIG.backends
        for m in matrix.backend_rows(CONFIG, CONFIG.backends[b])]
VERTEX_BACKENDS = [b for b in CONFIG.backends.values() if b.kind.startswith("vertex_")]


@pytest.fixture(scope="module")
def servers(stack):
    """The session's mock + proxy pair (tests/integration/conftest.py)."""
    return stack.proxy_url, stack.mock_url


def _token_requests(mock_url: str) -> int:
    return requests.get(mock_url + "/_mock/oauth", timeout=5).json()["token_requests"]


@pytest.fixture(scope="module")
def run(servers):
    """The whole matrix, and how many Google tokens the proxy fetched meanwhile."""
    proxy_url, mock_url = servers
    before = _token_requests(mock_url)
    cells = matrix.run_matrix(proxy_url, mock_url, CONFIG)
    return cells, _token_requests(mock_url) - before


@pytest.fixture(scope="module")
def cells(run):
    return run[0]


@pytest.mark.parametrize(("frontend", "backend", "model"), ROWS,
                         ids=[f"{f}->{b}" + (f"({m})" if m else "") for f, b, m in ROWS])
def test_matrix_row(cells, frontend, backend, model):
    row = [c for c in cells if (c.frontend, c.backend, c.model) == (frontend, backend, model)]
    assert [c.capability for c in row] == list(matrix.CAPABILITIES)
    failed = [f"{c.capability}: {c.reason}" for c in row if c.status not in ("pass", "n/a")]
    assert not failed, f"{row[0].row}:\n  " + "\n  ".join(failed)


def test_every_kind_has_rows_and_only_declared_gaps_are_na(cells):
    kinds = {CONFIG.backends[c.backend].kind for c in cells if c.status == "pass"}
    assert {"azure_openai", "vertex_gemini", "vertex_anthropic", "bedrock_converse", "azure_responses", "ollama",
            "ollama_openai", "oci_cohere", "openrouter", "runpod",
            "runpod_openai", "watsonx"} <= kinds
    by_protocol = {(c.frontend, c.capability) for c in cells
                   if c.status == "n/a" and c.capability in matrix.FRONTENDS[c.frontend].unsupported}
    assert by_protocol == {("openai_responses", "stop_sequence")}
    not_applicable = {(c.backend, c.model, c.capability) for c in cells
                      if c.status == "n/a" and (c.frontend, c.capability) not in by_protocol}
    # Granite 3 8B neither reasons nor sees images; Granite 3 8B base (text generation) is text only.
    watsonx = {("watsonx", None, "thinking"), ("watsonx", None, "vision")} | {
        ("watsonx", "granite-3-8b-base", c) for c in ("tools", "parallel_tools", "tool_result", "stream_tools",
                                                       "thinking", "vision")}
    assert not_applicable == {("azure", None, "thinking"), ("bedrock", "nova-pro", "thinking"),
                              ("azure-responses", None, "stop_sequence"), ("ollama", "llama3.2", "thinking"),
                              ("ollama", "llama3.2", "vision"), ("ollama-openai", None, "thinking"),
                              ("oci", None, "thinking"), ("oci", None, "vision"),  # Command R+: text only
                              ("openrouter", "openrouter-llama-3.1-8b", "thinking"),
                              ("openrouter", "openrouter-llama-3.1-8b", "vision"),
                              # Mistral 7B Instruct: no reasoning, text only
                              ("runpod", None, "thinking"), ("runpod", None, "vision"),
                              ("runpod-openai", None, "thinking"), ("runpod-openai", None, "vision")} | watsonx


def test_vertex_rows_fetch_a_token_per_lifetime_not_per_request(run):
    cells, token_requests = run
    vertex_cells = [c for c in cells if CONFIG.backends[c.backend].kind.startswith("vertex_") and c.status == "pass"]
    # At most one fetch per Vertex backend (and one refresh, should a token issued before the run
    # under a shorter test lifetime expire during it), against dozens of Vertex requests.
    assert len(vertex_cells) > 50 and token_requests <= 2 * len(VERTEX_BACKENDS)


def test_cli_writes_the_json_report(servers, tmp_path, capsys):
    proxy_url, mock_url = servers
    report = tmp_path / "matrix.json"
    code = matrix.main(["--proxy-url", proxy_url, "--mock-url", mock_url, "--frontend", "anthropic",
                        "--backend", "gemini", "--capability", "text,tools", "--json", str(report)])
    out = capsys.readouterr()
    cells = json.loads(report.read_text())["cells"]
    assert [(c["frontend"], c["backend"], c["capability"]) for c in cells] == \
        [("anthropic", "gemini", "text"), ("anthropic", "gemini", "tools")]
    assert all(set(c) == {"frontend", "backend", "model", "capability", "status", "reason"} for c in cells)
    assert code == (1 if any(c["status"] == "fail" for c in cells) else 0), out.out
    assert "anthropic -> gemini" in out.out and "anthropic -> gemini: " in out.err  # table, progress


# ------------------------------------------------------- the runner itself


def test_backend_without_a_capability_is_na_with_the_reason():
    backend = dataclasses.replace(CONFIG.backends["anthropic"], capabilities=frozenset({"text", "streaming"}))
    reason = matrix.not_applicable(backend, matrix.CAPABILITIES["stream_tools"])
    assert reason == "backend 'anthropic' does not declare tools in its capabilities"
    assert matrix.not_applicable(backend, matrix.CAPABILITIES["stream_text"]) is None
    auto = dataclasses.replace(backend, capabilities=frozenset())  # declares none: can do anything
    assert matrix.not_applicable(auto, matrix.CAPABILITIES["vision"]) is None


OPENAI_STREAM = (
    'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    '"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
    'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    '"delta":{},"finish_reason":"stop"}]}\n\n'
    'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],'
    '"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    "data: [DONE]\n\n")


def test_openai_stream_reader_accepts_a_good_stream_and_catches_a_missing_done():
    good = matrix.FRONTENDS["openai"].read_stream(OPENAI_STREAM, "m")
    assert (good.text, good.finish, good.usage["input"], good.problems) == ("Hi", "stop", 3, [])
    cut = matrix.FRONTENDS["openai"].read_stream(OPENAI_STREAM.replace("data: [DONE]\n\n", ""), "m")
    assert "stream does not end with data: [DONE]" in cut.problems


def test_anthropic_stream_reader_catches_unbracketed_blocks():
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "m",
                                                                 "usage": {"input_tokens": 5}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'}}),
        # content_block_stop missing
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    reply = matrix.FRONTENDS["anthropic"].read_stream(text, "m")
    assert reply.tool_calls == [matrix.ToolCall("toolu_1", "f", {"a": 1})]
    assert (reply.finish, reply.usage["input"], reply.usage["output"]) == ("tool_calls", 5, 2)
    assert reply.problems == ["block 0 still open at message_delta"]


def test_gemini_stream_reader_flags_finish_reason_before_the_last_chunk():
    chunks = [{"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "finishReason": None}]},
              {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 3}}]
    reply = matrix.FRONTENDS["gemini"].read_stream("".join(f"data: {json.dumps(c)}\n\n" for c in chunks), "m")
    assert (reply.text, reply.finish, reply.usage["output"]) == ("Hello", "stop", 5)
    assert len(reply.problems) == 1 and "chunk 0 of 2 carries finishReason None" in reply.problems[0]


def _responses_stream(events: list[dict]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n"
                   for n, e in enumerate(events))


RESPONSE_ITEM = {"id": "msg_1_0", "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}
RESPONSES_EVENTS = [
    {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}},
    {"type": "response.output_item.added", "output_index": 0, "item": {**RESPONSE_ITEM, "content": []}},
    {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"},
    {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "lo"},
    {"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "Hello"},
    {"type": "response.output_item.done", "output_index": 0, "item": RESPONSE_ITEM},
    {"type": "response.completed", "response": {
        "id": "resp_1", "object": "response", "model": "m", "status": "completed", "output": [RESPONSE_ITEM],
        "usage": {"input_tokens": 3, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0}}}},
]


def test_responses_stream_reader_reads_the_terminal_response_and_holds_the_deltas_to_it():
    good = matrix.FRONTENDS["openai_responses"].read_stream(_responses_stream(RESPONSES_EVENTS), "m")
    assert (good.text, good.finish, good.usage, good.problems) == \
        ("Hello", "stop", {"input": 3, "output": 1, "reasoning": 0}, [])
    wrong_delta = [*RESPONSES_EVENTS[:3], {**RESPONSES_EVENTS[3], "delta": "p"}, *RESPONSES_EVENTS[4:]]
    assert matrix.FRONTENDS["openai_responses"].read_stream(_responses_stream(wrong_delta), "m").problems == \
        ["output_text.done at output 0 differs from its deltas"]
    done = matrix.FRONTENDS["openai_responses"].read_stream(
        _responses_stream(RESPONSES_EVENTS) + "data: [DONE]\n\n", "m")
    assert "a Responses stream carries data: [DONE]" in done.problems
    cut = matrix.FRONTENDS["openai_responses"].read_stream(_responses_stream(RESPONSES_EVENTS[:-1]), "m")
    assert cut.problems == ["the stream does not end with response.completed / .incomplete / .failed"]


def test_responses_stream_reader_catches_a_gap_in_the_sequence_numbers():
    text = _responses_stream(RESPONSES_EVENTS).replace('"sequence_number": 3', '"sequence_number": 4')
    assert matrix.FRONTENDS["openai_responses"].read_stream(text, "m").problems == \
        ["event 3 (response.output_text.delta) has sequence_number 4"]


def test_responses_finish_is_read_from_the_status_and_the_output():
    reader = matrix.FRONTENDS["openai_responses"]
    base = RESPONSES_EVENTS[-1]["response"]
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}'}
    tool = reader.read_reply({**base, "output": [call]}, "m")
    assert (tool.finish, tool.tool_calls, tool.problems) == \
        ("tool_calls", [matrix.ToolCall("call_1", "f", {"a": 1})], [])
    cut = reader.read_reply({**base, "status": "incomplete",
                             "incomplete_details": {"reason": "max_output_tokens"}}, "m")
    assert (cut.finish, cut.raw_finish) == ("length", "incomplete:max_output_tokens")


def test_responses_has_no_stop_sequences_so_that_cell_is_na_with_the_reason():
    cell = Matrix("http://127.0.0.1:9", "http://127.0.0.1:9").run_cell(
        matrix.FRONTENDS["openai_responses"], CONFIG.backends["openai"], matrix.CAPABILITIES["stop_sequence"])
    assert (cell.status, cell.reason) == \
        ("n/a", "the Responses API has no stop sequences (it refuses `stop` with a 400)")


def test_upstream_gemini_schema_must_be_cleaned():
    body = {"contents": [{"role": "user", "parts": [{"text": "What's the weather in Paris?"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": matrix.TOOL_DESCRIPTION,
                                                 "parameters": matrix.TOOL_SCHEMA}]}]}
    view = matrix.UPSTREAM_KINDS["gemini"].reader.view(body, "/v1beta/models/g:generateContent", {})
    assert view.problems == ["Gemini tool parameters still has $schema, additionalProperties"]


def test_a_registry_model_gets_its_own_row_and_its_own_capabilities():
    bedrock = CONFIG.backends["bedrock"]
    nova = CONFIG.models["nova-pro"]
    assert matrix.backend_rows(CONFIG, bedrock) == [None, nova]
    assert matrix.not_applicable(bedrock, matrix.CAPABILITIES["thinking"]) is None  # Claude, the first model
    assert matrix.not_applicable(bedrock, matrix.CAPABILITIES["thinking"], nova) == \
        "model 'nova-pro' (backend 'bedrock') does not declare thinking in its capabilities"
    assert matrix.not_applicable(bedrock, matrix.CAPABILITIES["vision"], nova) is None


def test_a_registry_model_with_the_backends_capabilities_adds_no_row(tmp_path):
    # gpt-high..gpt-minimal are names of azure-responses with a reasoning effort each.
    assert {CONFIG.models[f"gpt-{e}"].backend for e in ("high", "medium", "low", "minimal")} == {"azure-responses"}
    assert matrix.backend_rows(CONFIG, CONFIG.backends["azure-responses"]) == [None]
    # A backend reached only through the registry is driven by its first registry model.
    path = tmp_path / "c.toml"
    path.write_text('[backends.b]\nkind = "openai"\nurl = "http://127.0.0.1:1"\napi_key = "k"\n'
                    '[models.one]\nbackend = "b"\napi_model = "m1"\n[models.two]\nbackend = "b"\napi_model = "m2"\n')
    config = load_config(path)
    assert matrix.backend_rows(config, config.backends["b"]) == [config.models["one"]]


HELLO_TURN = [{"role": "user", "content": "Say hello."}]


def _check(backend: str, path: str, body: dict, query: dict | None = None, extra_log: list | None = None):
    kind = matrix.UPSTREAM_KINDS[CONFIG.backends[backend].kind]
    entry = {"provider": kind.mock_provider, "scenario": f"{kind.scenarios}/text", "method": "POST",
             "path": path, "query": query or {}, "body": body}
    model = next(iter(CONFIG.backends[backend].model_mapping.values()))
    return matrix.check_upstream([*(extra_log or []), entry], CONFIG.backends[backend], model,
                                 matrix.CAPABILITIES["text"])


def test_upstream_azure_deployment_url_needs_its_api_version():
    body = {"messages": HELLO_TURN}
    assert _check("azure", "/openai/deployments/gpt-4o/chat/completions", body, {"api-version": "2024-10-21"}) == []
    assert _check("azure", "/openai/deployments/gpt-4o/chat/completions", body) == \
        ["Azure deployments URL without api-version"]
    assert _check("azure", "/openai/deployments/gpt-4o-mini/chat/completions", body, {"api-version": "x"}) == \
        ["upstream model: expected 'gpt-4o' got 'gpt-4o-mini'"]


def test_upstream_vertex_claude_model_is_in_the_path_never_in_the_body():
    path = "/v1/projects/interchange-test/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": HELLO_TURN}
    assert _check("vertex-anthropic", path, body) == []
    assert _check("vertex-anthropic", path, {**body, "model": "claude-sonnet-4-5@20250929"}) == \
        ["Vertex Claude body carries model (it belongs in the URL)"]
    assert _check("vertex-anthropic", path.replace(":rawPredict", ":streamRawPredict"), body) == \
        ["body stream False does not match :streamRawPredict"]


def test_upstream_bedrock_blocks_are_read_for_meaning():
    path = "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "Say hello."}]}]}
    assert _check("bedrock", path, body) == []
    blank = {"messages": [{"role": "user", "content": [{"text": "Say hello."}, {"text": " "}]}]}
    assert _check("bedrock", path, blank) == ["messages[0] has a blank text block",
                                              "upstream turn 0 text: expected 'Say hello.' got 'Say hello. '"]
    image = {"messages": [{"role": "user", "content": [{"text": "What is in this image?"}, {"image": {
        "format": "png", "source": {"bytes": base64.b64encode(matrix.RED_SQUARE_PNG).decode()}}}]}]}
    view = matrix.BedrockUpstream().view(image, path, {})
    assert view.turns[0].parts[1] == matrix.Image("image/png", matrix.RED_SQUARE_PNG) and view.problems == []


RESPONSES_BACKEND = dataclasses.replace(CONFIG.backends["openai"], name="responses", kind="openai_responses")
AZURE_RESPONSES_BACKEND = dataclasses.replace(CONFIG.backends["azure"], name="az-responses", kind="azure_responses")
SENDABLE = [c for c in matrix.CAPABILITIES.values()
            if c.name not in matrix.UPSTREAM_KINDS["openai_responses"].unsupported]


@pytest.mark.parametrize("capability", SENDABLE, ids=[c.name for c in SENDABLE])
def test_the_responses_reader_reads_what_the_proxy_writes_for_every_capability(capability):
    """A Chat client's request, through the IR and the Responses writer, compares clean."""
    req = openai_chat.parse_request(matrix.FRONTENDS["openai"].request(capability.conversation, "gpt-4o").body)
    body = openai_responses.build_body(req, Target("responses", "gpt-4o"))
    entry = {"provider": "openai_responses", "scenario": f"openai_responses/{capability.scenario}",
             "method": "POST", "path": "/v1/responses", "query": {}, "body": body}
    assert matrix.check_upstream([entry], RESPONSES_BACKEND, "gpt-4o", capability) == []
    azure = {**entry, "provider": "azure_openai_responses", "path": "/openai/responses"}
    assert matrix.check_upstream([azure], AZURE_RESPONSES_BACKEND, "gpt-4o", capability) == \
        ["Azure /openai/responses without api-version"]
    assert matrix.check_upstream([{**azure, "path": "/openai/v1/responses"}], AZURE_RESPONSES_BACKEND, "gpt-4o",
                                 capability) == []


def test_a_responses_backend_has_no_stop_sequences_so_that_cell_is_na_with_the_reason():
    assert matrix.not_applicable(RESPONSES_BACKEND, matrix.CAPABILITIES["stop_sequence"]) == \
        "backend 'responses' (openai_responses): the Responses API has no stop sequences " \
        "(the proxy refuses `stop` with a 400)"


def test_the_responses_reader_flags_chat_fields_and_nested_tools():
    body = {"model": "gpt-4o", "input": [{"role": "user", "content": "Say hello."}], "messages": [],
            "tools": [{"type": "function", "function": {"name": "f"}}]}
    view = matrix.UPSTREAM_KINDS["openai_responses"].reader.view(body, "/v1/responses", {})
    assert view.problems == ["Responses body carries 'messages'",
                             "tool ['function', 'type'] is not a flat Responses function tool"]


def test_only_generation_calls_count_and_the_provider_follows_the_kind():
    token_fetch = {"provider": None, "method": "POST", "path": "/token", "body": None}
    body = {"messages": HELLO_TURN}
    assert _check("azure", "/openai/deployments/gpt-4o/chat/completions", body, {"api-version": "v"},
                  extra_log=[token_fetch]) == []
    wrong = {"provider": "openai", "scenario": "openai/text", "method": "POST", "path": "/v1/chat/completions",
             "body": {"model": "gpt-4o", "messages": HELLO_TURN}}
    assert matrix.check_upstream([wrong], CONFIG.backends["azure"], "gpt-4o", matrix.CAPABILITIES["text"]) == \
        ["upstream provider: expected 'azure_openai' got 'openai'"]


GENERATION_CALLS = [
    "/v1/chat/completions", "/openai/deployments/gpt-4o/chat/completions", "/openai/v1/chat/completions",
    "/v1/responses", "/openai/v1/responses", "/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "/v1/projects/p-123456/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
    "/v1/projects/p-123456/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
    "/model/amazon.nova-pro-v1%3A0/converse", "/model/amazon.nova-pro-v1%3A0/converse-stream",
    "/v2/ep-1/runsync", "/v2/ep-1/run", "/v2/ep-1/openai/v1/chat/completions",
]
OTHER_CALLS = [("POST", "/token"), ("GET", "/v1/models"), ("POST", "/v1/messages/count_tokens"),
               ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"), ("GET", "/v1/responses/resp_1"),
               ("DELETE", "/v1/responses/resp_1"), ("GET", "/v1/chat/completions"),
               ("GET", "/v2/ep-1/status/job-1"), ("GET", "/v2/ep-1/stream/job-1"), ("POST", "/v2/ep-1/cancel/job-1")]


@pytest.mark.parametrize("path", GENERATION_CALLS)
def test_a_post_to_a_generation_endpoint_is_a_generation_call(path):
    assert matrix.is_generation_call({"method": "POST", "path": path})


@pytest.mark.parametrize("method,path", OTHER_CALLS)
def test_anything_else_the_proxy_calls_is_not_counted(method, path):
    assert not matrix.is_generation_call({"method": method, "path": path})


def test_a_cell_without_its_generation_call_names_every_call_the_mock_saw():
    token_fetch = {"provider": None, "method": "POST", "path": "/token"}
    assert matrix.check_upstream([token_fetch], CONFIG.backends["vertex"], "gemini-2.5-flash",
                                 matrix.CAPABILITIES["text"]) == \
        ["mock saw 0 generation requests, expected exactly 1 (all calls: None POST /token)"]


def test_help_explains_the_options_and_exit_status(capsys):
    with pytest.raises(SystemExit) as exit_info:
        matrix.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--frontend", "--backend", "--capability", "--proxy-url", "--mock-url", "--config",
                   "--json", "-v", "exit status"):
        assert option in out


def test_unknown_filter_names_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        matrix.main(["--capability", "telepathy"])
    assert exit_info.value.code == 2
    assert "unknown capability telepathy" in capsys.readouterr().err
