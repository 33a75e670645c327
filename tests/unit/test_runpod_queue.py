"""The RunPod queue's exchange (app/providers/runpod_queue.py) against a scripted upstream:
which requests one job takes (submission, polls, cancel), what reaches the pipeline (the
job's output as the OpenAI Chat wire, its end as an error in that wire), and when: a
streamed job's output is handed on poll by poll, before the job has ended."""
from __future__ import annotations

import json
import textwrap
from typing import Callable

import pytest

from app import ir
from app.config import load_config
from app.errors import ProxyError
from app.jsonutil import dumps
from app.protocols import protocol_module
from app.providers import provider_class
from app.providers.base import Call
from app.upstream.http import iter_body, read_body
from tests.conftest import every_split, stream_events

OPENAI = protocol_module("openai")
REQ = ir.Request(model="m", messages=(), protocol="openai", stream=True)
BASE = "https://api.runpod.ai/v2/ep-1"
COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse(doc) -> str:
    return "data: " + json.dumps(doc) + "\n\n"


PIECES = [sse(chunk({"role": "assistant", "content": ""})), sse(chunk({"content": "Hi"})),
          sse(chunk({"content": " there"})), sse(chunk({}, "stop")), "data: [DONE]\n\n"]


class Reply:
    def __init__(self, status: int, body: bytes, headers: dict | None = None):
        self.status_code, self.headers, self._body = status, headers or {}, body
        self.closed = False

    def iter_raw(self):
        return iter((self._body,))

    def close(self, reuse: bool = True) -> None:
        self.closed = True


class ScriptedRunPod:
    """Answers each request with the next scripted reply: (status, JSON doc) or a callable
    that raises (a transport failure). Records (method, path) of what was sent."""

    def __init__(self, replies: list, on_send: Callable[["ScriptedRunPod"], None] | None = None):
        self.replies, self.sent, self.on_send = list(replies), [], on_send

    def send(self, backend, req, client_link=None, hold=None):
        self.sent.append((req.method, req.url.removeprefix(BASE)))
        if self.on_send is not None:
            self.on_send(self)
        reply = self.replies.pop(0)
        if callable(reply):
            reply()
        status, doc, *headers = reply
        return Reply(status, doc if isinstance(doc, bytes) else dumps(doc), *headers)


class Link:
    """A client connection: `leave()` is the client going away."""

    def __init__(self):
        self.abort = None
        self.watching = []

    def on_gone(self, abort):
        self.watching.append(abort is not None)
        self.abort = abort

    def leave(self):
        self.abort()


def runpod(tmp_path, extra: str = "", timeout: float = 20):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(f"""\
        [backends.rp]
        kind = "runpod"
        api_key = "rp-key-0123456789"
        endpoint_id = "ep-1"
        poll_interval_ms = 10
        timeout = {timeout}
        """) + extra)
    backend = load_config(path).backends["rp"]
    return provider_class("runpod")(backend)


def call(stream: bool = False) -> Call:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    return Call(model="m", body=body, stream=stream)


def body_of(provider, resp) -> bytes:
    return read_body(resp, provider.backend)


def failure(job_id: str, status: str, **extra) -> tuple[int, dict]:
    return 200, {"id": job_id, "status": status, **extra}


# ------------------------------------------------------------------ not streamed: /runsync, then /status

def test_a_job_done_within_runsync_is_one_request(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "sync-1", "status": "COMPLETED", "output": [COMPLETION]})])
    resp = p.exchange(call(), client)
    assert client.sent == [("POST", "/runsync?wait=10000")]
    assert resp.status_code == 200 and json.loads(body_of(p, resp)) == COMPLETION


def test_a_job_runsync_leaves_running_is_polled_at_status(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "sync-2", "status": "IN_QUEUE"}), (200, {"id": "sync-2", "status": "IN_QUEUE"}),
                             (200, {"id": "sync-2", "status": "IN_PROGRESS"}),
                             (200, {"id": "sync-2", "status": "COMPLETED", "output": [COMPLETION]})])
    resp = p.exchange(call(), client)
    assert client.sent == [("POST", "/runsync?wait=10000")] + [("GET", "/status/sync-2")] * 3
    assert json.loads(body_of(p, resp)) == COMPLETION


HANDLER_ERROR = json.dumps({"error_type": "<class 'torch.OutOfMemoryError'>", "error_message": "CUDA out of memory.",
                            "error_traceback": "Traceback (most recent call last):\n  secret frames",
                            "hostname": "w1", "worker_id": "w1", "runpod_version": "1.7.9"})


