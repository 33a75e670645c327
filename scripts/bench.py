"""Benchmarks: Interchange side by side with a direct call to the mock (the
limit) and, optionally, a peer proxy (LiteLLM or any other), in one run.

    python -m scripts.bench             # full run (~15 min on 2 cores, ~20 with a peer), table + reports/bench.{json,png}
    python -m scripts.bench --quick     # short run (~5 min)
    python -m scripts.bench --peer-name LiteLLM --peer-cmd "litellm --config docs/bench-litellm.yaml --port {port} --num_workers 1"

What runs (every server a subprocess on a free loopback port):
  mock    the bundled mock provider (mocks/), fixtures copied to a temp dir
          with generated `bench_stream` / `bench_long` scenarios beside them
          (per-chunk delays; streams held for seconds), TCP_NODELAY on.
  proxy   `python -m app serve` on config-mock.toml (or --config) plus one Bedrock
          backend the bench appends (scripts/bench_bedrock.py), pointed at the mock.
  peer    optional: any command; `{port}` and `{mock_url}` / `{mock_openai_url}`
          are filled in, and BENCH_MOCK_URL / BENCH_MOCK_OPENAI_URL are set.
  load    `wrk` (C, one thread) for throughput when it is installed, else a
          gevent raw-socket client; always the gevent client for fixed-rate
          latency, streams, relay timing and thousands of held streams. It runs
          in its own process; its CPU use is measured and reported.

What is measured (each figure the median of --repeats runs):
  throughput    req/s at fixed concurrency, non-streamed and streamed, per path
  latency       p50/p90/p99 at fixed request rates (open loop), per path
  ttft          time to the first token of a stream with per-chunk delays
  relay         per-chunk relay delay: a tap between proxy and mock stamps each
                token as it leaves the mock, the client stamps it on arrival
                (same process, same clock); the direct figure is the tap->client hop
  hold          N simultaneous long streams through one worker: failures, peak RSS
  startup       spawn -> first 200 from /health, and idle RSS
  inprocess     Bedrock's own costs, in this process: SigV4 signing per request
                (the provider's prepare with and without add_auth) and
                event-stream decoding per message (beside SSE)

Paths are `client->backend`: a proxied path is compared with a direct call to
its backend's mock endpoint, and with the peer on the same path. `direct
bedrock` is a client calling the mock's Converse API itself, signed as boto3
signs (once per measurement: no client-side signing in the baseline).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from scripts import bench_bedrock

REPO = Path(__file__).resolve().parents[1]
JSON_VERSION = 1

# Reference figures for LiteLLM 1.106 (one worker, 2 vCPU), used
# when no peer is run; always labelled "quoted" in the output.
QUOTED_PEER = {
    "name": "LiteLLM 1.106 (quoted)",
    "added_latency_ms": 10.5,
    "added_stream_latency_ms": 20.0,
    "rps_openai": 100.0,
    "rps_stream": 45.0,
    "rps_messages": 65.0,
    "idle_rss_mib": 314.0,
}

TARGETS = {
    "added_p50_ms": 1.0,
    "added_p99_ms": 5.0,
    "cross_vs_same": 1.5,
    "peer_throughput_ratio": 10.0,
    "rps": 1000.0,
    "relay_ms": 0.2,
    "ttft_overhead_ms": 2.0,
    "hold_streams": 5000,
    "hold_rss_mib": 1024.0,
    "idle_rss_mib": 80.0,
}


# =====================================================================
# Pure pieces: statistics, ratios, formatting (tests/unit/test_bench.py)
# =====================================================================


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (k - lo))


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ms(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x"


def render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table (first column left-aligned, the rest right-aligned)."""
    cols = [list(map(str, col)) for col in zip(headers, *rows)] if rows else [[h] for h in headers]
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(str(c).ljust(w) if i == 0 else str(c).rjust(w))
        return "  ".join(out).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    parts = [title, rule, line(headers), rule]
    parts += [line(r) for r in rows]
    parts.append(rule)
    return "\n".join(parts)


def summarize_latencies(samples_ms: Sequence[float]) -> dict[str, float | None]:
    return {"p50_ms": percentile(samples_ms, 50), "p90_ms": percentile(samples_ms, 90),
            "p99_ms": percentile(samples_ms, 99), "n": len(samples_ms)}


# ----------------------------------------------------------- paths


@dataclass(frozen=True)
class BenchPath:
    """One way a request travels: who answers (direct mock, proxy, peer), the
    client protocol and the backend protocol behind it."""
    target: str  # "direct" | "proxy" | "peer" | "tcprelay"
    client: str  # "openai" | "anthropic" | "gemini" | "bedrock" (a direct Converse client)
    backend: str

    @property
    def name(self) -> str:
        if self.target == "direct":
            return f"direct {self.backend}"
        if self.target == "tcprelay":
            return f"tcp relay {self.backend}"
        return f"{self.target} {self.client}->{self.backend}"

    @property
    def cross(self) -> bool:
        return self.client != self.backend

    @property
    def baseline(self) -> "BenchPath":
        """The direct call this path is compared with."""
        return BenchPath("direct", self.backend, self.backend)

    @property
    def same_protocol(self) -> "BenchPath":
        """The same-protocol path through the same target to the same backend."""
        return BenchPath(self.target, self.backend, self.backend)

    def peer_twin(self) -> "BenchPath":
        return BenchPath("peer", self.client, self.backend)


MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash",
         "bedrock": bench_bedrock.MODEL}
PROMPT = "Say hello in one short sentence."
AUTH = {
    "openai": {"Authorization": "Bearer sk-bench-key"},
    "anthropic": {"x-api-key": "sk-ant-bench-key", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "AIza-bench-key"},
    "bedrock": {},  # SigV4, per request (bench_bedrock.signed_headers)
}
# Where a stream has really finished, per client protocol (Bedrock: the binary
# event stream's last message is `metadata`; an exception message names its type).
STREAM_END = {"openai": b"[DONE]", "anthropic": b"message_stop", "gemini": b"finishReason", "bedrock": b"metadata"}
STREAM_ERROR = {"openai": b'{"error"', "anthropic": b"event: error", "gemini": b'"error"',
                "bedrock": b":exception-type"}


def http_request(path: BenchPath, host: str, *, stream: bool, scenario: str | None = None,
                 max_tokens: int = 64) -> dict[str, Any]:
    """The request a client of `path.client` sends for `path` (method, URL path,
    headers, body), as a JSON-able dict for the load generator. A Bedrock
    request is signed here, so it is good for SigV4's 5 minutes."""
    model = MODEL[path.backend]
    headers = {"Host": host, "Content-Type": "application/json", **AUTH[path.client]}
    if scenario:
        headers["X-Mock-Scenario"] = scenario
    if path.client == "openai":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                                "max_tokens": max_tokens}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        url = "/v1/chat/completions"
    elif path.client == "anthropic":
        body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        url = "/v1/messages"
    elif path.client == "bedrock":
        body = bench_bedrock.converse_body(PROMPT, max_tokens)
        url = bench_bedrock.converse_path(stream)
        headers["Accept"] = "application/vnd.amazon.eventstream" if stream else "application/json"
    else:
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {"maxOutputTokens": max_tokens}}
        url = f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")
    data = json.dumps(body, separators=(",", ":"))
    if path.client == "bedrock":
        unsigned = {k: v for k, v in headers.items() if k != "Host"}
        headers = {"Host": host, **bench_bedrock.signed_headers(host, url, unsigned, data.encode())}
    return {"method": "POST", "path": url, "headers": headers, "body": data, "client": path.client, "stream": stream}


