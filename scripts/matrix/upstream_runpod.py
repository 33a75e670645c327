"""Readers of what the proxy sent RunPod: the queue's job submission (the OpenAI Chat body
inside the worker's OpenAI-route input) and the vLLM worker's OpenAI-compatible route."""
from __future__ import annotations

import re
from typing import Any, Mapping

from scripts.matrix.upstream import OpenAIUpstream, UpstreamView

OPENAI_ROUTE = "/v1/chat/completions"


class RunPodUpstream(OpenAIUpstream):
    """`{"input": {"openai_route": "/v1/chat/completions", "openai_input": <chat body>}}` at
    `/v2/{endpoint}/runsync` (not streamed) or `/v2/{endpoint}/run` (streamed: polled at /stream)."""
    url_path = re.compile(r"/v2/[^/]+/(?P<op>run|runsync)")

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        job_input = body.get("input")
        job_input = job_input if isinstance(job_input, dict) else {}
        v = super().view(job_input.get("openai_input") or {}, path, query)
        if job_input.get("openai_route") != OPENAI_ROUTE:
            v.problems.append(f"job input's openai_route is {job_input.get('openai_route')!r}, not {OPENAI_ROUTE!r}")
        if set(body) - {"input", "webhook", "policy", "s3Config"}:
            v.problems.append(f"job submission carries {sorted(set(body) - {'input'})}")
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        match = self.url_path.fullmatch(path)
        if match is None:
            v.problems.append(f"path {path!r} is not /v2/<endpoint>/run or /runsync")
        elif v.stream != (match["op"] == "run"):
            v.problems.append(f"a {'streamed' if v.stream else 'non-streamed'} job went to {match['op']!r}")


class RunPodOpenAIUpstream(OpenAIUpstream):
    """The OpenAI Chat wire at `/v2/{endpoint}/openai/v1/chat/completions`."""
    url_path = re.compile(r"/v2/[^/]+/openai/v1/chat/completions")

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if self.url_path.fullmatch(path) is None:
            v.problems.append(f"path {path!r} is not /v2/<endpoint>/openai/v1/chat/completions")
