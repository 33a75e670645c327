"""The run's phases: throughput, latency, streams and relay, hold, in-process costs."""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts import bench_bedrock
from scripts.bench.defaults import QUOTED_PEER
from scripts.bench.loadgen import run_loadgen
from scripts.bench.paths import PROMPT, BenchPath, http_request
from scripts.bench.processes import ProcStats, Server, free_port, http_ok
from scripts.bench.scenarios import stream_scenarios
from scripts.bench.stats import fmt_ms, median, percentile, ratio, summarize_latencies
from scripts.bench.wrk import run_wrk


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


class Progress:
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


def phase_warm_up(t: Targets, paths: list[BenchPath]) -> None:
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


def phase_throughput(t: Targets, paths: list[BenchPath], args, res: dict, wrk: str | None, log) -> None:
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


def phase_latency(t: Targets, paths: list[BenchPath], args, rates: list[float], res: dict, log) -> None:
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


def phase_streams(t: Targets, args, res: dict, log, servers: list[Server], proxy_env: dict) -> None:
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


def phase_hold(t: Targets, args, res: dict, log) -> None:
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


def phase_inprocess(args, res: dict, log) -> None:
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
