"""The benchmark's pure pieces (statistics, ratios, tables, JSON shape, the
generated scenarios, the load generator's HTTP reading) without starting any
server: the benchmark itself is `python -m scripts.bench`, never part of the suite."""
from __future__ import annotations

import json

import pytest

from mocks.scenarios import ScenarioLibrary
from scripts import bench, bench_bedrock
from scripts.bench import BenchPath


# ------------------------------------------------------------ statistics


def test_percentile_interpolates_between_ranks():
    values = [10, 20, 30, 40, 50]
    assert bench.percentile(values, 0) == 10
    assert bench.percentile(values, 50) == 30
    assert bench.percentile(values, 100) == 50
    assert bench.percentile(values, 25) == 20
    assert bench.percentile(values, 90) == pytest.approx(46)
    assert bench.percentile([3, 1, 2], 50) == 2  # order does not matter


def test_percentile_edges():
    assert bench.percentile([], 50) is None
    assert bench.percentile([7.5], 99) == 7.5


def test_median_ignores_missing_runs():
    assert bench.median([3, None, 1, 2]) == 2
    assert bench.median([1, 2]) == 1.5
    assert bench.median([None, None]) is None
    assert bench.median([]) is None


def test_ratio():
    assert bench.ratio(10, 4) == 2.5
    assert bench.ratio(None, 4) is None
    assert bench.ratio(3, None) is None
    assert bench.ratio(3, 0) is None


def test_summarize_latencies():
    s = bench.summarize_latencies([float(i) for i in range(1, 101)])
    assert s["n"] == 100
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p99_ms"] == pytest.approx(99.01)


# ------------------------------------------------------------ formatting


def test_number_formats():
    assert bench.fmt_ms(None) == "-"
    assert bench.fmt_ms(1.23456) == "1.23"
    assert bench.fmt_ms(0.1234, 3) == "0.123"
    assert bench.fmt_num(1234.4) == "1,234"
    assert bench.fmt_num(12.34) == "12.3"
    assert bench.fmt_ratio(0.5) == "0.50x"
    assert bench.fmt_ratio(12.34) == "12.3x"
    assert bench.fmt_ratio(None) == "-"


def test_render_table_aligns_columns():
    text = bench.render_table("Title", ["path", "req/s"], [["direct openai", "1,200"], ["proxy a->b", "900"]])
    lines = text.splitlines()
    assert lines[0] == "Title"
    assert lines[1] == lines[3] == lines[-1] and set(lines[1]) == {"-"}
    header, first, second = lines[2], lines[4], lines[5]
    assert header.startswith("path") and header.endswith("req/s")
    assert first.startswith("direct openai") and first.endswith("1,200")
    assert second.startswith("proxy a->b") and second.endswith("900")
    assert len({len(header), len(first), len(second)}) == 1  # right-aligned numbers share the edge


def test_render_table_without_rows():
    text = bench.render_table("Empty", ["a", "b"], [])
    assert "a  b" in text


# ------------------------------------------------------------ paths and requests


def test_paths_name_their_baselines():
    cross = BenchPath("proxy", "anthropic", "openai")
    assert cross.name == "proxy anthropic->openai"
    assert cross.cross
    assert cross.baseline == BenchPath("direct", "openai", "openai")
    assert cross.baseline.name == "direct openai"
    assert cross.same_protocol.name == "proxy openai->openai"
    assert cross.peer_twin().name == "peer anthropic->openai"
    assert BenchPath("tcprelay", "openai", "openai").name == "tcp relay openai"


@pytest.mark.parametrize("client,path", [("openai", "/v1/chat/completions"), ("anthropic", "/v1/messages"),
                                         ("gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")])
def test_requests_are_complete_http(client, path):
    req = bench.http_request(BenchPath("proxy", client, "gemini" if client == "gemini" else client),
                             "127.0.0.1:9", stream=True, scenario="bench_stream")
    raw = bench.raw_request(req)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"POST {path} HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    assert headers["X-Mock-Scenario"] == "bench_stream"
    doc = json.loads(body)
    if client == "openai":
        assert doc["stream"] is True and doc["stream_options"] == {"include_usage": True}
    if client == "anthropic":
        assert headers["anthropic-version"] and doc["max_tokens"] > 0


def test_the_bedrock_path_is_measured_against_a_direct_converse_client():
    path = BenchPath("proxy", "openai", "bedrock")
    assert path in bench._paths(with_peer=False) and path.baseline in bench._paths(with_peer=False)
    assert path.baseline.name == "direct bedrock"
    assert path.same_protocol not in bench._paths(with_peer=True)  # no Bedrock frontend: no same-protocol row


@pytest.mark.parametrize("stream,action,accept", [(False, "converse", "application/json"),
                                                  (True, "converse-stream", "application/vnd.amazon.eventstream")])
