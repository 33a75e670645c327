"""A RunPod job's exchange (app/providers/runpod.py says what it does): its submission,
polls and cancel over one held connection, the client's leaving watched throughout, and
the job's output and end handed on as the OpenAI Chat wire the worker's route writes."""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from app.errors import ErrorKind, ProxyError, redact
from app.jsonutil import dumps, loads
from app.protocols.base import UpstreamRequest
from app.upstream.http import HeldConnection, UpstreamClient, abandoned, read_body

if TYPE_CHECKING:
    from app.providers.runpod import RunPod

log = logging.getLogger("interchange.runpod")

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RUNNING = frozenset({"IN_PROGRESS", "RUNNING"})  # the docs name both
_MAX_REPLY = 64 * 1024 * 1024  # one status or stream poll (a stream chunk is at most 1 MB)
_SSE_DONE = b"data: [DONE]\n\n"


class JobReply:
    """What the queue's exchange returns, in UpstreamResponse's shape: a status, headers,
    and the body as the job produces it (`iter_raw`); `close` ends the job's exchange."""

    __slots__ = ("status_code", "headers", "_body", "_on_close")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes | Iterator[bytes],
                 on_close: Callable[[], None] | None = None):
        self.status_code = status
        self.headers = headers
        self._body = iter((body,)) if isinstance(body, bytes) else body
        self._on_close = on_close

    def iter_raw(self) -> Iterator[bytes]:
        return self._body

    def close(self, reuse: bool = True) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        if self._on_close is not None:
            self._on_close()


def _json_reply(status: int, doc: Any) -> JobReply:
    return JobReply(status, {"Content-Type": "application/json"}, dumps(doc))