@pytest.mark.parametrize("end,status,message", [
    (failure("j", "FAILED", error=HANDLER_ERROR), 500,
     "RunPod job j failed (<class 'torch.OutOfMemoryError'>: CUDA out of memory.)."),
    (failure("j", "FAILED", error="worker crashed"), 500, "RunPod job j failed (worker crashed)."),
    (failure("j", "TIMED_OUT"), 504, "RunPod job j timed out."),
    (failure("j", "CANCELLED"), 500, "RunPod job j was cancelled."),
    (failure("j", "FAILED", error={"object": "error", "message": "bad input", "type": "BadRequestError", "code": 400}),
     400, "bad input"),
])
def test_a_job_that_ends_badly_under_http_200_is_an_error(tmp_path, end, status, message):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "j", "status": "IN_PROGRESS"}), end])
    resp = p.exchange(call(), client)
    assert resp.status_code == status
    err = OPENAI.parse_error(resp.status_code, resp.headers, body_of(p, resp))
    assert err.message == message and "Traceback" not in err.message
    assert err.status == status


def test_an_http_error_of_the_submission_reaches_the_pipeline_as_it_came(tmp_path):
    p = runpod(tmp_path)
    error = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    client = ScriptedRunPod([(429, error, {"Retry-After": "7"})])
    resp = p.exchange(call(), client)
    assert (resp.status_code, dict(resp.headers), json.loads(body_of(p, resp))) == (429, {"Retry-After": "7"}, error)
    assert client.sent == [("POST", "/runsync?wait=10000")]


def test_a_job_over_its_time_is_cancelled(tmp_path):
    p = runpod(tmp_path, "job_timeout = 1\n")
    client = ScriptedRunPod([(200, {"id": "slow", "status": "IN_QUEUE"})]
                            + [(200, {"id": "slow", "status": "IN_QUEUE"})] * 1000)
    with pytest.raises(ProxyError) as e:
        p.exchange(call(), _cancel_answered(client))
    assert e.value.kind.value == "timeout" and "did not finish within 1 s (cancelled)" in e.value.message
    assert client.sent[-1] == ("POST", "/cancel/slow")


def _cancel_answered(client: ScriptedRunPod) -> ScriptedRunPod:
    """Answers a /cancel whenever it comes (the polls before it are however many time allows)."""
    send = client.send

    def answering(backend, req, client_link=None, hold=None):
        if "/cancel/" in req.url:
            client.sent.append((req.method, req.url.removeprefix(BASE)))
            return Reply(200, b'{"id": "x", "status": "CANCELLED"}')
        return send(backend, req, client_link, hold)
    client.send = answering
    return client


def test_a_client_leaving_between_polls_cancels_the_job(tmp_path):
    p = runpod(tmp_path)
    link = Link()
    client = _cancel_answered(ScriptedRunPod(
        [(200, {"id": "j9", "status": "IN_QUEUE"})] + [(200, {"id": "j9", "status": "IN_QUEUE"})] * 1000,
        on_send=lambda c: link.leave() if len(c.sent) == 3 else None))
    with pytest.raises(ProxyError) as e:
        p.exchange(call(), client, link)
    assert e.value.code == "client_closed"
    assert client.sent == [("POST", "/runsync?wait=10000"), ("GET", "/status/j9"), ("GET", "/status/j9"),
                           ("POST", "/cancel/j9")]
    assert link.watching[0] and link.watching[-1] is False  # watched from the start, withdrawn at the end


# ------------------------------------------------------------------ streamed: /run, then /stream polls

def stream_poll(status: str, *outputs) -> tuple[int, dict]:
    return 200, {"status": status, "stream": [{"output": o} for o in outputs]}


def test_a_streamed_job_reaches_the_pipeline_poll_by_poll(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "s1", "status": "IN_QUEUE"}), stream_poll("IN_QUEUE"),
                             stream_poll("IN_PROGRESS", *PIECES[:2]), stream_poll("IN_PROGRESS"),
                             stream_poll("IN_PROGRESS", *PIECES[2:4]), stream_poll("COMPLETED", PIECES[4]),
                             stream_poll("COMPLETED")])
    resp = p.exchange(call(stream=True), client)
    # The exchange returns with the job's first output, the job still in progress ...
    assert client.sent == [("POST", "/run"), ("GET", "/stream/s1"), ("GET", "/stream/s1")]
    chunks = iter_body(resp, p.backend)
    assert [next(chunks), next(chunks)] == [s.encode() for s in PIECES[:2]]
    assert len(client.sent) == 3  # ... and those pieces are out before the next poll is made
    assert list(chunks) == [s.encode() for s in PIECES[2:]]
    assert client.sent[3:] == [("GET", "/stream/s1")] * 4
    events = stream_events(OPENAI.StreamParser(REQ),
                           [s.encode() for s in PIECES])
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hi there"


