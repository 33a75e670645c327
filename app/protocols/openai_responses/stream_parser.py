"""Backend: a Responses SSE event stream read back into IR stream events."""
from __future__ import annotations

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.upstream.framing import Frame
from app.protocols.openai_responses.common import PROTOCOL
from app.protocols.openai_responses.errors import _failure
from app.protocols.openai_responses.reply import _finish, _flat_call_name, _item_parts, _malformed, _reasoning_text, _usage_from_wire


# Events that only carry content: a passthrough relay may leave them unparsed.
_CONTENT_EVENTS = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
    "response.custom_tool_call_input.delta", "response.output_text.done", "response.content_part.added",
    "response.content_part.done", "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done", "response.function_call_arguments.done",
})


def is_content_frame(frame: Frame) -> bool:
    """An event that only carries content (by its `event:` line, which Responses always sends)."""
    return frame.event in _CONTENT_EVENTS


class _StreamItem:
    __slots__ = ("kind", "index", "call_id", "name", "started", "streamed", "blank", "summaries")

    def __init__(self, kind: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind  # message | function_call | custom_tool_call | reasoning | other
        self.index = -1  # IR part index of the open part, when started
        self.call_id = call_id
        self.name = name
        self.started = False  # an IR part is open for it
        self.streamed: list[str] = []  # call arguments / custom input received as deltas
        self.blank = ""  # whitespace not yet worth a text part
        self.summaries = 0  # reasoning summary parts seen


class StreamParser:
    """Responses stream events -> IR events.

    Items are keyed by `item_id` (delta events carry no call_id: it comes from
    `output_item.added`). One IR part is open at a time: a part that starts while
    another is open closes it first. Text parts open at their first non-blank
    delta (no empty parts); a custom tool call's input is gathered and emitted
    as the IR arguments `{"input": …}` when the item ends; reasoning becomes a
    thinking part (summary text, encrypted content as its signature).
    """

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._done = False
        self._items: dict[str, _StreamItem] = {}
        self._open: _StreamItem | None = None  # the item whose IR part is open
        self._open_kind: str | None = None  # text | refusal | tool_call | thinking
        self._next_index = 0
        self._any_call = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done:
            return []
        data = frame.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self.close()
        try:
            event = loads(data)
        except ValueError:
            if frame.event == "raw":
                return []
            return self._fail(_malformed("a stream event is not JSON"))
        if not isinstance(event, dict):
            return []
        kind = event.get("type") or frame.event
        events: list[ir.Event] = []
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event, events)
        elif kind == "error":
            return self._fail(_failure(event, "Upstream reported an error mid-stream."))
        return events

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before response.completed"))

    # ---------------------------------------------------------------- helpers

    def _start(self, event: dict, events: list[ir.Event]) -> None:
        if self._started:
            return
        self._started = True
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        events.append(ir.MessageStart(id=response.get("id") or "", model=response.get("model") or self._req.model))

    def _item(self, event: dict) -> _StreamItem | None:
        return self._items.get(event.get("item_id") or "")

    def _open_part(self, item: _StreamItem, kind: str, events: list[ir.Event], call_id: str | None = None,
                   name: str | None = None) -> None:
        self._close_open(events)
        item.index = self._next_index
        self._next_index += 1
        item.started = True
        self._open, self._open_kind = item, kind
        events.append(ir.PartStart(index=item.index, kind=kind, id=call_id, name=name))

    def _close_open(self, events: list[ir.Event]) -> None:
        if self._open is not None:
            events.append(ir.PartStop(self._open.index))
            self._open.started = False
            self._open = self._open_kind = None

    def _is_open(self, item: _StreamItem, kind: str) -> bool:
        return self._open is item and self._open_kind == kind

    # ---------------------------------------------------------------- handlers

    def _on_created(self, event: dict, events: list[ir.Event]) -> None:
        self._start(event, events)

    def _on_item_added(self, event: dict, events: list[ir.Event]) -> None:
        self._start({}, events)
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        kind = item.get("type")
        key = item.get("id") or f"#{event.get('output_index')}"
        if kind in ("function_call", "custom_tool_call"):
            state = _StreamItem(kind, item.get("call_id") or item.get("id") or "", _flat_call_name(item))
            self._items[key] = state
            self._any_call = True
            self._open_part(state, "tool_call", events, state.call_id, state.name)
        elif kind in ("message", "reasoning"):
            self._items[key] = _StreamItem(kind)
        else:
            self._items[key] = _StreamItem("other")

    def _on_text_delta(self, event: dict, events: list[ir.Event], kind: str = "text") -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind != "message" or not isinstance(delta, str) or not delta:
            return
        item.streamed.append(delta)
        if self._is_open(item, kind):
            events.append(ir.TextDelta(item.index, delta) if kind == "text" else ir.RefusalDelta(item.index, delta))
            return
        text = item.blank + delta
        if not text.strip():
            item.blank = text
            return
        item.blank = ""
        self._open_part(item, kind, events)
        events.append(ir.TextDelta(item.index, text) if kind == "text" else ir.RefusalDelta(item.index, text))

    def _on_refusal_delta(self, event: dict, events: list[ir.Event]) -> None:
        self._on_text_delta(event, events, "refusal")

    def _on_text_done(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is None or item.kind != "message":
            return
        if self._open is item:
            self._close_open(events)
        else:
            # Nothing streamed (a server that sends only .done): take the final text.
            part = event.get("part") if isinstance(event.get("part"), dict) else event
            text = part.get("text") if part.get("type", "output_text") == "output_text" else None
            refusal = part.get("refusal")
            if isinstance(text, str) and text.strip() and not item.streamed:
                self._open_part(item, "text", events)
                events.append(ir.TextDelta(item.index, text))
                self._close_open(events)
            elif isinstance(refusal, str) and refusal and not item.streamed:
                self._open_part(item, "refusal", events)
                events.append(ir.RefusalDelta(item.index, refusal))
                self._close_open(events)
        item.blank = ""
        item.streamed = ["done"]  # this content part is finished; a later part starts afresh

    def _on_part_added(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "message":
            item.streamed = []

    def _on_arguments_delta(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind not in ("function_call", "custom_tool_call") or not isinstance(delta, str):
            return
        item.streamed.append(delta)
        if item.kind == "function_call" and self._is_open(item, "tool_call") and delta:
            events.append(ir.ToolArgumentsDelta(item.index, delta))

    def _on_summary_part(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "reasoning":
            item.summaries += 1

    def _on_thinking_delta(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        delta = event.get("delta")
        if item is None or item.kind != "reasoning" or not isinstance(delta, str) or not delta:
            return
        if not self._is_open(item, "thinking"):
            self._open_part(item, "thinking", events)
        elif item.summaries > 1 and not item.streamed:
            events.append(ir.ThinkingDelta(item.index, "\n\n"))  # between summary parts
        item.streamed.append(delta)
        events.append(ir.ThinkingDelta(item.index, delta))

    def _on_summary_done(self, event: dict, events: list[ir.Event]) -> None:
        item = self._item(event)
        if item is not None and item.kind == "reasoning":
            item.streamed = []  # the next summary part gets a separator

    def _on_item_done(self, event: dict, events: list[ir.Event]) -> None:
        done = event.get("item") if isinstance(event.get("item"), dict) else {}
        item = self._items.get(done.get("id") or f"#{event.get('output_index')}")
        if item is None:
            return
        if item.kind == "function_call":
            if self._is_open(item, "tool_call") and not "".join(item.streamed):
                arguments = done.get("arguments")
                if isinstance(arguments, str) and arguments:
                    events.append(ir.ToolArgumentsDelta(item.index, arguments))
        elif item.kind == "custom_tool_call":
            if self._is_open(item, "tool_call"):
                text = "".join(item.streamed) or (done.get("input") if isinstance(done.get("input"), str) else "")
                events.append(ir.ToolArgumentsDelta(item.index, dumps({"input": text}).decode()))
        elif item.kind == "reasoning":
            encrypted = done.get("encrypted_content")
            if not self._is_open(item, "thinking"):
                text = _reasoning_text(done)
                if not text and not isinstance(encrypted, str):
                    return
                self._open_part(item, "thinking", events)
                if text:
                    events.append(ir.ThinkingDelta(item.index, text))
            if isinstance(encrypted, str) and encrypted:
                events.append(ir.SignatureDelta(item.index, encrypted, PROTOCOL))
        elif item.kind == "message" and self._open is not item and not item.streamed:
            for part in _item_parts(done):  # nothing streamed for this message
                kind = "text" if isinstance(part, ir.Text) else "refusal"
                self._open_part(item, kind, events)
                events.append(ir.TextDelta(item.index, part.text) if kind == "text"
                              else ir.RefusalDelta(item.index, part.text))
        if self._open is item:
            self._close_open(events)

    def _on_terminal(self, event: dict, events: list[ir.Event]) -> None:
        self._start(event, events)
        self._close_open(events)
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        if event.get("type") == "response.failed":
            self._done = True
            events.append(ir.StreamError(_failure(response.get("error"), "Upstream reported a failed response.")))
            return
        status = "incomplete" if event.get("type") == "response.incomplete" else "completed"
        finish, raw = _finish(status, response.get("incomplete_details"), self._any_call)
        events.append(ir.MessageStop(finish_reason=finish, usage=_usage_from_wire(response.get("usage")),
                                     raw_finish_reason=raw))
        self._done = True

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(err)]


_HANDLERS = {
    "response.created": StreamParser._on_created,
    "response.in_progress": StreamParser._on_created,
    "response.queued": StreamParser._on_created,
    "response.output_item.added": StreamParser._on_item_added,
    "response.content_part.added": StreamParser._on_part_added,
    "response.output_text.delta": StreamParser._on_text_delta,
    "response.refusal.delta": StreamParser._on_refusal_delta,
    "response.content_part.done": StreamParser._on_text_done,
    "response.function_call_arguments.delta": StreamParser._on_arguments_delta,
    "response.custom_tool_call_input.delta": StreamParser._on_arguments_delta,
    "response.reasoning_summary_part.added": StreamParser._on_summary_part,
    "response.reasoning_summary_text.delta": StreamParser._on_thinking_delta,
    "response.reasoning_text.delta": StreamParser._on_thinking_delta,
    "response.reasoning_summary_part.done": StreamParser._on_summary_done,
    "response.output_item.done": StreamParser._on_item_done,
    "response.completed": StreamParser._on_terminal,
    "response.incomplete": StreamParser._on_terminal,
    "response.failed": StreamParser._on_terminal,
}
