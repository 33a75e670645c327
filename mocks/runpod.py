"""RunPod Serverless (protocols B §6): one endpoint running the vLLM worker, through
the queue API and through the worker's OpenAI-compatible route.

- Auth: `Authorization: Bearer <key>` (the docs also show the bare key: accepted);
  no key, or the key `invalid`: 401. An endpoint id other than ENDPOINT_ID: 404.
  (RunPod does not document its error bodies: these are `{"error": "<message>"}`.)
- Queue: `POST /v2/{endpoint}/run` answers `{"id", "status": "IN_QUEUE"}` at once;
  `POST /runsync?wait=<ms>` (1000-300000, default 90000) holds the request until the
  job ends or the wait runs out, then answers the job as `/status` would (a job still
  IN_QUEUE / IN_PROGRESS is the caller's to poll). `GET /status/{id}`,
  `GET /stream/{id}` (`{"status", "stream": [{"output": …}]}`, the output produced
  since the last poll), `POST /cancel/{id}` (`{"id", "status": "CANCELLED"}`).
  The body is `{"input": …}` (plus `webhook` / `policy` / `s3Config`); the input is
  the worker's OpenAI route: `{"openai_route": "/v1/chat/completions",
  "openai_input": <chat body>}`, the chat body checked as vLLM serving SERVED_MODEL
  would (the OpenAI rules, that model, no images; stricter than vLLM, which ignores
  unknown fields, so that a converter bug shows here). As on RunPod, the platform does
  not read the input: a body vLLM refuses makes a FAILED job (HTTP 200) whose error is
  vLLM's error object.
- Jobs keep time: IN_QUEUE for `queue_ms`, then IN_PROGRESS, their output appearing
  one piece every `piece_ms` (the scenario's streamed frames, written as the SSE text
  the worker's route yields; not streamed, the chat completion at the end), then
  COMPLETED. Defaults: DEFAULT_QUEUE_MS, DEFAULT_PIECE_MS; the header
  `X-Mock-Job-Timing: queue_ms=…, piece_ms=…` sets them per job.
- Scenarios: the OpenAI set. slow_first_byte keeps the job queued that much longer;
  stall_mid_stream stops its output after `after_frames` pieces, and after `stall_ms`
  the job is TIMED_OUT; drop_mid_stream cuts the connection of the poll after
  `after_frames` pieces (not streamed: the /runsync reply, half written); an in-stream
  error object ends the stream and fails the job with that error; scenarios with an
  HTTP error status are the platform refusing the submission (status, headers, body).
  Job faults of the queue's own (X-Mock-Scenario): `job_failed` (the handler raised:
  FAILED, its `error` a JSON string, under HTTP 200) and `job_timed_out` (TIMED_OUT),
  each after a few pieces of the text scenario.
- The OpenAI route `POST /v2/{endpoint}/openai/v1/chat/completions`: the OpenAI mock's
  replay, under the RunPod key and the vLLM model rule.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import gevent
from flask import Response

from mocks.openai import OpenAIProvider, _SseWriter
from mocks.provider import SCENARIO_HEADER, Call, MockState, Provider
from mocks.replay import respond
from mocks.scenarios import Scenario, ScenarioFrame, fill
from mocks.wire import ApiError, compact_json, drop_connection

ENDPOINT_ID = "mock-vllm-endpoint"
SERVED_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
OPENAI_ROUTES = ("/v1/chat/completions",)
# The OpenAI rules are checked as for a model they treat as vLLM treats this one
# (no reasoning-model restrictions).
_STAND_IN_MODEL = "gpt-4o-mini"
SUBMIT_FIELDS = frozenset({"input", "webhook", "policy", "s3Config"})
DEFAULT_QUEUE_MS = 40
DEFAULT_PIECE_MS = 15
DEFAULT_WAIT_MS = 90_000
TIMING_HEADER = "X-Mock-Job-Timing"
MAX_JOBS = 5000  # the oldest are forgotten (RunPod keeps results 1-30 min)
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")

# The queue's own job faults: (scenario they run, pieces before the end, how the job ends).
JOB_FAULTS = {"job_failed": ("text", 3, "FAILED"), "job_timed_out": ("text", 3, "TIMED_OUT")}
HANDLER_ERROR = json.dumps({
    "error_type": "<class 'torch.OutOfMemoryError'>",
    "error_message": "CUDA out of memory. Tried to allocate 2.00 GiB.",
    "error_traceback": "Traceback (most recent call last):\n  File \"/src/handler.py\", line 31, in handler\n"
                       "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n",
    "hostname": "mock-worker-1", "worker_id": "mock-worker-1", "runpod_version": "1.7.9"})

_OPENAI = OpenAIProvider()


def runpod_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


def vllm_error(status: int, message: str, err_type: str) -> dict:
    """vLLM's error object (the OpenAI server's ErrorResponse)."""
    return {"object": "error", "message": message, "type": err_type, "param": None, "code": status}


def authenticate(call: Call) -> None:
    """The RunPod key (Bearer, or bare as the docs also show it) and the endpoint id."""
    value = call.header("Authorization") or ""
    scheme, _, key = value.partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else value
    if not key or key == "invalid":
        raise runpod_error(401, "Unauthorized")
    if call.notes.get("endpoint") != ENDPOINT_ID:
        raise runpod_error(404, f"endpoint {call.notes.get('endpoint')!r} not found")


def check_chat(chat: Call) -> None:
    """`chat.body` as vLLM serving SERVED_MODEL takes it: the OpenAI rules, its model, text only.
    Raises ApiError with vLLM's error object."""
    body = chat.body
    model = body.get("model")
    if model != SERVED_MODEL:
        raise ApiError(404, vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError"))
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            raise ApiError(400, vllm_error(400, f"{SERVED_MODEL} is not a multimodal model", "BadRequestError"))
    chat.body = {**body, "model": _STAND_IN_MODEL}
    try:
        _OPENAI.validate(chat)
    except ApiError as err:
        error = err.body.get("error") if isinstance(err.body, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(err.body)
        raise ApiError(err.status, vllm_error(err.status, message, "BadRequestError")) from None
    finally:
        chat.body = body
    chat.model = model


@dataclass
class Job:
    id: str
    endpoint: str
    created: float
    queue_s: float
    pieces: list[tuple[float, Any]]  # (seconds after creation it is ready, the output)
    end_s: float  # when it ends
    end: str  # COMPLETED | FAILED | TIMED_OUT
    output: Any = None  # what /status shows once COMPLETED
    error: Any = None  # what /status shows once FAILED
    drop_at: int | None = None  # the poll that finds this many pieces delivered is cut
    delivered: int = 0
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, now: float) -> str:
        if self.cancelled:
            return "CANCELLED"
        t = now - self.created
        if t < self.queue_s:
            return "IN_QUEUE"
        if t < self.end_s:
            return "IN_PROGRESS"
        return self.end

    def view(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        doc: dict[str, Any] = {"id": self.id, "status": status}
        if status != "IN_QUEUE":
            doc["delayTime"] = int(self.queue_s * 1000)
        if status in FINAL:
            doc["executionTime"] = int(max(0.0, min(now - self.created, self.end_s) - self.queue_s) * 1000)
        if status == "COMPLETED":
            doc["output"] = self.output
        elif status == "FAILED":
            doc["error"] = self.error
        return doc


class RunPodQueue(Provider):
    """The queue API (the vLLM worker behind it). Only the submission goes through the
    generation pipeline's rules; polls and cancels are answered from the job store."""

    name = "runpod"
    scenario_set = "openai"

    def __init__(self) -> None:
        self.jobs: OrderedDict[str, Job] = OrderedDict()

    # ----------------------------------------------------------- rules
    def authenticate(self, call: Call) -> None:
        authenticate(call)

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return runpod_error(400, f"invalid request body: {detail}")

    def too_large(self, call: Call) -> ApiError:
        return runpod_error(413, "request body too large (/run: 10 MB, /runsync: 20 MB)")

    def validate(self, call: Call) -> None:
        body = call.body
        unknown = sorted(set(body) - SUBMIT_FIELDS)
        if unknown:
            raise runpod_error(400, f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(SUBMIT_FIELDS))})")
        job_input = body.get("input")
        if not isinstance(job_input, dict) or not job_input:
            raise runpod_error(400, "input: required, a non-empty object")
        if set(job_input) != {"openai_route", "openai_input"}:
            raise runpod_error(400, "input: the mock's vLLM worker takes the OpenAI route only "
                               "({\"openai_route\", \"openai_input\"})")
        if job_input["openai_route"] not in OPENAI_ROUTES:
            raise runpod_error(400, f"input.openai_route: {job_input['openai_route']!r} is not one of "
                               f"{', '.join(OPENAI_ROUTES)}")
        if not isinstance(job_input["openai_input"], dict):
            raise runpod_error(400, "input.openai_input: must be an object")
        wait = call.query.get("wait")
        if call.notes.get("sync") and wait is not None and not (wait.isdigit() and 1000 <= int(wait) <= 300_000):
            raise runpod_error(400, "wait: an integer number of milliseconds, 1000-300000")

    def detect(self, call: Call) -> str:
        return _OPENAI.detect(call.notes["chat"])

    def error(self, status: int, message: str, call: Call) -> ApiError:
        return runpod_error(status, message)

    def not_found(self, call: Call) -> ApiError:
        return runpod_error(404, f"{call.method} {call.path} not found")

    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()

    def stream_writer(self, call: Call) -> _SseWriter:
        return _SseWriter()

    # ----------------------------------------------------------- submission
    def submit(self, call: Call, state: MockState) -> Response:
        """`/run` or `/runsync` (call.notes["sync"])."""
        try:
            self.authenticate(call)
            self.parse(call)
            self.validate(call)
            openai_input = call.body["input"]["openai_input"]
            chat = Call(method=call.method, path=call.path, query={}, headers=call.headers,
                        raw_body=compact_json(openai_input).encode(), body=openai_input)
            call.notes["chat"] = chat
            call.stream = openai_input.get("stream") is True
            requested = call.header(SCENARIO_HEADER)
            fault = JOB_FAULTS.get(requested or "")
            scenario = state.library.get("openai", fault[0]) if fault else self.choose_scenario(call, state.library)
            timing = _timing(call.header(TIMING_HEADER))
        except ApiError as err:
            return self.reject(err, call, state)
        call.scenario = requested if fault else scenario.name
        call.model = openai_input.get("model") if isinstance(openai_input.get("model"), str) else None
        print(f"Detected scenario: {self.name}/{call.scenario}", flush=True)
        try:
            check_chat(chat)
        except ApiError as err:  # the worker's vLLM refuses it: the job fails (RunPod said 200)
            job = self._job(call, 0.0, [], timing[0] + timing[1], "FAILED", error=err.body)
            print(f"Job {job.id} fails: vLLM refuses the input: {err.status} {str(err.body)[:300]}", flush=True)
            return self._submitted(call, state, job)
        if scenario.status >= 400 and not (call.stream and scenario.stream is not None):
            # the platform refuses the submission (a streamed error scenario fails in the stream)
            response = respond(self, scenario, chat)
            self.record(call, state, response.status_code)
            return response
        job = self._plan(call, chat, scenario, fault, timing)
        return self._submitted(call, state, job)

    def _submitted(self, call: Call, state: MockState, job: Job) -> Response:
        self.record(call, state, 200)
        if not call.notes.get("sync"):
            return _json({"id": job.id, "status": "IN_QUEUE"})
        wait = int(call.query.get("wait", DEFAULT_WAIT_MS)) / 1000
        until = time.monotonic() + wait
        while job.status(time.monotonic()) not in FINAL and time.monotonic() < until:
            gevent.sleep(min(0.01, max(0.0, until - time.monotonic())))
        body = compact_json(job.view(time.monotonic())).encode()
        if job.drop_at is not None:  # drop_mid_stream, not streamed: half the reply, then the cut
            return Response(_cut(body, call), status=200, content_type="application/json",
                            direct_passthrough=True)
        return Response(body, status=200, content_type="application/json")

    def _plan(self, call: Call, chat: Call, scenario: Scenario, fault: tuple | None,
              timing: tuple[float, float]) -> Job:
        """The job's timeline from the scenario: its pieces, its end, its faults."""
        queue_s, piece_s = timing
        queue_s += scenario.first_byte_delay  # slow_first_byte: a colder start
        lookup = _OPENAI.placeholders(chat)
        streamed = call.stream and scenario.stream is not None
        if streamed:
            outputs = [_piece(f, lookup) for f in _OPENAI.select_frames(list(scenario.stream), chat)]
        elif scenario.body_raw is not None:
            outputs = [fill(scenario.body_raw, lookup)]
        else:
            outputs = [fill(scenario.body, lookup)]
        end, error, stop, drop_at = "COMPLETED", None, len(outputs), None
        stall_s = 0.0
        for i, out in enumerate(outputs):
            if isinstance(out, dict) and "error" in out:  # the worker yielded an error: the job fails
                end, error, stop = "FAILED", out["error"], i
                break
        if fault is not None:
            stop, end = min(fault[1], len(outputs)) if streamed else 0, fault[2]
            error = HANDLER_ERROR if end == "FAILED" else None
        elif scenario.fault is not None and scenario.fault.type == "stall_mid_stream":
            stop = min(scenario.fault.after_frames or 0, len(outputs)) if streamed else 0
            end, stall_s = "TIMED_OUT", scenario.fault.stall_ms / 1000  # RunPod's executionTimeout
        elif scenario.fault is not None and scenario.fault.type == "drop_mid_stream":
            stop = min(scenario.fault.after_frames or 0, len(outputs)) if streamed else len(outputs)
            end, error = "FAILED", "worker connection lost"
            drop_at = stop
        pieces, t = [], queue_s
        for out in outputs[:stop]:
            t += piece_s
            pieces.append((t, out))
        end_s = t + piece_s + stall_s
        job = self._job(call, queue_s, pieces, end_s, end, error=error, drop_at=drop_at)
        if end == "COMPLETED":
            job.output = [out for _, out in pieces]  # the aggregate stream (one item when not streamed)
        return job

    def _job(self, call: Call, queue_s: float, pieces: list, end_s: float, end: str, *, error: Any = None,
             drop_at: int | None = None) -> Job:
        job_id = ("sync-" if call.notes.get("sync") else "") + str(uuid.uuid4()) + "-u1"
        job = Job(job_id, call.notes["endpoint"], time.monotonic(), queue_s, pieces, max(end_s, queue_s), end,
                  error=error, drop_at=drop_at)
        self.jobs[job_id] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.popitem(last=False)
        return job

    # ----------------------------------------------------------- job operations
    def operation(self, call: Call, state: MockState, op: str, job_id: str) -> Response:
        """`status`, `stream` or `cancel` of a job."""
        try:
            self.authenticate(call)
            job = self.jobs.get(job_id)
            if job is None or job.endpoint != call.notes["endpoint"]:
                raise runpod_error(404, f"job {job_id!r} not found")
        except ApiError as err:
            return self.reject(err, call, state)
        now = time.monotonic()
        with job.lock:
            if op == "cancel":
                if job.status(now) not in FINAL:
                    job.cancelled = True
                doc = {"id": job.id, "status": job.status(now)}
            elif op == "status":
                doc = job.view(now)
            else:
                ready = [out for at, out in job.pieces[job.delivered:] if job.created + at <= now]
                if job.drop_at is not None and job.delivered >= job.drop_at and not ready \
                        and now - job.created >= job.end_s:
                    self.record(call, state, 200)
                    return Response(_cut(b'{"status": "IN_PROGRESS", "stream": [{"output": "data: {', call),
                                    status=200, content_type="application/json", direct_passthrough=True)
                job.delivered += len(ready)
                doc = {"status": job.status(now), "stream": [{"output": out} for out in ready]}
        self.record(call, state, 200)
        return _json(doc)


