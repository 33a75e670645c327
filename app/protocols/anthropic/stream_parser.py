"""Backend: a Messages API SSE stream read back into IR stream events."""
from __future__ import annotations

from typing import Any, Callable

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps_str, loads_or_none
from app.upstream.framing import Frame
from app.protocols.anthropic.common import PROTOCOL
from app.protocols.anthropic.errors import _error_from_payload
from app.protocols.anthropic.reply import _finish_reason, _usage_from_wire


class _UpstreamBlock:
    """The upstream content block being read. `kind` None = a block the IR has no
    part for (server tools): its deltas are skipped. `part` is the IR index once opened."""

    __slots__ = ("kind", "call_id", "name", "data", "part", "has_arguments", "start_input")

    def __init__(self, kind: str | None, call_id: str | None = None, name: str | None = None,
                 data: str | None = None, start_input: dict | None = None):
        self.kind = kind
        self.call_id = call_id
        self.name = name
        self.data = data
        self.part: int | None = None
        self.has_arguments = False
        self.start_input = start_input


def is_content_frame(frame: Frame) -> bool:
    """A `content_block_delta` or `ping`: content only, never an end, an error
    or usage. A passthrough relay, which parses frames only to notice those,
    may leave it unparsed."""
    if frame.event == "ping":
        return True
    return frame.event == "content_block_delta" and frame.data.startswith('{"type":"content_block_delta"')


class StreamParser:
    """Messages SSE frames -> IR events. Text and thinking parts open at their first
    non-empty delta, so placeholder blocks never become empty parts."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._next_part = 0
        self._block: _UpstreamBlock | None = None
        self._wire_usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._finished = False  # message_stop or an error was seen
        self._handlers: dict[str, Callable[[dict], list[ir.Event]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._finished or frame.event == "ping":
            return []
        data = loads_or_none(frame.data)
        if not isinstance(data, dict):
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream sent a malformed stream event"))
        handler = self._handlers.get(data.get("type") or frame.event)
        return handler(data) if handler else []  # ping and event types newer than this parser

    def close(self) -> list[ir.Event]:
        if self._finished:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._finished = True
        return [ir.StreamError(err)]

    # -------------------------------------------------------- message level

    def _message_start(self, data: dict) -> list[ir.Event]:
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        usage = message.get("usage")
        self._wire_usage = dict(usage) if isinstance(usage, dict) else {}
        return [ir.MessageStart(str(message.get("id") or ""), str(message.get("model") or self._req.model),
                                _usage_from_wire(self._wire_usage))]

    def _message_delta(self, data: dict) -> list[ir.Event]:
        # A block cut by max_tokens may have no content_block_stop: finish it here.
        events = self._close_block()
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("stop_reason"):
            self._stop_reason = delta["stop_reason"]
        if delta.get("stop_sequence"):
            self._stop_sequence = delta["stop_sequence"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            # Cumulative counts: the latest value of each field wins.
            self._wire_usage.update({k: v for k, v in usage.items() if v is not None})
        return events

    def _message_stop(self, data: dict) -> list[ir.Event]:
        events = self._close_block()
        self._finished = True
        return events + [ir.MessageStop(
            finish_reason=_finish_reason(self._stop_reason),
            usage=_usage_from_wire(self._wire_usage),
            stop_sequence=self._stop_sequence if self._stop_reason == "stop_sequence" else None,
            raw_finish_reason=self._stop_reason,
        )]

    def _error(self, data: dict) -> list[ir.Event]:
        return self._fail(_error_from_payload(data, status=None))

    # ---------------------------------------------------------- block level

    def _block_start(self, data: dict) -> list[ir.Event]:
        events = self._close_block()
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        block_type = block.get("type")
        if block_type == "text":
            self._block = _UpstreamBlock("text")
            return events + self._text(block.get("text"))
        if block_type == "thinking":
            self._block = _UpstreamBlock("thinking")
            return events + self._thinking(block.get("thinking")) + self._signature(block.get("signature"))
        if block_type == "tool_use":
            start_input = block.get("input")
            self._block = _UpstreamBlock("tool_call", str(block.get("id") or ""), str(block.get("name") or ""),
                                         start_input=start_input if isinstance(start_input, dict) else None)
            return events + self._open()
        if block_type == "redacted_thinking":
            self._block = _UpstreamBlock("redacted_thinking", data=str(block.get("data") or ""))
            return events + self._open()
        self._block = _UpstreamBlock(None)
        return events

    def _block_delta(self, data: dict) -> list[ir.Event]:
        if self._block is None or self._block.kind is None:
            return []
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            return self._text(delta.get("text"))
        if delta_type == "thinking_delta":
            return self._thinking(delta.get("thinking"))
        if delta_type == "signature_delta":
            return self._signature(delta.get("signature"))
        if delta_type == "input_json_delta":
            return self._arguments(delta.get("partial_json"))
        return []  # citations_delta and newer delta types carry nothing the IR keeps

    def _block_stop(self, data: dict) -> list[ir.Event]:
        return self._close_block()

    def _text(self, text: Any) -> list[ir.Event]:
        if not text or not isinstance(text, str) or self._block.kind != "text":
            return []
        return self._open() + [ir.TextDelta(self._block.part, text)]

    def _thinking(self, text: Any) -> list[ir.Event]:
        if not text or not isinstance(text, str) or self._block.kind != "thinking":
            return []
        return self._open() + [ir.ThinkingDelta(self._block.part, text)]

    def _signature(self, signature: Any) -> list[ir.Event]:
        if not signature or not isinstance(signature, str) or self._block.kind != "thinking":
            return []
        return self._open() + [ir.SignatureDelta(self._block.part, signature, origin=PROTOCOL)]

    def _arguments(self, fragment: Any) -> list[ir.Event]:
        if not fragment or not isinstance(fragment, str) or self._block.kind != "tool_call":
            return []
        self._block.has_arguments = True
        return [ir.ToolArgumentsDelta(self._block.part, fragment)]

    def _open(self) -> list[ir.Event]:
        block = self._block
        if block.part is not None:
            return []
        block.part = self._next_part
        self._next_part += 1
        return [ir.PartStart(block.part, block.kind, id=block.call_id, name=block.name, data=block.data)]

    def _close_block(self) -> list[ir.Event]:
        block, self._block = self._block, None
        if block is None or block.part is None:
            return []
        events: list[ir.Event] = []
        if block.kind == "tool_call" and not block.has_arguments and block.start_input:
            # The start's `input: {}` is a placeholder, but a gateway that sends the whole
            # input there and no deltas means it.
            events.append(ir.ToolArgumentsDelta(block.part, dumps_str(block.start_input)))
        events.append(ir.PartStop(block.part))
        return events
