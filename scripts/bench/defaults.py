"""The repository, the result format version, the quoted peer figures and the targets a run is judged by."""
from __future__ import annotations

from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
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
