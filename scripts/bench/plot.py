"""The report's figure (reports/bench.png)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


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