class RunPodOpenAIRoute(OpenAIProvider):
    """The worker's OpenAI-compatible route: the OpenAI replay under RunPod's key and
    the vLLM model rule."""

    name = "runpod_openai"
    scenario_set = "openai"

    def authenticate(self, call: Call) -> None:
        authenticate(call)

    def validate(self, call: Call) -> None:
        check_chat(call)
        call.stream = call.body.get("stream") is True


def _piece(frame: ScenarioFrame, lookup) -> Any:
    """A streamed frame as the worker yields it: vLLM's SSE text, or an error object."""
    if frame.raw is None and isinstance(frame.data, dict) and "error" in frame.data:
        return fill(frame.data, lookup)
    return _SseWriter().frame(frame, lookup).decode()


def _timing(header: str | None) -> tuple[float, float]:
    values = {"queue_ms": DEFAULT_QUEUE_MS, "piece_ms": DEFAULT_PIECE_MS}
    for part in (header or "").split(","):
        name, eq, value = part.strip().partition("=")
        if not name:
            continue
        if name not in values or not eq or not value.strip().isdigit():
            raise runpod_error(400, f"{TIMING_HEADER}: expected queue_ms=<int>, piece_ms=<int> (got {part.strip()!r})")
        values[name] = int(value)
    return values["queue_ms"] / 1000, values["piece_ms"] / 1000


def _cut(body: bytes, call: Call):
    yield body[: len(body) // 2]
    drop_connection(call.socket)


def _json(doc: Any) -> Response:
    return Response(compact_json(doc), status=200, content_type="application/json")

