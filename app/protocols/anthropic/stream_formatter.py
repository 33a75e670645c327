"""Frontend: IR stream events rendered as Messages API SSE events."""
from __future__ import annotations

from typing import Any, Callable

from app import ir
from app.errors import ProxyError
from app.jsonutil import dumps, dumps_str, loads_or_none
from app.upstream.framing import Frame, encode_sse
from app.protocols.anthropic.common import _ERROR_RENDERING, _is_int, opaque_for_client
from app.protocols.anthropic.response import _model_failure, _stop_reason, _usage_to_wire, message_id


class _ClientBlock:
    """The IR part being rendered and, once opened, its Anthropic block index."""

    __slots__ = ("ir_index", "kind", "call_id", "name", "data", "index", "signature")

    def __init__(self, ir_index: int, kind: str, call_id: str | None = None, name: str | None = None,
                 data: str | None = None):
        self.ir_index = ir_index
        self.kind = kind
        self.call_id = call_id
        self.name = name
        self.data = data
        self.index: int | None = None
        self.signature: list[str] = []


def _event(payload: dict) -> bytes:
    return encode_sse(dumps(payload), payload["type"])


class StreamFormatter:
    """IR events -> the Messages SSE stream: message_start, ping, blocks opened
    lazily with indices 0,1,2…, message_delta with full usage, message_stop."""

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._started = False
        self._done = False
        self._next_index = 0
        self._block: _ClientBlock | None = None
        self._start_usage: ir.Usage | None = None
        self._handlers: dict[type, Callable[[Any], list[bytes]]] = {
            ir.MessageStart: self._message_start,
            ir.PartStart: self._part_start,
            ir.TextDelta: self._text_delta,
            ir.RefusalDelta: self._text_delta,
            ir.ToolArgumentsDelta: self._arguments_delta,
            ir.ThinkingDelta: self._thinking_delta,
            ir.SignatureDelta: self._signature_delta,
            ir.PartStop: self._part_stop,
            ir.MessageStop: self._message_stop,
            ir.StreamError: self._stream_error,
        }

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        frames: list[bytes] = []
        if not self._started and not isinstance(event, (ir.MessageStart, ir.StreamError)):
            # A client cannot read blocks before message_start: open the message ourselves.
            frames += self._message_start(ir.MessageStart(id="", model=self._req.model))
        handler = self._handlers.get(type(event))
        if handler is not None:
            frames += handler(event)
        return b"".join(frames)

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough: the upstream frame re-encoded as it came, except
        a tool_use start that carries the whole input (gateways that do not stream
        arguments): clients read input only from input_json_delta, so it goes out as
        a start with `input: {}` and one delta holding the input (known-gateway-bugs #20)."""
        if frame.event == "content_block_start" and '"tool_use"' in frame.data:
            split = _split_tool_start(frame.data)
            if split is not None:
                return b"".join(_event(payload) for payload in split)
        return _encode_frame(frame)

    def finish(self) -> bytes:
        return b""  # message_stop (or error) already ended the stream

    def keepalive(self) -> bytes:
        return b"" if self._done else _event({"type": "ping"})  # the API's own keep-alive; SDKs skip it anywhere

    # -------------------------------------------------------- message level

    def _message_start(self, event: ir.MessageStart) -> list[bytes]:
        self._started = True
        self._start_usage = event.usage
        usage = _usage_to_wire(event.usage or ir.Usage())
        # The API sends a small output placeholder here; the final count comes in message_delta.
        usage["output_tokens"] = event.usage.output_tokens if event.usage and event.usage.output_tokens else 1
        message = {
            "id": message_id(event.id), "type": "message", "role": "assistant",
            "model": event.model or self._req.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
        }
        return [_event({"type": "message_start", "message": message}), _event({"type": "ping"})]

    def _message_stop(self, event: ir.MessageStop) -> list[bytes]:
        frames = self._close_block()
        self._done = True
        if event.finish_reason is ir.FinishReason.error:
            return frames + [_error_event(_model_failure(event.raw_finish_reason, event.finish_message))]
        stop_reason, stop_sequence = _stop_reason(event.finish_reason, event.stop_sequence)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                 "usage": _usage_to_wire(self._final_usage(event.usage))}
        return frames + [_event(delta), _event({"type": "message_stop"})]

    def _final_usage(self, usage: ir.Usage) -> ir.Usage:
        """Newer servers repeat prompt counts in message_delta; keep them when the stop event lacks them."""
        start = self._start_usage
        if usage.input_tokens or start is None:
            return usage
        return ir.Usage(start.input_tokens, usage.output_tokens, usage.reasoning_tokens,
                        start.cache_read_tokens, start.cache_write_tokens)

    def _stream_error(self, event: ir.StreamError) -> list[bytes]:
        self._done = True
        return [_error_event(event.error)]

    # ---------------------------------------------------------- block level

    def _part_start(self, event: ir.PartStart) -> list[bytes]:
        frames = self._close_block()
        data = opaque_for_client(event.data, event.origin) if event.data else event.data
        self._block = _ClientBlock(event.index, event.kind, event.id, event.name, data)
        # Calls and redactions carry their content in the start; text/thinking wait for a delta.
        if event.kind in ("tool_call", "redacted_thinking"):
            frames += self._open(self._block)
        return frames

    def _text_delta(self, event: ir.TextDelta | ir.RefusalDelta) -> list[bytes]:
        if not event.text:
            return []  # an empty delta must not open an empty text block (known-gateway-bugs #1)
        frames, block = self._current(event.index, "text")
        frames += self._open(block)
        return frames + [self._delta(block, {"type": "text_delta", "text": event.text})]

    def _arguments_delta(self, event: ir.ToolArgumentsDelta) -> list[bytes]:
        block = self._block
        if not event.json or block is None or block.ir_index != event.index or block.kind != "tool_call":
            return []
        return [self._delta(block, {"type": "input_json_delta", "partial_json": event.json})]

    def _thinking_delta(self, event: ir.ThinkingDelta) -> list[bytes]:
        if not event.text:
            return []
        frames, block = self._current(event.index, "thinking")
        frames += self._open(block)
        return frames + [self._delta(block, {"type": "thinking_delta", "thinking": event.text})]

    def _signature_delta(self, event: ir.SignatureDelta) -> list[bytes]:
        if not event.signature:
            return []
        frames, block = self._current(event.index, "thinking")
        if block.kind != "thinking":
            return frames  # a signature on a tool call (Gemini's) has no slot here
        frames += self._open(block)  # a signature-only block is still a block (known-gateway-bugs #8)
        # Another family's signature goes to the client tagged with that family (the first piece).
        block.signature.append(event.signature if block.signature else
                               opaque_for_client(event.signature, event.origin))
        return frames

    def _part_stop(self, event: ir.PartStop) -> list[bytes]:
        if self._block is None or self._block.ir_index != event.index:
            return []
        return self._close_block()

    def _current(self, ir_index: int, kind: str) -> tuple[list[bytes], _ClientBlock]:
        """The open part for a delta; a delta without its PartStart starts one implicitly."""
        if self._block is not None and self._block.ir_index == ir_index:
            return [], self._block
        frames = self._close_block()
        self._block = _ClientBlock(ir_index, kind)
        return frames, self._block

    def _open(self, block: _ClientBlock) -> list[bytes]:
        if block.index is not None:
            return []
        block.index = self._next_index
        self._next_index += 1
        return [_event({"type": "content_block_start", "index": block.index,
                        "content_block": _opening_block(block)})]

    def _delta(self, block: _ClientBlock, delta: dict) -> bytes:
        return _event({"type": "content_block_delta", "index": block.index, "delta": delta})

    def _close_block(self) -> list[bytes]:
        block, self._block = self._block, None
        if block is None or block.index is None:
            return []
        frames = []
        if block.signature:
            # One signature_delta, right before the stop, as the API sends it.
            frames.append(self._delta(block, {"type": "signature_delta", "signature": "".join(block.signature)}))
        frames.append(_event({"type": "content_block_stop", "index": block.index}))
        return frames


