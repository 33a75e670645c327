"""Backend: a Gemini streamGenerateContent SSE stream read back into IR stream events."""
from __future__ import annotations

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import loads
from app.upstream.framing import Frame
from app.protocols.gemini.common import PROVIDER, finish_reason_from_gemini, usage_from_gemini
from app.protocols.gemini.call_ids import _CallIds
from app.protocols.gemini.errors import _error_from_status
from app.protocols.gemini.reply import _malformed, _tool_call


def is_content_frame(frame: Frame) -> bool:
    """A chunk with no finishReason, no error and no promptFeedback: content
    only (its usageMetadata is a running count; the last chunk carries the
    total). A passthrough relay, which parses frames only to notice the end,
    errors and usage, may leave it unparsed."""
    d = frame.data
    return (frame.event is None and d.startswith("{") and '"finishReason"' not in d
            and '"error"' not in d and '"promptFeedback"' not in d)


class StreamParser:
    """Gemini SSE frames -> IR events.

    Each chunk is a whole GenerateContentResponse with only the NEW parts. Text
    stays one open part across chunks until another kind arrives; a functionCall
    arrives whole and becomes a complete tool_call part at once (start, the whole
    args JSON, stop: known-gateway-bugs #4/#10); usageMetadata is a running
    total, so the last one wins. The stream has no terminator: MessageStop is
    emitted at close() when a finishReason was seen, else a StreamError.
    """

    def __init__(self, req: ir.Request):
        self._req = req
        self._ids: _CallIds | None = None
        self._open: tuple[str, int] | None = None  # (kind, index) of the open part
        self._next_index = 0
        self._usage = ir.Usage()
        self._finish_seen = False
        self._finish_raw: str | None = None
        self._finish_message: str | None = None
        self._blocked = False
        self._has_calls = False
        self._done = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done or not frame.data.strip():
            return []
        try:
            payload = loads(frame.data)
        except ValueError:
            return self._fail(_malformed("malformed frame in the upstream Gemini stream"))
        events: list[ir.Event] = []
        for chunk in payload if isinstance(payload, list) else [payload]:
            if not isinstance(chunk, dict):
                return events + self._fail(_malformed("malformed frame in the upstream Gemini stream"))
            if isinstance(chunk.get("error"), dict):  # an error written into the stream (data: or raw)
                return events + self._fail(_error_from_status(chunk["error"], 0, {}))
            events.extend(self._chunk(chunk))
        return events

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        if not self._finish_seen:
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion",
                                         backend=PROVIDER))
        self._done = True
        reason = (ir.FinishReason.content_filter if self._blocked
                  else finish_reason_from_gemini(self._finish_raw, self._has_calls))
        return self._close_part() + [ir.MessageStop(reason, self._usage, raw_finish_reason=self._finish_raw,
                                                    finish_message=self._finish_message)]

    # ------------------------------------------------------------ chunks

    def _chunk(self, chunk: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        if self._ids is None:
            self._ids = _CallIds(chunk.get("responseId"))
            prompt = usage_from_gemini(chunk.get("usageMetadata") or {})
            events.append(ir.MessageStart(chunk.get("responseId") or "", chunk.get("modelVersion") or self._req.model,
                                          ir.Usage(input_tokens=prompt.input_tokens,
                                                   cache_read_tokens=prompt.cache_read_tokens)))
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = usage_from_gemini(chunk["usageMetadata"])  # running totals: never summed
        candidates = chunk.get("candidates") or []
        if candidates and isinstance(candidates[0], dict):
            candidate = candidates[0]
            for raw in (candidate.get("content") or {}).get("parts") or ():
                if isinstance(raw, dict):
                    events.extend(self._part(raw))
            if candidate.get("finishReason"):
                self._finish_seen = True
                self._finish_raw = candidate["finishReason"]
                self._finish_message = candidate.get("finishMessage")
                events.extend(self._close_part())
        elif (chunk.get("promptFeedback") or {}).get("blockReason"):
            self._finish_seen = self._blocked = True
            self._finish_raw = chunk["promptFeedback"]["blockReason"]
            self._finish_message = chunk["promptFeedback"].get("blockReasonMessage")
        return events

    def _part(self, raw: dict) -> list[ir.Event]:
        signature = raw.get("thoughtSignature") or None
        if isinstance(raw.get("functionCall"), dict):
            return self._tool_call(raw["functionCall"], signature)
        if "text" not in raw:
            return []  # inline images, executable code: no stream event for them
        text = raw.get("text") or ""
        kind = "thinking" if raw.get("thought") else "text"
        events: list[ir.Event] = []
        if text:
            events += self._open_part(kind)
            index = self._open[1]
            events.append(ir.ThinkingDelta(index, text) if kind == "thinking" else ir.TextDelta(index, text))
        if signature and (kind == "thinking" or (self._open and self._open[0] == "thinking")):
            events += self._open_part("thinking")
            events.append(ir.SignatureDelta(self._open[1], signature, PROVIDER))
            # One signature per part: a later one starts a new part, never merged (known-gateway-bugs #9).
            events += self._close_part()
        return events  # a signature on plain text has no IR slot (optional for Gemini)

    def _tool_call(self, function_call: dict, signature: str | None) -> list[ir.Event]:
        events = self._close_part()
        call = _tool_call(function_call, signature, self._ids)
        index = self._next_index
        self._next_index += 1
        self._has_calls = True
        events += [ir.PartStart(index, "tool_call", call.id, call.name), ir.ToolArgumentsDelta(index, call.arguments)]
        if signature:
            events.append(ir.SignatureDelta(index, signature, PROVIDER))
        events.append(ir.PartStop(index))
        return events

    def _open_part(self, kind: str) -> list[ir.Event]:
        if self._open is not None and self._open[0] == kind:
            return []
        events = self._close_part()
        self._open = (kind, self._next_index)
        self._next_index += 1
        return events + [ir.PartStart(self._open[1], kind)]

    def _close_part(self) -> list[ir.Event]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [ir.PartStop(index)]

    def _fail(self, error: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(error)]