def raw_request(req: dict[str, Any]) -> bytes:
    """HTTP/1.1 bytes for a request dict (keep-alive)."""
    body = req["body"].encode()
    lines = [f"{req['method']} {req['path']} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in req["headers"].items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ----------------------------------------------------------- scenarios

TOKEN_RE = re.compile(rb"w(\d{4})\b")


def token(i: int) -> str:
    """The i-th streamed word (1-based): unique, so the tap and the client can
    match the same chunk on both sides of the proxy whatever the protocol."""
    return f"w{i:04d} "


def stream_scenarios(chunks: int, delay_ms: int, description: str) -> dict[str, dict]:
    """Scenario fixtures (scenarios/README.md format) for each provider: `chunks`
    one-word text deltas, each `delay_ms` after the previous one."""
    words = [token(i) for i in range(1, chunks + 1)]
    text = "".join(words)
    usage = {"input": 12, "output": chunks}
    expect = {"text": text, "tool_calls": [], "finish": "stop", "usage": usage}
    cid = "chatcmpl-{{id}}"
    head = {"id": cid, "object": "chat.completion.chunk", "created": 1760000000, "model": "{{model}}",
            "system_fingerprint": "fp_bench"}
    o_usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    openai = {
        "description": description, "status": 200, "expect": expect,
        "body": {"id": cid, "object": "chat.completion", "created": 1760000000, "model": "{{model}}",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                              "logprobs": None, "finish_reason": "stop"}],
                 "usage": o_usage},
        "stream": [{"data": {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "logprobs": None, "finish_reason": None}]}}]
        + [{"data": {**head, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None,
                                          "finish_reason": None}]}, "delay_ms": delay_ms} for w in words]
        + [{"data": {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}},
           {"data": {**head, "choices": [], "usage": o_usage}},
           {"data": "[DONE]"}],
    }
    a_usage = {"input_tokens": 12, "output_tokens": chunks}
    anthropic = {
        "description": description, "status": 200, "expect": expect,
        "body": {"model": "{{model}}", "id": "msg_01{{id}}", "type": "message", "role": "assistant",
                 "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                 "stop_sequence": None, "usage": a_usage},
        "stream": [{"event": "message_start",
                    "data": {"type": "message_start", "message": {
                        "model": "{{model}}", "id": "msg_01{{id}}", "type": "message", "role": "assistant",
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": 12, "output_tokens": 1}}}},
                   {"event": "content_block_start",
                    "data": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}}]
        + [{"event": "content_block_delta", "delay_ms": delay_ms,
            "data": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}}
           for w in words]
        + [{"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
           {"event": "message_delta", "data": {"type": "message_delta",
                                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                               "usage": {"output_tokens": chunks}}},
           {"event": "message_stop", "data": {"type": "message_stop"}}],
    }

    def g_chunk(i: int, w: str) -> dict:
        cand: dict[str, Any] = {"content": {"parts": [{"text": w}], "role": "model"}, "index": 0}
        if i == chunks:
            cand["finishReason"] = "STOP"
        return {"candidates": [cand],
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": i, "totalTokenCount": 12 + i},
                "modelVersion": "{{model}}", "responseId": "{{id}}"}

    gemini = {
        "description": description, "status": 200, "expect": expect,
        "body": {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                 "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": chunks,
                                   "totalTokenCount": 12 + chunks},
                 "modelVersion": "{{model}}", "responseId": "{{id}}"},
        "stream": [{"data": g_chunk(i, w), "delay_ms": delay_ms} for i, w in enumerate(words, 1)],
    }
    b_usage = {"inputTokens": 12, "outputTokens": chunks, "totalTokens": 12 + chunks}
    bedrock = {
        "description": description, "status": 200, "expect": expect,
        "body": {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                 "stopReason": "end_turn", "usage": b_usage, "metrics": {"latencyMs": delay_ms * chunks}},
        "stream": [{"event": "messageStart", "data": {"role": "assistant"}}]
        + [{"event": "contentBlockDelta", "delay_ms": delay_ms,
            "data": {"contentBlockIndex": 0, "delta": {"text": w}}} for w in words]
        + [{"event": "contentBlockStop", "data": {"contentBlockIndex": 0}},
           {"event": "messageStop", "data": {"stopReason": "end_turn"}},
           {"event": "metadata", "data": {"usage": b_usage, "metrics": {"latencyMs": delay_ms * chunks}}}],
    }
    return {"openai": openai, "anthropic": anthropic, "gemini": gemini, "bedrock": bedrock}


def write_scenario_root(dest: Path, stream_chunks: int, stream_delay_ms: int,
                        hold_chunks: int, hold_delay_ms: int) -> Path:
    """The repository's fixtures plus the generated bench scenarios, in `dest`.
    (Generated rather than committed: scenarios/ holds exactly the set every
    provider must have, and the chunk count/delay are options of the run.)"""
    import yaml

    root = dest / "scenarios"
    shutil.copytree(REPO / "scenarios", root)
    for name, (chunks, delay, what) in {
        "bench_stream": (stream_chunks, stream_delay_ms, "Benchmark: one-word deltas with a per-chunk delay."),
        "bench_long": (hold_chunks, hold_delay_ms, "Benchmark: a long stream, for holding many at once."),
    }.items():
        for provider, doc in stream_scenarios(chunks, delay, what).items():
            (root / provider / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


# ----------------------------------------------------------- results -> report


def evaluate_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each performance target with the measured figure, its ratio and a verdict."""
    out: list[dict[str, Any]] = []
    peer_name = res.get("peer", {}).get("name")
    measured_peer = bool(res.get("peer", {}).get("measured"))

    def add(name: str, measured: str, ok: bool | None, detail: str = "") -> None:
        out.append({"target": name, "measured": measured, "met": ok, "detail": detail})

    lat = res.get("latency", {})
    rate = lat.get("target_rate")
    rows = lat.get("by_rate", {}).get(str(rate), {}) if rate is not None else {}
    added = {p: r for p, r in rows.items() if p.startswith("proxy ") and r.get("added_p50_ms") is not None}
    if added:
        worst50 = max(r["added_p50_ms"] for r in added.values())
        worst99 = max(r["added_p99_ms"] for r in added.values() if r.get("added_p99_ms") is not None)
        add("added latency p50 <= 1 ms (non-streamed)", f"{worst50:.2f} ms worst path at {rate} req/s",
            worst50 <= TARGETS["added_p50_ms"],
            "; ".join(f"{p}: {r['added_p50_ms']:.2f}" for p, r in added.items()))
        add("added latency p99 <= 5 ms (non-streamed)", f"{worst99:.2f} ms worst path at {rate} req/s",
            worst99 <= TARGETS["added_p99_ms"],
            "; ".join(f"{p}: {r['added_p99_ms']:.2f}" for p, r in added.items()))
        crosses = [(p, r) for p, r in added.items() if r.get("cross_vs_same") is not None]
        if crosses:
            worst = max(r["cross_vs_same"] for _, r in crosses)
            add("cross-protocol within 1.5x of same-protocol (added p50)", f"{worst:.2f}x worst",
                worst <= TARGETS["cross_vs_same"],
                "; ".join(f"{p}: {r['added_p50_ms']:.2f} ms vs {r['same_added_p50_ms']:.2f} ms "
                          f"({r['cross_vs_same']:.2f}x)" for p, r in crosses))
    thr = res.get("throughput", {}).get("nonstream", {})
    main = thr.get("proxy openai->openai", {})
    if main.get("rps") is not None:
        rps = main["rps"]
        add(">= 1,000 req/s per worker (non-streamed, openai->openai)", f"{rps:,.0f} req/s "
            f"({fmt_ratio(main.get('vs_direct'))} of direct)", rps >= TARGETS["rps"])
        peer_rps = thr.get("peer openai->openai", {}).get("rps") if measured_peer else QUOTED_PEER["rps_openai"]
        r = ratio(rps, peer_rps)
        add(">= 10x the peer's throughput", f"{fmt_ratio(r)} ({rps:,.0f} vs {fmt_num(peer_rps)} req/s, "
            f"{peer_name or QUOTED_PEER['name']})", None if r is None else r >= TARGETS["peer_throughput_ratio"])
    relay = res.get("streams", {}).get("relay", {})
    rel = [(p, r) for p, r in relay.items() if p.startswith("proxy ") and r.get("added_ms") is not None]
    if rel:
        worst = max(r["added_ms"] for _, r in rel)
        add("per-chunk relay delay <= 0.2 ms", f"{worst:.3f} ms worst path (median per chunk)",
            worst <= TARGETS["relay_ms"], "; ".join(f"{p}: {r['added_ms']:.3f}" for p, r in rel))
    ttft = res.get("streams", {}).get("ttft", {})
    tt = [(p, r) for p, r in ttft.items() if p.startswith("proxy ") and r.get("overhead_ms") is not None]
    if tt:
        worst = max(r["overhead_ms"] for _, r in tt)
        add("time-to-first-token overhead <= 2 ms", f"{worst:.2f} ms worst path",
            worst <= TARGETS["ttft_overhead_ms"], "; ".join(f"{p}: {r['overhead_ms']:.2f}" for p, r in tt))
    hold = res.get("hold", {}).get("proxy", {})
    if hold.get("streams"):
        n = hold["streams"]
        ok = hold.get("failed", 1) == 0 and n >= TARGETS["hold_streams"] and \
            (hold.get("peak_rss_mib") or 1e9) <= TARGETS["hold_rss_mib"]
        add(f"{TARGETS['hold_streams']:,} concurrent streams, 0 failures, RSS <= 1 GiB",
            f"{n:,} streams (peak {int(hold.get('peak_inflight') or 0):,} in flight), {hold.get('failed')} failed, "
            f"peak RSS {fmt_num(hold.get('peak_rss_mib'))} MiB", ok)
    st = res.get("startup", {}).get("proxy", {})
    if st.get("idle_rss_mib") is not None:
        add("idle RSS <= 80 MiB", f"{st['idle_rss_mib']:.1f} MiB (start-up {st['startup_s']:.2f} s)",
            st["idle_rss_mib"] <= TARGETS["idle_rss_mib"])
    return out


def report_text(res: dict[str, Any]) -> str:
    """Everything a run prints: machine, tables with ratios, targets."""
    parts: list[str] = []
    m = res.get("machine", {})
    s = res.get("settings", {})
    peer = res.get("peer", {})
    peer_label = peer.get("name") if peer.get("measured") else None
    parts.append(f"Interchange benchmark  {res.get('started', '')}")
    parts.append(f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB, "
                 f"{m.get('os', '?')}, Python {m.get('python', '?')}")
    parts.append(f"load generator: {res.get('loadgen', {}).get('summary', '?')}")
    parts.append("client, mock and proxy share these cores; every figure is the median of "
                 f"{s.get('repeats', '?')} runs of {s.get('duration_s', '?')} s")
    if not peer_label:
        parts.append(f"peer: none run; peer ratios use the reference figures for {QUOTED_PEER['name']}")
    canary = res.get("throughput", {}).get("nonstream", {}).get("direct openai", {}).get("mock_cpu_us")
    if canary:
        parts.append(f"host speed: the mock spent {canary:,.0f} us of CPU per direct OpenAI request (same code "
                     "in every run: compare runs, or machines, by it)")
    parts.append("")

    thr = res.get("throughput", {})
    for kind, title in (("nonstream", "Throughput, non-streamed"), ("stream", "Throughput, streamed (streams/s)")):
        rows_in = thr.get(kind, {})
        if not rows_in:
            continue
        rows = []
        for name, r in rows_in.items():
            rows.append([name, fmt_num(r.get("rps")), fmt_ratio(r.get("vs_direct")), fmt_ratio(r.get("vs_peer")),
                         fmt_num(r.get("target_cpu_us")), fmt_num(r.get("mock_cpu_us")), str(r.get("errors", 0))])
        unit = "streams/s" if kind == "stream" else "req/s"
        per = "stream" if kind == "stream" else "req"
        parts.append(render_table(
            f"{title}, {s.get('concurrency')} connections", ["path", unit, "/direct", "/peer",
                                                             f"cpu us/{per}", f"mock us/{per}", "errors"], rows))
        parts.append("")

    lat = res.get("latency", {})
    for rate, rows_in in lat.get("by_rate", {}).items():
        rows = []
        for name, r in rows_in.items():
            rows.append([name, fmt_ms(r.get("p50_ms")), fmt_ms(r.get("p90_ms")), fmt_ms(r.get("p99_ms")),
                         fmt_ms(r.get("added_p50_ms")), fmt_ms(r.get("added_p99_ms")),
                         fmt_ratio(r.get("vs_direct_p50")), fmt_ratio(r.get("vs_peer_added")),
                         fmt_num(r.get("cpu_us")), str(r.get("errors", 0))])
        parts.append(render_table(
            f"Latency, non-streamed, fixed rate {rate} req/s (ms; cpu us/req of the process answering)",
            ["path", "p50", "p90", "p99", "added p50", "added p99", "p50/direct", "added/peer", "cpu us/req",
             "errors"], rows))
        parts.append("")

    streams = res.get("streams", {})
    if streams.get("ttft"):
        rows = []
        for name, r in streams["ttft"].items():
            rows.append([name, fmt_ms(r.get("ttft_ms")), fmt_ms(r.get("overhead_ms")),
                         fmt_ms(r.get("gap_overhead_ms"), 3), fmt_ratio(r.get("vs_peer_overhead")),
                         str(r.get("errors", 0))])
        parts.append(render_table(
            f"Streams: time to first token ({s.get('stream_chunks')} chunks, {s.get('stream_delay_ms')} ms apart) (ms)",
            ["path", "TTFT p50", "overhead", "gap overhead", "overhead/peer", "errors"], rows))
        parts.append("")
    if streams.get("relay"):
        rows = []
        for name, r in streams["relay"].items():
            rows.append([name, fmt_ms(r.get("p50_ms"), 3), fmt_ms(r.get("p99_ms"), 3), fmt_ms(r.get("added_ms"), 3),
                         str(r.get("chunks", 0))])
        parts.append(render_table(
            "Streams: per-chunk relay delay, mock tap -> client (ms; direct = the bare loopback hop)",
            ["path", "p50", "p99", "added p50", "chunks"], rows))
        parts.append("")

    hold = res.get("hold", {})
    if hold:
        rows = []
        for name, r in hold.items():
            rows.append([name, f"{r.get('streams', 0):,}", f"{int(r.get('peak_inflight') or 0):,}", str(r.get("failed")),
                         fmt_num(r.get("peak_rss_mib")), fmt_num(r.get("kib_per_stream")),
                         fmt_ms(r.get("open_s")), ", ".join(f"{k}: {v}" for k, v in r.get("reasons", {}).items())])
        parts.append(render_table(
            f"Concurrency: long streams held at once ({s.get('hold_chunks')} chunks x {s.get('hold_delay_ms')} ms)",
            ["target", "streams", "peak in flight", "failed", "peak RSS MiB", "KiB/stream", "open s", "failures"],
            rows))
        parts.append("")

    st = res.get("startup", {})
    if st:
        rows = []
        for name, r in st.items():
            rows.append([name, fmt_ms(r.get("startup_s")), fmt_num(r.get("idle_rss_mib")),
                         fmt_num(r.get("rss_after_load_mib"))])
        quoted = "" if peer_label else f" ({QUOTED_PEER['name']}: {QUOTED_PEER['idle_rss_mib']:.0f} MiB idle)"
        parts.append(render_table("Start-up and memory" + quoted,
                                  ["process", "start-up s", "idle RSS MiB", "RSS after load MiB"], rows))
        parts.append("")

    inproc = res.get("inprocess", {})
    if inproc.get("signing"):
        rows = [[name, f"{r['body_bytes']:,}", fmt_ms(r["prepare_us"], 1), fmt_ms(r["unsigned_us"], 1),
                 fmt_ms(r["signing_us"], 1), fmt_ms(r["add_auth_us"], 1), fmt_ms(r.get("openai_prepare_us"), 1)]
                for name, r in inproc["signing"].items()]
        parts.append(render_table(
            f"Bedrock: SigV4 signing per request, in-process (us; median of {inproc.get('calls'):,} calls, each "
            f"timed; {(inproc.get('calls') or 0) // 20:,} after 10 ms idle)",
            ["body", "bytes", "prepare", "without signing", "signing", "add_auth alone", "openai prepare"], rows))
        parts.append("")
    if inproc.get("decoding"):
        rows = [[name, str(r["messages"]), str(r["bytes"]), fmt_ms(r["us_per_message"], 2)]
                for name, r in inproc["decoding"].items()]
        parts.append(render_table("Stream decoding per message, in-process, one message per read (us; median of "
                                  f"{(inproc.get('calls') or 0) // 10:,} streams; eventstream = Bedrock's binary "
                                  "framing, sse = the same stream as OpenAI SSE)",
                                  ["framing", "messages", "bytes/message", "us/message"], rows))
        parts.append("")

    targets = res.get("targets") or evaluate_targets(res)
    if targets:
        rows = [[t["target"], t["measured"], {True: "met", False: "MISSED", None: "n/a"}[t["met"]]] for t in targets]
        parts.append(render_table("Targets", ["target", "measured", ""], rows))
    return "\n".join(parts).rstrip() + "\n"


def validate_result_shape(res: dict[str, Any]) -> list[str]:
    """Problems with a result document's shape (empty when fine)."""
    problems = []
    for key, kind in (("version", int), ("machine", dict), ("settings", dict), ("loadgen", dict),
                      ("throughput", dict), ("latency", dict), ("streams", dict), ("hold", dict),
                      ("startup", dict), ("targets", list)):
        if not isinstance(res.get(key), kind):
            problems.append(f"{key}: expected {kind.__name__}")
    for kind, rows in (res.get("throughput") or {}).items():
        for name, r in rows.items():
            if "rps" not in r or "runs" not in r:
                problems.append(f"throughput.{kind}.{name}: needs rps and runs")
    for rate, rows in ((res.get("latency") or {}).get("by_rate") or {}).items():
        for name, r in rows.items():
            for k in ("p50_ms", "p90_ms", "p99_ms"):
                if k not in r:
                    problems.append(f"latency.{rate}.{name}: missing {k}")
    return problems


# =====================================================================
# Processes
# =====================================================================


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def _child_setup() -> None:
    _raise_nofile()
    os.setsid()  # its own process group: stop() ends it and anything it spawned


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LISTENING = re.compile(r"listening on (http://[^\s)]+)")


class Server:
    """A server subprocess (its own process group), its log in a file."""

    def __init__(self, name: str, argv: list[str] | str, log_path: Path, env: dict[str, str] | None = None,
                 shell: bool = False):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, shell=shell,
                                     preexec_fn=_child_setup)
        self.url = ""

    def wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = _LISTENING.search(text)
            if m:
                self.url = m.group(1).rstrip("/")
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60) -> float:
        """Poll `check` until it is true; seconds since spawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if check():
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()


def http_ok(url: str, req: dict[str, Any] | None = None, timeout: float = 5) -> bool:
    """One blocking request (stdlib); True on a 2xx."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        if req is None:
            conn.request("GET", u.path or "/health")
        else:
            headers = {k: v for k, v in req["headers"].items() if k.lower() != "host"}
            conn.request(req["method"], req["path"], body=req["body"].encode(), headers=headers)
        resp = conn.getresponse()
        resp.read()
        return 200 <= resp.status < 300
    finally:
        conn.close()


class ProcStats:
    """CPU and memory of a process (and its children: a peer may fork workers)."""

    def __init__(self, pid: int):
        import psutil
        self._psutil = psutil
        self.proc = psutil.Process(pid)

    def _tree(self):
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except self._psutil.Error:
            pass
        return procs

    def cpu(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:
                pass
        return total

    def rss_mib(self) -> float:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except self._psutil.Error:
                pass
        return total / (1024 * 1024)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# =====================================================================
# The load generator process (gevent, raw sockets, keep-alive)
# =====================================================================


def run_loadgen(spec: dict[str, Any], *, during: Callable[[], None] | None = None,
                timeout: float = 600) -> dict[str, Any]:
    """Run the gevent load generator in its own process; its JSON result, plus
    `gen_cpu_s` (the generator's own CPU time)."""
    before = children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "scripts.bench", "_load"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_raise_nofile)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if during is not None:
            during()
        time.sleep(0.2)
        if time.monotonic() > deadline:
            proc.kill()
            break
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    proc.wait()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    result = json.loads(out)
    result["gen_cpu_s"] = children_cpu() - before
    return result


def _loadgen_main() -> int:
    spec = json.load(sys.stdin)
    from gevent import monkey
    monkey.patch_all()
    _raise_nofile()
    result = _LOADGEN_MODES[spec["mode"]](spec)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


_CL_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CHUNKED_RE = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.I)
_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.I)


