"""Frontend: IR stream events rendered as Responses SSE events, and the same-protocol relay."""
from __future__ import annotations

from typing import Any

from app import ir
from app.errors import ProxyError
from app.jsonutil import dumps, loads
from app.upstream.framing import Frame, encode_sse
from app.protocols.openai_chat.common import KEEPALIVE_COMMENT
from app.protocols.openai_chat.response import _model_failed
from app.protocols.openai_responses.common import PROTOCOL, _custom_input
from app.protocols.openai_responses.errors import _FAILED_CODE
from app.protocols.openai_responses.response import (
    _INCOMPLETE_REASON, _call_item, _client_call, _item_id, _now, _response_id, _response_object, _shows_summary,
    _usage_to_wire)


class _OpenItem:
    __slots__ = ("index", "item", "kind", "texts", "part_open", "summary_open", "announced")

    def __init__(self, index: int, item: dict, kind: str) -> None:
        self.index = index  # output_index
        self.item = item  # the item as it will be in output_item.done
        self.kind = kind  # message | function_call | custom_tool_call | reasoning
        self.texts: list[str] = []  # the open part's text so far
        self.part_open: str | None = None  # message: the open content part kind; reasoning: "summary"
        self.summary_open = False
        self.announced = False  # output_item.added sent


_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})


