"""The OpenAI Chat Completions client driver."""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping

from scripts.matrix.capabilities import (TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA, Call, Conversation, Image, Result,
                                         TextPart, Turn)
from scripts.matrix.frontend import Frontend, _usage, parse_arguments
from scripts.matrix.reply import HttpRequest, Reply, ToolCall, json_events, parse_sse


class OpenAIClient(Frontend):
    name = "openai"
    call_id = "call_abc123"
    asks_for_thoughts = False  # reasoning_effort sets the effort; Chat has no field asking to see the reasoning
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
                                   "content": "".join(p.text for p in turn.parts if isinstance(p, TextPart)) or None}
            if calls:
                msg["tool_calls"] = [{"id": self.call_id, "type": "function", "function": {
                    "name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls]
            return [msg]
        if all(isinstance(p, TextPart) for p in turn.parts):
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
        # Non-standard: DeepSeek-style servers and the proxy say reasoning_content, OpenRouter reasoning.
        reply.thinking = message.get("reasoning_content") or message.get("reasoning") or ""
        for i, tc in enumerate(message.get("tool_calls") or []):
            if tc.get("type") != "function":
                reply.problem(f"tool_calls[{i}].type: expected 'function' got {tc.get('type')!r}")
            fn = tc.get("function") or {}
            reply.tool_calls.append(ToolCall(tc.get("id"), fn.get("name") or "",
                                             parse_arguments(fn.get("arguments"), reply, f"tool_calls[{i}]")))
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
        chunks = [obj for _, obj in json_events([e for e in events if e.data != "[DONE]"], reply)]
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
                reply.thinking += delta.get("reasoning_content") or delta.get("reasoning") or ""
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
                                             parse_arguments(c["arguments"], reply, f"tool_calls[{index}]")))
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
