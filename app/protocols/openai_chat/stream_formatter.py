"""Frontend: IR stream events rendered as `chat.completion.chunk` SSE, and the same-protocol relay."""
from __future__ import annotations

from typing import Any

from app import ir
from app.jsonutil import dumps, loads
from app.upstream.framing import Frame, encode_sse
from app.protocols.openai_chat.common import KEEPALIVE_COMMENT
from app.protocols.openai_chat.errors import _error_body
from app.protocols.openai_chat.response import _FINISH_TO_WIRE, _completion_id, _model_failed, _now, _usage_to_wire


_EMPTY_CHOICES = '"choices":[]'


def annotation_only(data: str) -> bool:
    """A chunk with `choices: []` and neither usage nor an error: Azure's first stream chunk
    (empty id, model and object, `prompt_filter_results`). Clients that read `choices[0]` of
    every chunk or check the id fail on it (protocols §1.8), so a relay leaves it out; the
    usage chunk, which also has `choices: []`, stays."""
    try:
        chunk = loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and not chunk.get("usage") \
        and "error" not in chunk


class StreamFormatter:
    """IR events -> `chat.completion.chunk` SSE bytes for one client stream.

    Wire option `created` fixes the timestamp (tests); others are ignored.
    """

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._created = wire_options.get("created") or _now()
        self._head: bytes | None = None  # serialized id/object/created/model, shared by every chunk
        self._role_sent = False
        self._done = False
        self._tool_ordinal: dict[int, int] = {}  # IR part index -> OpenAI tool_calls[].index

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, ir.MessageStart):
            self._start(event.id, event.model)
            return b""
        if isinstance(event, ir.PartStart):
            return self._part_start(event)
        if isinstance(event, ir.TextDelta):
            return self._delta({"content": event.text}) if event.text else b""
        if isinstance(event, ir.ToolArgumentsDelta):
            if not event.json or event.index not in self._tool_ordinal:
                return b""
            k = self._tool_ordinal[event.index]
            return self._delta({"tool_calls": [{"index": k, "function": {"arguments": event.json}}]})
        if isinstance(event, ir.ThinkingDelta):
            if self._req.reasoning is None or not event.text:
                return b""
            return self._delta({"reasoning_content": event.text})
        if isinstance(event, ir.RefusalDelta):
            return self._delta({"refusal": event.text}) if event.text else b""
        if isinstance(event, ir.MessageStop):
            return self._stop(event)
        if isinstance(event, ir.StreamError):
            self._done = True
            return encode_sse(_error_body(event.error))
        return b""  # PartStop, SignatureDelta: OpenAI Chat has no slot for them

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough of one upstream frame (`[DONE]` included), except a
        chunk that carries nothing a Chat client reads (`annotation_only`)."""
        if _EMPTY_CHOICES in frame.data and annotation_only(frame.data):
            return b""
        if "\n" not in frame.data:
            return b"data: " + frame.data.encode() + b"\n\n"
        lines = frame.data.split("\n")
        return b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"

    def finish(self) -> bytes:
        return b""  # [DONE] comes from MessageStop; after an error nothing follows

    def keepalive(self) -> bytes:
        return KEEPALIVE_COMMENT  # SSE readers skip comment lines

    # -------------------------------------------------------------- internals

    def _start(self, upstream_id: str | None, model: str | None) -> None:
        self._head = (b'{"id":' + dumps(_completion_id(upstream_id)) + b',"object":"chat.completion.chunk"'
                      + b',"created":' + str(int(self._created)).encode()
                      + b',"model":' + dumps(model or self._req.model) + b",")

    def _chunk(self, choices: list, usage: dict | None = None) -> bytes:
        if self._head is None:
            self._start(None, None)
        tail = b',"usage":' + dumps(usage) if usage is not None else b""
        return encode_sse(self._head + b'"choices":' + dumps(choices) + tail + b"}")

    def _delta(self, delta: dict) -> bytes:
        return self._role_chunk("text") + self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])

    def _role_chunk(self, first_kind: str) -> bytes:
        # OpenAI's first chunk: content "" before text, null before tool calls/refusals.
        if self._role_sent:
            return b""
        self._role_sent = True
        content = None if first_kind in ("tool_call", "refusal") else ""
        return self._chunk([{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}])

    def _part_start(self, event: ir.PartStart) -> bytes:
        out = self._role_chunk(event.kind)
        if event.kind != "tool_call":
            return out
        k = len(self._tool_ordinal)
        self._tool_ordinal[event.index] = k
        opening = {"index": k, "id": event.id, "type": "function",
                   "function": {"name": event.name, "arguments": ""}}
        return out + self._chunk([{"index": 0, "delta": {"tool_calls": [opening]}, "finish_reason": None}])

    def _stop(self, event: ir.MessageStop) -> bytes:
        self._done = True
        if event.finish_reason is ir.FinishReason.error:
            return encode_sse(_error_body(_model_failed(event.raw_finish_reason)))
        out = [self._role_chunk("text"),
               self._chunk([{"index": 0, "delta": {}, "finish_reason": _FINISH_TO_WIRE[event.finish_reason]}])]
        if self._req.include_usage:
            out.append(self._chunk([], _usage_to_wire(event.usage)))
        out.append(encode_sse("[DONE]"))
        return b"".join(out)