def test_direct_bedrock_requests_are_signed_as_the_mock_checks(stream, action, accept):
    from werkzeug.datastructures import Headers

    from mocks.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    from mocks.sigv4 import SigV4Error, verify

    req = bench.http_request(BenchPath("direct", "bedrock", "bedrock"), "127.0.0.1:9", stream=stream,
                             scenario="bench_stream")
    assert req["path"] == f"/model/anthropic.claude-3-sonnet-20240229-v1%3A0/{action}"
    head, _, body = bench.raw_request(req).partition(b"\r\n\r\n")
    headers = Headers([tuple(line.split(": ", 1)) for line in head.decode().split("\r\n")[1:]])
    assert headers["Accept"] == accept and headers["X-Mock-Scenario"] == "bench_stream"
    secrets = {ACCESS_KEY_ID: SECRET_ACCESS_KEY}
    assert verify("POST", req["path"], headers, body, service="bedrock", secrets=secrets) == "us-east-1"
    with pytest.raises(SigV4Error):
        verify("POST", req["path"], headers, body.replace(b"hello", b"hellO"), service="bedrock", secrets=secrets)


def test_the_direct_converse_body_is_the_one_the_proxy_sends():
    """The baseline asks the mock for the same work as the proxied path."""
    from app.protocols import bedrock_converse, openai_chat
    from app.protocols.base import Target

    openai = bench.http_request(BenchPath("proxy", "openai", "bedrock"), "127.0.0.1:9", stream=False)
    converted = bedrock_converse.build_body(openai_chat.parse_request(json.loads(openai["body"])),
                                            Target(bench_bedrock.BACKEND, bench_bedrock.MODEL_ID))
    direct = bench.http_request(BenchPath("direct", "bedrock", "bedrock"), "127.0.0.1:9", stream=False)
    assert json.loads(direct["body"]) == converted


def test_the_bench_config_adds_its_own_bedrock_backend(tmp_path):
    from app.config import load_config

    out = bench_bedrock.write_config(bench.REPO / "config-mock.toml", tmp_path / "proxy.toml")
    config = load_config(out)
    backend = config.backends[bench_bedrock.BACKEND]
    assert backend.kind == "bedrock_converse" and backend.settings["region"] == "us-east-1"
    assert backend.model_mapping == {bench_bedrock.MODEL: bench_bedrock.MODEL_ID}
    assert {"openai", "anthropic", "gemini"} <= set(config.backends)  # the run's config is all there
    with pytest.raises(ValueError, match="already defines backends.bench-bedrock"):
        bench_bedrock.write_config(out, tmp_path / "again.toml")


# ------------------------------------------------------------ in-process costs


def _providers(tmp_path) -> dict:
    from app.config import load_config
    from app.providers import provider_class

    config = load_config(bench_bedrock.write_config(bench.REPO / "config-mock.toml", tmp_path / "proxy.toml"))
    return {name: provider_class(config.backends[backend].kind)(config.backends[backend])
            for name, backend in (("bedrock", bench_bedrock.BACKEND), ("openai", "openai"))}


def test_signing_cost_times_the_provider_with_and_without_add_auth(tmp_path):
    from botocore.auth import SigV4Auth

    from app.jsonutil import dumps

    original = SigV4Auth.add_auth
    bodies = {"small": bench_bedrock.converse_body("hi", 8), "conversation": bench_bedrock.conversation_body()}
    out = bench_bedrock.signing_cost(_providers(tmp_path), bodies, calls=bench_bedrock.ROUNDS)
    assert SigV4Auth.add_auth is original  # the no-op and the timer are gone again
    assert list(out) == ["small", "conversation"]
    for name, row in out.items():
        assert set(row) == {"body_bytes", "prepare_us", "unsigned_us", "signing_us", "add_auth_us",
                            "openai_prepare_us"}
        assert row["body_bytes"] == len(dumps(bodies[name]))
        assert row["signing_us"] == row["prepare_us"] - row["unsigned_us"]
    assert 15_000 < out["conversation"]["body_bytes"] < 20_000  # "~16 KiB", as the docs say


def test_eventstream_messages_decode_to_the_scenario_events():
    from app.upstream.eventstream import EventStreamFramer

    events = bench.stream_scenarios(3, 5, "x")["bedrock"]["stream"]
    messages = bench_bedrock.eventstream_messages(events)
    framer = EventStreamFramer()
    frames = [f for m in messages for f in framer.feed(m)]
    assert [f.event for f in frames] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                         "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert [json.loads(f.data)["delta"]["text"] for f in frames if f.event == "contentBlockDelta"] == \
        [bench.token(i) for i in (1, 2, 3)]
    assert all(130 <= len(m) <= 260 for m in messages)  # the size of real Bedrock messages


