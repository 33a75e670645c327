"""The Anthropic Messages client driver."""
from __future__ import annotations

import base64
from typing import Any, Mapping

from scripts.matrix.capabilities import (ANTHROPIC_ID, TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA, Call, Conversation,
                                         Image, TextPart, Turn)
from scripts.matrix.frontend import Frontend, _usage, parse_arguments
from scripts.matrix.reply import HttpRequest, Reply, ToolCall, json_events, parse_sse


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
        if all(isinstance(p, TextPart) for p in turn.parts):
            return {"role": turn.role, "content": "".join(p.text for p in turn.parts)}
        return {"role": turn.role, "content": [self._block(p) for p in turn.parts]}

    def _block(self, part: Any) -> dict:
        if isinstance(part, TextPart):
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
        events = [(name, obj) for name, obj in json_events(parse_sse(text, reply), reply)
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
            arguments = parse_arguments(block["json"], reply, f"tool_use block {block['index']}")
            self.client._tool_use(block["block"], arguments, reply, f"tool_use block {block['index']}")

    def close_all(self, where: str) -> None:
        if self.open is not None:
            self.reply.problem(f"block {self.open['index']} still open at {where}")
            self._close()
