"""RunPod Serverless (protocols B §6): a vLLM worker behind RunPod's job queue, or
the worker's OpenAI-compatible route. Both authorise with `Authorization: Bearer
<RunPod key>`; `url` defaults to https://api.runpod.ai; `endpoint_id` names the
endpoint; the model_mapping value is the model the endpoint serves.

- `runpod`: the queue, `{url}/v2/{endpoint_id}/...`. The job's input is the OpenAI
  Chat body for the worker's OpenAI route (`{"input": {"openai_route":
  "/v1/chat/completions", "openai_input": <body>}}`). Not streamed: `POST /runsync?
  wait=` (held half the backend's `timeout`, so a held request never looks stalled),
  then `GET /status/{id}` every `poll_interval_ms` while the job is IN_QUEUE /
  IN_PROGRESS. Streamed: `POST /run`, then `GET /stream/{id}` polled, each poll's new
  output relayed at once. A client that leaves cancels the job (`POST /cancel/{id}`),
  as does a job over `job_timeout` or, streamed, one that produced nothing for the
  backend's `timeout` while in progress. (A `/runsync` abandoned before its reply
  cannot be cancelled: RunPod gives the job id only with that reply.)
- `runpod_openai`: `{url}/v2/{endpoint_id}/openai/v1/chat/completions`, the OpenAI
  wire as vLLM speaks it.

What the queue's exchange returns: the job's output is what the worker's OpenAI route
produced (the chat completion; streamed, vLLM's SSE text in pieces), so the reply the
pipeline reads is that output as it is: the OpenAI Chat wire, read by the `openai`
wire module and the SSE framing like any OpenAI backend's. A job's own end is put in
the same wire: FAILED or CANCELLED is an OpenAI `server_error` (HTTP 500 before the
stream starts, an in-stream error after), TIMED_OUT a `timeout_error` (504), though
RunPod answered HTTP 200; an error object the worker reported (vLLM's own) goes on as
it is. One job, one generation request: the polls and the cancel are the exchange's.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from app.base_url import BaseUrl
from app.protocols.base import UpstreamRequest
from app.providers.base import Call, Provider, Setting, base_before, json_request, with_credentials
from app.upstream.urls import upstream_url

if TYPE_CHECKING:
    from app.providers.runpod_queue import JobReply
    from app.upstream.http import UpstreamClient

DEFAULT_URL = "https://api.runpod.ai"
OPENAI_ROUTE = "/v1/chat/completions"
_WRITTEN_TAIL = re.compile(r"/v2(?:/.*)?$")  # a pasted endpoint URL: the endpoint comes from endpoint_id

_ENDPOINT = Setting(str, required=True, help="the serverless endpoint's id")


def _base_url(url: str) -> BaseUrl:
    return base_before(url, _WRITTEN_TAIL, "the endpoint comes from endpoint_id")


class RunPod(Provider):
    """The queue API, one exchange per job (see the module docstring)."""

    kind = "runpod"
    wire = "openai"
    url_required = False
    settings = {
        "endpoint_id": _ENDPOINT,
        "poll_interval_ms": Setting(int, help="time between /status and /stream polls (default 500)", minimum=10),
        "job_timeout": Setting(int, help="seconds a job may take, queue included, before it is cancelled "
                                         "(default 600)", minimum=1),
    }

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._base = upstream_url(backend.url or DEFAULT_URL, "/v2/{endpoint}", endpoint=self.setting("endpoint_id"))
        self.poll_interval = self.setting("poll_interval_ms", 500) / 1000
        self.job_timeout = float(self.setting("job_timeout", 600))
        # How long /runsync holds the request (RunPod allows 1-300 s).
        self.sync_wait_ms = int(min(300_000, max(1000, backend.timeout * 500)))

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        return _base_url(url)

    def prepare(self, call: Call) -> UpstreamRequest:
        """The job's submission: `/run` for a stream (its output is polled), else `/runsync`."""
        body = {"input": {"openai_route": OPENAI_ROUTE, "openai_input": call.body}}
        if call.stream:
            url = self._base + "/run"
        else:
            url = upstream_url(self._base, "/runsync", query={"wait": str(self.sync_wait_ms)})
        return self.authorise(json_request(url, {}, call, body))

    def job_request(self, method: str, action: str, job_id: str) -> UpstreamRequest:
        """`GET /status/{id}`, `GET /stream/{id}`, `POST /cancel/{id}`."""
        url = upstream_url(self._base, "/" + action + "/{job}", job=job_id)
        return self.authorise(UpstreamRequest(method, url, {}, b""))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"Authorization": "Bearer " + self.backend.resolve_api_key()})

    def native_base(self) -> str:
        return self.backend.url or DEFAULT_URL

    def exchange(self, call: Call, client: "UpstreamClient", client_link=None) -> "JobReply":
        # Imported here: app.upstream.http imports app.config, which imports this registry.
        from app.providers.runpod_queue import Job
        job = Job(self, client, client_link)
        if not call.stream:
            try:
                return job.run_sync(self.prepare(call))
            finally:
                job.finish()
        try:
            reply = job.run_stream(self.prepare(call))
        except BaseException:
            job.finish()
            raise
        return reply


class RunPodOpenAI(Provider):
    """The vLLM worker's OpenAI-compatible route: one request, the OpenAI wire."""

    kind = "runpod_openai"
    wire = "openai"
    url_required = False
    settings = {"endpoint_id": _ENDPOINT}

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._url = upstream_url(backend.url or DEFAULT_URL, "/v2/{endpoint}/openai/v1/chat/completions",
                                 endpoint=self.setting("endpoint_id"))

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        return _base_url(url)

    def prepare(self, call: Call) -> UpstreamRequest:
        return self.authorise(json_request(self._url, {}, call))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"Authorization": "Bearer " + self.backend.resolve_api_key()})

    def native_base(self) -> str:
        return self.backend.url or DEFAULT_URL
