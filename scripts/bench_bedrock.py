"""Bedrock in the benchmark (scripts/bench/): the backend block the bench's
proxy gets, the direct client's signed Converse requests, and in-process
micro-benchmarks of what a Bedrock call costs beyond the others: SigV4 signing
per request and event-stream decoding per message.

The proxy runs on a temporary config: the run's `--config` with one Bedrock
backend appended, pointed at the mock with the mock's test credentials, so the
bench needs nothing from config-mock.toml for it.

"Direct" for Bedrock is a client calling the mock's Converse API itself: the
body the proxy would send for the bench's OpenAI request, signed by botocore as
boto3 signs it. A request is signed once when a measurement builds it and then
sent for the whole measurement (seconds, well inside SigV4's 5-minute window),
so the direct rows hold the mock's signature check but no client-side signing;
the proxy signs every request, and that cost is measured here on its own.
"""
from __future__ import annotations

import statistics
import time
import tomllib
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

BACKEND = "bench-bedrock"
MODEL = "bench-claude-3-sonnet"  # what the bench's OpenAI client asks for
MODEL_ID = "anthropic.claude-3-sonnet-20240229-v1:0"  # what the proxy (and the direct client) send
REGION = "us-east-1"
SERVICE = "bedrock"


def mock_credentials() -> tuple[str, str]:
    """The key pair the mock verifies signatures with (imported late: mocks.bedrock
    loads botocore's service model, 0.4 s, which the load generator never needs)."""
    from mocks.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    return ACCESS_KEY_ID, SECRET_ACCESS_KEY


def backend_block() -> str:
    """The TOML block of the bench's Bedrock backend."""
    key_id, secret = mock_credentials()
    return f"""
# Added by the benchmark (scripts/bench_bedrock.py): Bedrock Converse at the mock.
[backends.{BACKEND}]
kind = "bedrock_converse"
url = "${{MOCK_URL:-http://127.0.0.1:8888}}"
region = "{REGION}"
aws_access_key_id = "{key_id}"
aws_secret_access_key = "{secret}"
capabilities = ["text", "tools", "streaming", "vision", "thinking"]
timeout = 30
forward_headers = ["X-Mock-Scenario"]

[backends.{BACKEND}.model_mapping]
"{MODEL}" = "{MODEL_ID}"
"""


def write_config(base: Path, dest: Path) -> Path:
    """`base` (the run's proxy config) with the Bedrock backend appended, at `dest`."""
    text = base.read_text(encoding="utf-8")
    if BACKEND in tomllib.loads(text).get("backends", {}):
        raise ValueError(f"{base} already defines backends.{BACKEND}: the bench adds its own")
    text = text.rstrip("\n") + "\n" + backend_block()
    tomllib.loads(text)  # still one valid document
    dest.write_text(text, encoding="utf-8")
    return dest


# ----------------------------------------------------------- the direct client


def converse_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    """The Converse body for one user prompt (what the proxy builds from the
    bench's OpenAI request; tests/unit/test_bench.py holds them equal)."""
    return {"messages": [{"role": "user", "content": [{"text": prompt}]}], "inferenceConfig": {"maxTokens": max_tokens}}


def converse_path(stream: bool) -> str:
    return f"/model/{quote(MODEL_ID, safe='')}/" + ("converse-stream" if stream else "converse")


