"""What a frontend driver reads a reply into (one normalized Reply), the HTTP request
it sends, and the SSE reader the streaming drivers share."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class ToolCall:
    id: str | None
    name: str
    arguments: Any  # a dict when the model's arguments were a JSON object


@dataclass
class Reply:
    """What a client of any protocol got back, in one vocabulary."""
    status: int = 0
    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: str | None = None  # stop | length | tool_calls | content_filter
    raw_finish: str | None = None  # in the frontend's own vocabulary
    stop_sequence: str | None = None  # Anthropic names the sequence that matched
    usage: dict[str, int | None] | None = None  # {input, output, reasoning}
    error: dict[str, Any] | None = None  # {status, type, kind, message}
    problems: list[str] = field(default_factory=list)  # wire-shape/framing faults found while reading

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)


@dataclass(frozen=True)
class HttpRequest:
    path: str  # appended to the proxy URL (may carry a query)
    headers: Mapping[str, str]
    body: dict[str, Any]
    stream: bool


# -------------------------------------------------------------------- SSE


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str


def parse_sse(text: str, reply: Reply) -> list[SSEEvent]:
    """Split an event stream into events; framing faults go to `reply.problems`.

    Written here rather than borrowed from the proxy: the runner must not share
    the code it is testing."""
    if text and not text.endswith(("\n\n", "\r\n\r\n", "\r\r")):
        reply.problem("stream does not end with a complete event (missing blank line)")
    events: list[SSEEvent] = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        name, data, has_data = None, [], False
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue  # blank or comment (keep-alive)
            key, sep, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if not sep or key not in ("event", "data", "id", "retry"):
                reply.problem(f"non-SSE line in stream: {clip(line, 80)!r}")
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
                has_data = True
        if has_data:
            events.append(SSEEvent(name, "\n".join(data)))
    return events


def json_events(events: list[SSEEvent], reply: Reply) -> list[tuple[str | None, Any]]:
    out = []
    for e in events:
        try:
            out.append((e.event, json.loads(e.data)))
        except ValueError:
            reply.problem(f"stream event is not JSON: {clip(e.data, 80)!r}")
    return out


def headers_text(headers: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more chars)"


def differ(what: str, expected: Any, got: Any) -> str:
    return f"{what}: expected {clip(repr(expected), 140)} got {clip(repr(got), 140)}"