class Job:
    """One job's requests. It is also the ClientLink each of them is sent with, so the
    client leaving aborts the one in flight, or ends the wait between two polls."""

    def __init__(self, provider: RunPod, client: UpstreamClient, client_link) -> None:
        self.provider = provider
        self.backend = provider.backend
        self.client = client
        self.held = HeldConnection(client)
        self.link = client_link
        self.gone = threading.Event()
        self._abort: Callable[[], None] | None = None  # the request in flight's
        self.job_id: str | None = None
        self.label = "?"  # the job id as messages and logs show it (redacted: an upstream chose it)
        self.status = ""
        self.done = False  # finish() ran
        self.deadline = time.monotonic() + provider.job_timeout
        if client_link is not None:
            client_link.on_gone(self._client_left)

    # ------------------------------------------------------------ ClientLink

    def on_gone(self, abort: Callable[[], None] | None) -> None:
        self._abort = abort
        if abort is not None and self.gone.is_set():
            abort()

    def _client_left(self) -> None:  # runs in gevent's hub: must not block
        self.gone.set()
        abort = self._abort
        if abort is not None:
            abort()

    # ------------------------------------------------------------ the two ways a job runs

    def run_sync(self, submit: UpstreamRequest) -> JobReply:
        status, headers, body = self._send(submit)
        if status >= 400:
            return JobReply(status, headers, body)
        doc = self._doc(body, "/runsync")
        while self._track(doc) not in FINAL:
            self._wait(time.monotonic())
            doc = self._poll("status")
        return self._outcome(doc)

    def run_stream(self, submit: UpstreamRequest) -> JobReply:
        status, headers, body = self._send(submit)
        if status >= 400:
            self.finish()
            return JobReply(status, headers, body)
        self._track(self._doc(body, "/run"))
        if self.job_id is None:
            raise self._bad_reply("/run", "no job id")
        relay = _StreamRelay(self)
        first = relay.until_output()
        if first is None:  # the job ended before any output: /status says how
            try:
                doc = self._poll("status")
                if self.status != "COMPLETED":
                    return self._failure(doc)
                return JobReply(200, {"Content-Type": "text/event-stream"}, relay.aggregate(doc.get("output")))
            finally:
                self.finish()
        return JobReply(200, {"Content-Type": "text/event-stream"}, relay.pieces(first), self.finish)

    # ------------------------------------------------------------ steps

    def _send(self, req: UpstreamRequest) -> tuple[int, Mapping[str, str], bytes]:
        """One request, its reply read whole; the client leaving cancels the job."""
        try:
            resp = self.client.send(self.backend, req, self, hold=self.held)
            return resp.status_code, resp.headers, read_body(resp, self.backend, _MAX_REPLY)
        except ProxyError:
            if self.gone.is_set():
                self.cancel()
            raise

    def _poll(self, action: str) -> dict:
        status, _, body = self._send(self.provider.job_request("GET", action, self.job_id))
        if status >= 400:
            self.cancel()
            raise ProxyError(ErrorKind.bad_gateway, f"Backend '{self.backend.name}': polling job {self.label} "
                             f"failed with HTTP {status}.", backend=self.backend.name)
        return self._doc(body, "/" + action)

    def _track(self, doc: dict) -> str:
        """The job's status (and its id, once known) from a reply."""
        job_id = doc.get("id")
        if isinstance(job_id, str) and job_id and self.job_id is None:
            self.job_id = job_id
            self.label = redact(job_id, self.provider.secrets())
        status = doc.get("status")
        if not isinstance(status, str):
            raise self._bad_reply("the job", "no status")
        if status not in FINAL and self.job_id is None:
            raise self._bad_reply("the job", "no job id")
        self.status = status
        return status

    def _wait(self, since: float) -> None:
        """Until the next poll (`poll_interval` after `since`); the client leaving or the
        job's time running out ends it."""
        now = time.monotonic()
        if now >= self.deadline:
            self.cancel()
            raise ProxyError(ErrorKind.timeout, f"Backend '{self.backend.name}': job {self.label} did not finish "
                             f"within {self.provider.job_timeout:g} s (cancelled).", backend=self.backend.name)
        delay = min(max(0.0, since + self.provider.poll_interval - now), self.deadline - now)
        if self.gone.wait(delay):
            self.cancel()
            raise abandoned(self.backend)

    def _outcome(self, doc: dict) -> JobReply:
        if doc.get("status") != "COMPLETED":
            return self._failure(doc)
        output = doc.get("output")
        if isinstance(output, list) and len(output) == 1:
            output = output[0]  # the worker's one yield, as the aggregate stream lists it
        if isinstance(output, str):
            return JobReply(200, {"Content-Type": "application/json"}, output.encode())
        if not isinstance(output, dict):
            return _json_reply(502, _error_object(f"RunPod job {self.label} completed without a chat completion "
                                                  "in its output.", "server_error"))
        return _json_reply(200, output)

    def _failure(self, doc: dict) -> JobReply:
        status, error = job_error(doc, self.label)
        return _json_reply(status, {"error": error})

    def cancel(self) -> None:
        """Best effort: the client has gone, or the job overran; nobody waits for the answer."""
        if self.job_id is None or self.status in FINAL:
            return
        self.status = "CANCELLED"
        try:
            resp = self.client.send(self.backend, self.provider.job_request("POST", "cancel", self.job_id),
                                    hold=self.held)
            read_body(resp, self.backend, 64 * 1024)
        except ProxyError as e:
            log.warning("backend %s: cancelling job %s failed (%s)", self.backend.name, self.label, e.message)
        else:
            log.info("backend %s: job %s cancelled (HTTP %s)", self.backend.name, self.label, resp.status_code)

    def finish(self) -> None:
        """The exchange is over: a job not yet ended is cancelled, the client is no longer
        watched, the connection goes back to the pool (closed, if the job was left unfinished
        or the client left: what an abandoned call opened does not outlive it)."""
        if self.done:
            return
        self.done = True
        unfinished = self.job_id is not None and self.status not in FINAL
        if unfinished:
            self.cancel()
        if self.link is not None:
            self.link.on_gone(None)
        self.held.release(reuse=not unfinished and not self.gone.is_set())

    def _doc(self, body: bytes, what: str) -> dict:
        try:
            doc = loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise self._bad_reply(what, "not a JSON object")
        return doc

    def _bad_reply(self, what: str, why: str) -> ProxyError:
        self.cancel()
        return ProxyError(ErrorKind.bad_gateway, f"Backend '{self.backend.name}' sent an unreadable reply for "
                          f"{what} ({why}).", backend=self.backend.name)