def signed_headers(host: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """`headers` plus SigV4 (X-Amz-Date, Authorization) over these exact bytes,
    by botocore with the mock's test credentials, as boto3 signs a call."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=f"http://{host}{path}", data=body, headers=dict(headers))
    SigV4Auth(Credentials(*mock_credentials()), SERVICE, REGION).add_auth(request)
    return dict(request.headers.items())


# ----------------------------------------------------------- micro-benchmarks


ROUNDS = 20  # variants take turns, so a busy spell of the host falls on each alike


def time_calls(fn: Callable[[], Any], calls: int, into: list[int], idle_s: float = 0.0) -> None:
    """Call `fn` `calls` times, each timed on its own (ns) into `into`: a call
    the scheduler interrupts moves the median, not the figure. `idle_s`: sleep
    before each call (untimed), as a proxy at a moderate rate meets each request."""
    clock = time.perf_counter_ns
    for _ in range(calls):
        if idle_s:
            time.sleep(idle_s)
        t0 = clock()
        fn()
        into.append(clock() - t0)


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def conversation_body(turns: int = 12, words: int = 220) -> dict[str, Any]:
    """A chat in mid-conversation (a system prompt, `turns` messages of ~`words`
    words each: ~16 KiB of JSON), the size of a typical assistant request."""
    text = " ".join(f"word{i % 97}" for i in range(words))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"text": f"{i}: {text}"}]}
                for i in range(turns - 1)]
    messages.append({"role": "user", "content": [{"text": "And now, in one sentence?"}]})
    return {"system": [{"text": "You are a careful assistant. " * 20}], "messages": messages,
            "inferenceConfig": {"maxTokens": 1024, "temperature": 0.2}}


def signing_cost(providers: dict[str, Any], bodies: dict[str, dict[str, Any]], *, calls: int,
                 idle_s: float = 0.0) -> dict[str, Any]:
    """Per body, the median of `calls` calls each: the Bedrock provider's `prepare`
    (URL, body bytes, headers, SigV4) with signing and with `SigV4Auth.add_auth`
    replaced by a no-op, their difference (the signing), `add_auth` alone
    (perf_counter_ns around each call inside `prepare`), and the OpenAI
    provider's `prepare` of the same body for scale. `providers`: "bedrock" and
    optionally "openai" instances. The variants take turns in ROUNDS rounds;
    `idle_s` > 0 times each call after that long asleep (a core back from idle
    runs Python several times slower: what a moderately loaded proxy pays)."""
    from unittest import mock

    from botocore.auth import SigV4Auth

    from app.jsonutil import dumps
    from app.providers.base import Call

    original = SigV4Auth.add_auth
    bedrock, openai = providers["bedrock"], providers.get("openai")
    per_round = max(1, calls // ROUNDS)
    out: dict[str, Any] = {}
    for name, body in bodies.items():
        call, openai_call = Call(model=MODEL_ID, body=body), Call(model="gpt-4o-mini", body=body)
        samples: dict[str, list[int]] = {"prepare": [], "unsigned": [], "add_auth": [], "openai": []}

        def timed_add_auth(self, request, into=samples["add_auth"]):
            t0 = time.perf_counter_ns()
            original(self, request)
            into.append(time.perf_counter_ns() - t0)

        bedrock.prepare(call)  # first-use costs (imports, caches) are not what is measured
        for _ in range(ROUNDS):
            time_calls(lambda: bedrock.prepare(call), per_round, samples["prepare"], idle_s)
            with mock.patch.object(SigV4Auth, "add_auth", lambda self, request: None):
                time_calls(lambda: bedrock.prepare(call), per_round, samples["unsigned"], idle_s)
            with mock.patch.object(SigV4Auth, "add_auth", timed_add_auth):
                time_calls(lambda: bedrock.prepare(call), per_round, [], idle_s)
            if openai is not None:
                time_calls(lambda: openai.prepare(openai_call), per_round, samples["openai"], idle_s)
        signed, unsigned = median_us(samples["prepare"]), median_us(samples["unsigned"])
        out[name] = {"body_bytes": len(dumps(body)), "prepare_us": signed, "unsigned_us": unsigned,
                     "signing_us": signed - unsigned, "add_auth_us": median_us(samples["add_auth"]),
                     "openai_prepare_us": median_us(samples["openai"]) if openai is not None else None}
    return out


def eventstream_messages(events: list[dict[str, Any]]) -> list[bytes]:
    """Scenario stream frames (`event`, `data`) as binary event-stream messages,
    each with a padding member as the service adds (real messages: 130-260 bytes)."""
    from app.jsonutil import dumps
    from mocks.eventstream import encode_event

    return [encode_event(e["event"], dumps({**e["data"], "p": "abcdefghijklmnopqrstuvwxyzABCDEFGH"}))
            for e in events]


def decoding_cost(messages: list[bytes], sse_events: list[bytes], *, calls: int) -> dict[str, Any]:
    """us per message for the proxy's framers, each message fed as it arrives
    from the mock (one read each), median of `calls` whole streams: the AWS
    event stream (botocore's parser + our Frame) and, for scale, SSE on the same
    stream in OpenAI's shape."""
    from app.upstream.framing import framer

    def run(kind: str, pieces: list[bytes]) -> Callable[[], None]:
        def once() -> None:
            f = framer(kind)
            n = 0
            for piece in pieces:
                n += len(f.feed(piece))
            f.close()
            if n != len(pieces):
                raise RuntimeError(f"{kind}: {n} of {len(pieces)} messages decoded")
        return once

    streams = {"eventstream": ("aws-eventstream", messages), "sse": ("sse", sse_events)}
    samples: dict[str, list[int]] = {name: [] for name in streams}
    runs = {name: run(kind, pieces) for name, (kind, pieces) in streams.items()}
    for fn in runs.values():
        fn()  # first use
    for _ in range(ROUNDS):
        for name, fn in runs.items():
            time_calls(fn, max(1, calls // ROUNDS), samples[name])
    return {name: {"messages": len(pieces), "bytes": sum(map(len, pieces)) // len(pieces),
                   "us_per_message": median_us(samples[name]) / len(pieces)}
            for name, (_, pieces) in streams.items()}
