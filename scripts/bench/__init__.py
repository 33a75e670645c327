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

The package, one job a module: defaults (targets, quoted peer), stats (pure figures and
formatting), paths (what each path sends), scenarios (the generated fixtures), processes
(servers, CPU/RSS), loadgen (the load generator child: `python -m scripts.bench _load`), wrk,
relay (the reference relay child: `_relay`), phases (the measurements), report, plot, cli.
The names below are what tests/unit/test_bench.py uses.
"""
from __future__ import annotations

from scripts.bench.cli import build_parser, main
from scripts.bench.defaults import JSON_VERSION, QUOTED_PEER, REPO, TARGETS
from scripts.bench.loadgen import _Dechunker, _stream_ok
from scripts.bench.paths import BenchPath, http_request, raw_request
from scripts.bench.phases import _paths
from scripts.bench.plot import plot
from scripts.bench.report import evaluate_targets, report_text, validate_result_shape
from scripts.bench.scenarios import TOKEN_RE, stream_scenarios, token, write_scenario_root
from scripts.bench.stats import fmt_ms, fmt_num, fmt_ratio, median, percentile, ratio, render_table, summarize_latencies

__all__ = ["JSON_VERSION", "QUOTED_PEER", "REPO", "TARGETS", "TOKEN_RE", "BenchPath", "_Dechunker", "_paths",
           "_stream_ok", "build_parser", "evaluate_targets", "fmt_ms", "fmt_num", "fmt_ratio", "http_request",
           "main", "median", "percentile", "plot", "ratio", "raw_request", "render_table", "report_text",
           "stream_scenarios", "summarize_latencies", "token", "validate_result_shape", "write_scenario_root"]