def _split_tool_start(data: str) -> tuple[dict, dict] | None:
    """A content_block_start whose tool_use input is not empty -> (the start with
    `input: {}`, an input_json_delta with the input); None for any other frame."""
    payload = loads_or_none(data)
    block = payload.get("content_block") if isinstance(payload, dict) else None
    if not isinstance(block, dict) or block.get("type") != "tool_use" or not block.get("input"):
        return None
    if not isinstance(block["input"], dict) or not _is_int(payload.get("index")):
        return None
    start = {**payload, "content_block": {**block, "input": {}}}
    delta = {"type": "content_block_delta", "index": payload["index"],
             "delta": {"type": "input_json_delta", "partial_json": dumps_str(block["input"])}}
    return start, delta


def _opening_block(block: _ClientBlock) -> dict:
    if block.kind == "tool_call":
        return {"type": "tool_use", "id": block.call_id or f"toolu_{block.ir_index}", "name": block.name or "",
                "input": {}}
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block.kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data or ""}
    return {"type": "text", "text": ""}


def _error_event(err: ProxyError) -> bytes:
    _, error_type = _ERROR_RENDERING.get(err.kind, (500, "api_error"))
    return _event({"type": "error", "error": {"type": error_type, "message": err.message}})


def _encode_frame(frame: Frame) -> bytes:
    if "\n" not in frame.data:
        return encode_sse(frame.data, frame.event)
    # Multi-line data goes back out as one `data:` line per line.
    head = b"" if frame.event is None else b"event: " + frame.event.encode() + b"\n"
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in frame.data.split("\n"))
    return head + lines + b"\n"
