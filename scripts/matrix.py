"""Cross-protocol matrix: every frontend x backend x capability, through the proxy and the mock.

Each cell sends one request in the frontend's wire format (plain `requests`, no SDK:
we check bytes and shapes), reads the reply into one normalized `Reply`, compares it
with the scenario fixture's `expect:` section, then reads the mock's request log and
checks the single generation request the proxy made upstream, read in the wire format of
the backend's kind at that provider's URLs (UPSTREAM_KINDS).

Rows: each backend's first mapped model, plus each registry model on it (`[models]`), whose
capabilities may narrow the backend's. A cell is n/a only where those declared capabilities
rule it out.

    python -m scripts.matrix --help
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO
from urllib.parse import parse_qs, unquote

import requests
import yaml

from app.config import BackendConfig, Config, ConfigError, ModelEntry, load_config

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
DEFAULT_CONFIG = "config-mock.toml"
MOCK_PORT = 8888
PROXY_PORT = 9001
REQUEST_TIMEOUT = (5, 60)  # (connect, read) seconds per cell

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130

# ---------------------------------------------------------------- what we send

TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "Get the current weather for a location"
# Carries additionalProperties and $schema on purpose: Gemini's `parameters`
# rejects both, so a Gemini backend shows whether the proxy cleans them.
TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City name"}},
    "required": ["location"],
    "additionalProperties": False,
    "$schema": "http://json-schema.org/draft-07/schema#",
}
# What a Gemini client writes (the official SDK's dialect: OpenAPI subset,
# upper-case types). Sending TOOL_SCHEMA here would be an invalid Gemini
# request that a same-protocol hop rightly forwards to a 400.
GEMINI_TOOL_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {"location": {"type": "STRING", "description": "City name"}},
    "required": ["location"],
}
GEMINI_REJECTED_SCHEMA_KEYS = ("additionalProperties", "$schema")
ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")

WEATHER_QUESTION = "What's the weather in Paris?"
WEATHER_ARGS = {"location": "Paris"}
WEATHER_RESULT = "18°C and sunny"
STOP_WORD = "four"
SMALL_MAX_TOKENS = 5


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG, built here so the image bytes are known exactly."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + bytes(rgb) * width) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


RED_SQUARE_PNG = _png(8, 8, (255, 0, 0))


# Conversation parts, shared by what we send (Conversation) and what the mock
# saw upstream (UpstreamView): comparing the two is then one generic function.

@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    name: str
    arguments: Any
    ref: str | None = None  # what a result points at: the call id, or the name on Gemini


@dataclass(frozen=True)
class Result:
    content: str
    ref: str | None = None


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant" (tool results count as user turns)
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Conversation:
    """One request, protocol-neutral; each frontend renders it in its own wire format."""
    turns: tuple[Turn, ...]
    system: str | None = None
    tools: bool = False
    stream: bool = False
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    thinking: bool = False


def _ask(text: str) -> Turn:
    return Turn("user", (Text(text),))


_HELLO = (_ask("Say hello."),)


@dataclass(frozen=True)
class Capability:
    name: str
    scenario: str
    ask_mock: bool  # send X-Mock-Scenario: the mock's detection alone would not pick the scenario
    needs: frozenset[str]  # backend capabilities (config names) the cell requires
    conversation: Conversation
    expect_keys: tuple[str, ...]  # fixture `expect:` keys the cell cannot be judged without


def _cap(name: str, scenario: str, ask_mock: bool, needs: set[str], conversation: Conversation,
         expect_keys: tuple[str, ...] = ("text", "finish")) -> Capability:
    return Capability(name, scenario, ask_mock, frozenset(needs), conversation, expect_keys)


# Columns, in table order. The mock detects tools, tool results, thinking and
# images by itself (so those cells also prove the upstream request carried
# them); the rest ask for their scenario by header.
CAPABILITY_LIST: tuple[Capability, ...] = (
    _cap("text", "text", False, {"text"}, Conversation(_HELLO)),
    _cap("system", "text", False, {"text"},
         Conversation(_HELLO, system="You are a friendly assistant. Keep answers short.")),
    _cap("multi_turn", "text", False, {"text"}, Conversation((
        _ask("My name is Ada."), Turn("assistant", (Text("Nice to meet you, Ada."),)),
        _ask("What is my name?")))),
    _cap("tools", "function_calling", False, {"tools"},
         Conversation((_ask(WEATHER_QUESTION),), tools=True), ("tool_calls", "finish")),
    _cap("parallel_tools", "parallel_function_calling", True, {"tools"},
         Conversation((_ask("What's the weather in Paris and in London?"),), tools=True),
         ("tool_calls", "finish")),
    _cap("tool_result", "after_tool_result", False, {"tools"}, Conversation((
        _ask(WEATHER_QUESTION), Turn("assistant", (Call(TOOL_NAME, WEATHER_ARGS),)),
        Turn("user", (Result(WEATHER_RESULT),))), tools=True)),
    _cap("stream_text", "text", False, {"streaming"}, Conversation(_HELLO, stream=True)),
    _cap("stream_tools", "function_calling", False, {"tools", "streaming"},
         Conversation((_ask(WEATHER_QUESTION),), tools=True, stream=True), ("tool_calls", "finish")),
    _cap("stop_sequence", "stop_sequence", True, {"text"},
         Conversation((_ask("Count from one to five."),), stop=(STOP_WORD,))),
    _cap("max_tokens", "max_tokens", True, {"text"},
         Conversation((_ask("Tell me a long story about a fox."),), max_tokens=SMALL_MAX_TOKENS)),
    _cap("thinking", "thinking", False, {"thinking"},
         Conversation((_ask("What is the answer to everything? Think it over first."),), thinking=True)),
    _cap("vision", "vision", False, {"vision"},
         Conversation((Turn("user", (Text("What is in this image?"), Image("image/png", RED_SQUARE_PNG))),))),
    _cap("upstream_error", "error_429", True, {"text"}, Conversation(_HELLO), ("error",)),
)
CAPABILITIES: dict[str, Capability] = {c.name: c for c in CAPABILITY_LIST}

# ------------------------------------------------------------- normalized reply


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
                reply.problem(f"non-SSE line in stream: {_clip(line, 80)!r}")
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
                has_data = True
        if has_data:
            events.append(SSEEvent(name, "\n".join(data)))
    return events


def _json_events(events: list[SSEEvent], reply: Reply) -> list[tuple[str | None, Any]]:
    out = []
    for e in events:
        try:
            out.append((e.event, json.loads(e.data)))
        except ValueError:
            reply.problem(f"stream event is not JSON: {_clip(e.data, 80)!r}")
    return out


# --------------------------------------------------------------- frontends


def _usage(input_tokens: Any, output_tokens: Any, reasoning: Any = None) -> dict[str, int | None]:
    return {"input": input_tokens, "output": output_tokens, "reasoning": reasoning}


def _parse_arguments(raw: Any, reply: Reply, where: str) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        reply.problem(f"{where}: arguments are {type(raw).__name__}, not a JSON string")
        return raw
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        reply.problem(f"{where}: arguments are not valid JSON: {_clip(raw, 80)!r}")
        return raw


class Frontend:
    """A client of one protocol, at the wire level. One subclass per protocol;
    adding a frontend is one more subclass registered in FRONTENDS."""

    name: str = ""
    call_id: str | None = None  # id this client gives the history tool call (None: the protocol has none)
    finish_reasons: Mapping[str, str] = {}  # wire value -> normalized finish
    error_kinds: Mapping[str, str] = {}  # wire error type -> normalized kind

    def request(self, conv: Conversation, model: str) -> HttpRequest:
        raise NotImplementedError

    def read_reply(self, data: Any, model: str) -> Reply:
        raise NotImplementedError

    def read_stream(self, text: str, model: str) -> Reply:
        raise NotImplementedError

    def read_error(self, status: int, data: Any) -> Reply:
        raise NotImplementedError

    def _finish(self, raw: Any, reply: Reply) -> None:
        reply.raw_finish = raw
        reply.finish = self.finish_reasons.get(raw) if isinstance(raw, str) else None
        if reply.finish is None:
            reply.problem(f"finish reason {raw!r} is not in the {self.name} vocabulary")


class OpenAIClient(Frontend):
    name = "openai"
    call_id = "call_abc123"
    finish_reasons = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                      "content_filter": "content_filter"}
    error_kinds = {"invalid_request_error": "invalid_request", "rate_limit_exceeded": "rate_limit",
                   "rate_limit_error": "rate_limit", "requests": "rate_limit", "tokens": "rate_limit",
                   "insufficient_quota": "rate_limit", "server_error": "api_error",
                   "authentication_error": "authentication", "permission_error": "permission",
                   "not_found_error": "not_found", "service_unavailable_error": "overloaded"}

    # ---- request
    def request(self, conv: Conversation, model: str) -> HttpRequest:
        messages: list[dict] = [{"role": "system", "content": conv.system}] if conv.system else []
        for turn in conv.turns:
            messages.extend(self._messages(turn))
        body: dict[str, Any] = {"model": model, "messages": messages}
        if conv.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA}}]
        if conv.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if conv.stop:
            body["stop"] = list(conv.stop)
        if conv.max_tokens is not None:
            body["max_completion_tokens"] = conv.max_tokens
        if conv.thinking:
            body["reasoning_effort"] = "medium"
        headers = {"Authorization": "Bearer matrix-client-key"}
        return HttpRequest("/v1/chat/completions", headers, body, conv.stream)

    def _messages(self, turn: Turn) -> list[dict]:
        results = [p for p in turn.parts if isinstance(p, Result)]
        if results:
            return [{"role": "tool", "tool_call_id": self.call_id, "content": r.content} for r in results]
        calls = [p for p in turn.parts if isinstance(p, Call)]
        if turn.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(p.text for p in turn.parts if isinstance(p, Text)) or None}
            if calls:
                msg["tool_calls"] = [{"id": self.call_id, "type": "function", "function": {
                    "name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls]
            return [msg]
        if all(isinstance(p, Text) for p in turn.parts):
            return [{"role": "user", "content": "".join(p.text for p in turn.parts)}]
        return [{"role": "user", "content": [self._part(p) for p in turn.parts]}]

    @staticmethod
    def _part(part: Any) -> dict:
        if isinstance(part, Image):
            url = f"data:{part.media_type};base64,{base64.b64encode(part.data).decode()}"
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "text", "text": part.text}

    # ---- replies
    def read_reply(self, data: Any, model: str) -> Reply:
        reply = Reply()
        if data.get("object") != "chat.completion":
            reply.problem(f"object: expected 'chat.completion' got {data.get('object')!r}")
        if data.get("model") != model:
            reply.problem(f"model: expected {model!r} got {data.get('model')!r}")
        choices = data.get("choices") or []
        if len(choices) != 1:
            reply.problem(f"expected 1 choice, got {len(choices)}")
            return reply
        message = choices[0].get("message") or {}
        if message.get("role") != "assistant":
            reply.problem(f"message.role: expected 'assistant' got {message.get('role')!r}")
        reply.text = message.get("content") or ""
        reply.thinking = message.get("reasoning_content") or ""
        for i, tc in enumerate(message.get("tool_calls") or []):
            if tc.get("type") != "function":
                reply.problem(f"tool_calls[{i}].type: expected 'function' got {tc.get('type')!r}")
            fn = tc.get("function") or {}
            reply.tool_calls.append(ToolCall(tc.get("id"), fn.get("name") or "",
                                             _parse_arguments(fn.get("arguments"), reply, f"tool_calls[{i}]")))
        self._finish(choices[0].get("finish_reason"), reply)
        if data.get("usage"):
            reply.usage = self._usage(data["usage"])
        return reply

    @staticmethod
    def _usage(u: Mapping[str, Any]) -> dict[str, int | None]:
        details = u.get("completion_tokens_details") or {}
        return _usage(u.get("prompt_tokens"), u.get("completion_tokens"), details.get("reasoning_tokens"))

    def read_stream(self, text: str, model: str) -> Reply:
        reply = Reply()
        events = parse_sse(text, reply)
        if any(e.event for e in events):
            reply.problem("OpenAI stream carries event: lines")
        datas = [e.data for e in events]
        if not datas or datas[-1] != "[DONE]":
            reply.problem("stream does not end with data: [DONE]")
        if datas.count("[DONE]") > 1:
            reply.problem("data: [DONE] sent more than once")
        chunks = [obj for _, obj in _json_events([e for e in events if e.data != "[DONE]"], reply)]
        calls: dict[int, dict[str, Any]] = {}
        finish_at = usage_at = None
        seen_role = False
        ids = set()
        for i, chunk in enumerate(chunks):
            if "error" in chunk:
                reply.error = self._error_fields(200, chunk, reply)
                continue
            ids.add(chunk.get("id"))
            if chunk.get("object") != "chat.completion.chunk":
                reply.problem(f"chunk object: expected 'chat.completion.chunk' got {chunk.get('object')!r}")
            if chunk.get("model") != model:
                reply.problem(f"chunk model: expected {model!r} got {chunk.get('model')!r}")
            if chunk.get("usage"):
                if usage_at is not None:
                    reply.problem("usage sent in more than one chunk")
                usage_at = i
                reply.usage = self._usage(chunk["usage"])
                if chunk.get("choices"):
                    reply.problem("the usage chunk must have choices: []")
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    reply.problem(f"unexpected choice index {choice.get('index')}")
                delta = choice.get("delta") or {}
                if not seen_role:
                    seen_role = True
                    if delta.get("role") != "assistant":
                        reply.problem("first chunk's delta has no role 'assistant'")
                if finish_at is not None and (delta.get("content") or delta.get("tool_calls")):
                    reply.problem("content delta after the finish_reason chunk")
                reply.text += delta.get("content") or ""
                reply.thinking += delta.get("reasoning_content") or ""
                for tc in delta.get("tool_calls") or []:
                    self._tool_delta(tc, calls, reply)
                if choice.get("finish_reason") is not None:
                    if finish_at is not None:
                        reply.problem("finish_reason sent in more than one chunk")
                    finish_at = i
                    self._finish(choice["finish_reason"], reply)
        if len(ids) > 1 or None in ids or "" in ids:
            reply.problem(f"chunk ids differ or are empty: {sorted(map(str, ids))}")
        if finish_at is None and reply.error is None:
            reply.problem("no chunk carries a finish_reason")
        if usage_at is None and reply.error is None:
            reply.problem("no usage chunk although stream_options.include_usage was asked for")
        elif usage_at is not None and (usage_at != len(chunks) - 1 or (finish_at is not None and usage_at < finish_at)):
            reply.problem("the usage chunk is not the last chunk after the finish chunk")
        if sorted(calls) != list(range(len(calls))):
            reply.problem(f"tool_calls indexes are not 0..n-1: {sorted(calls)}")
        for index in sorted(calls):
            c = calls[index]
            reply.tool_calls.append(ToolCall(c["id"], c["name"],
                                             _parse_arguments(c["arguments"], reply, f"tool_calls[{index}]")))
        return reply

    @staticmethod
    def _tool_delta(tc: Mapping[str, Any], calls: dict[int, dict[str, Any]], reply: Reply) -> None:
        index = tc.get("index")
        if not isinstance(index, int):
            reply.problem("tool_calls delta without an integer index")
            return
        fn = tc.get("function") or {}
        if index not in calls:
            if not tc.get("id") or not fn.get("name"):
                reply.problem(f"tool call {index} opened without id and name")
            calls[index] = {"id": tc.get("id"), "name": fn.get("name") or "", "arguments": ""}
        elif tc.get("id") and tc["id"] != calls[index]["id"]:
            reply.problem(f"tool call {index} changed id mid-stream")
        calls[index]["arguments"] += fn.get("arguments") or ""

    # ---- errors
    def read_error(self, status: int, data: Any) -> Reply:
        reply = Reply()
        reply.error = self._error_fields(status, data, reply)
        return reply

    def _error_fields(self, status: int, data: Any, reply: Reply) -> dict[str, Any]:
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            reply.problem('error body is not {"error": {...}}')
            return {"status": status, "type": None, "kind": None, "message": None}
        missing = [k for k in ("message", "type", "param", "code") if k not in err]
        if missing:
            reply.problem(f"error envelope lacks {', '.join(missing)}")
        kind = self.error_kinds.get(err.get("type")) or self.error_kinds.get(err.get("code"))
        if kind is None:
            reply.problem(f"error type {err.get('type')!r} / code {err.get('code')!r} not in the OpenAI vocabulary")
        return {"status": status, "type": err.get("type"), "kind": kind, "message": err.get("message")}


class AnthropicClient(Frontend):
    name = "anthropic"
    call_id = "toolu_abc123"
    finish_reasons = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                      "tool_use": "tool_calls", "refusal": "content_filter"}
    error_kinds = {"invalid_request_error": "invalid_request", "authentication_error": "authentication",
                   "permission_error": "permission", "not_found_error": "not_found",
                   "request_too_large": "request_too_large", "rate_limit_error": "rate_limit",
                   "api_error": "api_error", "overloaded_error": "overloaded", "timeout_error": "timeout",
                   "billing_error": "billing"}
    DEFAULT_MAX_TOKENS = 1024
    THINKING_MAX_TOKENS, THINKING_BUDGET = 4096, 2048
    # Which delta types each content block kind may receive.
    BLOCK_DELTAS = {"text": {"text_delta", "citations_delta"}, "tool_use": {"input_json_delta"},
                    "thinking": {"thinking_delta", "signature_delta"}, "redacted_thinking": set()}

    # ---- request
    def request(self, conv: Conversation, model: str) -> HttpRequest:
        max_tokens = conv.max_tokens or (self.THINKING_MAX_TOKENS if conv.thinking else self.DEFAULT_MAX_TOKENS)
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens,
                                "messages": [self._message(t) for t in conv.turns]}
        if conv.system:
            body["system"] = conv.system
        if conv.tools:
            body["tools"] = [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": TOOL_SCHEMA}]
        if conv.stream:
            body["stream"] = True
        if conv.stop:
            body["stop_sequences"] = list(conv.stop)
        if conv.thinking:
            body["thinking"] = {"type": "enabled", "budget_tokens": self.THINKING_BUDGET}
        headers = {"x-api-key": "matrix-client-key", "anthropic-version": "2023-06-01"}
        return HttpRequest("/v1/messages", headers, body, conv.stream)

    def _message(self, turn: Turn) -> dict:
        if all(isinstance(p, Text) for p in turn.parts):
            return {"role": turn.role, "content": "".join(p.text for p in turn.parts)}
        return {"role": turn.role, "content": [self._block(p) for p in turn.parts]}

    def _block(self, part: Any) -> dict:
        if isinstance(part, Text):
            return {"type": "text", "text": part.text}
        if isinstance(part, Image):
            return {"type": "image", "source": {"type": "base64", "media_type": part.media_type,
                                                "data": base64.b64encode(part.data).decode()}}
        if isinstance(part, Call):
            return {"type": "tool_use", "id": self.call_id, "name": part.name, "input": part.arguments}
        return {"type": "tool_result", "tool_use_id": self.call_id, "content": part.content}

    # ---- replies
    def read_reply(self, data: Any, model: str) -> Reply:
        reply = Reply()
        for key, want in (("type", "message"), ("role", "assistant"), ("model", model)):
            if data.get(key) != want:
                reply.problem(f"{key}: expected {want!r} got {data.get(key)!r}")
        if not str(data.get("id", "")).startswith("msg_"):
            reply.problem(f"id: expected msg_… got {data.get('id')!r}")
        for i, block in enumerate(data.get("content") or []):
            kind = block.get("type")
            if kind == "text":
                if not block.get("text"):
                    reply.problem(f"content[{i}] is an empty text block")
                reply.text += block.get("text") or ""
            elif kind == "thinking":
                reply.thinking += block.get("thinking") or ""
            elif kind == "tool_use":
                self._tool_use(block, block.get("input"), reply, f"content[{i}]")
            elif kind != "redacted_thinking":
                reply.problem(f"content[{i}]: unexpected block type {kind!r}")
        self._finish(data.get("stop_reason"), reply)
        reply.stop_sequence = data.get("stop_sequence")
        reply.usage = self._usage(data.get("usage") or {})
        return reply

    @staticmethod
    def _tool_use(block: Mapping[str, Any], arguments: Any, reply: Reply, where: str) -> None:
        if not isinstance(arguments, dict):
            reply.problem(f"{where}: tool_use input is {type(arguments).__name__}, not an object")
        # The client sends the id back in tool_result; Anthropic refuses ids outside this pattern.
        if not ANTHROPIC_ID.fullmatch(str(block.get("id") or "")):
            reply.problem(f"{where}: tool_use id {block.get('id')!r} does not match ^[a-zA-Z0-9_-]+$")
        reply.tool_calls.append(ToolCall(block.get("id"), block.get("name") or "", arguments))

    @staticmethod
    def _usage(u: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, int | None]:
        """Total prompt = uncached + cache writes + cache reads (Anthropic reports them apart)."""
        merged = {**(base or {}), **u}
        if not isinstance(merged.get("input_tokens"), int):
            return _usage(None, merged.get("output_tokens"))
        total_in = sum(merged.get(k) or 0 for k in
                       ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        thinking = (merged.get("output_tokens_details") or {}).get("thinking_tokens")
        return _usage(total_in, merged.get("output_tokens"), thinking)

    def read_stream(self, text: str, model: str) -> Reply:
        reply = Reply()
        events = [(name, obj) for name, obj in _json_events(parse_sse(text, reply), reply)
                  if name != "ping" and obj.get("type") != "ping"]
        for name, obj in events:
            if name is None:
                reply.problem(f"Anthropic stream event without an event: line ({obj.get('type')!r})")
            elif obj.get("type") != name:
                reply.problem(f"event: {name} carries data of type {obj.get('type')!r}")
        types = [obj.get("type") for _, obj in events]
        if "error" in types:
            err = events[types.index("error")][1]
            reply.error = self._error_fields(200, err, reply)
            return reply
        if not types or types[0] != "message_start":
            reply.problem(f"stream does not start with message_start (got {types[:1]})")
        if not types or types[-1] != "message_stop":
            reply.problem(f"stream does not end with message_stop (got {types[-1:]})")
        if types.count("message_delta") != 1 or (len(types) > 1 and types[-2] != "message_delta"):
            reply.problem("expected exactly one message_delta, right before message_stop")
        start_usage: Mapping[str, Any] = {}
        blocks = _BlockTracker(self, reply)
        for _, obj in events:
            kind = obj.get("type")
            if kind == "message_start":
                message = obj.get("message") or {}
                if message.get("model") != model:
                    reply.problem(f"message_start model: expected {model!r} got {message.get('model')!r}")
                if not str(message.get("id", "")).startswith("msg_"):
                    reply.problem(f"message_start id: expected msg_… got {message.get('id')!r}")
                start_usage = message.get("usage") or {}
            elif kind in ("content_block_start", "content_block_delta", "content_block_stop"):
                blocks.feed(obj)
            elif kind == "message_delta":
                blocks.close_all("message_delta")
                delta = obj.get("delta") or {}
                self._finish(delta.get("stop_reason"), reply)
                reply.stop_sequence = delta.get("stop_sequence")
                # message_delta usage is cumulative and may repeat input counts.
                reply.usage = self._usage(obj.get("usage") or {}, start_usage)
            elif kind != "message_stop":
                reply.problem(f"unexpected event type {kind!r}")
        return reply

    # ---- errors
    def read_error(self, status: int, data: Any) -> Reply:
        reply = Reply()
        reply.error = self._error_fields(status, data, reply)
        return reply

    def _error_fields(self, status: int, data: Any, reply: Reply) -> dict[str, Any]:
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "error" or not isinstance(err, dict):
            reply.problem('error body is not {"type": "error", "error": {...}}')
            return {"status": status, "type": None, "kind": None, "message": None}
        missing = [k for k in ("type", "message") if k not in err]
        if missing:
            reply.problem(f"error envelope lacks {', '.join(missing)}")
        kind = self.error_kinds.get(err.get("type"))
        if kind is None:
            reply.problem(f"error type {err.get('type')!r} not in the Anthropic vocabulary")
        return {"status": status, "type": err.get("type"), "kind": kind, "message": err.get("message")}


class _BlockTracker:
    """Anthropic content blocks in a stream: one open at a time, indexes 0,1,2…,
    deltas of the open block's kind only, every start closed by a stop."""

    def __init__(self, client: AnthropicClient, reply: Reply):
        self.client = client
        self.reply = reply
        self.open: dict[str, Any] | None = None
        self.next_index = 0

    def feed(self, obj: Mapping[str, Any]) -> None:
        kind, index, reply = obj.get("type"), obj.get("index"), self.reply
        if kind == "content_block_start":
            if self.open is not None:
                reply.problem(f"block {index} started while block {self.open['index']} is open")
            if index != self.next_index:
                reply.problem(f"block index {index} where {self.next_index} was next")
            self.next_index = (index if isinstance(index, int) else self.next_index) + 1
            block = obj.get("content_block") or {}
            self.open = {"index": index, "block": block, "type": block.get("type"), "json": "",
                         "text": block.get("text") or ""}
            if block.get("type") == "tool_use" and block.get("input") not in ({}, None):
                reply.problem("tool_use content_block_start input is not the {} placeholder")
            if block.get("type") not in self.client.BLOCK_DELTAS:
                reply.problem(f"unexpected content block type {block.get('type')!r}")
            return
        if self.open is None or index != self.open["index"]:
            reply.problem(f"{kind} for block {index}, which is not open")
            return
        if kind == "content_block_delta":
            self._delta(obj.get("delta") or {})
        else:
            self._close()

    def _delta(self, delta: Mapping[str, Any]) -> None:
        kind, block = delta.get("type"), self.open
        if kind not in self.client.BLOCK_DELTAS.get(block["type"], set()):
            self.reply.problem(f"{kind} inside a {block['type']} block")
        if kind == "text_delta":
            block["text"] += delta.get("text") or ""
        elif kind == "thinking_delta":
            self.reply.thinking += delta.get("thinking") or ""
        elif kind == "input_json_delta":
            block["json"] += delta.get("partial_json") or ""

    def _close(self) -> None:
        block, reply = self.open, self.reply
        self.open = None
        if block["type"] == "text":
            if not block["text"]:
                reply.problem(f"block {block['index']} is an empty text block")
            reply.text += block["text"]
        elif block["type"] == "tool_use":
            arguments = _parse_arguments(block["json"], reply, f"tool_use block {block['index']}")
            self.client._tool_use(block["block"], arguments, reply, f"tool_use block {block['index']}")

    def close_all(self, where: str) -> None:
        if self.open is not None:
            self.reply.problem(f"block {self.open['index']} still open at {where}")
            self._close()


