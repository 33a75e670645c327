"""Results -> report: the targets' verdicts, the text report, the result shape check."""
from __future__ import annotations

from typing import Any

from scripts.bench.defaults import QUOTED_PEER, TARGETS
from scripts.bench.stats import fmt_ms, fmt_num, fmt_ratio, ratio, render_table


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
