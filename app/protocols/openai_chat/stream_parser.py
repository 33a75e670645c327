"""Backend: a `chat.completion.chunk` SSE stream read back into IR stream events."""
from __future__ import annotations

from typing import Any

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import loads
from app.upstream.framing import Frame
from app.protocols.openai_chat.errors import _error_from_envelope
from app.protocols.openai_chat.reply import (
    _FINISH_FROM_WIRE, _arguments_text, _malformed, _reasoning_pieces, _synthetic_call_id, _usage_from_wire)


def is_content_frame(frame: Frame) -> bool:
    """A chunk that only carries content: every choice's finish_reason null,
    no usage, no error. A passthrough relay, which parses frames only to
    notice the end, errors and usage, may leave it unparsed. Only compact
    JSON is recognised (as OpenAI writes it); anything else is parsed."""
    d = frame.data
    return (frame.event is None and d.startswith('{"') and '"error"' not in d
            and d.count('"finish_reason"') == d.count('"finish_reason":null') > 0
            and d.count('"usage"') == d.count('"usage":null'))


class _ToolCallState:
    __slots__ = ("id", "name", "arguments", "emitted")

    def __init__(self, call_id: str, name: str | None) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []  # fragments held back until the call is emitted
        self.emitted = False


class StreamParser:
    """`chat.completion.chunk` frames -> IR events (choice 0 only).

    One part is open at a time. Text, reasoning and refusal stream live and
    switch freely (a switch closes one part and opens the next). The first
    tool call streams live and stays open until the finish chunk; any part
    that starts while it is open (another call, text) is held back and
    emitted whole at the finish, in arrival order. Fragments are keyed by
    `tool_calls[].index`, never by arrival order.
    """

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._finished = False  # finish_reason seen
        self._done = False  # terminal event emitted
        self._response_id = ""
        self._next_index = 0
        self._open_kind: str | None = None  # kind of the one open part, if any
        self._open_key: Any = None  # its tool key when it is a tool call
        self._open_index = -1  # its IR part index
        self._tools: dict[Any, _ToolCallState] = {}
        self._queue: list[list] = []  # held-back parts: ["tool_call", key] or [kind, [texts]]
        self._blank: tuple[str, str] | None = None  # (kind, whitespace) not yet worth a part
        self._any_tool = False
        self._finish: ir.FinishReason | None = None
        self._raw_finish: str | None = None
        self._usage = ir.Usage()

    # ------------------------------------------------------------ public

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done:
            return []
        data = frame.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self._terminate()
        try:
            chunk = loads(data)
        except ValueError:
            if frame.event == "raw":  # stray non-SSE text: nothing we can use
                return []
            return self._fail(_malformed("a stream chunk is not JSON"))
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            return self._fail(_error_from_envelope(chunk, None))
        if frame.event == "raw":
            return []
        return self._chunk(chunk)

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        if self._finished:  # some servers omit [DONE]
            return self._terminate()
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    # ------------------------------------------------------------ chunks

    def _chunk(self, chunk: dict) -> list[ir.Event]:
        events: list[ir.Event] = []
        choices = chunk.get("choices") or []
        # Azure's prompt-filter chunk (choices [], empty id) does not start the message.
        if not self._started and (chunk.get("id") or choices):
            self._start(chunk, events)
        if isinstance(chunk.get("usage"), dict):
            self._usage = _usage_from_wire(chunk["usage"])
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        return events

    def _start(self, chunk: dict, events: list[ir.Event]) -> None:
        self._started = True
        self._response_id = chunk.get("id") or ""
        events.append(ir.MessageStart(id=self._response_id, model=chunk.get("model") or self._req.model))

    def _choice(self, choice: dict, events: list[ir.Event]) -> None:
        delta = choice.get("delta")  # absent in Azure content-filter chunks
        if isinstance(delta, dict):
            for kind, value in _reasoning_pieces(delta):
                if kind == "thinking":
                    self._text("thinking", value, events)
                else:
                    self._redacted(value, events)
            content = delta.get("content")
            self._text("text", content if isinstance(content, str) else "", events)
            refusal = delta.get("refusal")
            self._text("refusal", refusal if isinstance(refusal, str) else "", events)
            # `tool_calls: []` beside text must not open anything (known bug #1).
            for fragment in delta.get("tool_calls") or ():
                if isinstance(fragment, dict):
                    self._tool_fragment(fragment, events)
        raw_finish = choice.get("finish_reason")
        if raw_finish is not None:
            self._raw_finish = raw_finish
            self._finish = _FINISH_FROM_WIRE.get(raw_finish, ir.FinishReason.stop)
            self._finished = True
            self._close_all(events)

    def _text(self, kind: str, text: str, events: list[ir.Event]) -> None:
        if not text:
            return  # OpenAI's opening `content: ""` must not become an empty part
        if self._open_kind == kind:
            events.append(_delta_event(kind, self._open_index, text))
            return
        if self._open_kind == "tool_call":
            self._hold_text(kind, text)
            return
        # Whitespace alone (a "\n\n" before tool calls) must not open a part
        # (IR convention, hazard 11): keep it until real text of its kind follows.
        if self._blank is not None and self._blank[0] == kind:
            text = self._blank[1] + text
        if not text.strip():
            self._blank = (kind, text)
            return
        self._blank = None
        self._close_open(events)
        self._open_part(kind, None, None, events)
        events.append(_delta_event(kind, self._open_index, text))

    def _redacted(self, data: str, events: list[ir.Event]) -> None:
        """Encrypted reasoning arrives whole: a part of its own, opened and closed at once."""
        if self._open_kind == "tool_call":
            self._queue.append(["redacted_thinking", [data]])
            return
        self._blank = None
        self._close_open(events)
        self._open_part("redacted_thinking", None, None, events, data=data)
        self._close_open(events)

    def _hold_text(self, kind: str, text: str) -> None:
        if self._queue and self._queue[-1][0] == kind:
            self._queue[-1][1].append(text)
        else:
            self._queue.append([kind, [text]])

    def _tool_fragment(self, fragment: dict, events: list[ir.Event]) -> None:
        self._any_tool = True
        key = self._tool_key(fragment)
        fn = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        args = _arguments_text(fn.get("arguments"))
        state = self._tools.get(key)
        if state is None:
            call_id = fragment.get("id") or _synthetic_call_id(self._response_id, key)
            state = self._tools[key] = _ToolCallState(call_id, fn.get("name") or None)
            self._begin_tool(key, state, events)
        elif not state.name and fn.get("name"):
            state.name = fn["name"]
        if not args:
            return
        if self._open_kind == "tool_call" and self._open_key == key:
            events.append(ir.ToolArgumentsDelta(self._open_index, args))
        elif not state.emitted:
            state.arguments.append(args)
        # else: a fragment after the call was emitted (only possible after the
        # finish chunk); nothing can carry it.

    def _tool_key(self, fragment: dict) -> Any:
        index = fragment.get("index")
        if not isinstance(index, int):
            # Servers that omit `index`: a fragment with an id starts a call,
            # one without continues the latest.
            if fragment.get("id") or not self._tools:
                return ("noindex", len(self._tools))
            return next(reversed(self._tools))
        state = self._tools.get(index)
        new_id = fragment.get("id")
        if state is not None and new_id and new_id != state.id:
            # Same index, different id: a server that numbers every call 0.
            return (index, new_id)
        return index

    def _begin_tool(self, key: Any, state: _ToolCallState, events: list[ir.Event]) -> None:
        # Live only if nothing is held back (keeps calls in order) and the name is known.
        if self._open_kind == "tool_call" or self._queue or not state.name:
            self._queue.append(["tool_call", key])
            return
        self._close_open(events)
        self._blank = None
        self._open_part("tool_call", state.id, state.name, events)
        self._open_key = key
        state.emitted = True

    # ------------------------------------------------------------ parts

    def _open_part(self, kind: str, call_id: str | None, name: str | None, events: list[ir.Event],
                   data: str | None = None) -> int:
        index = self._next_index
        self._next_index += 1
        events.append(ir.PartStart(index=index, kind=kind, id=call_id, name=name, data=data))
        self._open_kind, self._open_key, self._open_index = kind, None, index
        return index

    def _close_open(self, events: list[ir.Event]) -> None:
        if self._open_kind is not None:
            events.append(ir.PartStop(self._open_index))
            self._open_kind = self._open_key = None

    def _close_all(self, events: list[ir.Event]) -> None:
        self._close_open(events)
        for kind, payload in self._queue:
            if kind == "tool_call":
                state = self._tools[payload]
                index = self._open_part("tool_call", state.id, state.name or "", events)
                state.emitted = True
                if state.arguments:
                    events.append(ir.ToolArgumentsDelta(index, "".join(state.arguments)))
                    state.arguments = []
            elif kind == "redacted_thinking":
                self._open_part(kind, None, None, events, data=payload[0])
            else:
                text = "".join(payload)
                if not text.strip():
                    continue
                index = self._open_part(kind, None, None, events)
                events.append(_delta_event(kind, index, text))
            self._close_open(events)
        self._queue = []

    # ------------------------------------------------------------ endings

    def _terminate(self) -> list[ir.Event]:
        events: list[ir.Event] = []
        if not self._started:
            events.append(ir.MessageStart(id="", model=self._req.model))
            self._started = True
        self._close_all(events)
        finish = self._finish or ir.FinishReason.stop
        if self._any_tool and finish is ir.FinishReason.stop:
            finish = ir.FinishReason.tool_calls  # known bug #7: tool-call turns reported as "stop"
        events.append(ir.MessageStop(finish_reason=finish, usage=self._usage, raw_finish_reason=self._raw_finish))
        self._done = True
        return events

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(err)]


def _delta_event(kind: str, index: int, text: str) -> ir.Event:
    if kind == "thinking":
        return ir.ThinkingDelta(index, text)
    if kind == "refusal":
        return ir.RefusalDelta(index, text)
    return ir.TextDelta(index, text)
