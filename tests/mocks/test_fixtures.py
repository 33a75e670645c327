"""The fixtures themselves: every provider has every scenario, streamed
deltas reassemble to exactly `expect`, usage is the same streamed and not,
and the stream frames have the shape of the real recorded traffic."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mocks import oci
from mocks.scenarios import PROVIDERS, ScenarioFormatError, ScenarioFrame, ScenarioLibrary, fill
from tests.mocks.helpers import (
    FAULT_SCENARIOS, GOOD_SCENARIOS, expected_summary, parse_sse, summarize_anthropic_body,
    summarize_anthropic_stream, summarize_bedrock_body, summarize_bedrock_stream, summarize_gemini,
    summarize_oci_body, summarize_oci_stream, summarize_ollama, summarize_openai_body, summarize_openai_stream, summarize_responses_body,
    summarize_responses_stream,
)


def _lookup(name: str, salt: str | None) -> str:
    return {"model": "some-model", "id": f"ID{salt or ''}"}[name]


def _stream_data(frames: tuple[ScenarioFrame, ...]) -> list:
    return [fill(f.data, _lookup) for f in frames if f.raw is None]


def _openrouter_thinking(summary: dict, messages: list) -> dict:
    """OpenRouter shows reasoning (`reasoning`, streamed as `delta.reasoning`)."""
    thinking = "".join(m.get("reasoning") or "" for m in messages)
    return {**summary, "thinking": thinking} if thinking else summary


def summarize(provider: str, body=None, frames=None) -> dict:
    if provider == "openai":
        return summarize_openai_body(body) if body is not None else summarize_openai_stream(_stream_data(frames))
    if provider == "openrouter":
        if body is not None:
            return _openrouter_thinking(summarize_openai_body(body), [body["choices"][0]["message"]])
        chunks = _stream_data(frames)
        return _openrouter_thinking(summarize_openai_stream(chunks),
                                    [c["delta"] for chunk in chunks if chunk != "[DONE]" for c in chunk["choices"]])
    if provider == "anthropic":
        if body is not None:
            return summarize_anthropic_body(body)
        return summarize_anthropic_stream([(f.event, fill(f.data, _lookup)) for f in frames])
    if provider == "bedrock":
        if body is not None:
            return summarize_bedrock_body(body)
        return summarize_bedrock_stream([(f.event, fill(f.data, _lookup)) for f in frames])
    if provider == "openai_responses":
        if body is not None:
            return summarize_responses_body(body)
        return summarize_responses_stream([(f.event, fill(f.data, _lookup)) for f in frames])
    if provider == "ollama":
        return summarize_ollama([body] if body is not None else _stream_data(frames))
    if provider == "oci":
        return summarize_oci_body(body) if body is not None else summarize_oci_stream(_stream_data(frames))
    return summarize_gemini([body] if body is not None else _stream_data(frames))


# A provider's own scenario set (omitted, extra): a Cohere chat model has no reasoning and reads
# no images, and OCI answers JSON output on request; OpenRouter has what only its API does.
OWN_SCENARIOS = {"oci": (oci.OMITTED_SCENARIOS, oci.EXTRA_SCENARIOS),
                 "openrouter": ((), ("error_402", "processing_keepalive"))}


def scenario_names(provider: str) -> set[str]:
    omitted, extra = OWN_SCENARIOS.get(provider, ((), ()))
    return (set(GOOD_SCENARIOS) - set(omitted)) | set(extra) | set(FAULT_SCENARIOS)


def test_every_provider_has_every_scenario(library: ScenarioLibrary):
    for provider in PROVIDERS:
        assert set(library.names(provider)) == scenario_names(provider), provider


@pytest.mark.parametrize(("provider", "name"), [(p, n) for n in GOOD_SCENARIOS + ("json",) for p in PROVIDERS
                                                if n in scenario_names(p)])
def test_body_and_stream_mean_expect(library: ScenarioLibrary, provider: str, name: str):
    scenario = library.get(provider, name)
    assert scenario.status == 200 and scenario.stream is not None and scenario.fault is None
    expected = expected_summary(scenario.expect)
    if provider == "openai":
        expected.pop("thinking", None)  # Chat Completions has no visible reasoning
    assert summarize(provider, body=scenario.body) == expected
    assert summarize(provider, frames=scenario.stream) == expected


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_same_content_across_providers(library: ScenarioLibrary, name: str):
    expects = {p: library.get(p, name).expect for p in PROVIDERS if name in scenario_names(p)}
    for key in ("text", "tool_calls", "finish", "usage"):
        assert expects["openai"][key] == expects["anthropic"][key] == expects["gemini"][key] \
            == expects["openai_responses"][key] == expects["openrouter"][key], key
    # Converse and Ollama report no reasoning token count; everything else is the same
    reasoning_free = {k: v for k, v in expects["openai"]["usage"].items() if k != "reasoning"}
    for provider in ("bedrock", "ollama"):
        assert expects[provider]["usage"] == reasoning_free
        assert all(expects[provider][key] == expects["openai"][key] for key in ("text", "tool_calls", "finish"))
    if name in scenario_names("oci"):  # OCI reports no reasoning token count either
        assert expects["oci"]["usage"] == reasoning_free
        assert all(expects["oci"][key] == expects["openai"][key] for key in ("text", "tool_calls", "finish"))
    if name == "thinking":
        assert expects["bedrock"]["thinking"] == expects["anthropic"]["thinking"] == expects["ollama"]["thinking"]
        assert "thinking" not in expects["openai"]
        assert expects["anthropic"]["thinking"] == expects["gemini"]["thinking"] \
            == expects["openai_responses"]["thinking"] == expects["openrouter"]["thinking"]


@pytest.mark.parametrize("name", ("text", "after_tool_result", "thinking", "max_tokens", "stop_sequence", "vision"))
def test_openai_output_tokens_count_the_deltas(library: ScenarioLibrary, name: str):
    """One content delta = one token, so usage is consistent with the content."""
    scenario = library.get("openai", name)
    deltas = [f.data["choices"][0]["delta"].get("content") for f in scenario.stream
              if isinstance(f.data, dict) and f.data["choices"]]
    visible = len([d for d in deltas if d])
    usage = scenario.expect["usage"]
    assert usage["output"] == visible + usage.get("reasoning", 0)


def test_gemini_running_usage_grows_to_the_final_count(library: ScenarioLibrary):
    for name in GOOD_SCENARIOS:
        counts = [f.data["usageMetadata"]["totalTokenCount"] for f in library.get("gemini", name).stream]
        assert counts == sorted(counts)
        final = library.get("gemini", name).body["usageMetadata"]["totalTokenCount"]
        assert counts[-1] == final


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fault_scenarios_state_their_error(library: ScenarioLibrary, provider: str):
    for name in FAULT_SCENARIOS:
        scenario = library.get(provider, name)
        if name == "slow_first_byte":
            assert scenario.fault.type == "slow_first_byte" and scenario.first_byte_delay >= 1
            assert scenario.expect == library.get(provider, "text").expect
            continue
        error = scenario.expect["error"]
        assert {"status", "type"} <= error.keys()
        if name.startswith("error_4") or name.startswith("error_5") or name == "overloaded":
            assert scenario.status == error["status"] and scenario.stream is None
    assert library.get(provider, "error_429").expect["error"]["retry_after"] == 7
    assert library.get(provider, "error_429").headers["retry-after"] == "7"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_mid_stream_faults_send_the_partial_text_first(library: ScenarioLibrary, provider: str):
    for name in ("stall_mid_stream", "drop_mid_stream", "error_mid_stream"):
        scenario = library.get(provider, name)
        cut = scenario.fault.after_frames if scenario.fault else len(scenario.stream) - 1
        sent = [f for f in scenario.stream[:cut]]
        if provider == "openrouter":  # its keep-alive comments are raw frames
            sent = [f for f in sent if f.raw is None]
        if provider in ("openai", "openrouter"):
            text = "".join(f.data["choices"][0]["delta"].get("content") or "" for f in sent)
        elif provider == "anthropic":
            text = "".join(f.data["delta"].get("text", "") for f in sent if f.event == "content_block_delta")
        elif provider == "bedrock":
            text = "".join(f.data["delta"].get("text", "") for f in sent if f.event == "contentBlockDelta")
        elif provider == "openai_responses":
            text = "".join(f.data["delta"] for f in sent if f.event == "response.output_text.delta")
        elif provider == "ollama":
            text = "".join((f.data.get("message") or {}).get("content") or "" for f in sent)
        elif provider == "oci":
            text = "".join(f.data.get("text", "") for f in sent if "finishReason" not in f.data)
        else:
            text = summarize_gemini(_stream_data(tuple(sent)))["text"]
        assert text == scenario.expect["partial_text"], name


def test_loader_rejects_bad_fixtures(tmp_path: Path):
    folder = tmp_path / "openai"
    folder.mkdir()
    (folder / "x.yaml").write_text("status: 200\nstream: [{data: {}}]\n")  # no body
    with pytest.raises(ScenarioFormatError, match="body"):
        ScenarioLibrary(tmp_path)
    (folder / "x.yaml").write_text("body: {}\nfault: {type: explode}\n")
    with pytest.raises(ScenarioFormatError, match="fault"):
        ScenarioLibrary(tmp_path)
    (folder / "x.yaml").write_text("body: {}\nbase: y\n")
    (folder / "y.yaml").write_text("body: {}\nbase: x\n")
    with pytest.raises(ScenarioFormatError, match="cycle"):
        ScenarioLibrary(tmp_path)


# ---------------------------------------------------------------- framing vs real traffic

def _real_openai(real_samples: Path, name: str) -> list:
    events = parse_sse((real_samples / "openai-chat-streams" / name).read_text())
    assert all(event is None for event, _ in events)
    return [json.loads(d) if d != "[DONE]" else d for _, d in events]


@pytest.mark.parametrize("ours, theirs", [("text", "text.sse"), ("function_calling", "single_tool_call.sse"),
                                          ("parallel_function_calling", "parallel_tool_calls.sse"),
                                          ("max_tokens", "finish_length.sse")])
def test_openai_frames_match_real_streams(real_samples: Path, library: ScenarioLibrary, ours: str, theirs: str):
    real = _real_openai(real_samples, theirs)
    mine = _stream_data(library.get("openai", ours).stream)
    assert real[-1] == "[DONE]" and mine[-1] == "[DONE]"
    # the same chunk keys, choice keys, first delta, empty finish delta, usage chunk last
    for chunks in (real, mine):
        assert chunks[-2]["choices"] == [] and "usage" in chunks[-2]
    assert {tuple(c) for c in mine[:-2]} == {tuple(c) for c in real[:-2]}
    assert {tuple(c["choices"][0]) for c in mine[:-2]} == {tuple(c["choices"][0]) for c in real[:-2]}
    first_real = real[0]["choices"][0]["delta"]
    if "tool_calls" in first_real:  # one recording opens the call inside the role chunk; compare the role part
        first_real = {k: first_real[k] for k in ("role", "content")}
    assert mine[0]["choices"][0]["delta"] == first_real
    assert mine[-3]["choices"][0]["delta"] == {} == real[-3]["choices"][0]["delta"]
    calls_real = [c["choices"][0]["delta"]["tool_calls"][0] for c in real[:-2]
                  if c["choices"][0]["delta"].get("tool_calls")]
    calls_mine = [c["choices"][0]["delta"]["tool_calls"][0] for c in mine[:-2]
                  if c["choices"][0]["delta"].get("tool_calls")]
    shape = lambda calls: [(sorted(c), sorted(c["function"]), c["function"].get("arguments") == "") for c in calls
                           if "id" in c]
    assert shape(calls_mine) == shape(calls_real)
    continuation = lambda calls: {(tuple(sorted(c)), tuple(sorted(c["function"]))) for c in calls if "id" not in c}
    assert continuation(calls_mine) == continuation(calls_real)
    assert [c["index"] for c in calls_mine] == sorted(c["index"] for c in calls_mine)


def _event_grammar(events: list[tuple[str, dict]]) -> None:
    """What every real Anthropic stream obeys."""
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    assert names.count("ping") == 1 and names[names.index("ping") - 1] == "content_block_start"
    open_index = None
    expected_index = 0
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == expected_index
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index, expected_index = None, expected_index + 1
    assert open_index is None


def _real_anthropic(real_samples: Path, name: str) -> list[tuple[str, dict]]:
    return [(e, json.loads(d)) for e, d in parse_sse((real_samples / "anthropic-streams" / name).read_text())]


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_anthropic_frames_match_real_streams(real_samples: Path, library: ScenarioLibrary, name: str):
    basic = _real_anthropic(real_samples, "basic_response.sse")
    tool = _real_anthropic(real_samples, "tool_use_response.sse")
    _event_grammar(basic)
    _event_grammar(tool)
    mine = [(f.event, fill(f.data, _lookup)) for f in library.get("anthropic", name).stream]
    _event_grammar(mine)
    real_start = tool[0][1]["message"]
    assert set(mine[0][1]["message"]) == set(real_start)
    assert set(mine[0][1]["message"]["usage"]) >= set(real_start["usage"])
    assert set(mine[-2][1]) == set(tool[-2][1]) and set(mine[-2][1]["delta"]) == set(tool[-2][1]["delta"])
    real_tool_start = next(d for e, d in tool if e == "content_block_start" and d["content_block"]["type"] == "tool_use")
    for event, data in mine:
        if event == "content_block_start" and data["content_block"]["type"] == "tool_use":
            assert set(data["content_block"]) == set(real_tool_start["content_block"])
            assert data["content_block"]["input"] == {}
    # the first input_json_delta of every tool block is "" (as recorded)
    firsts = {}
    for event, data in mine:
        if event == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            firsts.setdefault(data["index"], data["delta"]["partial_json"])
    assert all(v == "" for v in firsts.values())


def test_gemini_frames_match_real_stream(real_samples: Path, library: ScenarioLibrary):
    raw = (real_samples / "gemini-streams" / "function_call_with_thought_signature.sse").read_text()
    events = parse_sse(raw)
    assert all(event is None for event, _ in events) and raw.startswith("data: ")
    real = json.loads(events[0][1])
    mine = fill(library.get("gemini", "function_calling").stream[-1].data, _lookup)
    assert list(mine) == list(real)
    assert set(mine["candidates"][0]) == set(real["candidates"][0])
    assert set(mine["candidates"][0]["content"]) == set(real["candidates"][0]["content"])
    real_part, my_part = real["candidates"][0]["content"]["parts"][0], mine["candidates"][0]["content"]["parts"][0]
    assert set(my_part) == set(real_part) and set(my_part["functionCall"]) == set(real_part["functionCall"])
    assert "id" not in my_part["functionCall"]
    assert set(mine["usageMetadata"]) | {"thoughtsTokenCount"} == set(real["usageMetadata"])
    assert mine["candidates"][0]["finishMessage"] == real["candidates"][0]["finishMessage"]
    for name in GOOD_SCENARIOS:
        chunks = _stream_data(library.get("gemini", name).stream)
        assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
        assert "finishReason" in chunks[-1]["candidates"][0]
        assert all(set(c) == set(real) for c in chunks)


def test_bedrock_frames_match_the_live_capture(real_samples: Path, library: ScenarioLibrary):
    """Our event-stream bytes against the live ConverseStream capture: the same headers,
    the same event grammar (text without contentBlockStart, usage last), the same payload keys."""
    from botocore.eventstream import EventStreamBuffer

    from mocks.bedrock import BedrockProvider
    from mocks.provider import Call

    def decode(data: bytes) -> list[tuple[dict, dict]]:
        buffer = EventStreamBuffer()
        buffer.add_data(data)
        return [(m.headers, json.loads(m.payload)) for m in buffer]

    real = decode((real_samples / "bedrock" / "converse_stream_live_ok.eventstream").read_bytes())
    provider = BedrockProvider()
    call = Call(method="POST", path="/model/m/converse-stream", query={}, headers={}, raw_body=b"{}")
    for name in GOOD_SCENARIOS:
        writer = provider.stream_writer(call)
        mine = decode(b"".join(writer.frame(f, _lookup) for f in library.get("bedrock", name).stream))
        assert all(list(h) == list(real[0][0]) for h, _ in mine), name
        assert all("p" in payload for _, payload in mine)
        events = [h[":event-type"] for h, _ in mine]
        assert events[0] == "messageStart" and events[-2:] == ["messageStop", "metadata"]
        assert set(mine[-1][1]) == set(real[-1][1]) and set(mine[-1][1]["usage"]) == set(real[-1][1]["usage"])
        assert set(mine[-2][1]) == set(real[-2][1])
        text_deltas = [p for h, p in mine if h[":event-type"] == "contentBlockDelta" and "text" in p["delta"]]
        assert all(set(p) == set(real[1][1]) for p in text_deltas)
    live = [h[":event-type"] for h, _ in real]
    assert live == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop",
                    "metadata"]
    text = [h[":event-type"] for h, _ in decode(b"".join(
        provider.stream_writer(call).frame(f, _lookup) for f in library.get("bedrock", "text").stream))]
    assert "contentBlockStart" not in text