class GeminiClient(Frontend):
    name = "gemini"
    call_id = None  # Gemini calls carry no ids; results pair by name and position
    finish_reasons = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                      "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
                      "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
                      "IMAGE_SAFETY": "content_filter"}
    error_kinds = {"INVALID_ARGUMENT": "invalid_request", "FAILED_PRECONDITION": "invalid_request",
                   "UNAUTHENTICATED": "authentication", "PERMISSION_DENIED": "permission",
                   "NOT_FOUND": "not_found", "RESOURCE_EXHAUSTED": "rate_limit", "INTERNAL": "api_error",
                   "UNAVAILABLE": "overloaded", "DEADLINE_EXCEEDED": "timeout"}
    THINKING_BUDGET = 2048

    # ---- request
    def request(self, conv: Conversation, model: str) -> HttpRequest:
        body: dict[str, Any] = {"contents": [self._content(t) for t in conv.turns]}
        if conv.system:
            body["systemInstruction"] = {"parts": [{"text": conv.system}]}
        if conv.tools:
            body["tools"] = [{"functionDeclarations": [{
                "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": GEMINI_TOOL_SCHEMA}]}]
        config: dict[str, Any] = {}
        if conv.stop:
            config["stopSequences"] = list(conv.stop)
        if conv.max_tokens is not None:
            config["maxOutputTokens"] = conv.max_tokens
        if conv.thinking:
            config["thinkingConfig"] = {"thinkingBudget": self.THINKING_BUDGET, "includeThoughts": True}
        if config:
            body["generationConfig"] = config
        action = "streamGenerateContent?alt=sse" if conv.stream else "generateContent"
        return HttpRequest(f"/v1beta/models/{model}:{action}", {"x-goog-api-key": "matrix-client-key"},
                           body, conv.stream)

    def _content(self, turn: Turn) -> dict:
        return {"role": "model" if turn.role == "assistant" else "user",
                "parts": [self._part(p) for p in turn.parts]}

    @staticmethod
    def _part(part: Any) -> dict:
        if isinstance(part, Text):
            return {"text": part.text}
        if isinstance(part, Image):
            return {"inlineData": {"mimeType": part.media_type, "data": base64.b64encode(part.data).decode()}}
        if isinstance(part, Call):
            return {"functionCall": {"name": part.name, "args": part.arguments}}
        return {"functionResponse": {"name": TOOL_NAME, "response": {"output": part.content}}}

    # ---- replies
    def read_reply(self, data: Any, model: str) -> Reply:
        reply = Reply()
        self._model_version(data, model, reply)
        candidates = data.get("candidates") or []
        if len(candidates) != 1:
            reply.problem(f"expected 1 candidate, got {len(candidates)}")
            return reply
        self._parts(candidates[0], reply)
        self._gemini_finish(candidates[0].get("finishReason"), reply)
        if data.get("usageMetadata"):
            reply.usage = self._usage(data["usageMetadata"])
        return reply

    @staticmethod
    def _model_version(data: Mapping[str, Any], model: str, reply: Reply) -> None:
        if "modelVersion" in data and data["modelVersion"] != model:
            reply.problem(f"modelVersion: expected {model!r} got {data['modelVersion']!r}")

    @staticmethod
    def _parts(candidate: Mapping[str, Any], reply: Reply) -> None:
        content = candidate.get("content") or {}
        if content and content.get("role") not in (None, "model"):
            reply.problem(f"candidate content role: expected 'model' got {content.get('role')!r}")
        for i, part in enumerate(content.get("parts") or []):
            if "functionCall" in part:
                fc = part["functionCall"]
                if not isinstance(fc.get("args", {}), dict):
                    reply.problem(f"parts[{i}].functionCall.args is not an object")
                reply.tool_calls.append(ToolCall(fc.get("id"), fc.get("name") or "", fc.get("args", {})))
            elif part.get("thought"):
                reply.thinking += part.get("text") or ""
            elif "text" in part:
                reply.text += part["text"]

    def _gemini_finish(self, raw: Any, reply: Reply) -> None:
        self._finish(raw, reply)
        # Gemini says STOP for a function-call turn: the parts tell tool calls apart.
        if raw == "STOP" and reply.tool_calls:
            reply.finish = "tool_calls"

    @staticmethod
    def _usage(u: Mapping[str, Any]) -> dict[str, int | None]:
        thoughts = u.get("thoughtsTokenCount")
        output = None if u.get("candidatesTokenCount") is None and thoughts is None else \
            (u.get("candidatesTokenCount") or 0) + (thoughts or 0)
        return _usage(u.get("promptTokenCount"), output, thoughts)

    def read_stream(self, text: str, model: str) -> Reply:
        reply = Reply()
        events = parse_sse(text, reply)
        if any(e.event for e in events):
            reply.problem("Gemini stream carries event: lines")
        if any(e.data == "[DONE]" for e in events):
            reply.problem("Gemini stream carries data: [DONE]")
        chunks = [obj for _, obj in _json_events([e for e in events if e.data != "[DONE]"], reply)]
        last_finish = None
        for i, chunk in enumerate(chunks):
            if "error" in chunk:
                reply.error = self._error_fields(200, chunk, reply)
                continue
            self._model_version(chunk, model, reply)
            candidates = chunk.get("candidates") or []
            for candidate in candidates:
                self._parts(candidate, reply)
                if "finishReason" in candidate:
                    if i != len(chunks) - 1 or candidate["finishReason"] is None:
                        reply.problem(f"chunk {i} of {len(chunks)} carries finishReason "
                                      f"{candidate['finishReason']!r}: only the last chunk may, and not null")
                    last_finish = candidate["finishReason"]
            if chunk.get("usageMetadata"):
                reply.usage = self._usage(chunk["usageMetadata"])  # running totals: the last one counts
        if reply.error is None:
            if last_finish is None:
                reply.problem("no chunk carries a finishReason")
            self._gemini_finish(last_finish, reply)
        return reply

    # ---- errors
    def read_error(self, status: int, data: Any) -> Reply:
        reply = Reply()
        reply.error = self._error_fields(status, data, reply)
        return reply

    def _error_fields(self, status: int, data: Any, reply: Reply) -> dict[str, Any]:
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            reply.problem('error body is not {"error": {...}}')
            return {"status": status, "type": None, "kind": None, "message": None}
        missing = [k for k in ("code", "message", "status") if k not in err]
        if missing:
            reply.problem(f"error envelope lacks {', '.join(missing)}")
        if status >= 400 and err.get("code") != status:
            reply.problem(f"error.code {err.get('code')!r} differs from HTTP status {status}")
        kind = self.error_kinds.get(err.get("status"))
        if kind is None:
            reply.problem(f"error status {err.get('status')!r} not in the Gemini vocabulary")
        return {"status": status, "type": err.get("status"), "kind": kind, "message": err.get("message")}


