"""The measured paths (client->backend, proxied or direct) and the requests each sends."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scripts import bench_bedrock


@dataclass(frozen=True)
class BenchPath:
    """One way a request travels: who answers (direct mock, proxy, peer), the
    client protocol and the backend protocol behind it."""
    target: str  # "direct" | "proxy" | "peer" | "tcprelay"
    client: str  # "openai" | "anthropic" | "gemini" | "bedrock" (a direct Converse client)
    backend: str

    @property
    def name(self) -> str:
        if self.target == "direct":
            return f"direct {self.backend}"
        if self.target == "tcprelay":
            return f"tcp relay {self.backend}"
        return f"{self.target} {self.client}->{self.backend}"

    @property
    def cross(self) -> bool:
        return self.client != self.backend

    @property
    def baseline(self) -> "BenchPath":
        """The direct call this path is compared with."""
        return BenchPath("direct", self.backend, self.backend)

    @property
    def same_protocol(self) -> "BenchPath":
        """The same-protocol path through the same target to the same backend."""
        return BenchPath(self.target, self.backend, self.backend)

    def peer_twin(self) -> "BenchPath":
        return BenchPath("peer", self.client, self.backend)


MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash",
         "bedrock": bench_bedrock.MODEL}
PROMPT = "Say hello in one short sentence."
AUTH = {
    "openai": {"Authorization": "Bearer sk-bench-key"},
    "anthropic": {"x-api-key": "sk-ant-bench-key", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "AIza-bench-key"},
    "bedrock": {},  # SigV4, per request (bench_bedrock.signed_headers)
}
# Where a stream has really finished, per client protocol (Bedrock: the binary
# event stream's last message is `metadata`; an exception message names its type).
STREAM_END = {"openai": b"[DONE]", "anthropic": b"message_stop", "gemini": b"finishReason", "bedrock": b"metadata"}
STREAM_ERROR = {"openai": b'{"error"', "anthropic": b"event: error", "gemini": b'"error"',
                "bedrock": b":exception-type"}


def http_request(path: BenchPath, host: str, *, stream: bool, scenario: str | None = None,
                 max_tokens: int = 64) -> dict[str, Any]:
    """The request a client of `path.client` sends for `path` (method, URL path,
    headers, body), as a JSON-able dict for the load generator. A Bedrock
    request is signed here, so it is good for SigV4's 5 minutes."""
    model = MODEL[path.backend]
    headers = {"Host": host, "Content-Type": "application/json", **AUTH[path.client]}
    if scenario:
        headers["X-Mock-Scenario"] = scenario
    if path.client == "openai":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                                "max_tokens": max_tokens}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        url = "/v1/chat/completions"
    elif path.client == "anthropic":
        body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        url = "/v1/messages"
    elif path.client == "bedrock":
        body = bench_bedrock.converse_body(PROMPT, max_tokens)
        url = bench_bedrock.converse_path(stream)
        headers["Accept"] = "application/vnd.amazon.eventstream" if stream else "application/json"
    else:
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {"maxOutputTokens": max_tokens}}
        url = f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")
    data = json.dumps(body, separators=(",", ":"))
    if path.client == "bedrock":
        unsigned = {k: v for k, v in headers.items() if k != "Host"}
        headers = {"Host": host, **bench_bedrock.signed_headers(host, url, unsigned, data.encode())}
    return {"method": "POST", "path": url, "headers": headers, "body": data, "client": path.client, "stream": stream}


def raw_request(req: dict[str, Any]) -> bytes:
    """HTTP/1.1 bytes for a request dict (keep-alive)."""
    body = req["body"].encode()
    lines = [f"{req['method']} {req['path']} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in req["headers"].items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
