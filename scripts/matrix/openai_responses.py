"""The OpenAI Responses client driver (POST /v1/responses).

A reply is the `response` object; a stream is typed events (`event:` equal to the
JSON `type`, consecutive `sequence_number`s) ending with the terminal
`response.completed` / `.incomplete` / `.failed`, never `[DONE]`. The driver reads
the reply from the terminal event's `response` and holds the deltas to it."""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping

from scripts.matrix.capabilities import (TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA, Call, Conversation, Image, Result,
                                         TextPart, Turn)
from scripts.matrix.frontend import Frontend, _usage, parse_arguments
from scripts.matrix.openai_chat import OpenAIClient
from scripts.matrix.reply import HttpRequest, Reply, ToolCall, json_events, parse_sse

TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class ResponsesClient(Frontend):
    name = "openai_responses"
    call_id = "call_abc123"
    # Responses has no finish reason: the status, the incomplete reason and whether the
    # output holds a function call say it (raw_finish is "<status>[:<reason>]").
    finish_reasons = {"completed": "stop", "completed:function_call": "tool_calls",
                      "incomplete:max_output_tokens": "length", "incomplete:content_filter": "content_filter"}
    # The error envelope is OpenAI's (protocols §2.7): read by the Chat driver's reader.
    error_kinds = OpenAIClient.error_kinds
    read_error = OpenAIClient.read_error
    _error_fields = OpenAIClient._error_fields
    unsupported = {"stop_sequence": "the Responses API has no stop sequences (it refuses `stop` with a 400)"}

    # ---- request
    def request(self, conv: Conversation, model: str) -> HttpRequest:
        body: dict[str, Any] = {"model": model, "input": [item for turn in conv.turns for item in self._items(turn)]}
        if conv.system:
            body["instructions"] = conv.system
        if conv.tools:
            body["tools"] = [{"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION,
                              "parameters": TOOL_SCHEMA}]
        if conv.stream:
            body["stream"] = True
        if conv.stop:
            raise ValueError("a Responses request cannot carry stop sequences")  # unsupported: never sent
        if conv.max_tokens is not None:
            body["max_output_tokens"] = conv.max_tokens
        if conv.thinking:
            body["reasoning"] = {"effort": "medium", "summary": "auto"}
        return HttpRequest("/v1/responses", {"Authorization": "Bearer matrix-client-key"}, body, conv.stream)

    def _items(self, turn: Turn) -> list[dict]:
        items: list[dict] = []
        content: list[dict] = []
        text_type = "output_text" if turn.role == "assistant" else "input_text"
        for part in turn.parts:
            if isinstance(part, TextPart):
                content.append({"type": text_type, "text": part.text})
            elif isinstance(part, Image):
                content.append({"type": "input_image", "detail": "auto",
                                "image_url": f"data:{part.media_type};base64,{base64.b64encode(part.data).decode()}"})
            elif isinstance(part, Call):
                items.append({"type": "function_call", "call_id": self.call_id, "name": part.name,
                              "arguments": json.dumps(part.arguments)})
            elif isinstance(part, Result):
                items.append({"type": "function_call_output", "call_id": self.call_id, "output": part.content})
        if content:
            items.insert(0, {"type": "message", "role": turn.role, "content": content})
        return items

    # ---- replies
    def read_reply(self, data: Any, model: str) -> Reply:
        reply = Reply()
        self._read_response(data, model, reply)
        return reply

    def _read_response(self, data: Any, model: str, reply: Reply) -> None:
        if not isinstance(data, dict):
            reply.problem("the response is not a JSON object")
            return
        if data.get("object") != "response":
            reply.problem(f"object: expected 'response' got {data.get('object')!r}")
        if not str(data.get("id") or "").startswith("resp_"):
            reply.problem(f"id {data.get('id')!r} does not start with resp_")
        if data.get("model") != model:
            reply.problem(f"model: expected {model!r} got {data.get('model')!r}")
        if data.get("status") == "failed":
            reply.error = self._failed(data.get("error"), reply)
            return
        calls = False
        for i, item in enumerate(data.get("output") or []):
            kind = item.get("type")
            if kind == "message":
                if item.get("role") != "assistant":
                    reply.problem(f"output[{i}].role: expected 'assistant' got {item.get('role')!r}")
                for part in item.get("content") or []:
                    if part.get("type") != "output_text":
                        reply.problem(f"output[{i}] has a {part.get('type')!r} content part")
                    reply.text += part.get("text") or ""
            elif kind == "function_call":
                calls = True
                if not item.get("id"):
                    reply.problem(f"output[{i}] function_call has no item id")
                reply.tool_calls.append(ToolCall(item.get("call_id"), item.get("name") or "",
                                                 parse_arguments(item.get("arguments"), reply, f"output[{i}]")))
            elif kind == "reasoning":
                reply.thinking += "".join(s.get("text") or "" for s in item.get("summary") or [])
            else:
                reply.problem(f"output[{i}] has an unexpected item type {kind!r}")
        status = data.get("status")
        if status == "incomplete":
            raw = f"incomplete:{(data.get('incomplete_details') or {}).get('reason')}"
        else:
            raw = f"{status}:function_call" if calls and status == "completed" else str(status)
        self._finish(raw, reply)
        usage = data.get("usage")
        if isinstance(usage, dict):
            details = usage.get("output_tokens_details") or {}
            reply.usage = _usage(usage.get("input_tokens"), usage.get("output_tokens"), details.get("reasoning_tokens"))
        else:
            reply.problem("the response carries no usage")

    def _failed(self, error: Any, reply: Reply) -> dict[str, Any]:
        if not isinstance(error, dict) or not error.get("code"):
            reply.problem("a failed response without error.code")
            return {"status": 200, "type": None, "kind": None, "message": None}
        return {"status": 200, "type": error.get("code"), "kind": self.error_kinds.get(error.get("code")),
                "message": error.get("message")}

    def read_stream(self, text: str, model: str) -> Reply:
        reply = Reply()
        events = parse_sse(text, reply)
        if any(e.data == "[DONE]" for e in events):
            reply.problem("a Responses stream carries data: [DONE]")
        pairs = json_events([e for e in events if e.data != "[DONE]"], reply)
        deltas: dict[tuple[Any, Any], str] = {}  # (output_index, content/summary index or kind) -> text so far
        done_items: dict[Any, Mapping[str, Any]] = {}
        terminal: Mapping[str, Any] | None = None
        for n, (event, obj) in enumerate(pairs):
            kind = obj.get("type")
            if event != kind:
                reply.problem(f"event line {event!r} differs from its type {kind!r}")
            if obj.get("sequence_number") != n:
                reply.problem(f"event {n} ({kind}) has sequence_number {obj.get('sequence_number')!r}")
            if n == 0 and kind != "response.created":
                reply.problem(f"the stream starts with {kind!r}, not response.created")
            if terminal is not None:
                reply.problem(f"{kind} after the terminal {terminal.get('type')}")
            self._stream_event(obj, deltas, done_items, reply)
            if kind in TERMINAL_EVENTS:
                terminal = obj
        if terminal is None:
            reply.problem("the stream does not end with response.completed / .incomplete / .failed")
            return reply
        response = terminal.get("response") or {}
        self._read_response(response, model, reply)
        output = response.get("output") or []
        if [done_items.get(i) for i in range(len(output))] != output or len(done_items) != len(output):
            reply.problem("the terminal response's output differs from the output_item.done items")
        return reply

    @staticmethod
    def _stream_event(obj: Mapping[str, Any], deltas: dict[tuple[Any, Any], str],
                      done_items: dict[Any, Mapping[str, Any]], reply: Reply) -> None:
        """One event's deltas summed and held to its `.done` event."""
        kind, index = obj.get("type"), obj.get("output_index")
        if kind == "error":
            code = obj.get("code")
            reply.error = {"status": 200, "type": code, "kind": OpenAIClient.error_kinds.get(code),
                           "message": obj.get("message")}
        elif kind == "response.output_text.delta":
            key = (index, obj.get("content_index"))
            deltas[key] = deltas.get(key, "") + (obj.get("delta") or "")
        elif kind == "response.output_text.done":
            if obj.get("text") != deltas.get((index, obj.get("content_index")), ""):
                reply.problem(f"output_text.done at output {index} differs from its deltas")
        elif kind == "response.function_call_arguments.delta":
            deltas[(index, "arguments")] = deltas.get((index, "arguments"), "") + (obj.get("delta") or "")
        elif kind == "response.function_call_arguments.done":
            if obj.get("arguments") != deltas.get((index, "arguments"), ""):
                reply.problem(f"function_call_arguments.done at output {index} differs from its deltas")
        elif kind == "response.reasoning_summary_text.delta":
            key = (index, ("summary", obj.get("summary_index")))
            deltas[key] = deltas.get(key, "") + (obj.get("delta") or "")
        elif kind == "response.reasoning_summary_text.done":
            if obj.get("text") != deltas.get((index, ("summary", obj.get("summary_index"))), ""):
                reply.problem(f"reasoning_summary_text.done at output {index} differs from its deltas")
        elif kind == "response.output_item.done":
            if index in done_items:
                reply.problem(f"output_item.done sent twice for output {index}")
            done_items[index] = obj.get("item") or {}