FRONTENDS: dict[str, Frontend] = {c.name: c() for c in (OpenAIClient, AnthropicClient, GeminiClient)}

# ------------------------------------------------------ upstream (mock log)


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str | None
    schema: Any
    channel: str  # where the schema was: parameters / input_schema / parametersJsonSchema


@dataclass
class UpstreamView:
    """The request the proxy sent upstream, in the same terms as a Conversation."""
    model: str | None = None
    stream: bool = False
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)
    tools: list[ToolDef] = field(default_factory=list)
    stop: list[str] | None = None
    max_tokens: int | None = None
    thinking: str | None = None  # how thinking was enabled, None when it was not
    problems: list[str] = field(default_factory=list)  # protocol-specific shape faults


def _b64decode(data: Any) -> bytes | None:
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4))
    except ValueError:
        return None


def _text_of(content: Any) -> str:
    """String content, or the text of a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") in (None, "text"))
    return ""


def _schema_types(schema: Any) -> Iterator[Any]:
    if isinstance(schema, dict):
        if "type" in schema:
            yield schema["type"]
        for value in schema.values():
            yield from _schema_types(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _schema_types(value)


def _schema_keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for v in schema.values() for k in _schema_keys(v)}
    if isinstance(schema, list):
        return {k for v in schema for k in _schema_keys(v)}
    return set()


def _json_schema_types_problem(schema: Any, where: str) -> str | None:
    bad = sorted({str(t) for t in _schema_types(schema) if not (isinstance(t, str) and t == t.lower())})
    return f"{where} has non-JSON-Schema types {bad}" if bad else None


class OpenAIUpstream:
    """The OpenAI Chat wire; `place` reads what the URL says (here: nothing but the path)."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=bool(body.get("stream")))
        self.place(v, body, path, query)
        messages = body.get("messages") or []
        leading = 0
        while leading < len(messages) and messages[leading].get("role") in ("system", "developer"):
            leading += 1
        if leading:
            v.system = "\n\n".join(_text_of(m.get("content")) for m in messages[:leading])
        if any(m.get("role") in ("system", "developer") for m in messages[leading:]):
            v.problems.append("a system message is not at the start of messages")
        for m in messages[leading:]:
            self._turn(m, v)
        v.tools = [ToolDef(fn.get("name"), fn.get("description"), fn.get("parameters"), "parameters")
                   for t in body.get("tools") or [] for fn in [t.get("function") or {}]]
        for t in body.get("tools") or []:
            if t.get("type") != "function":
                v.problems.append(f"tool type {t.get('type')!r} is not 'function'")
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool parameters")]))
        stop = body.get("stop")
        v.stop = [stop] if isinstance(stop, str) else stop
        v.max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
        v.thinking = f"reasoning_effort={effort}" if effort and effort != "none" else None
        if v.stream and not (body.get("stream_options") or {}).get("include_usage"):
            v.problems.append("streamed upstream request did not ask for usage (stream_options.include_usage)")
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/v1/chat/completions":
            v.problems.append(f"path {path!r} is not /v1/chat/completions")

    @staticmethod
    def _turn(m: Mapping[str, Any], v: UpstreamView) -> None:
        role = m.get("role")
        if role == "tool":
            result = Result(_text_of(m.get("content")), m.get("tool_call_id"))
            if v.turns and v.turns[-1].role == "user" and all(isinstance(p, Result) for p in v.turns[-1].parts):
                v.turns[-1] = Turn("user", v.turns[-1].parts + (result,))  # consecutive tool messages: one turn
            else:
                v.turns.append(Turn("user", (result,)))
            return
        if role not in ("user", "assistant"):
            v.problems.append(f"unexpected message role {role!r}")
        parts: list[Any] = []
        content = m.get("content")
        for p in content if isinstance(content, list) else ([{"type": "text", "text": content}] if content else []):
            if p.get("type") == "text":
                parts.append(Text(p.get("text") or ""))
            elif p.get("type") == "image_url":
                url = (p.get("image_url") or {}).get("url") or ""
                head, _, data = url.partition(",")
                media = head.removeprefix("data:").removesuffix(";base64") if url.startswith("data:") else url
                parts.append(Image(media, _b64decode(data) or b""))
            else:
                v.problems.append(f"unexpected content part {p.get('type')!r}")
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            raw = fn.get("arguments")
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
                if not isinstance(raw, str):
                    v.problems.append("assistant tool_calls arguments are not a JSON string")
            except ValueError:
                args = raw
            parts.append(Call(fn.get("name"), args, tc.get("id")))
        v.turns.append(Turn(role, tuple(parts)))


