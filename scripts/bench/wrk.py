"""Throughput with wrk (C, one thread) when it is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from scripts.bench.processes import children_cpu


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