def test_decoding_cost_decodes_every_message():
    events = bench.stream_scenarios(3, 5, "x")["bedrock"]["stream"]
    messages = bench_bedrock.eventstream_messages(events)
    out = bench_bedrock.decoding_cost(messages, [b"data: {}\n\n"] * 4, calls=bench_bedrock.ROUNDS)
    assert {k: (v["messages"], v["bytes"]) for k, v in out.items()} == {
        "eventstream": (7, sum(map(len, messages)) // 7), "sse": (4, 10)}
    with pytest.raises(RuntimeError, match="1 of 2 messages decoded"):
        bench_bedrock.decoding_cost(messages[:1] + [b""], [], calls=1)


# ------------------------------------------------------------ generated scenarios


def test_generated_scenarios_load_in_the_mock(tmp_path):
    root = bench.write_scenario_root(tmp_path, stream_chunks=5, stream_delay_ms=7, hold_chunks=3, hold_delay_ms=11)
    library = ScenarioLibrary(root)  # the mock's own shape checks
    for provider in ("openai", "anthropic", "gemini", "bedrock"):
        stream = library.get(provider, "bench_stream")
        assert stream is not None and stream.expect["text"] == "".join(bench.token(i) for i in range(1, 6))
        delayed = [f for f in stream.stream if f.delay_ms]
        assert len(delayed) == 5 and {f.delay_ms for f in delayed} == {7}
        assert library.get(provider, "bench_long").expect["usage"]["output"] == 3
        assert library.get(provider, "text") is not None  # the repository's fixtures came along


def test_tokens_are_found_whatever_the_framing():
    text = ("data: " + json.dumps({"delta": bench.token(12)}) + "\n\n").encode()
    assert [int(m.group(1)) for m in bench.TOKEN_RE.finditer(text)] == [12]


# ------------------------------------------------------------ load generator pieces


def test_dechunker_finds_the_end_at_any_split():
    body = b"5\r\nhello\r\n4;ext=1\r\n abc\r\n0\r\n\r\nNEXT"
    for cut in range(1, len(body)):
        d = bench._Dechunker()
        done, rest = d.feed(body[:cut])
        if done:
            rest += body[cut:]  # bytes after the body belong to the next reply
        else:
            done, rest = d.feed(body[cut:])
        assert done and rest == b"NEXT", cut
        assert d.tail.endswith(b"hello abc")


def test_stream_completion_checks():
    assert bench._stream_ok("openai", 200, b'data: {"x":1}\n\ndata: [DONE]\n\n') == (True, "")
    assert bench._stream_ok("openai", 200, b'data: {"x":1}\n\n') == (False, "incomplete stream")
    assert bench._stream_ok("anthropic", 200, b"event: error\ndata: {}\n\n")[0] is False
    assert bench._stream_ok("gemini", 502, b"") == (False, "HTTP 502")


def test_stream_completion_checks_read_the_binary_event_stream():
    from mocks.eventstream import encode_event, encode_exception

    stop = encode_event("messageStop", b'{"stopReason":"end_turn"}')
    end = encode_event("metadata", b'{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}')
    throttled = encode_exception("throttlingException", b'{"message":"Too many requests"}')
    assert bench._stream_ok("bedrock", 200, stop + end) == (True, "")
    assert bench._stream_ok("bedrock", 200, stop) == (False, "incomplete stream")
    assert bench._stream_ok("bedrock", 200, stop + throttled) == (False, "error event")


# ------------------------------------------------------------ results -> report, JSON


def _result(measured_peer: bool = False) -> dict:
    return {
        "version": bench.JSON_VERSION, "started": "now",
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gib": 4, "os": "Linux", "python": "3.11"},
        "settings": {"duration_s": 1, "repeats": 3, "concurrency": 16, "stream_chunks": 12, "stream_delay_ms": 20,
                     "hold_chunks": 30, "hold_delay_ms": 500},
        "loadgen": {"summary": "wrk + gevent"},
        "peer": {"name": "Peer" if measured_peer else bench.QUOTED_PEER["name"], "measured": measured_peer},
        "throughput": {"nonstream": {
            "direct openai": {"rps": 2000.0, "runs": [2000.0], "errors": 0},
            "proxy openai->openai": {"rps": 1500.0, "runs": [1500.0], "errors": 0, "vs_direct": 0.75,
                                     "vs_peer": 15.0, "target_cpu_us": 450.0},
        }},
        "latency": {"target_rate": "400", "by_rate": {"400": {
            "direct openai": {"p50_ms": 1.0, "p90_ms": 1.2, "p99_ms": 2.0, "errors": 0},
            "proxy openai->openai": {"p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 4.0, "added_p50_ms": 0.5,
                                     "added_p99_ms": 2.0, "vs_direct_p50": 1.5, "errors": 0},
            "proxy anthropic->openai": {"p50_ms": 1.7, "p90_ms": 2.1, "p99_ms": 4.5, "added_p50_ms": 0.7,
                                        "added_p99_ms": 2.5, "same_added_p50_ms": 0.5, "cross_vs_same": 1.4,
                                        "errors": 0},
        }}},
        "streams": {
            "ttft": {"direct openai": {"ttft_ms": 21.0}, "proxy openai->openai": {"ttft_ms": 21.6, "overhead_ms": 0.6}},
            "relay": {"direct openai": {"p50_ms": 0.15}, "proxy openai->openai": {"p50_ms": 0.3, "added_ms": 0.15}},
        },
        "hold": {"proxy": {"streams": 5000, "failed": 0, "peak_inflight": 5000, "peak_rss_mib": 200.0}},
        "startup": {"proxy": {"startup_s": 0.5, "idle_rss_mib": 45.0}},
        "targets": [],
    }


def test_targets_are_judged_with_figures_and_ratios():
    targets = {t["target"]: t for t in bench.evaluate_targets(_result())}
    assert targets["added latency p50 <= 1 ms (non-streamed)"]["met"] is True
    assert "0.70 ms" in targets["added latency p50 <= 1 ms (non-streamed)"]["measured"]
    assert targets["cross-protocol within 1.5x of same-protocol (added p50)"]["met"] is True
    assert targets[">= 1,000 req/s per worker (non-streamed, openai->openai)"]["met"] is True
    quoted = targets[">= 10x the peer's throughput"]
    assert quoted["met"] is True and "quoted" in quoted["measured"] and "15.0x" in quoted["measured"]
    assert targets["per-chunk relay delay <= 0.2 ms"]["met"] is True
    assert targets["time-to-first-token overhead <= 2 ms"]["met"] is True
    assert targets["5,000 concurrent streams, 0 failures, RSS <= 1 GiB"]["met"] is True
    assert targets["idle RSS <= 80 MiB"]["met"] is True


def test_a_missed_target_says_so():
    res = _result()
    res["streams"]["relay"]["proxy openai->openai"]["added_ms"] = 0.35
    res["hold"]["proxy"]["failed"] = 3
    targets = {t["target"]: t["met"] for t in bench.evaluate_targets(res)}
    assert targets["per-chunk relay delay <= 0.2 ms"] is False
    assert targets["5,000 concurrent streams, 0 failures, RSS <= 1 GiB"] is False


def test_report_prints_tables_with_ratios():
    res = _result()
    res["targets"] = bench.evaluate_targets(res)
    text = bench.report_text(res)
    assert "Throughput, non-streamed" in text and "0.75x" in text and "15.0x" in text
    assert "Latency, non-streamed, fixed rate 400 req/s" in text
    assert "Targets" in text and "MISSED" not in text
    assert "quoted" in text  # no peer was run: the peer figures are labelled as quoted


def test_report_prints_the_in_process_costs():
    res = _result()
    res["inprocess"] = {"calls": 10000, "signing": {"bench request": {
        "body_bytes": 121, "prepare_us": 65.4, "unsigned_us": 7.1, "signing_us": 58.3, "add_auth_us": 57.9,
        "openai_prepare_us": 3.2}},
        "decoding": {"eventstream": {"messages": 16, "bytes": 189, "us_per_message": 17.79},
                     "sse": {"messages": 16, "bytes": 214, "us_per_message": 3.73}}}
    lines = bench.report_text(res).splitlines()
    assert "Bedrock: SigV4 signing per request, in-process (us; median of 10,000 calls, each timed; 500 after 10 ms idle)" in lines
    row = next(line for line in lines if line.startswith("bench request"))
    assert row.split() == ["bench", "request", "121", "65.4", "7.1", "58.3", "57.9", "3.2"]
    assert next(line for line in lines if line.startswith("eventstream")).split() == ["eventstream", "16", "189",
                                                                                      "17.79"]


def test_result_json_shape():
    res = _result()
    res["targets"] = bench.evaluate_targets(res)
    assert bench.validate_result_shape(json.loads(json.dumps(res))) == []
    broken = dict(res, throughput={"nonstream": {"x": {"rps": 1.0}}})
    del broken["hold"]
    problems = bench.validate_result_shape(broken)
    assert "hold: expected dict" in problems and any("needs rps and runs" in p for p in problems)


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    bench.plot(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_command_options():
    args = bench.build_parser().parse_args(["--quick", "--peer-cmd", "litellm --port {port}", "--json", "x.json"])
    assert args.quick and args.peer_cmd == "litellm --port {port}" and args.json == "x.json"