@pytest.mark.parametrize("cut", range(1, len(PIECES[1]) - 1))
def test_vllm_sse_text_cut_anywhere_is_relayed_as_it_came(tmp_path, cut):
    """The worker's SSE fragments need not end at an event boundary: the pieces go on
    as they are, and the SSE framing makes whole events of them."""
    p = runpod(tmp_path)
    text = "".join(PIECES)
    at = len(PIECES[0]) + cut
    client = ScriptedRunPod([(200, {"id": "s2", "status": "IN_QUEUE"}),
                             stream_poll("IN_PROGRESS", text[:at]), stream_poll("COMPLETED", text[at:]),
                             stream_poll("COMPLETED")])
    relayed = list(iter_body(p.exchange(call(stream=True), client), p.backend))
    assert relayed == [text[:at].encode(), text[at:].encode()]
    for split in every_split(b"".join(relayed)):
        events = stream_events(OPENAI.StreamParser(REQ), split)
        assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hi there"


def test_structured_chunks_of_older_workers_become_events_and_the_done_is_added(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "s3", "status": "IN_QUEUE"}),
                             stream_poll("IN_PROGRESS", chunk({"content": "Hi"})),
                             stream_poll("COMPLETED", chunk({}, "stop")), stream_poll("COMPLETED")])
    relayed = b"".join(iter_body(p.exchange(call(stream=True), client), p.backend))
    assert relayed == (sse(chunk({"content": "Hi"})).replace('": ', '":').replace(", ", ",")
                       + sse(chunk({}, "stop")).replace('": ', '":').replace(", ", ",")).encode() + b"data: [DONE]\n\n"


def test_a_streamed_job_failing_midway_ends_in_an_in_stream_error(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "s4", "status": "IN_QUEUE"}), stream_poll("IN_PROGRESS", *PIECES[:2]),
                             stream_poll("FAILED"), failure("s4", "FAILED", error=HANDLER_ERROR)])
    relayed = list(iter_body(p.exchange(call(stream=True), client), p.backend))
    assert relayed[:2] == [s.encode() for s in PIECES[:2]]
    assert json.loads(relayed[2].removeprefix(b"data: ")) == {"error": {
        "message": "RunPod job s4 failed (<class 'torch.OutOfMemoryError'>: CUDA out of memory.).",
        "type": "server_error", "param": None, "code": None}}
    assert client.sent[-1] == ("GET", "/status/s4")


def test_a_streamed_job_failing_before_any_output_is_an_http_error(tmp_path):
    p = runpod(tmp_path)
    client = ScriptedRunPod([(200, {"id": "s5", "status": "IN_QUEUE"}), stream_poll("IN_QUEUE"), stream_poll("TIMED_OUT"),
                             failure("s5", "TIMED_OUT")])
    resp = p.exchange(call(stream=True), client)
    assert resp.status_code == 504
    assert OPENAI.parse_error(504, resp.headers, body_of(p, resp)).message == "RunPod job s5 timed out."


def test_a_client_leaving_mid_stream_cancels_the_job(tmp_path):
    p = runpod(tmp_path)
    link = Link()
    client = _cancel_answered(ScriptedRunPod([(200, {"id": "s6", "status": "IN_QUEUE"}),
                                              stream_poll("IN_PROGRESS", PIECES[0])]
                                             + [stream_poll("IN_PROGRESS")] * 1000))
    chunks = iter_body(p.exchange(call(stream=True), client, link), p.backend)
    assert next(chunks) == PIECES[0].encode()
    link.leave()
    with pytest.raises(ProxyError) as e:
        list(chunks)
    assert e.value.code == "client_closed"
    assert client.sent[-1] == ("POST", "/cancel/s6") and client.sent.count(("POST", "/cancel/s6")) == 1


def test_the_relay_closed_early_cancels_the_job(tmp_path):
    """The pipeline stops reading (a frame it cannot parse, a client write that failed)."""
    p = runpod(tmp_path)
    client = _cancel_answered(ScriptedRunPod([(200, {"id": "s7", "status": "IN_QUEUE"}),
                                              stream_poll("IN_PROGRESS", PIECES[0])]))
    resp = p.exchange(call(stream=True), client)
    chunks = iter_body(resp, p.backend)
    next(chunks)
    chunks.close()
    assert client.sent[-1] == ("POST", "/cancel/s7")


def test_a_streamed_job_silent_for_the_backend_timeout_is_cancelled(tmp_path):
    p = runpod(tmp_path, timeout=0.2)
    client = _cancel_answered(ScriptedRunPod([(200, {"id": "s8", "status": "IN_QUEUE"}),
                                              stream_poll("IN_PROGRESS", PIECES[0])]
                                             + [stream_poll("IN_PROGRESS")] * 1000))
    chunks = iter_body(p.exchange(call(stream=True), client), p.backend)
    next(chunks)
    with pytest.raises(ProxyError) as e:
        list(chunks)
    assert e.value.kind.value == "timeout" and "produced no output for" in e.value.message
    assert client.sent[-1] == ("POST", "/cancel/s8")