class StreamFormatter:
    """IR events -> Responses SSE events for one client stream.

    Wire option `created` fixes the timestamp (tests). Consecutive text and
    refusal parts share one message item; each tool call and reasoning part is
    its own item. A custom tool call's input is sent whole when it ends (its IR
    arguments are the JSON `{"input": …}`, not the raw text).
    """

    def __init__(self, req: ir.Request, **wire_options: Any) -> None:
        self._req = req
        self._created = wire_options.get("created") or _now()
        self._seq = 0
        self._id: str | None = None
        self._model = req.model
        self._output: list[dict] = []  # finished items, by output_index
        self._item: _OpenItem | None = None  # the open output item
        self._ir_kind: str | None = None  # kind of the open IR part
        self._done = False
        self._show = _shows_summary(req)
        # The terminal response object the client got (completed or incomplete), for the state store.
        self.final: dict | None = None

    # ---------------------------------------------------------------- public

    def feed(self, event: ir.Event) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        if isinstance(event, ir.MessageStart):
            self._begin(event.id, event.model, out)
        elif isinstance(event, ir.StreamError):
            self._begin(None, None, out)
            self._fail(event.error, out)
        elif isinstance(event, ir.MessageStop):
            self._begin(None, None, out)
            self._stop(event, out)
        else:
            self._begin(None, None, out)
            self._content(event, out)
        return b"".join(out)

    def relay(self, frame: Frame) -> bytes:
        """Same-protocol passthrough of one upstream event; a `[DONE]` some servers add is dropped."""
        if frame.data.strip() == "[DONE]":
            return b""
        if frame.event in _FINAL_EVENTS or (frame.event in (None, "raw") and (
                '"response.completed"' in frame.data or '"response.incomplete"' in frame.data)):
            self._keep_final(frame.data)
        event = frame.event if frame.event not in (None, "raw") else None
        if "\n" not in frame.data:
            return encode_sse(frame.data, event)
        head = b"event: " + event.encode() + b"\n" if event else b""
        return head + b"".join(b"data: " + line.encode() + b"\n" for line in frame.data.split("\n")) + b"\n"

    def finish(self) -> bytes:
        return b""  # the terminal event comes from MessageStop / StreamError

    def keepalive(self) -> bytes:
        return KEEPALIVE_COMMENT  # SSE readers skip comment lines

    def _keep_final(self, data: str) -> None:
        try:
            event = loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("type") in _FINAL_EVENTS and isinstance(event.get("response"), dict):
            self.final = event["response"]

    # ---------------------------------------------------------------- events

    def _emit(self, out: list[bytes], payload: dict) -> None:
        payload["sequence_number"] = self._seq
        self._seq += 1
        out.append(encode_sse(dumps(payload), payload["type"]))

    def _snapshot(self, status: str, **kwargs: Any) -> dict:
        return _response_object(self._req, self._id, self._model, self._created, status=status, **kwargs)

    def _begin(self, upstream_id: str | None, model: str | None, out: list[bytes]) -> None:
        if self._id is not None:
            return
        self._id = _response_id(upstream_id)
        self._model = model or self._req.model
        snapshot = self._snapshot("in_progress", output=[], usage=None)
        self._emit(out, {"type": "response.created", "response": snapshot})
        self._emit(out, {"type": "response.in_progress", "response": snapshot})

    def _open_item(self, kind: str, item: dict, out: list[bytes], announce: bool = True) -> _OpenItem:
        opened = _OpenItem(len(self._output), item, kind)
        self._item = opened
        if announce:
            self._announce(opened, out)
        return opened

    def _announce(self, item: _OpenItem, out: list[bytes]) -> None:
        if item.announced:
            return
        item.announced = True
        added = dict(item.item)
        if item.kind == "message":
            added["content"] = []
        self._emit(out, {"type": "response.output_item.added", "output_index": item.index, "item": added})

    def _close_item(self, out: list[bytes], status: str = "completed") -> None:
        item = self._item
        if item is None:
            return
        self._item = None
        if not item.announced:
            # A reasoning part with nothing to show or carry gets no item (as format_response).
            if "encrypted_content" not in item.item:
                return
            self._announce(item, out)
        if item.kind == "message" and item.part_open:
            self._close_text_part(item, out)
        if item.kind == "reasoning" and item.summary_open:
            self._close_summary(item, out)
        if "status" in item.item:
            item.item["status"] = status
        self._output.append(item.item)
        self._emit(out, {"type": "response.output_item.done", "output_index": item.index, "item": item.item})

    def _content(self, event: ir.Event, out: list[bytes]) -> None:
        if isinstance(event, ir.PartStart):
            self._part_start(event, out)
        elif isinstance(event, (ir.TextDelta, ir.RefusalDelta)):
            item = self._item
            if item is None or item.kind != "message" or not event.text or item.part_open is None:
                return
            item.texts.append(event.text)
            kind = "response.output_text.delta" if item.part_open == "output_text" else "response.refusal.delta"
            payload = {"type": kind, "item_id": item.item["id"], "output_index": item.index,
                       "content_index": len(item.item["content"]), "delta": event.text}
            if item.part_open == "output_text":
                payload["logprobs"] = []
            self._emit(out, payload)
        elif isinstance(event, ir.ToolArgumentsDelta):
            item = self._item
            if item is None or item.kind not in ("function_call", "custom_tool_call") or not event.json:
                return
            item.texts.append(event.json)
            if item.kind == "function_call":
                self._emit(out, {"type": "response.function_call_arguments.delta", "item_id": item.item["id"],
                                 "output_index": item.index, "delta": event.json})
        elif isinstance(event, ir.ThinkingDelta):
            item = self._item
            if item is None or item.kind != "reasoning" or not event.text:
                return
            item.texts.append(event.text)
            if self._show:
                self._announce(item, out)
                if not item.summary_open:
                    item.summary_open = True
                    self._emit(out, {"type": "response.reasoning_summary_part.added", "item_id": item.item["id"],
                                     "output_index": item.index, "summary_index": 0,
                                     "part": {"type": "summary_text", "text": ""}})
                self._emit(out, {"type": "response.reasoning_summary_text.delta", "item_id": item.item["id"],
                                 "output_index": item.index, "summary_index": 0, "delta": event.text})
        elif isinstance(event, ir.SignatureDelta):
            item = self._item
            if item is not None and item.kind == "reasoning" and event.origin == PROTOCOL:
                item.item["encrypted_content"] = item.item.get("encrypted_content", "") + event.signature
        elif isinstance(event, ir.PartStop):
            self._part_stop(out)

    def _part_start(self, event: ir.PartStart, out: list[bytes]) -> None:
        self._ir_kind = event.kind
        if event.kind in ("text", "refusal"):
            item = self._item
            if item is None or item.kind != "message":
                self._close_item(out)
                item = self._open_item("message", {
                    "id": _item_id("msg", self._id, len(self._output)), "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}, out)
            item.part_open = "output_text" if event.kind == "text" else "refusal"
            item.texts = []
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []} \
                if event.kind == "text" else {"type": "refusal", "refusal": ""}
            self._emit(out, {"type": "response.content_part.added", "item_id": item.item["id"],
                             "output_index": item.index, "content_index": len(item.item["content"]), "part": part})
            return
        self._close_item(out)
        if event.kind == "tool_call":
            call = ir.ToolCall(event.id or "", event.name or "", "")
            custom = _client_call(self._req, call.name)[2]
            item = _call_item(self._req, call, _item_id("ctc" if custom else "fc", self._id, len(self._output)),
                              status="in_progress")
            self._open_item(item["type"], item, out)
        elif event.kind == "thinking":
            item = {"id": _item_id("rs", self._id, len(self._output)), "type": "reasoning", "summary": []}
            self._open_item("reasoning", item, out, announce=False)  # announced by its first visible content
        # redacted_thinking has no Responses form: no item

    def _close_text_part(self, item: _OpenItem, out: list[bytes]) -> None:
        text = "".join(item.texts)
        index = len(item.item["content"])
        base = {"item_id": item.item["id"], "output_index": item.index, "content_index": index}
        if item.part_open == "output_text":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._emit(out, {"type": "response.output_text.done", **base, "text": text, "logprobs": []})
        else:
            part = {"type": "refusal", "refusal": text}
            self._emit(out, {"type": "response.refusal.done", **base, "refusal": text})
        self._emit(out, {"type": "response.content_part.done", **base, "part": part})
        item.item["content"].append(part)
        item.part_open = None
        item.texts = []

    def _close_summary(self, item: _OpenItem, out: list[bytes]) -> None:
        text = "".join(item.texts)
        base = {"item_id": item.item["id"], "output_index": item.index, "summary_index": 0}
        part = {"type": "summary_text", "text": text}
        self._emit(out, {"type": "response.reasoning_summary_text.done", **base, "text": text})
        self._emit(out, {"type": "response.reasoning_summary_part.done", **base, "part": part})
        item.item["summary"] = [part]
        item.summary_open = False

    def _part_stop(self, out: list[bytes]) -> None:
        kind, self._ir_kind = self._ir_kind, None
        item = self._item
        if item is None:
            return
        if item.kind == "message" and kind in ("text", "refusal") and item.part_open:
            self._close_text_part(item, out)
        elif item.kind == "function_call":
            arguments = "".join(item.texts)
            item.item["arguments"] = arguments
            self._emit(out, {"type": "response.function_call_arguments.done", "item_id": item.item["id"],
                             "output_index": item.index, "name": item.item["name"], "arguments": arguments})
            self._close_item(out)
        elif item.kind == "custom_tool_call":
            text = _custom_input("".join(item.texts))
            item.item["input"] = text
            base = {"item_id": item.item["id"], "output_index": item.index}
            if text:
                self._emit(out, {"type": "response.custom_tool_call_input.delta", **base, "delta": text})
            self._emit(out, {"type": "response.custom_tool_call_input.done", **base, "input": text})
            self._close_item(out)
        elif item.kind == "reasoning":
            self._close_item(out)

    def _stop(self, event: ir.MessageStop, out: list[bytes]) -> None:
        if event.finish_reason is ir.FinishReason.error:
            self._fail(_model_failed(event.raw_finish_reason), out)
            return
        incomplete = _INCOMPLETE_REASON.get(event.finish_reason)
        self._close_item(out, "incomplete" if incomplete else "completed")
        self._done = True
        snapshot = self._snapshot("incomplete" if incomplete else "completed", output=self._output,
                                  usage=_usage_to_wire(event.usage), incomplete=incomplete)
        self.final = snapshot
        self._emit(out, {"type": "response.incomplete" if incomplete else "response.completed",
                         "response": snapshot})

    def _fail(self, err: ProxyError, out: list[bytes]) -> None:
        self._close_item(out, "incomplete")
        self._done = True
        code = err.code or _FAILED_CODE.get(err.kind, "server_error")
        self._emit(out, {"type": "error", "code": code, "message": err.message, "param": err.param})
        snapshot = self._snapshot("failed", output=self._output, usage=None,
                                  error={"code": code, "message": err.message})
        self._emit(out, {"type": "response.failed", "response": snapshot})