class AnthropicUpstream:
    """The Anthropic Messages wire at Anthropic's URL."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=bool(body.get("stream")))
        self.place(v, body, path, query)
        if "system" in body:
            v.system = _text_of(body["system"])
        for i, m in enumerate(body.get("messages") or []):
            v.turns.append(self._turn(i, m, v))
        v.tools = [ToolDef(t.get("name"), t.get("description"), t.get("input_schema"), "input_schema")
                   for t in body.get("tools") or []]
        for tool in v.tools:
            if not isinstance(tool.schema, dict) or tool.schema.get("type") != "object":
                v.problems.append("tool input_schema root type is not 'object'")
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool input_schema")]))
        v.stop = body.get("stop_sequences")
        v.max_tokens = body.get("max_tokens")
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled":
            budget, limit = thinking.get("budget_tokens"), body.get("max_tokens")
            if not isinstance(budget, int) or budget < 1024 or not isinstance(limit, int) or budget >= limit:
                v.problems.append(f"thinking budget_tokens {budget} must be >= 1024 and < max_tokens {limit}")
            v.thinking = f"thinking enabled, budget {budget}"
        elif thinking.get("type") == "adaptive":
            v.thinking = "thinking adaptive"
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/v1/messages":
            v.problems.append(f"path {path!r} is not /v1/messages")

    @staticmethod
    def _turn(i: int, m: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = m.get("role")
        if role not in ("user", "assistant"):
            v.problems.append(f"messages[{i}] has role {role!r}")
        content = m.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        parts: list[Any] = []
        seen_other = False
        for block in blocks:
            kind = block.get("type")
            if kind == "tool_result":
                if seen_other:
                    v.problems.append(f"messages[{i}]: tool_result blocks are not first in the message")
                parts.append(Result(_text_of(block.get("content")), block.get("tool_use_id")))
                continue
            seen_other = True
            if kind == "text":
                if not (block.get("text") or "").strip():
                    v.problems.append(f"messages[{i}] has an empty text block")
                parts.append(Text(block.get("text") or ""))
            elif kind == "image":
                source = block.get("source") or {}
                if source.get("type") != "base64":
                    v.problems.append(f"messages[{i}] image source is {source.get('type')!r}, not base64")
                parts.append(Image(source.get("media_type"), _b64decode(source.get("data")) or b""))
            elif kind == "tool_use":
                parts.append(Call(block.get("name"), block.get("input"), block.get("id")))
            elif kind not in ("thinking", "redacted_thinking"):
                v.problems.append(f"messages[{i}] has an unexpected block {kind!r}")
        return Turn(role, tuple(parts))


class GeminiUpstream:
    """The Gemini wire at Google AI's URL: the model and the streaming choice are in the path."""
    url_path = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)")
    shape = "/v1beta/models/<model>"

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView()
        match = self.url_path.fullmatch(path)
        if match is None or match["method"] not in ("generateContent", "streamGenerateContent"):
            v.problems.append(f"path {path!r} is not {self.shape}:generateContent|streamGenerateContent")
        else:
            v.model, v.stream = match["model"], match["method"] == "streamGenerateContent"
        if v.stream and query.get("alt") != ["sse"]:
            v.problems.append(f"streamGenerateContent without alt=sse (query {dict(query)})")
        if "systemInstruction" in body:
            v.system = "".join(p.get("text") or "" for p in (body["systemInstruction"] or {}).get("parts") or [])
        for i, content in enumerate(body.get("contents") or []):
            v.turns.append(self._turn(i, content, v))
        for t in body.get("tools") or []:
            for fd in t.get("functionDeclarations") or []:
                channel = "parametersJsonSchema" if "parametersJsonSchema" in fd else "parameters"
                v.tools.append(ToolDef(fd.get("name"), fd.get("description"), fd.get(channel), channel))
        for tool in v.tools:
            # Gemini's `parameters` (OpenAPI subset) rejects both keys; its JSON-Schema channel rejects $schema.
            rejected = GEMINI_REJECTED_SCHEMA_KEYS if tool.channel == "parameters" else ("$schema",)
            left = sorted(set(rejected) & _schema_keys(tool.schema))
            if left:
                v.problems.append(f"Gemini tool {tool.channel} still has {', '.join(left)}")
        config = body.get("generationConfig") or {}
        v.stop = config.get("stopSequences")
        v.max_tokens = config.get("maxOutputTokens")
        thinking = config.get("thinkingConfig") or {}
        if thinking.get("thinkingBudget") not in (None, 0) or thinking.get("thinkingLevel"):
            v.thinking = f"thinkingConfig {json.dumps(thinking, sort_keys=True)}"
            if not thinking.get("includeThoughts"):
                v.problems.append("thinkingConfig.includeThoughts is not true: the thought text cannot come back")
        return v

    @staticmethod
    def _turn(i: int, content: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = content.get("role")
        if role not in ("user", "model"):
            v.problems.append(f"contents[{i}] has role {role!r}")
        parts: list[Any] = []
        for part in content.get("parts") or []:
            if "text" in part:
                if not part["text"]:
                    v.problems.append(f"contents[{i}] has an empty text part")
                parts.append(Text(part["text"]))
            elif "inlineData" in part:
                blob = part["inlineData"] or {}
                parts.append(Image(blob.get("mimeType"), _b64decode(blob.get("data")) or b""))
            elif "functionCall" in part:
                fc = part["functionCall"] or {}
                parts.append(Call(fc.get("name"), fc.get("args"), fc.get("name")))
            elif "functionResponse" in part:
                fr = part["functionResponse"] or {}
                if not isinstance(fr.get("response"), dict):
                    v.problems.append(f"contents[{i}] functionResponse.response is not an object")
                parts.append(Result(json.dumps(fr.get("response"), ensure_ascii=False), fr.get("name")))
            else:
                v.problems.append(f"contents[{i}] has an unexpected part {sorted(part)}")
        return Turn("assistant" if role == "model" else "user", tuple(parts))


# Vertex AI's model URLs (both publishers): /v1/projects/{p}/locations/{l}/publishers/{pub}/models/{m}:{method}
_VERTEX_PATH = r"/v1/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/publishers/%s/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)"


class AzureUpstream(OpenAIUpstream):
    """The OpenAI wire at Azure's URLs: the deployments form names the model in the path
    and needs an api-version; the v1 form names it in the body."""
    url_path = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        match = self.url_path.fullmatch(path)
        if match is not None:
            v.model = unquote(match["deployment"])
            if not query.get("api-version"):
                v.problems.append("Azure deployments URL without api-version")
            if body.get("model") not in (None, v.model):
                v.problems.append(_differ("body model beside the deployment", v.model, body.get("model")))
        elif path != "/openai/v1/chat/completions":
            v.problems.append(f"path {path!r} is neither /openai/deployments/<d>/chat/completions nor "
                              "/openai/v1/chat/completions")


class VertexAnthropicUpstream(AnthropicUpstream):
    """The Messages wire on Vertex: the model (with its @version) and streaming in the path,
    no `model` in the body, `anthropic_version` in it."""
    url_path = re.compile(_VERTEX_PATH % "anthropic")

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        match = self.url_path.fullmatch(path)
        if match is None or match["method"] not in ("rawPredict", "streamRawPredict"):
            v.problems.append(f"path {path!r} is not a Vertex …/publishers/anthropic/models/<m>:rawPredict|streamRawPredict")
            return
        v.model = unquote(match["model"])
        if v.stream != (match["method"] == "streamRawPredict"):
            v.problems.append(f"body stream {v.stream} does not match :{match['method']}")
        if "model" in body:
            v.problems.append("Vertex Claude body carries model (it belongs in the URL)")
        if not body.get("anthropic_version"):
            v.problems.append("Vertex Claude body has no anthropic_version")


class VertexGeminiUpstream(GeminiUpstream):
    url_path = re.compile(_VERTEX_PATH % "google")
    shape = "/v1/projects/<p>/locations/<l>/publishers/google/models/<model>"


class BedrockUpstream:
    """The Converse wire: the model and streaming in the path (`/model/{id}/converse[-stream]`),
    blocks keyed by kind, images as base64 bytes, Claude's thinking in additionalModelRequestFields."""
    url_path = re.compile(r"/model/(?P<model>.+)/(?P<action>converse|converse-stream)")

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView()
        match = self.url_path.fullmatch(path)
        if match is None:
            v.problems.append(f"path {path!r} is not /model/<model id>/converse|converse-stream")
        else:
            v.model, v.stream = unquote(match["model"]), match["action"] == "converse-stream"
        if "stream" in body or "modelId" in body:
            v.problems.append("Converse body carries stream/modelId (they belong in the path)")
        system = body.get("system") or []
        if system:
            v.system = "".join(block.get("text") or "" for block in system)
            if any(not (block.get("text") or "").strip() for block in system if "text" in block):
                v.problems.append("a system block has blank text")
        for i, m in enumerate(body.get("messages") or []):
            v.turns.append(self._turn(i, m, v))
        tool_config = body.get("toolConfig") or {}
        for t in tool_config.get("tools") or []:
            spec = t.get("toolSpec") or {}
            v.tools.append(ToolDef(spec.get("name"), spec.get("description"),
                                   (spec.get("inputSchema") or {}).get("json"), "inputSchema.json"))
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool inputSchema.json")]))
        inference = body.get("inferenceConfig") or {}
        v.stop = inference.get("stopSequences")
        v.max_tokens = inference.get("maxTokens")
        fields = body.get("additionalModelRequestFields") or {}
        thinking = fields.get("thinking") or {}
        if thinking.get("type") == "enabled":
            budget, limit = thinking.get("budget_tokens"), inference.get("maxTokens")
            if not isinstance(budget, int) or budget < 1024 or (limit is not None and budget >= limit):
                v.problems.append(f"thinking budget_tokens {budget} must be >= 1024 and < maxTokens {limit}")
            if "anthropic.claude" not in (v.model or ""):
                v.problems.append(f"Claude's thinking field sent to {v.model}")
            v.thinking = f"additionalModelRequestFields.thinking enabled, budget {budget}"
        return v

    @staticmethod
    def _turn(i: int, m: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = m.get("role")
        if role not in ("user", "assistant"):
            v.problems.append(f"messages[{i}] has role {role!r}")
        parts: list[Any] = []
        seen_other = False
        for block in m.get("content") or []:
            if "toolResult" in block:
                if seen_other:
                    v.problems.append(f"messages[{i}]: toolResult blocks are not first in the message")
                result = block["toolResult"] or {}
                text = "".join(c.get("text") or json.dumps(c.get("json"), ensure_ascii=False)
                               for c in result.get("content") or [] if "text" in c or "json" in c)
                parts.append(Result(text, result.get("toolUseId")))
                continue
            seen_other = True
            if "text" in block:
                if not block["text"].strip():
                    v.problems.append(f"messages[{i}] has a blank text block")
                parts.append(Text(block["text"]))
            elif "image" in block:
                image = block["image"] or {}
                source = image.get("source") or {}
                if "bytes" not in source:
                    v.problems.append(f"messages[{i}] image source is {sorted(source)}, not bytes")
                parts.append(Image(f"image/{image.get('format')}", _b64decode(source.get("bytes")) or b""))
            elif "toolUse" in block:
                use = block["toolUse"] or {}
                if not isinstance(use.get("input"), dict):
                    v.problems.append(f"messages[{i}] toolUse input is not a JSON object")
                parts.append(Call(use.get("name"), use.get("input"), use.get("toolUseId")))
            elif "reasoningContent" not in block:
                v.problems.append(f"messages[{i}] has an unexpected block {sorted(block)}")
        return Turn(role, tuple(parts))


@dataclass(frozen=True)
class UpstreamKind:
    """What the matrix knows of a backend kind: the provider name the mock logs its
    calls under, the scenario fixtures it replays, and the reader of its requests."""
    mock_provider: str
    scenarios: str  # scenarios/<folder>
    reader: Any  # an *Upstream with view(body, path, query) -> UpstreamView


UPSTREAM_KINDS: dict[str, UpstreamKind] = {
    "openai": UpstreamKind("openai", "openai", OpenAIUpstream()),
    "anthropic": UpstreamKind("anthropic", "anthropic", AnthropicUpstream()),
    "gemini": UpstreamKind("gemini", "gemini", GeminiUpstream()),
    "azure_openai": UpstreamKind("azure_openai", "openai", AzureUpstream()),
    "vertex_gemini": UpstreamKind("vertex_gemini", "gemini", VertexGeminiUpstream()),
    "vertex_anthropic": UpstreamKind("vertex_anthropic", "anthropic", VertexAnthropicUpstream()),
    "bedrock_converse": UpstreamKind("bedrock", "bedrock", BedrockUpstream()),
}
# The mock's calls that are not generation calls: a token fetch is part of the exchange, not a second request.
NOT_GENERATION = frozenset({("POST", "/token")})

# ---------------------------------------------------------------- checks


class FixtureError(Exception):
    pass


@lru_cache(maxsize=None)
def load_expect(protocol: str, scenario: str) -> Mapping[str, Any]:
    """The `expect:` section of scenarios/<protocol>/<scenario>.yaml (after its `base:` chain)."""
    expect = _fixture(SCENARIOS / protocol, scenario, ()).get("expect")
    if not isinstance(expect, dict):
        raise FixtureError(f"fixture scenarios/{protocol}/{scenario}.yaml has no expect: section")
    return expect


def _fixture(folder: Path, name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A fixture mapping with its `base:` fixture's keys underneath (own keys win)."""
    path = folder / f"{name}.yaml"
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if name in seen:
        raise FixtureError(f"fixture {where}: base cycle {' -> '.join(seen + (name,))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise FixtureError(f"fixture {where} is missing") from None
    except yaml.YAMLError as e:
        raise FixtureError(f"fixture {where} is not valid YAML: {_clip(str(e), 120)}") from None
    if not isinstance(data, dict):
        raise FixtureError(f"fixture {where} is not a mapping")
    if isinstance(data.get("base"), str):
        data = {**_fixture(folder, data["base"], seen + (name,)), **data}
    return data


def _differ(what: str, expected: Any, got: Any) -> str:
    return f"{what}: expected {_clip(repr(expected), 140)} got {_clip(repr(got), 140)}"


def check_reply(reply: Reply, expect: Mapping[str, Any], frontend: Frontend, conv: Conversation,
                headers: Mapping[str, str]) -> list[str]:
    """What the client got, against the fixture's expect: section."""
    problems = list(reply.problems)
    if "error" in expect:
        return problems + _check_error(reply, expect["error"], headers)
    if reply.error is None and reply.status != 200:
        problems.append(_differ("HTTP status", 200, reply.status))
    if reply.error is not None:
        return problems + [f"HTTP {reply.status} {reply.error.get('type')}: {_clip(str(reply.error.get('message')), 200)}"]
    if "text" in expect and reply.text != expect["text"]:
        problems.append(_differ("text", expect["text"], reply.text))
    if reply.thinking != expect.get("thinking", ""):  # none expected: none may be made up
        problems.append(_differ("thinking", expect.get("thinking", ""), reply.thinking))
    problems += _check_tool_calls(reply.tool_calls, expect.get("tool_calls"), frontend)
    if "finish" in expect and reply.finish != expect["finish"]:
        problems.append(_differ("finish", expect["finish"], f"{reply.finish} ({reply.raw_finish})"))
    if reply.stop_sequence is not None and reply.stop_sequence not in conv.stop:
        problems.append(_differ("stop_sequence", list(conv.stop), reply.stop_sequence))
    problems += _check_usage(reply.usage, expect.get("usage"))
    return problems


def _check_tool_calls(got: list[ToolCall], expected: Any, frontend: Frontend) -> list[str]:
    expected = expected or []
    want = [(c.get("name"), c.get("arguments")) for c in expected]
    have = [(c.name, c.arguments) for c in got]
    if want != have:
        return [_differ("tool_calls", want, have)]
    if frontend.call_id is None:
        return []  # the protocol has no call ids
    ids = [c.id for c in got]
    if any(not i for i in ids):
        return [f"tool call ids missing: {ids}"]
    if len(set(ids)) != len(ids):
        return [f"tool call ids not unique: {ids}"]
    return []


def _check_usage(got: Mapping[str, Any] | None, expected: Any) -> list[str]:
    if not expected:
        return []
    if got is None:
        return [_differ("usage", dict(expected), None)]
    problems = []
    for key in ("input", "output", "reasoning"):
        if key not in expected or (key == "reasoning" and got.get(key) is None):
            continue  # reasoning is checked only where the frontend reports it
        if got.get(key) != expected[key]:
            problems.append(_differ(f"usage.{key}", expected[key], got.get(key)))
    return problems


def _check_error(reply: Reply, expected: Mapping[str, Any], headers: Mapping[str, str]) -> list[str]:
    if reply.error is None:
        return [f"expected an error reply, got HTTP {reply.status} with text {_clip(repr(reply.text), 60)}"]
    problems = []
    if reply.status != expected.get("status"):
        problems.append(_differ("status", expected.get("status"), reply.status))
    want_kind = _error_kind(expected.get("type"))
    if want_kind and reply.error.get("kind") != want_kind:
        problems.append(_differ("error kind", want_kind, f"{reply.error.get('kind')} ({reply.error.get('type')})"))
    retry = expected.get("retry_after")
    if retry is not None and headers.get("Retry-After") != str(retry):
        problems.append(_differ("Retry-After header", str(retry), headers.get("Retry-After")))
    return problems


def _error_kind(wire_type: Any) -> str | None:
    """A fixture names the error kind, or a type in its provider's vocabulary; read either."""
    kinds = {kind for frontend in FRONTENDS.values() for kind in frontend.error_kinds.values()}
    if wire_type in kinds:
        return wire_type
    for frontend in FRONTENDS.values():
        if wire_type in frontend.error_kinds:
            return frontend.error_kinds[wire_type]
    return None


def check_upstream(log: list[Mapping[str, Any]], backend: BackendConfig, upstream_model: str,
                   capability: Capability) -> list[str]:
    """The one generation request the mock saw, against what the conversation says it must carry."""
    log = [e for e in log if (e.get("method"), e.get("path")) not in NOT_GENERATION]
    if len(log) != 1:
        seen = ", ".join(f"{e.get('provider')} {e.get('method')} {e.get('path')}" for e in log)
        return [f"mock saw {len(log)} upstream requests, expected exactly 1" + (f" ({seen})" if seen else "")]
    entry = log[0]
    kind = UPSTREAM_KINDS.get(backend.kind)
    if kind is None:
        return [f"the matrix cannot read requests of backend kind {backend.kind!r} (add it to UPSTREAM_KINDS)"]
    problems = []
    if entry.get("provider") != kind.mock_provider:
        return [_differ("upstream provider", kind.mock_provider, entry.get("provider"))]
    scenario = str(entry.get("scenario") or "").rpartition("/")[2]
    if scenario != capability.scenario:
        problems.append(_differ("mock scenario", capability.scenario, entry.get("scenario")))
    body = entry.get("body")
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            return problems + ["upstream body is not JSON"]
    view = kind.reader.view(body or {}, str(entry.get("path") or ""), _query(entry.get("query")))
    return problems + view.problems + _compare_view(view, capability.conversation, upstream_model)


def _query(query: Any) -> dict[str, list[str]]:
    if isinstance(query, str):
        return parse_qs(query.lstrip("?"))
    if isinstance(query, dict):
        return {k: v if isinstance(v, list) else [str(v)] for k, v in query.items()}
    return {}


def _compare_view(view: UpstreamView, conv: Conversation, upstream_model: str) -> list[str]:
    problems = []
    if view.model != upstream_model:
        problems.append(_differ("upstream model", upstream_model, view.model))
    if view.stream != conv.stream:
        problems.append(_differ("upstream stream", conv.stream, view.stream))
    if (view.system or None) != conv.system:
        problems.append(_differ("upstream system", conv.system, view.system))
    problems += _compare_turns(conv.turns, view.turns)
    if conv.tools:
        problems += _compare_tools(view.tools)
    if conv.stop and view.stop != list(conv.stop):
        problems.append(_differ("upstream stop sequences", list(conv.stop), view.stop))
    if conv.max_tokens is not None and view.max_tokens != conv.max_tokens:
        problems.append(_differ("upstream max tokens", conv.max_tokens, view.max_tokens))
    if conv.thinking and view.thinking is None:
        problems.append("upstream request did not enable thinking")
    return problems


def _compare_turns(expected: Sequence[Turn], got: Sequence[Turn]) -> list[str]:
    want_roles, have_roles = [t.role for t in expected], [t.role for t in got]
    if want_roles != have_roles:
        return [_differ("upstream history roles", want_roles, have_roles)]
    problems = []
    for i, (want, have) in enumerate(zip(expected, got)):
        problems += _compare_parts(i, want, have, got[i - 1] if i else None)
    return problems


def _of(turn: Turn, kind: type) -> list[Any]:
    return [p for p in turn.parts if isinstance(p, kind)]


def _compare_parts(i: int, want: Turn, have: Turn, previous: Turn | None) -> list[str]:
    problems = []
    want_text, have_text = "".join(p.text for p in _of(want, Text)), "".join(p.text for p in _of(have, Text))
    if want_text != have_text:
        problems.append(_differ(f"upstream turn {i} text", want_text, have_text))
    want_images = [(p.media_type, p.data) for p in _of(want, Image)]
    have_images = [(p.media_type, p.data) for p in _of(have, Image)]
    if want_images != have_images:
        problems.append(_differ(f"upstream turn {i} images", [(m, f"{len(d)} bytes PNG") for m, d in want_images],
                                [(m, f"{len(d)} bytes" + (" (same bytes)" if d == RED_SQUARE_PNG else ""))
                                 for m, d in have_images]))
    want_calls = [(c.name, c.arguments) for c in _of(want, Call)]
    have_calls = [(c.name, c.arguments) for c in _of(have, Call)]
    if want_calls != have_calls:
        problems.append(_differ(f"upstream turn {i} tool calls", want_calls, have_calls))
    if any(not c.ref for c in _of(have, Call)):
        problems.append(f"upstream turn {i}: a tool call has no id")
    results = _of(have, Result)
    if len(results) != len(_of(want, Result)):
        problems.append(_differ(f"upstream turn {i} tool results", len(_of(want, Result)), len(results)))
    call_refs = [c.ref for c in _of(previous, Call)] if previous else []
    for r, w in zip(results, _of(want, Result)):
        if w.content not in r.content:
            problems.append(_differ(f"upstream turn {i} tool result", w.content, r.content))
        if r.ref not in call_refs:
            problems.append(f"upstream turn {i}: tool result answers {r.ref!r}, previous turn's calls are {call_refs}")
    return problems


def _compare_tools(tools: list[ToolDef]) -> list[str]:
    if [t.name for t in tools] != [TOOL_NAME]:
        return [_differ("upstream tools", [TOOL_NAME], [t.name for t in tools])]
    tool = tools[0]
    problems = []
    if tool.description != TOOL_DESCRIPTION:
        problems.append(_differ("upstream tool description", TOOL_DESCRIPTION, tool.description))
    schema = tool.schema if isinstance(tool.schema, dict) else {}
    location = (schema.get("properties") or {}).get("location") or {}
    if str(location.get("type", "")).lower() != "string" or location.get("description") != "City name":
        problems.append(_differ("upstream tool schema location", TOOL_SCHEMA["properties"]["location"], location))
    if schema.get("required") != ["location"]:
        problems.append(_differ("upstream tool schema required", ["location"], schema.get("required")))
    return problems


# ----------------------------------------------------------------- running


@dataclass
class Cell:
    frontend: str
    backend: str
    capability: str
    status: str  # pass | fail | n/a
    reason: str | None = None
    detail: str | None = None  # the exchange, for -v (not in the JSON report)
    model: str | None = None  # a registry model with capabilities of its own; None: the backend's first model

    @property
    def row(self) -> str:
        return f"{self.frontend} -> {self.backend}" + (f" ({self.model})" if self.model else "")

    def to_json(self) -> dict[str, Any]:
        return {"frontend": self.frontend, "backend": self.backend, "model": self.model,
                "capability": self.capability, "status": self.status, "reason": self.reason}


def backend_rows(config: Config, backend: BackendConfig) -> list[ModelEntry | None]:
    """The models that drive a backend's rows: its first mapped model (None here), then
    each registry model on it (`[models]`), whose capabilities may narrow the backend's
    (a model family that lacks one, behind the same backend)."""
    entries = [m for m in config.models.values() if m.backend == backend.name]
    return ([None] if backend.model_mapping or not entries else []) + entries


def not_applicable(backend: BackendConfig, capability: Capability, model: ModelEntry | None = None) -> str | None:
    """Why the backend (or the registry model on it) cannot serve the capability, or None
    when it can. Only declared capabilities count; declaring none ("auto") can do anything."""
    if model is not None and model.capabilities:
        if capability.needs <= model.capabilities:
            return None
        missing = sorted(capability.needs - model.capabilities)
        return f"model '{model.name}' (backend '{backend.name}') does not declare {', '.join(missing)} in its capabilities"
    if backend.has(capability.needs):
        return None
    missing = sorted(capability.needs - backend.capabilities)
    return f"backend '{backend.name}' does not declare {', '.join(missing)} in its capabilities"


class Matrix:
    """Runs cells against a proxy and a mock that are already up."""

    def __init__(self, proxy_url: str, mock_url: str):
        self.proxy_url = proxy_url.rstrip("/")
        self.mock_url = mock_url.rstrip("/")
        self.session = requests.Session()

    def run_cell(self, frontend: Frontend, backend: BackendConfig, capability: Capability,
                 model: ModelEntry | None = None) -> Cell:
        cell = Cell(frontend.name, backend.name, capability.name, "n/a", model=model.name if model else None)
        cell.reason = not_applicable(backend, capability, model)
        if cell.reason:
            return cell
        exchange: list[str] = []
        try:
            problems = self._exercise(frontend, backend, capability, model, exchange)
        except FixtureError as e:
            problems = [str(e)]
        except requests.RequestException as e:
            problems = [f"HTTP failure: {type(e).__name__}: {_clip(str(e), 200)}"]
        except Exception as e:  # a reply the readers choke on is a finding, not a crash of the whole run
            problems = [f"could not read the exchange: {type(e).__name__}: {_clip(str(e), 200)}"]
            exchange.append(traceback.format_exc())
        cell.status = "fail" if problems else "pass"
        cell.reason = "; ".join(dict.fromkeys(problems)) or None
        cell.detail = "\n".join(exchange) if problems else None
        return cell

    def _exercise(self, frontend: Frontend, backend: BackendConfig, capability: Capability,
                  entry: ModelEntry | None, exchange: list[str]) -> list[str]:
        if entry is not None:
            model, upstream_model = entry.name, entry.api_model
        elif backend.model_mapping:
            model = next(iter(backend.model_mapping))
            upstream_model = backend.model_mapping[model]
        else:
            return [f"backend '{backend.name}' has no model_mapping to drive it with"]
        kind = UPSTREAM_KINDS.get(backend.kind)
        if kind is None:
            return [f"the matrix cannot read requests of backend kind {backend.kind!r} (add it to UPSTREAM_KINDS)"]
        expect = load_expect(kind.scenarios, capability.scenario)
        missing = [k for k in capability.expect_keys if k not in expect]
        if missing:
            return [f"fixture {kind.scenarios}/{capability.scenario}.yaml expect: lacks {', '.join(missing)}"]
        req = frontend.request(capability.conversation, model)
        headers = {"Content-Type": "application/json", **req.headers}
        if capability.ask_mock:
            headers["X-Mock-Scenario"] = capability.scenario
        self._clear_log()
        url = self.proxy_url + req.path
        resp = self.session.post(url, data=json.dumps(req.body, ensure_ascii=False).encode(), headers=headers,
                                 stream=req.stream, timeout=REQUEST_TIMEOUT)
        raw = resp.content  # for a stream: the whole event stream, framing checked below
        log = self._log()
        exchange += [f"--> POST {url}", _headers_text(headers), json.dumps(req.body, indent=2, ensure_ascii=False),
                     f"<-- HTTP {resp.status_code}", _headers_text(resp.headers), _clip(_decode(raw), 6000),
                     "--- mock request log:", _clip(json.dumps(log, indent=2, ensure_ascii=False), 6000)]
        reply = self._read(frontend, resp, raw, req.stream, model)
        return check_reply(reply, expect, frontend, capability.conversation, resp.headers) + \
            check_upstream(log, backend, upstream_model, capability)

    @staticmethod
    def _read(frontend: Frontend, resp: requests.Response, raw: bytes, stream: bool, model: str) -> Reply:
        text = _decode(raw)
        content_type = resp.headers.get("Content-Type", "")
        if resp.status_code >= 400 or not stream:
            try:
                data = json.loads(text)
            except ValueError:
                reply = Reply(status=resp.status_code)
                reply.problem(f"HTTP {resp.status_code} body is not JSON: {_clip(text, 120)!r}")
                if resp.status_code >= 400:
                    reply.error = {"status": resp.status_code, "type": None, "kind": None, "message": text}
                return reply
            reply = frontend.read_error(resp.status_code, data) if resp.status_code >= 400 \
                else frontend.read_reply(data, model)
            want_type = "application/json"
        else:
            reply = frontend.read_stream(text, model)
            want_type = "text/event-stream"
        reply.status = resp.status_code
        if not content_type.startswith(want_type):
            reply.problem(_differ("Content-Type", want_type, content_type))
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reply.problem(f"reply is not valid UTF-8 ({e.reason} at byte {e.start})")
        return reply

    def _clear_log(self) -> None:
        self.session.delete(f"{self.mock_url}/_mock/requests", timeout=REQUEST_TIMEOUT).raise_for_status()

    def _log(self) -> list[Mapping[str, Any]]:
        resp = self.session.get(f"{self.mock_url}/_mock/requests", timeout=REQUEST_TIMEOUT)
        resp.raise_for_status()
        data = resp.json()
        return data.get("requests", []) if isinstance(data, dict) else data


def run_matrix(proxy_url: str, mock_url: str, config: Config | str | Path = DEFAULT_CONFIG, *,
               frontends: Sequence[str] | None = None, backends: Sequence[str] | None = None,
               capabilities: Sequence[str] | None = None, progress: TextIO | None = None) -> list[Cell]:
    """Run every selected cell against servers already running; returns the cells in table order."""
    if not isinstance(config, Config):
        config = load_config(_config_path(config))
    matrix = Matrix(proxy_url, mock_url)
    cells = []
    for f in frontends or list(FRONTENDS):
        for b in backends or list(config.backends):
            for model in backend_rows(config, config.backends[b]):
                if progress:
                    progress.write(f"{f} -> {b}" + (f" ({model.name})" if model else "") + ": ")
                    progress.flush()
                for c in capabilities or list(CAPABILITIES):
                    cell = matrix.run_cell(FRONTENDS[f], config.backends[b], CAPABILITIES[c], model)
                    cells.append(cell)
                    if progress:
                        progress.write(PROGRESS_MARK[cell.status])
                        progress.flush()
                if progress:
                    progress.write("\n")
    return cells


PROGRESS_MARK = {"pass": ".", "fail": "F", "n/a": "-"}

# ----------------------------------------------------------------- servers


class StartupError(Exception):
    pass


class _Server:
    """One child `python -m app ...`, its output kept in a temp file for error reports."""

    def __init__(self, name: str, args: list[str], port: int, env: Mapping[str, str] | None = None):
        """`port` 0: any free port, read from the 'listening on http://…' line the server prints."""
        self.name = name
        self.url = f"http://127.0.0.1:{port}" if port else ""
        if port and _port_in_use(port):
            raise StartupError(f"port {port} is already in use: is a {name} already running? "
                               f"Use --proxy-url/--mock-url to test running servers")
        self.output = tempfile.TemporaryFile()
        # Own session: a terminal Ctrl-C reaches only us, and we stop the children in order.
        self.proc = subprocess.Popen([sys.executable, "-m", "app", *args, "--port", str(port)], cwd=REPO,
                                     stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartupError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            if not self.url:
                found = _LISTENING.search(self.tail())
                if not found:
                    time.sleep(0.05)
                    continue
                self.url = found.group(1).rstrip("/")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise StartupError(f"{self.name} did not answer GET /health within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.output.seek(0)
        return "\n".join(self.output.read().decode("utf-8", "replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


_LISTENING = re.compile(r"listening on (http://[^\s(]+)")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Servers:
    """Starts the mock and the proxy (the standard ports unless given; 0: any free port);
    stops both on exit, however we exit."""

    def __init__(self, config_path: Path, mock_port: int = MOCK_PORT, proxy_port: int = PROXY_PORT,
                 mock_args: Sequence[str] = ()):
        self.config_path = config_path
        self.ports = (mock_port, proxy_port)
        self.mock_args = list(mock_args)  # e.g. --scenarios FOLDER
        self.started: list[_Server] = []

    def __enter__(self) -> tuple[str, str]:
        try:
            mock = self._start("mock", ["mock", *self.mock_args], self.ports[0])
            proxy = self._start("proxy", ["serve", "--config", str(self.config_path)], self.ports[1],
                                {"MOCK_URL": mock.url})
        except BaseException:
            self.stop()
            raise
        return proxy.url, mock.url

    def _start(self, name: str, args: list[str], port: int, env: Mapping[str, str] | None = None) -> _Server:
        server = _Server(name, args, port, env)
        self.started.append(server)
        server.wait_healthy()
        return server

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        while self.started:
            self.started.pop().stop()


class _Interrupted(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so every `finally` runs."""


def _on_signal(signum: int, _frame: object) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}


def _restore_signal_handlers(previous: Mapping[int, Any]) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)


# ----------------------------------------------------------------- output


def render_table(cells: Sequence[Cell]) -> str:
    """Rows `frontend -> backend`, columns capabilities, then every n/a and FAIL reason."""
    caps = list(dict.fromkeys(c.capability for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    by_key = {(c.row, c.capability): c for c in cells}
    labels = {row: row for row in rows}
    first = max([len(v) for v in labels.values()] + [len("frontend -> backend")])
    widths = [max(len(c), 4) for c in caps]
    lines = ["  ".join(["frontend -> backend".ljust(first)] + [c.ljust(w) for c, w in zip(caps, widths)]).rstrip()]
    lines.append("  ".join(["-" * first] + ["-" * w for w in widths]))
    for row in rows:
        marks = []
        for cap, w in zip(caps, widths):
            cell = by_key.get((row, cap))
            marks.append(("" if cell is None else TABLE_MARK[cell.status]).ljust(w))
        lines.append("  ".join([labels[row].ljust(first)] + marks).rstrip())
    counts = {s: sum(1 for c in cells if c.status == s) for s in TABLE_MARK}
    lines += ["", f"{len(cells)} cells: {counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} n/a"]
    for status, title in (("fail", "FAIL"), ("n/a", "n/a")):
        listed = [c for c in cells if c.status == status]
        if listed:
            lines += ["", f"{title}:"]
            lines += [f"  {c.row} / {c.capability}: {c.reason}" for c in listed]
    return "\n".join(lines)


TABLE_MARK = {"pass": "PASS", "fail": "FAIL", "n/a": "n/a"}


def render_details(cells: Sequence[Cell]) -> str:
    out = []
    for c in cells:
        if c.status == "fail" and c.detail:
            out += [f"=== {c.row} / {c.capability}: {c.reason}", c.detail, ""]
    return "\n".join(out)


def write_report(cells: Sequence[Cell], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [c.to_json() for c in cells]}, indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def _headers_text(headers: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more chars)"


# -------------------------------------------------------------------- CLI

EPILOG = f"""\
Without --proxy-url/--mock-url the runner starts the mock (python -m app mock --port {MOCK_PORT})
and the proxy (python -m app serve --config CONFIG --port {PROXY_PORT}), waits for GET /health on
both, runs the cells, and stops both servers again, also on Ctrl-C or failure.

Each cell checks meaning, not just HTTP 200: the reply against the fixture's expect: section
(scenarios/<the fixtures the backend kind's mock replays>/<scenario>.yaml), the stream framing
of the frontend, and the one generation request the mock recorded (GET {{mock}}/_mock/requests).
A registry model ([models]) on a backend gets rows of its own.
A cell is n/a only when the backend's (or registry model's) declared capabilities rule it out.

capabilities: {", ".join(CAPABILITIES)}
frontends:    {", ".join(FRONTENDS)}

exit status: 0 every cell passed or is n/a; 1 a cell failed; 2 bad options or the
servers could not be started; 130 interrupted."""


def _csv(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="matrix", description="Run every frontend x backend x capability cell through the proxy and the mock.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frontend", type=_csv(list(FRONTENDS), "frontend"),
                   help="comma-separated frontends to run (default: all)")
    p.add_argument("--backend", help="comma-separated backends from the config to run (default: all)")
    p.add_argument("--capability", type=_csv(list(CAPABILITIES), "capability"),
                   help="comma-separated capabilities to run (default: all)")
    p.add_argument("--proxy-url", help="test a proxy already running at URL (needs --mock-url; starts nothing)")
    p.add_argument("--mock-url", help="the mock server the running proxy talks to (needs --proxy-url)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"proxy config naming the backends (default: {DEFAULT_CONFIG} in the repository)")
    p.add_argument("--json", type=Path, metavar="PATH", help='write {"cells": [...]} to PATH')
    p.add_argument("-v", "--verbose", action="store_true", help="print each failing request and response")
    return p


def _config_path(value: str | Path) -> Path:
    """A relative path is taken from the current directory, else from the repository."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path.resolve()
    return REPO / path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.proxy_url) != bool(args.mock_url):
        parser.error("--proxy-url and --mock-url go together")
    config_path = _config_path(args.config)
    try:
        config = load_config(config_path)
    except ConfigError as e:
        parser.error(f"config {config_path}: " + "; ".join(e.problems))
    backends = None
    if args.backend:
        try:
            backends = _csv(list(config.backends), "backend")(args.backend)
        except argparse.ArgumentTypeError as e:
            parser.error(str(e))
    selection = {"frontends": args.frontend, "backends": backends, "capabilities": args.capability}

    previous = _install_signal_handlers()
    try:
        if args.proxy_url:
            cells = run_matrix(args.proxy_url, args.mock_url, config, progress=sys.stderr, **selection)
        else:
            with Servers(config_path) as (proxy_url, mock_url):
                print(f"mock at {mock_url}, proxy at {proxy_url}", file=sys.stderr)
                cells = run_matrix(proxy_url, mock_url, config, progress=sys.stderr, **selection)
    except StartupError as e:
        print(f"matrix: {e}", file=sys.stderr)
        return EXIT_SETUP
    except (KeyboardInterrupt, _Interrupted):
        print("\nmatrix: interrupted; servers stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _restore_signal_handlers(previous)

    print(render_table(cells))
    if args.verbose and any(c.status == "fail" for c in cells):
        print("\n" + render_details(cells))
    if args.json:
        write_report(cells, args.json)
        print(f"\nreport written to {args.json}", file=sys.stderr)
    return EXIT_FAILED if any(c.status == "fail" for c in cells) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