class _Conn:
    """One keep-alive client connection that reads whole HTTP/1.1 responses."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self) -> bytes:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("connection closed by the server")
        return data

    def exchange(self, request: bytes, on_data: Callable[[float, bytes], None] | None = None,
                 tail_size: int = 0) -> tuple[int, bool, bytes, float]:
        """Send one request, read its whole response: (status, keep_alive, body
        tail, send time). `on_data(t, piece)` sees each body piece as it arrives."""
        clock = time.perf_counter
        t_send = clock()
        self.sock.sendall(request)
        buf = self.buf
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            buf += self._recv()
        head = buf[:i + 2]
        buf = buf[i + 4:]
        status = int(head[9:12])
        keep = _CLOSE_RE.search(head) is None
        tail = b""
        m = _CL_RE.search(head)
        if m:
            need = int(m.group(1))
            if buf and on_data:
                on_data(clock(), buf[:need])
            got = buf[:need]
            while len(got) < need:
                piece = self._recv()
                if on_data:
                    on_data(clock(), piece)
                got += piece
            self.buf = got[need:]
            tail = got[-tail_size:] if tail_size else b""
        elif _CHUNKED_RE.search(head):
            dec = _Dechunker()
            if buf:
                if on_data:
                    on_data(clock(), buf)
                done, rest = dec.feed(buf)
            else:
                done, rest = False, b""
            while not done:
                piece = self._recv()
                if on_data:
                    on_data(clock(), piece)
                done, rest = dec.feed(piece)
            self.buf = rest
            tail = dec.tail
        else:  # delimited by close
            keep = False
            chunks = [buf]
            while True:
                try:
                    piece = self.sock.recv(262144)
                except OSError:
                    break
                if not piece:
                    break
                if on_data:
                    on_data(clock(), piece)
                chunks.append(piece)
            tail = b"".join(chunks)[-tail_size:] if tail_size else b""
            self.buf = b""
        return status, keep, tail, t_send


class _Dechunker:
    """Finds the end of a chunked body; keeps the last bytes of payload and
    whether an error marker was seen (for stream checks)."""

    TAIL = 512

    def __init__(self) -> None:
        self.pending = bytearray()
        self.need = 0  # payload bytes of the current chunk still to come
        self.state = "size"
        self.tail = b""

    def feed(self, data: bytes) -> tuple[bool, bytes]:
        p = self.pending
        p += data
        while True:
            if self.state == "data":
                if len(p) < self.need:
                    self._keep(bytes(p))
                    self.need -= len(p)
                    p.clear()
                    return False, b""
                self._keep(bytes(p[:self.need]))
                del p[:self.need]
                self.need = 0
                self.state = "crlf"
            j = p.find(b"\r\n")
            if j < 0:
                return False, b""
            line = bytes(p[:j])
            del p[:j + 2]
            if self.state == "crlf":  # the CRLF after a chunk's payload
                self.state = "size"
                continue
            if self.state == "trailer":
                if not line:
                    return True, bytes(p)
                continue
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.state = "trailer"
                continue
            self.need = size
            self.state = "data"

    def _keep(self, b: bytes) -> None:
        self.tail = (self.tail + b)[-self.TAIL:]


def _stream_ok(client: str, status: int, tail: bytes) -> tuple[bool, str]:
    if status != 200:
        return False, f"HTTP {status}"
    if STREAM_ERROR[client] in tail:
        return False, "error event"
    if STREAM_END[client] not in tail:
        return False, "incomplete stream"
    return True, ""


def _lg_closed(spec: dict[str, Any]) -> dict[str, Any]:
    """Fixed concurrency, each connection sending back to back."""
    import gevent

    host, port = spec["host"], spec["port"]
    req = raw_request(spec["request"])
    stream = spec["request"]["stream"]
    client = spec["request"]["client"]
    duration = spec["duration"]
    done = [0]
    errors: dict[str, int] = {}
    start = time.perf_counter() + 0.05
    deadline = start + duration

    def worker() -> None:
        conn = None
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            try:
                if conn is None:
                    conn = _Conn(host, port, 30)
                status, keep, tail, _ = conn.exchange(req, tail_size=512 if stream else 0)
                ok, why = _stream_ok(client, status, tail) if stream else (status == 200, f"HTTP {status}")
                if not keep:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - counted, never fatal
                ok, why = False, type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            end = time.perf_counter()
            if start <= end <= deadline:
                if ok:
                    done[0] += 1
                else:
                    errors[why] = errors.get(why, 0) + 1
        if conn is not None:
            conn.close()

    gevent.joinall([gevent.spawn(worker) for _ in range(spec["concurrency"])], timeout=duration + 60)
    return {"completed": done[0], "errors": errors, "duration": duration, "rps": done[0] / duration}


def _lg_rate(spec: dict[str, Any]) -> dict[str, Any]:
    """Open loop: requests sent on a fixed schedule whatever the replies do
    (no coordinated omission); latency from the moment each request is sent."""
    import gevent

    host, port = spec["host"], spec["port"]
    req = raw_request(spec["request"])
    rate, duration = spec["rate"], spec["duration"]
    idle: list[_Conn] = []
    lat_ms: list[float] = []
    errors: dict[str, int] = {}
    lag_ms: list[float] = []

    def one(sched: float) -> None:
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = _Conn(host, port, 30)
            lag_ms.append((time.perf_counter() - sched) * 1000)
            status, keep, _, t_send = conn.exchange(req)
            t = time.perf_counter()
            if status == 200:
                lat_ms.append((t - t_send) * 1000)
            else:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
            if keep:
                idle.append(conn)
            else:
                conn.close()
        except Exception as e:  # noqa: BLE001
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            if conn is not None:
                conn.close()

    # Open enough connections up front that the schedule never waits for a connect.
    for _ in range(min(64, max(4, int(rate / 50)))):
        idle.append(_Conn(host, port, 30))
    greenlets = []
    t0 = time.perf_counter() + 0.05
    n = int(rate * duration)
    for i in range(n):
        sched = t0 + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        greenlets.append(gevent.spawn(one, sched))
    gevent.joinall(greenlets, timeout=60)
    for c in idle:
        c.close()
    lag = sorted(lag_ms)
    return {"latencies_ms": lat_ms, "errors": errors, "sent": n, "rate": rate,
            "send_lag_p99_ms": percentile(lag, 99) if lag else None}


def _lg_streams(spec: dict[str, Any]) -> dict[str, Any]:
    """Streams one after the other (optionally through a tap in this process
    that stamps every token as it leaves the mock): TTFT, token arrival times,
    and per-token relay delay (client arrival - tap departure)."""
    from gevent.server import StreamServer

    host, port = spec["host"], spec["port"]
    req = raw_request(spec["request"])
    client = spec["request"]["client"]
    duration = spec["duration"]
    tap_seen: dict[int, float] = {}
    tap_server = None

    if spec.get("tap"):
        up_host, up_port = spec["tap"]["upstream_host"], spec["tap"]["upstream_port"]

        def stamp(data: bytes) -> None:
            t = time.perf_counter()
            for m in TOKEN_RE.finditer(data):
                tap_seen.setdefault(int(m.group(1)), t)

        def handle(downstream: socket.socket, _addr) -> None:
            relay_connection(downstream, up_host, up_port, on_upstream_data=stamp)

        tap_server = StreamServer(("127.0.0.1", spec["tap"]["port"]), handle)
        tap_server.start()

    records: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    conn: _Conn | None = None
    deadline = time.perf_counter() + duration
    attempts = 0
    while time.perf_counter() < deadline or len(records) < spec.get("min_streams", 3):
        attempts += 1
        if len(records) >= spec.get("max_streams", 10_000) or time.perf_counter() > deadline + 60 \
                or (attempts > 20 and not records):
            break
        seen: dict[int, float] = {}
        tap_seen.clear()

        def on_data(t: float, piece: bytes, seen=seen) -> None:
            for m in TOKEN_RE.finditer(piece):
                seen.setdefault(int(m.group(1)), t)

        try:
            if conn is None:
                conn = _Conn(host, port, 30)
            status, keep, tail, t_send = conn.exchange(req, on_data=on_data, tail_size=512)
            ok, why = _stream_ok(client, status, tail)
            if not keep:
                conn.close()
                conn = None
        except Exception as e:  # noqa: BLE001
            ok, why = False, type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
        if not ok or 1 not in seen:
            errors[why or "no tokens"] = errors.get(why or "no tokens", 0) + 1
            continue
        tokens = sorted(seen)
        rec: dict[str, Any] = {
            "ttft_ms": (seen[1] - t_send) * 1000,
            "gaps_ms": [(seen[b] - seen[a]) * 1000 for a, b in zip(tokens, tokens[1:])],
        }
        if tap_server is not None:
            rec["relay_ms"] = [(seen[k] - tap_seen[k]) * 1000 for k in tokens if k in tap_seen]
        records.append(rec)
    if conn is not None:
        conn.close()
    if tap_server is not None:
        tap_server.stop(timeout=1)
    return {"streams": records, "errors": errors}


def _lg_hold(spec: dict[str, Any]) -> dict[str, Any]:
    """N long streams opened at a fixed pace and held to their end."""
    import gevent

    host, port = spec["host"], spec["port"]
    req = raw_request(spec["request"])
    client = spec["request"]["client"]
    n, ramp = spec["streams"], spec["ramp_per_s"]
    inflight = [0]
    peak = [0]
    ok_count = [0]
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    opened_at = [0.0]

    def one() -> None:
        conn = None
        inflight[0] += 1
        peak[0] = max(peak[0], inflight[0])
        try:
            conn = _Conn(host, port, spec.get("timeout", 120))
            status, _, tail, _ = conn.exchange(req, tail_size=512)
            ok, why = _stream_ok(client, status, tail)
        except Exception as e:  # noqa: BLE001
            ok, why = False, type(e).__name__
        finally:
            inflight[0] -= 1
            if conn is not None:
                conn.close()
        if ok:
            ok_count[0] += 1
        else:
            reasons[why] = reasons.get(why, 0) + 1

    greenlets = []
    for i in range(n):
        delay = t0 + i / ramp - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        greenlets.append(gevent.spawn(one))
    opened_at[0] = time.perf_counter() - t0
    gevent.joinall(greenlets, timeout=spec.get("timeout", 120) + 30)
    failed = n - ok_count[0]
    pending = failed - sum(reasons.values())
    if pending:
        reasons["unfinished"] = pending
    return {"streams": n, "ok": ok_count[0], "failed": failed, "reasons": reasons, "peak_inflight": peak[0],
            "open_s": opened_at[0], "total_s": time.perf_counter() - t0}


_LOADGEN_MODES = {"closed": _lg_closed, "rate": _lg_rate, "streams": _lg_streams, "hold": _lg_hold}


# ---------------------------------------------------------------- wrk


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    m = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


_WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH_JSON {{\\"requests\\": %d, \\"non2xx\\": %d, \\"connect\\": %d, \\"read\\": %d, "
    .. "\\"write\\": %d, \\"timeout\\": %d, \\"duration_us\\": %d}}\\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.duration))
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_wrk(url: str, req: dict[str, Any], concurrency: int, duration: float, workdir: Path) -> dict[str, Any]:
    headers = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in req["headers"].items()
                        if k.lower() != "host")
    script = workdir / "wrk-request.lua"
    script.write_text(_WRK_SCRIPT.format(method=_lua_str(req["method"]), body=_lua_str(req["body"]),
                                         headers=headers))
    before = children_cpu()
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
                          "-s", str(script),
                          url + req["path"]], capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"BENCH_JSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
    s = json.loads(m.group(1))
    secs = s["duration_us"] / 1e6
    errors = {k: s[k] for k in ("non2xx", "connect", "read", "write", "timeout") if s[k]}
    good = s["requests"] - s["non2xx"]
    return {"completed": good, "errors": errors, "duration": secs, "rps": good / secs,
            "gen_cpu_s": children_cpu() - before}


# =====================================================================
# The run
# =====================================================================


@dataclass
class Targets:
    """The live endpoints of one run."""
    mock: Server
    proxy: Server
    peer: Server | None
    relay: Server
    workdir: Path

    def url(self, target: str) -> str:
        return {"direct": self.mock.url, "proxy": self.proxy.url, "tcprelay": self.relay.url,
                "peer": self.peer.url if self.peer else ""}[target]

    def server(self, target: str) -> Server | None:
        return {"direct": self.mock, "proxy": self.proxy, "peer": self.peer, "tcprelay": self.relay}[target]


def host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        import psutil
        mem = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except Exception:  # noqa: BLE001
        pass
    versions = {}
    for mod in ("gevent", "flask", "orjson"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (shorter, fewer repeats, 500 held streams)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 4; quick 1.5)")
    p.add_argument("--repeats", type=int, help="runs per figure, the median is reported (default 3; quick 2)")
    p.add_argument("--concurrency", type=int, default=16, help="connections for throughput (default 16)")
    p.add_argument("--rates", default="20,100,400",
                   help="fixed request rates for latency, req/s (default 20,100,400; the peer is only driven at "
                        "rates below 2/3 of its measured throughput)")
    p.add_argument("--target-rate", type=float, default=100,
                   help="the rate the added-latency targets are judged at (default 100, a moderate rate)")
    p.add_argument("--streams", type=int, help="long streams held at once (default 5000; quick 500)")
    p.add_argument("--hold-chunks", type=int, help="chunks per held stream (default 30; quick 10)")
    p.add_argument("--hold-delay-ms", type=int, help="delay between held-stream chunks (default 500; quick 300)")
    p.add_argument("--ramp", type=int, default=1000, help="held streams opened per second (default 1000)")
    p.add_argument("--stream-chunks", type=int, default=12, help="chunks per timed stream (default 12)")
    p.add_argument("--stream-delay-ms", type=int, default=20, help="delay between timed-stream chunks (default 20)")
    p.add_argument("--loadgen", choices=("auto", "wrk", "gevent"), default="auto",
                   help="throughput load generator (auto: wrk when installed)")
    p.add_argument("--only", default="startup,throughput,latency,streams,hold,inprocess",
                   help="comma-separated sections to run (default: all)")
    p.add_argument("--config", default="config-mock.toml", help="proxy config (default config-mock.toml)")
    p.add_argument("--peer-cmd", help="command starting a peer proxy; {port}, {mock_url}, {mock_openai_url} "
                                      "are filled in (run by /bin/sh)")
    p.add_argument("--peer-url", help="the peer's base URL (default http://127.0.0.1:{port})")
    p.add_argument("--peer-name", default="peer", help="the peer's name in the table (e.g. 'LiteLLM 1.106')")
    p.add_argument("--peer-hold", type=int, default=0, metavar="N",
                   help="also hold N long streams through the peer (default 0: not run)")
    p.add_argument("--json", default="reports/bench.json", help="write the results here (default reports/bench.json)")
    p.add_argument("--plot", default="reports/bench.png", help="draw the plot here (default reports/bench.png; "
                                                               "'' to skip)")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (their path is printed)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_load"]:
        return _loadgen_main()
    if argv[:1] == ["_relay"]:
        return _relay_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        import psutil  # noqa: F401
    except ImportError:
        print("bench needs psutil (and matplotlib for the plot): pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')", file=sys.stderr)
            args.plot = ""
    q = args.quick
    args.duration = args.duration or (1.5 if q else 4.0)
    args.repeats = args.repeats or (2 if q else 3)
    args.streams = args.streams if args.streams is not None else (500 if q else 5000)
    args.hold_chunks = args.hold_chunks or (10 if q else 30)
    args.hold_delay_ms = args.hold_delay_ms or (300 if q else 500)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    _raise_nofile()

    wrk = wrk_version() if args.loadgen in ("auto", "wrk") else None
    if args.loadgen == "wrk" and not wrk:
        print("wrk is not installed (apt-get install wrk), or use --loadgen gevent", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="interchange-bench-"))
    base_config = Path(args.config) if os.path.isabs(args.config) else REPO / args.config
    args.proxy_config = str(bench_bedrock.write_config(base_config, workdir / "proxy-config.toml"))
    res: dict[str, Any] = {
        "version": JSON_VERSION, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
        "settings": {"duration_s": args.duration, "repeats": args.repeats, "concurrency": args.concurrency,
                     "rates": rates, "streams": args.streams, "hold_chunks": args.hold_chunks,
                     "hold_delay_ms": args.hold_delay_ms, "ramp_per_s": args.ramp,
                     "stream_chunks": args.stream_chunks, "stream_delay_ms": args.stream_delay_ms,
                     "config": args.config, "quick": q},
        "loadgen": {"throughput": wrk or "gevent raw-socket client (closed loop)",
                    "latency": "gevent raw-socket client (open loop, fixed rate)",
                    "streams": "gevent raw-socket client (+ in-process tap for relay timing)"},
        "peer": {"name": args.peer_name if args.peer_cmd else QUOTED_PEER["name"], "measured": bool(args.peer_cmd)},
        "throughput": {}, "latency": {}, "streams": {}, "hold": {}, "startup": {}, "inprocess": {}, "targets": [],
    }
    res["loadgen"]["summary"] = (f"throughput: {res['loadgen']['throughput']}; latency, streams and held "
                                 "streams: gevent raw-socket client; each in its own process")
    servers: list[Server] = []
    log = _Progress()
    try:
        root = write_scenario_root(workdir, args.stream_chunks, args.stream_delay_ms, args.hold_chunks,
                                   args.hold_delay_ms)
        mock = Server("mock", [sys.executable, "-m", "app", "mock", "--scenarios", str(root), "--port", "0"], workdir / "mock.log")
        servers.append(mock)
        mock.wait_listening()
        log(f"mock on {mock.url}")
        mock_host, mock_port = host_port(mock.url)
        relay = Server("tcp relay", [sys.executable, "-m", "scripts.bench", "_relay", mock_host, str(mock_port)],
                       workdir / "relay.log")
        servers.append(relay)
        relay.wait_listening()
        proxy_env = {"MOCK_URL": mock.url}
        startup_runs = []
        proxy = None
        for i in range(args.repeats if "startup" in sections else 1):
            if proxy is not None:
                proxy.stop()
                servers.remove(proxy)
            proxy = Server("proxy", [sys.executable, "-m", "app", "serve", "--config", args.proxy_config,
                                     "--port", "0"],
                           workdir / "proxy.log", env=proxy_env)
            servers.append(proxy)
            proxy.wait_listening()
            startup = proxy.wait_ready(lambda: http_ok(proxy.url + "/health"))
            time.sleep(0.5)
            startup_runs.append({"startup_s": startup, "idle_rss_mib": ProcStats(proxy.pid).rss_mib()})
        assert proxy is not None
        log(f"proxy on {proxy.url}")
        if "startup" in sections:
            res["startup"]["proxy"] = {"startup_s": median(r["startup_s"] for r in startup_runs),
                                       "idle_rss_mib": median(r["idle_rss_mib"] for r in startup_runs),
                                       "runs": startup_runs}
            res["startup"]["mock"] = {"startup_s": None, "idle_rss_mib": ProcStats(mock.pid).rss_mib()}
        peer = None
        if args.peer_cmd:
            port = free_port()
            fill = {"port": port, "mock_url": mock.url, "mock_openai_url": mock.url + "/v1"}
            peer = Server("peer", args.peer_cmd.format(**fill), workdir / "peer.log", shell=True,
                          env={"BENCH_MOCK_URL": mock.url, "BENCH_MOCK_OPENAI_URL": mock.url + "/v1",
                               "PORT": str(port)})
            servers.append(peer)
            peer.url = (args.peer_url or "http://127.0.0.1:{port}").format(**fill).rstrip("/")
            probe = http_request(BenchPath("peer", "openai", "openai"), host_port(peer.url)[0], stream=False)
            startup = peer.wait_ready(lambda: http_ok(peer.url, probe), timeout=300)
            time.sleep(1.0)
            res["startup"]["peer"] = {"startup_s": startup, "idle_rss_mib": ProcStats(peer.pid).rss_mib()}
            log(f"peer '{args.peer_name}' on {peer.url} (ready after {startup:.1f} s)")
        t = Targets(mock, proxy, peer, relay, workdir)
        paths = _paths(peer is not None)
        _warm_up(t, paths)
        if "throughput" in sections:
            _throughput(t, paths, args, res, wrk, log)
        if "latency" in sections:
            _latency(t, paths, args, rates, res, log)
        if "streams" in sections:
            _streams(t, args, res, log, servers, proxy_env)
        if "hold" in sections and args.streams:
            _hold(t, args, res, log)
        if "startup" in sections:
            res["startup"]["proxy"]["rss_after_load_mib"] = ProcStats(proxy.pid).rss_mib()
            if peer is not None:
                res["startup"]["peer"]["rss_after_load_mib"] = ProcStats(peer.pid).rss_mib()
        for s in reversed(servers):
            s.stop()  # the in-process figures are taken on a quiet machine
        if "inprocess" in sections:
            _inprocess(args, res, log)
    finally:
        for s in reversed(servers):
            s.stop()
        if args.keep_logs:
            print(f"server logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    res["targets"] = evaluate_targets(res)
    text = report_text(res)
    res["table"] = text
    print()
    print(text)
    if args.json:
        out = REPO / args.json if not os.path.isabs(args.json) else Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"results: {out}")
    if args.plot:
        out = REPO / args.plot if not os.path.isabs(args.plot) else Path(args.plot)
        out.parent.mkdir(parents=True, exist_ok=True)
        plot(res, out)
        print(f"plot: {out}")
    return 0


class _Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _paths(with_peer: bool) -> list[BenchPath]:
    paths = [BenchPath("direct", "openai", "openai"), BenchPath("direct", "anthropic", "anthropic"),
             BenchPath("direct", "gemini", "gemini"),
             BenchPath("proxy", "openai", "openai"), BenchPath("proxy", "anthropic", "anthropic"),
             BenchPath("proxy", "gemini", "gemini"),
             BenchPath("proxy", "anthropic", "openai"), BenchPath("proxy", "openai", "gemini"),
             BenchPath("direct", "bedrock", "bedrock"), BenchPath("proxy", "openai", "bedrock"),
             BenchPath("tcprelay", "openai", "openai")]
    if with_peer:
        paths += [BenchPath("peer", "openai", "openai"), BenchPath("peer", "anthropic", "openai")]
    return paths


def _warm_up(t: Targets, paths: list[BenchPath]) -> None:
    """One request per path and mode (a peer may be slow on its first calls),
    then a short burst, so no measurement pays for first-use costs."""
    for path in paths:
        for stream in (False, True):
            url = t.url(path.target)
            req = http_request(path, _host(url), stream=stream)
            if not http_ok(url, req, timeout=120):
                raise RuntimeError(f"warm-up: {path.name} (stream={stream}) did not answer 200")
            spec = {"mode": "closed", "host": host_port(url)[0], "port": host_port(url)[1], "concurrency": 4,
                    "duration": 1.0, "request": req}
            r = run_loadgen(spec)
            if r["errors"]:
                raise RuntimeError(f"warm-up: {path.name} (stream={stream}) failed: {r['errors']}")


def _host(url: str) -> str:
    h, p = host_port(url)
    return f"{h}:{p}"


def _throughput(t: Targets, paths: list[BenchPath], args, res: dict, wrk: str | None, log) -> None:
    mock_stats = ProcStats(t.mock.pid)
    for kind, stream in (("nonstream", False), ("stream", True)):
        chosen = paths if not stream else [p for p in paths
                                           if p.target == "direct" or p.backend in ("openai", "bedrock")]
        runs: dict[str, list[dict]] = {p.name: [] for p in chosen}
        for rep in range(args.repeats):
            for path in chosen:
                url = t.url(path.target)
                req = http_request(path, _host(url), stream=stream)
                server = t.server(path.target)
                stats = ProcStats(server.pid)
                c0, m0 = stats.cpu(), mock_stats.cpu()
                if wrk:
                    r = run_wrk(url, req, args.concurrency, args.duration, t.workdir)
                else:
                    h, port = host_port(url)
                    r = run_loadgen({"mode": "closed", "host": h, "port": port, "concurrency": args.concurrency,
                                     "duration": args.duration, "request": req})
                c1, m1 = stats.cpu(), mock_stats.cpu()
                n = max(1, r["completed"])
                r.update(target_cpu_us=(c1 - c0) / n * 1e6, mock_cpu_us=(m1 - m0) / n * 1e6,
                         gen_cpu_pct=100 * r["gen_cpu_s"] / max(r["duration"], 1e-9))
                runs[path.name].append(r)
                log(f"throughput {kind} {path.name} run {rep + 1}: {r['rps']:,.0f}/s errors={r['errors'] or 0} "
                    f"gen cpu {r['gen_cpu_pct']:.0f}%")
        table: dict[str, dict] = {}
        for path in chosen:
            rr = runs[path.name]
            table[path.name] = {
                "rps": median(r["rps"] for r in rr), "runs": [round(r["rps"], 1) for r in rr],
                "errors": sum(sum(r["errors"].values()) for r in rr),
                "target_cpu_us": median(r["target_cpu_us"] for r in rr) if path.target != "direct" else None,
                "mock_cpu_us": median(r["mock_cpu_us"] for r in rr),
                "gen_cpu_pct": median(r["gen_cpu_pct"] for r in rr),
            }
        for path in chosen:
            row = table[path.name]
            if path.target != "direct":
                row["vs_direct"] = ratio(row["rps"], table.get(path.baseline.name, {}).get("rps"))
            if path.target == "proxy":
                twin = table.get(path.peer_twin().name, {}).get("rps")
                if twin is None and not res["peer"]["measured"] and path.client == "openai" and path.backend == "openai":
                    twin = QUOTED_PEER["rps_stream" if stream else "rps_openai"]
                if twin is None and not res["peer"]["measured"] and path.client == "anthropic" \
                        and path.backend == "openai" and not stream:
                    twin = QUOTED_PEER["rps_messages"]
                row["vs_peer"] = ratio(row["rps"], twin)
        res["throughput"][kind] = table


def _latency(t: Targets, paths: list[BenchPath], args, rates: list[float], res: dict, log) -> None:
    by_rate: dict[str, dict] = {}
    peer_rps = res.get("throughput", {}).get("nonstream", {})
    for rate in rates:
        chosen = []
        for p in paths:
            if p.target == "peer":
                cap = peer_rps.get(p.name, {}).get("rps")
                if cap is not None and rate > cap * 2 / 3:
                    continue  # over the peer's capacity: latency would only measure its queue
            chosen.append(p)
        samples: dict[str, list[dict]] = {p.name: [] for p in chosen}
        for rep in range(args.repeats):
            for path in chosen:
                url = t.url(path.target)
                h, port = host_port(url)
                stats = ProcStats(t.server(path.target).pid)
                c0 = stats.cpu()
                r = run_loadgen({"mode": "rate", "host": h, "port": port, "rate": rate, "duration": args.duration,
                                 "request": http_request(path, _host(url), stream=False)})
                summary = summarize_latencies(r["latencies_ms"])
                summary["errors"] = sum(r["errors"].values())
                summary["send_lag_p99_ms"] = r["send_lag_p99_ms"]
                summary["cpu_us"] = (stats.cpu() - c0) / max(1, len(r["latencies_ms"])) * 1e6
                samples[path.name].append(summary)
                log(f"latency {rate:g}/s {path.name} run {rep + 1}: p50 {fmt_ms(summary['p50_ms'])} "
                    f"p99 {fmt_ms(summary['p99_ms'])} ms errors={summary['errors']}")
        rows: dict[str, dict] = {}
        for path in chosen:
            ss = samples[path.name]
            rows[path.name] = {k: median(s[k] for s in ss) for k in ("p50_ms", "p90_ms", "p99_ms", "cpu_us")}
            rows[path.name]["errors"] = sum(s["errors"] for s in ss)
            rows[path.name]["runs"] = ss
        for path in chosen:
            row = rows[path.name]
            if path.target == "direct":
                continue
            base = rows.get(path.baseline.name)
            if base:
                row["added_p50_ms"] = _sub(row["p50_ms"], base["p50_ms"])
                row["added_p99_ms"] = _sub(row["p99_ms"], base["p99_ms"])
                row["vs_direct_p50"] = ratio(row["p50_ms"], base["p50_ms"])
            if path.cross:
                same = rows.get(path.same_protocol.name, {})
                row["same_added_p50_ms"] = same.get("added_p50_ms")
                row["cross_vs_same"] = ratio(row.get("added_p50_ms"), same.get("added_p50_ms"))
            if path.target == "proxy":
                twin = rows.get(path.peer_twin().name, {}).get("added_p50_ms")
                if twin is None and not res["peer"]["measured"] and path.backend == "openai":
                    twin = QUOTED_PEER["added_latency_ms"]
                row["vs_peer_added"] = ratio(row.get("added_p50_ms"), twin)
        by_rate[f"{rate:g}"] = rows
    target_rate = min(rates, key=lambda r: abs(r - args.target_rate)) if rates else None
    res["latency"] = {"by_rate": by_rate, "target_rate": f"{target_rate:g}" if target_rate is not None else None}


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _streams(t: Targets, args, res: dict, log, servers: list[Server], proxy_env: dict) -> None:
    paths = [BenchPath("direct", "openai", "openai"), BenchPath("direct", "anthropic", "anthropic"),
             BenchPath("direct", "gemini", "gemini"),
             BenchPath("proxy", "openai", "openai"), BenchPath("proxy", "anthropic", "openai"),
             BenchPath("proxy", "openai", "gemini"), BenchPath("direct", "bedrock", "bedrock"),
             BenchPath("proxy", "openai", "bedrock"), BenchPath("tcprelay", "openai", "openai")]
    if t.peer is not None:
        paths += [BenchPath("peer", "openai", "openai"), BenchPath("peer", "anthropic", "openai")]
    runs: dict[str, list[dict]] = {p.name: [] for p in paths}
    for rep in range(args.repeats):
        for path in paths:
            url = t.url(path.target)
            h, port = host_port(url)
            r = run_loadgen({"mode": "streams", "host": h, "port": port, "duration": args.duration,
                             "request": http_request(path, _host(url), stream=True, scenario="bench_stream")})
            recs = r["streams"]
            run = {"ttft_ms": median(x["ttft_ms"] for x in recs),
                   "gap_ms": median(g for x in recs for g in x["gaps_ms"]),
                   "n": len(recs), "errors": sum(r["errors"].values())}
            runs[path.name].append(run)
            log(f"ttft {path.name} run {rep + 1}: {fmt_ms(run['ttft_ms'])} ms over {run['n']} streams, "
                f"errors={run['errors']}")
    ttft: dict[str, dict] = {}
    for path in paths:
        rr = runs[path.name]
        ttft[path.name] = {"ttft_ms": median(r["ttft_ms"] for r in rr), "gap_ms": median(r["gap_ms"] for r in rr),
                           "streams": sum(r["n"] for r in rr), "errors": sum(r["errors"] for r in rr), "runs": rr}
    for path in paths:
        row = ttft[path.name]
        if path.target == "direct":
            continue
        base = ttft[path.baseline.name]
        row["overhead_ms"] = _sub(row["ttft_ms"], base["ttft_ms"])
        row["gap_overhead_ms"] = _sub(row["gap_ms"], base["gap_ms"])
        if path.target == "proxy":
            twin = ttft.get(path.peer_twin().name, {}).get("overhead_ms")
            if twin is None and not res["peer"]["measured"] and path.backend == "openai":
                twin = QUOTED_PEER["added_stream_latency_ms"]
            row["vs_peer_overhead"] = ratio(row.get("overhead_ms"), twin)
    res["streams"]["ttft"] = ttft

    # Relay delay: a second proxy whose upstream is a tap in the load generator.
    tap_port = free_port()
    mock_host, mock_port = host_port(t.mock.url)
    tapped = Server("proxy (tapped)", [sys.executable, "-m", "app", "serve", "--config", args.proxy_config,
                                       "--port", "0"], t.workdir / "proxy-tap.log",
                    env={**proxy_env, "MOCK_URL": f"http://127.0.0.1:{tap_port}"})
    servers.append(tapped)
    tapped.wait_listening()
    tapped.wait_ready(lambda: http_ok(tapped.url + "/health"))
    null = Server("tcp relay (tapped)", [sys.executable, "-m", "scripts.bench", "_relay", "127.0.0.1", str(tap_port)],
                  t.workdir / "relay-tap.log")
    servers.append(null)
    null.wait_listening()
    relay_paths = [("direct", BenchPath("direct", "openai", "openai")),
                   ("tcprelay", BenchPath("tcprelay", "openai", "openai")),
                   ("proxy", BenchPath("proxy", "openai", "openai")),
                   ("proxy", BenchPath("proxy", "anthropic", "openai")),
                   ("proxy", BenchPath("proxy", "openai", "gemini")),
                   ("proxy", BenchPath("proxy", "openai", "bedrock"))]
    relay_runs: dict[str, list[dict]] = {p.name: [] for _, p in relay_paths}
    for rep in range(args.repeats):
        for target, path in relay_paths:
            url = {"direct": f"http://127.0.0.1:{tap_port}", "tcprelay": null.url}.get(target, tapped.url)
            h, port = host_port(url)
            r = run_loadgen({"mode": "streams", "host": h, "port": port, "duration": args.duration,
                             "tap": {"port": tap_port, "upstream_host": mock_host, "upstream_port": mock_port},
                             "request": http_request(path, _host(url), stream=True, scenario="bench_stream")})
            values = [v for x in r["streams"] for v in x.get("relay_ms", [])]
            relay_runs[path.name].append({"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
                                          "chunks": len(values), "errors": sum(r["errors"].values())})
            log(f"relay {path.name} run {rep + 1}: p50 {fmt_ms(percentile(values, 50), 3)} ms "
                f"over {len(values)} chunks")
    relay: dict[str, dict] = {}
    for _, path in relay_paths:
        rr = relay_runs[path.name]
        relay[path.name] = {"p50_ms": median(r["p50_ms"] for r in rr), "p99_ms": median(r["p99_ms"] for r in rr),
                            "chunks": sum(r["chunks"] for r in rr), "errors": sum(r["errors"] for r in rr)}
    base = relay["direct openai"]["p50_ms"]
    for name, row in relay.items():
        if not name.startswith("direct "):
            row["added_ms"] = _sub(row["p50_ms"], base)
    res["streams"]["relay"] = relay
    for s in (null, tapped):
        s.stop()
        servers.remove(s)


def _hold(t: Targets, args, res: dict, log) -> None:
    targets = [("direct", BenchPath("direct", "openai", "openai"), args.streams),
               ("proxy", BenchPath("proxy", "openai", "openai"), args.streams)]
    if t.peer is not None and args.peer_hold:
        targets.append(("peer", BenchPath("peer", "openai", "openai"), args.peer_hold))
    hold_s = args.hold_chunks * args.hold_delay_ms / 1000
    for name, path, streams in targets:
        runs = []
        for rep in range(args.repeats if name != "peer" else 1):
            server = t.server(path.target)
            stats = ProcStats(server.pid)
            base_rss = stats.rss_mib()
            peak = [base_rss]

            def sample(stats=stats, peak=peak) -> None:
                peak[0] = max(peak[0], stats.rss_mib())

            url = t.url(path.target)
            h, port = host_port(url)
            r = run_loadgen({"mode": "hold", "host": h, "port": port, "streams": streams,
                             "ramp_per_s": args.ramp, "timeout": hold_s + 120,
                             "request": http_request(path, _host(url), stream=True, scenario="bench_long")},
                            during=sample, timeout=streams / args.ramp + hold_s + 300)
            r["peak_rss_mib"] = peak[0]
            r["base_rss_mib"] = base_rss
            runs.append(r)
            log(f"hold {name} run {rep + 1}: {r['ok']:,}/{r['streams']:,} ok, peak in flight "
                f"{r['peak_inflight']:,}, peak RSS {peak[0]:.0f} MiB, failures {r['reasons'] or 0}")
            time.sleep(1.0)
        worst = max(runs, key=lambda r: r["failed"])
        peak_rss = median(r["peak_rss_mib"] for r in runs)
        base = median(r["base_rss_mib"] for r in runs)
        res["hold"][name] = {
            "streams": streams, "failed": max(r["failed"] for r in runs), "reasons": worst["reasons"],
            "peak_inflight": median(r["peak_inflight"] for r in runs), "peak_rss_mib": peak_rss,
            "base_rss_mib": base,
            "kib_per_stream": (peak_rss - base) * 1024 / streams if peak_rss and base is not None else None,
            "open_s": median(r["open_s"] for r in runs), "runs": [
                {k: r[k] for k in ("ok", "failed", "peak_inflight", "peak_rss_mib", "open_s", "total_s")}
                for r in runs],
        }


def _inprocess(args, res: dict, log) -> None:
    """Bedrock's own per-request and per-message costs, timed in this process
    (bench_bedrock): signing over the bench's request body and over a ~16 KiB
    conversation, back to back and each call after 10 ms idle (as at a
    moderate rate); decoding the bench_stream messages, beside SSE for the same
    stream in OpenAI's shape."""
    from app.config import load_config
    from app.jsonutil import dumps
    from app.providers import provider_class
    from app.upstream.framing import encode_sse

    config = load_config(args.proxy_config)
    providers = {"bedrock": config.backends[bench_bedrock.BACKEND]}
    if "openai" in config.backends:
        providers["openai"] = config.backends["openai"]
    providers = {name: provider_class(b.kind)(b) for name, b in providers.items()}
    calls = 2000 if args.quick else 10000
    bodies = {"bench request": bench_bedrock.converse_body(PROMPT, 64),
              "conversation": bench_bedrock.conversation_body()}
    signing = bench_bedrock.signing_cost(providers, bodies, calls=calls)
    signing.update(bench_bedrock.signing_cost(providers, {"bench request, 10 ms idle": bodies["bench request"]},
                                              calls=calls // 20, idle_s=0.01))
    scenarios = stream_scenarios(args.stream_chunks, args.stream_delay_ms, "in-process decoding")
    messages = bench_bedrock.eventstream_messages(scenarios["bedrock"]["stream"])
    sse = [encode_sse(f["data"] if isinstance(f["data"], str) else dumps(f["data"]))
           for f in scenarios["openai"]["stream"]]
    decoding = bench_bedrock.decoding_cost(messages, sse, calls=calls // 10)
    res["inprocess"] = {"calls": calls, "signing": signing, "decoding": decoding}
    for name, r in signing.items():
        log(f"signing {name} ({r['body_bytes']:,} B): {r['signing_us']:.1f} us of {r['prepare_us']:.1f} us prepare")
    for name, r in decoding.items():
        log(f"decoding {name}: {r['us_per_message']:.2f} us/message")


# ---------------------------------------------------------------- plot


def plot(res: dict[str, Any], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(20, 10.5))
    m = res.get("machine", {})
    peer = res.get("peer", {})
    fig.suptitle(f"Interchange benchmark: {m.get('cpu', '?')}, {m.get('cores', '?')} cores (client, mock and "
                 f"proxy share them), Python {m.get('python', '?')}; peer: "
                 f"{peer.get('name') if peer.get('measured') else 'none run'}  ({res.get('started', '')})",
                 fontsize=11)
    colours = {"direct": "#7f7f7f", "proxy": "#1f77b4", "peer": "#d62728", "tcp": "#bcbd22"}

    def colour(name: str) -> str:
        return colours.get(name.split()[0], "#2ca02c")

    def bars(ax, names, vals, title, ylabel, fmt="{:,.0f}"):
        b = ax.bar(range(len(names)), vals, color=[colour(n) for n in names])
        for bar, v in zip(b, vals):
            ax.text(bar.get_x() + bar.get_width() / 2, v, fmt.format(v), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)

    # latency percentiles per path, at each rate
    lat = res.get("latency", {}).get("by_rate", {})
    shown = list(lat)[:1] + [r for r in lat if r == res.get("latency", {}).get("target_rate")] + list(lat)[-1:]
    for col, rate in enumerate(list(dict.fromkeys(shown))[:2]):
        ax = axes[0][col]
        rows = lat[rate]
        if any(n.startswith("peer ") for n in rows):
            ax.set_yscale("log")
        names = list(rows)
        x = range(len(names))
        for j, (k, label) in enumerate((("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))):
            ax.bar([i + (j - 1) * 0.27 for i in x], [rows[n].get(k) or 0 for n in names], width=0.27, label=label,
                   color=["#9ecae1", "#4292c6", "#08519c"][j])
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title(f"Non-streamed latency at {rate} req/s (open loop)", fontsize=10)
        ax.legend(fontsize=8)

    thr = res.get("throughput", {})
    if thr.get("nonstream"):
        rows = thr["nonstream"]
        bars(axes[0][2], list(rows), [rows[n].get("rps") or 0 for n in rows],
             f"Non-streamed throughput, {res.get('settings', {}).get('concurrency')} connections", "requests / s")
    if thr.get("stream"):
        rows = thr["stream"]
        bars(axes[1][0], list(rows), [rows[n].get("rps") or 0 for n in rows],
             f"Streamed throughput, {res.get('settings', {}).get('concurrency')} connections", "streams / s")

    # streams: TTFT overhead and per-chunk relay delay, versus direct
    ax = axes[1][1]
    st = res.get("streams", {})
    ttft = {n: r for n, r in st.get("ttft", {}).items() if r.get("overhead_ms") is not None}
    relay = {n: r for n, r in st.get("relay", {}).items() if r.get("added_ms") is not None}
    names = sorted(set(ttft) | set(relay), key=lambda n: (n.split()[0] != "proxy", n))
    if names:
        x = list(range(len(names)))
        floor = 0.01  # a log axis: no measurable overhead is drawn at the floor
        tv = [max(ttft.get(n, {}).get("overhead_ms") or 0, floor) for n in names]
        rv = [max(relay.get(n, {}).get("added_ms") or 0, floor) if n in relay else 0 for n in names]
        ax.bar([i - 0.2 for i in x], tv, width=0.4, label="time-to-first-token overhead", color="#6baed6")
        ax.bar([i + 0.2 for i in x], rv, width=0.4, label="per-chunk relay delay (added, median)", color="#fd8d3c")
        for i, (a, b) in enumerate(zip(tv, rv)):
            ax.text(i - 0.2, a, f"{a:.2f}", ha="center", va="bottom", fontsize=7)
            if b:
                ax.text(i + 0.2, b, f"{b:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.axhline(2.0, color="#6baed6", linestyle=":", linewidth=1)
        ax.axhline(0.2, color="#fd8d3c", linestyle=":", linewidth=1)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms (log; dotted: targets)")
        ax.set_title("Streams: added versus direct", fontsize=10)
        ax.legend(fontsize=8)

    # memory
    labels, vals = [], []
    for name, r in res.get("startup", {}).items():
        if r.get("idle_rss_mib") is not None and name != "mock":
            labels.append(f"{name} idle")
            vals.append(r["idle_rss_mib"])
    for name, r in res.get("hold", {}).items():
        if r.get("peak_rss_mib") is not None:
            labels.append(f"{name} {r['streams']:,} streams")
            vals.append(r["peak_rss_mib"])
    if labels:
        bars(axes[1][2], labels, vals, "Memory (RSS): idle, and peak while holding long streams", "RSS MiB")
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- a do-nothing relay, for reference


def relay_connection(down: socket.socket, up_host: str, up_port: int,
                     on_upstream_data: Callable[[bytes], None] | None = None) -> None:
    """One accepted connection relayed to (up_host, up_port), bytes in, bytes
    out, one greenlet per direction (the caller has monkey-patched);
    `on_upstream_data` sees each upstream read before it is passed on."""
    import gevent

    def pump(src: socket.socket, dst: socket.socket, observe: Callable[[bytes], None] | None) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                if observe is not None:
                    observe(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s_ in (src, dst):
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    down.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        up = socket.create_connection((up_host, up_port))
    except OSError:
        down.close()
        return
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    g = gevent.spawn(pump, down, up, None)
    pump(up, down, on_upstream_data)
    g.join()
    up.close()
    down.close()


def _relay_main(argv: list[str]) -> int:
    """A TCP relay that does no work (bytes in, bytes out, one greenlet per
    direction): what any proxy in its own process costs on this machine, as a
    floor for the proxy's added latency and per-chunk delay."""
    from gevent import monkey
    monkey.patch_all()
    from gevent.server import StreamServer

    up_host, up_port = argv[0], int(argv[1])
    port = int(argv[2]) if len(argv) > 2 else 0

    def handle(down: socket.socket, _addr) -> None:
        relay_connection(down, up_host, up_port)

    server = StreamServer(("127.0.0.1", port), handle, backlog=8192)
    server.init_socket()
    print(f"TCP relay listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
