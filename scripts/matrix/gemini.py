"""The Gemini generateContent client driver."""
from __future__ import annotations

import base64
from typing import Any, Mapping

from scripts.matrix.capabilities import (GEMINI_TOOL_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, Call, Conversation, Image,
                                         TextPart, Turn)
from scripts.matrix.frontend import Frontend, _usage
from scripts.matrix.reply import HttpRequest, Reply, ToolCall, json_events, parse_sse


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
        if isinstance(part, TextPart):
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
        chunks = [obj for _, obj in json_events([e for e in events if e.data != "[DONE]"], reply)]
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