class _StreamRelay:
    """A streamed job's `/stream` polls, each one's new output rendered as the OpenAI SSE the
    worker's route writes: vLLM's SSE text as it is, a structured chunk (older workers) as an
    event of its own."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.framed = False  # chunks were written as events by us: the [DONE] is ours to add
        self.progress = time.monotonic()  # when output last came (or the job started running)

    def until_output(self) -> list[bytes] | None:
        """Poll until the job has output (its first pieces) or has ended (None)."""
        polled = time.monotonic() - self.job.provider.poll_interval  # the first poll goes at once
        while True:
            self.job._wait(polled)
            polled = time.monotonic()
            pieces = self.poll()
            if pieces:
                return pieces
            if self.job.status in FINAL:
                return None

    def pieces(self, first: list[bytes]) -> Iterator[bytes]:
        """The first pieces, then every poll's, until the job ends."""
        job = self.job
        try:
            yield from first
            polled = time.monotonic()
            while True:
                job._wait(polled)
                polled = time.monotonic()
                pieces = self.poll()
                yield from pieces
                if pieces:
                    continue
                if job.status in FINAL:
                    break
                if job.status in RUNNING and polled - self.progress > job.backend.timeout:
                    job.cancel()
                    raise ProxyError(ErrorKind.timeout, f"Backend '{job.backend.name}': job {job.label} produced "
                                     f"no output for {job.backend.timeout:g} s (cancelled).",
                                     backend=job.backend.name)
            if job.status != "COMPLETED":
                _, error = job_error(job._poll("status"), job.label)
                yield b"data: " + dumps({"error": error}) + b"\n\n"
            elif self.framed:
                yield _SSE_DONE
        finally:
            job.finish()

    def poll(self) -> list[bytes]:
        job = self.job
        before = job.status
        doc = job._poll("stream")
        job._track(doc)
        if job.status in RUNNING and before not in RUNNING:
            self.progress = time.monotonic()
        items = doc.get("stream") or []
        if not isinstance(items, list):
            raise job._bad_reply("/stream", "stream is not a list")
        pieces = [self.render(item.get("output") if isinstance(item, dict) else None) for item in items]
        if pieces:
            self.progress = time.monotonic()
        return pieces

    def render(self, output: Any) -> bytes:
        if isinstance(output, str):
            return output.encode()
        if isinstance(output, (dict, list)):
            self.framed = True
            return b"data: " + dumps(output) + b"\n\n"
        raise self.job._bad_reply("/stream", "a chunk without output")

    def aggregate(self, output: Any) -> bytes:
        """The output of a job that completed without streaming (a worker that aggregates)."""
        pieces = [self.render(item) for item in (output if isinstance(output, list) else [output])]
        return b"".join(pieces) + (_SSE_DONE if self.framed else b"")


def job_error(doc: Mapping[str, Any], job_id: str) -> tuple[int, dict]:
    """(HTTP status, OpenAI error object) for a job that did not complete. The worker's own
    OpenAI-style error object (what vLLM answered, with its status) goes on as it is; a handler's failure
    (`error` a JSON string of error_type / error_message / traceback) is told by its type
    and message, never its traceback."""
    status = doc.get("status")
    if status == "TIMED_OUT":
        return 504, _error_object(f"RunPod job {job_id} timed out.", "timeout_error")
    if status == "CANCELLED":
        return 500, _error_object(f"RunPod job {job_id} was cancelled.", "server_error")
    error = doc.get("error")
    if isinstance(error, str):
        try:
            error = loads(error)
        except ValueError:
            pass
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # {"error": {...}}: the worker yielded an OpenAI error envelope
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")  # vLLM's error objects carry the HTTP status it answered
        return (code if isinstance(code, int) and 400 <= code <= 599 else 500), error
    if isinstance(error, dict) and isinstance(error.get("error_message"), str):
        kind = error.get("error_type")
        detail = f"{kind}: {error['error_message']}" if isinstance(kind, str) and kind else error["error_message"]
    elif isinstance(error, str) and error:
        detail = error
    else:
        detail = "no error given"
    return 500, _error_object(f"RunPod job {job_id} failed ({detail[:500]}).", "server_error")


def _error_object(message: str, err_type: str) -> dict:
    return {"message": message, "type": err_type, "param": None, "code": None}
