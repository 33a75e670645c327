"""Frontend: IR stream events rendered as Gemini streamGenerateContent SSE chunks."""
from __future__ import annotations

import dataclasses
from typing import Any

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.upstream.framing import Frame, encode_sse
from app.protocols.gemini.common import PROVIDER, _finish_reason_to_gemini, _usage_metadata
from app.protocols.gemini.errors import _STATUS_BY_KIND
from app.protocols.gemini.response import _function_call_part, _model_content


class StreamFormatter:
    """IR events -> the Gemini client stream.

    `sse=True` (`?alt=sse`): each chunk is `data: <GenerateContentResponse>\\n\\n`,
    no terminator. `sse=False`: the body is one JSON array written incrementally,
    `[` + first chunk, `,` + each next one, `]` from `finish()`.
    Intermediate chunks omit finishReason (never `null`, known-gateway-bugs #17);
    a tool call is sent whole at its PartStop (Gemini never fragments args).
    """

    def __init__(self, req: ir.Request, sse: bool = True):
        self._req = req
        self._sse = sse
        self._id = ""
        self._model = req.model
        self._start_usage: ir.Usage | None = None
        self._kind: str | None = None  # kind of the open part
        self._call: dict[str, Any] | None = None  # the tool call being buffered
        self._written = False  # array mode: whether `[` has been sent
        self._closed = False

    def feed(self, event: ir.Event) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, ir.MessageStart):
            self._id, self._model = event.id, event.model or self._req.model
            self._start_usage = event.usage
        elif isinstance(event, ir.PartStart):
            self._kind = event.kind
            if event.kind == "tool_call":
                self._call = {"id": event.id or "", "name": event.name or "", "args": [], "signature": None}
        elif isinstance(event, (ir.TextDelta, ir.RefusalDelta)):
            return self._parts_chunk({"text": event.text}) if event.text else b""
        elif isinstance(event, ir.ThinkingDelta):
            return self._parts_chunk({"text": event.text, "thought": True}) if event.text else b""
        elif isinstance(event, ir.ToolArgumentsDelta):
            if self._call is not None:
                self._call["args"].append(event.json)
        elif isinstance(event, ir.SignatureDelta):
            return self._signature(event)
        elif isinstance(event, ir.PartStop):
            self._kind = None
            return self._flush_call()
        elif isinstance(event, ir.MessageStop):
            return self._flush_call() + self._final_chunk(event)
        elif isinstance(event, ir.StreamError):
            return self._error(event.error)
        return b""

    def relay(self, frame: Frame) -> bytes:
        """An upstream Gemini SSE frame, re-framed for this client (passthrough)."""
        if self._closed or not frame.data.strip():
            return b""
        if frame.event != "raw" and "\n" not in frame.data:
            return self._emit(frame.data.encode())
        try:  # a raw error body or a multi-line data field: re-serialize on one line
            payload = loads(frame.data)
        except ValueError:
            return b""
        items = payload if isinstance(payload, list) else [payload]
        return b"".join(self._emit(dumps(item)) for item in items)

    def keepalive(self) -> bytes:
        """A bare line end: an SSE reader dispatches nothing for it, and it is JSON whitespace
        in the array form. Not a comment: google-genai reads a line that is not `data: ` as
        raw JSON (an error body) and would fail on one."""
        return b"" if self._closed else b"\n"

    def finish(self) -> bytes:
        if self._sse or self._closed:
            return b""
        self._closed = True
        return b"]" if self._written else b"[]"

    # ------------------------------------------------------------ chunks

    def _signature(self, event: ir.SignatureDelta) -> bytes:
        if event.origin != PROVIDER:
            return b""  # another provider's signature means nothing to Gemini
        if self._call is not None:
            self._call["signature"] = event.signature
            return b""
        part: dict[str, Any] = {"text": "", "thoughtSignature": event.signature}
        if self._kind == "thinking":
            part["thought"] = True
        return self._parts_chunk(part)

    def _flush_call(self) -> bytes:
        call, self._call = self._call, None
        if call is None:
            return b""
        return self._parts_chunk(_function_call_part(call["id"], call["name"], "".join(call["args"]),
                                                     call["signature"]))

    def _parts_chunk(self, part: dict) -> bytes:
        return self._emit(dumps({"candidates": [{"content": _model_content([part]), "index": 0}],
                                 "modelVersion": self._model, "responseId": self._id}))

    def _final_chunk(self, stop: ir.MessageStop) -> bytes:
        usage = stop.usage
        if usage.input_tokens == 0 and self._start_usage is not None:
            # Prompt usage known only at the start (Anthropic-style upstreams).
            usage = dataclasses.replace(usage, input_tokens=self._start_usage.input_tokens,
                                        cache_read_tokens=usage.cache_read_tokens or self._start_usage.cache_read_tokens)
        candidate: dict[str, Any] = {"content": _model_content([]),
                                     "finishReason": _finish_reason_to_gemini(stop.finish_reason, stop.raw_finish_reason),
                                     "index": 0}
        if stop.finish_message:
            candidate["finishMessage"] = stop.finish_message
        return self._emit(dumps({"candidates": [candidate], "usageMetadata": _usage_metadata(usage),
                                 "modelVersion": self._model, "responseId": self._id}))

    def _error(self, error: Any) -> bytes:
        if not isinstance(error, ProxyError):
            error = ProxyError(ErrorKind.api_error, str(error))
        status, canonical = _STATUS_BY_KIND[error.kind]
        body = dumps({"error": {"code": status, "message": error.message, "status": canonical}})
        if self._sse:
            return encode_sse(body)
        self._closed = True  # nothing may follow the error in the array
        return self._emit(body) + b"]"

    def _emit(self, body: bytes) -> bytes:
        if self._sse:
            return encode_sse(body)
        prefix = b"," if self._written else b"["
        self._written = True
        return prefix + body
