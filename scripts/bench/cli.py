"""The command line: python -m scripts.bench (and its _load / _relay child modes)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from scripts import bench_bedrock
from scripts.bench.defaults import JSON_VERSION, QUOTED_PEER, REPO
from scripts.bench.loadgen import loadgen_main
from scripts.bench.paths import BenchPath, http_request
from scripts.bench.phases import (Progress, Targets, _paths, host_port, machine_info, phase_hold, phase_inprocess,
                                  phase_latency, phase_streams, phase_throughput, phase_warm_up)
from scripts.bench.plot import plot
from scripts.bench.processes import ProcStats, Server, free_port, http_ok, raise_nofile
from scripts.bench.relay import relay_main
from scripts.bench.report import evaluate_targets, report_text
from scripts.bench.scenarios import write_scenario_root
from scripts.bench.stats import median
from scripts.bench.wrk import wrk_version


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
        return loadgen_main()
    if argv[:1] == ["_relay"]:
        return relay_main(argv[1:])
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
    raise_nofile()

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
    log = Progress()
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
        phase_warm_up(t, paths)
        if "throughput" in sections:
            phase_throughput(t, paths, args, res, wrk, log)
        if "latency" in sections:
            phase_latency(t, paths, args, rates, res, log)
        if "streams" in sections:
            phase_streams(t, args, res, log, servers, proxy_env)
        if "hold" in sections and args.streams:
            phase_hold(t, args, res, log)
        if "startup" in sections:
            res["startup"]["proxy"]["rss_after_load_mib"] = ProcStats(proxy.pid).rss_mib()
            if peer is not None:
                res["startup"]["peer"]["rss_after_load_mib"] = ProcStats(peer.pid).rss_mib()
        for s in reversed(servers):
            s.stop()  # the in-process figures are taken on a quiet machine
        if "inprocess" in sections:
            phase_inprocess(args, res, log)
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
