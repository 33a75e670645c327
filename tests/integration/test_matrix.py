"""The cross-protocol matrix in the test suite: the session's mock and proxy, every frontend x backend x capability cell through them, one test per
`frontend -> backend` row so a failure names its row and lists its cells' reasons.

Also checks the runner itself: that its readers catch broken framing (a matrix
that cannot fail proves nothing), the n/a rule, the JSON report and --help."""
from __future__ import annotations

import dataclasses
import json

import pytest

from app.config import load_config
from scripts import matrix
from tests.conftest import REPO

CONFIG = load_config(REPO / "config-mock.toml")
ROWS = [(f, b) for f in matrix.FRONTENDS for b in CONFIG.backends]


@pytest.fixture(scope="module")
def servers(stack):
    """The session's mock + proxy pair (tests/integration/conftest.py)."""
    return stack.proxy_url, stack.mock_url


@pytest.fixture(scope="module")
def cells(servers):
    proxy_url, mock_url = servers
    return matrix.run_matrix(proxy_url, mock_url, CONFIG)


@pytest.mark.parametrize(("frontend", "backend"), ROWS, ids=[f"{f}->{b}" for f, b in ROWS])
def test_matrix_row(cells, frontend, backend):
    row = [c for c in cells if c.frontend == frontend and c.backend == backend]
    assert [c.capability for c in row] == list(matrix.CAPABILITIES)
    failed = [f"{c.capability}: {c.reason}" for c in row if c.status not in ("pass", "n/a")]
    assert not failed, f"{frontend} -> {backend}:\n  " + "\n  ".join(failed)


def test_cli_writes_the_json_report(servers, tmp_path, capsys):
    proxy_url, mock_url = servers
    report = tmp_path / "matrix.json"
    code = matrix.main(["--proxy-url", proxy_url, "--mock-url", mock_url, "--frontend", "anthropic",
                        "--backend", "gemini", "--capability", "text,tools", "--json", str(report)])
    out = capsys.readouterr()
    cells = json.loads(report.read_text())["cells"]
    assert [(c["frontend"], c["backend"], c["capability"]) for c in cells] == \
        [("anthropic", "gemini", "text"), ("anthropic", "gemini", "tools")]
    assert all(set(c) == {"frontend", "backend", "capability", "status", "reason"} for c in cells)
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


def test_upstream_gemini_schema_must_be_cleaned():
    body = {"contents": [{"role": "user", "parts": [{"text": "What's the weather in Paris?"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": matrix.TOOL_DESCRIPTION,
                                                 "parameters": matrix.TOOL_SCHEMA}]}]}
    view = matrix.UPSTREAMS["gemini"].view(body, "/v1beta/models/g:generateContent", {})
    assert view.problems == ["Gemini tool parameters still has $schema, additionalProperties"]


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
