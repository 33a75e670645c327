"""The load generator process (gevent, raw sockets, keep-alive): closed loop, fixed rate,
streams and held streams."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from scripts.bench.defaults import REPO
from scripts.bench.paths import STREAM_END, STREAM_ERROR, raw_request
from scripts.bench.processes import children_cpu, raise_nofile
from scripts.bench.relay import relay_connection
from scripts.bench.scenarios import TOKEN_RE
from scripts.bench.stats import percentile


def run_loadgen(spec: dict[str, Any], *, during: Callable[[], None] | None = None,
                timeout: float = 600) -> dict[str, Any]:
    """Run the gevent load generator in its own process; its JSON result, plus
    `gen_cpu_s` (the generator's own CPU time)."""
    before = children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "scripts.bench", "_load"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=raise_nofile)
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


def loadgen_main() -> int:
    spec = json.load(sys.stdin)
    from gevent import monkey
    monkey.patch_all()
    raise_nofile()
    result = _LOADGEN_MODES[spec["mode"]](spec)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


_CL_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CHUNKED_RE = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.I)
_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.I)


class _ClientConnection:
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
                    conn = _ClientConnection(host, port, 30)
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
    idle: list[_ClientConnection] = []
    lat_ms: list[float] = []
    errors: dict[str, int] = {}
    lag_ms: list[float] = []

    def one(sched: float) -> None:
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = _ClientConnection(host, port, 30)
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
        idle.append(_ClientConnection(host, port, 30))
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
    conn: _ClientConnection | None = None
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
                conn = _ClientConnection(host, port, 30)
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
            conn = _ClientConnection(host, port, spec.get("timeout", 120))
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
