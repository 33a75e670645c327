"""Ollama's native chat API (`POST /api/chat`), the backend direction: the IR
written as a chat request body, and replies, NDJSON stream lines and error
bodies read back (protocols B §5). Nothing here knows URLs or credentials
(app/providers/ollama.py); the NDJSON framing is app/upstream/ndjson.py.

    build_body(req, target) -> dict              model, messages, tools, options, think, format, stream
    parse_response(body, req) -> ir.Response
    StreamParser(req).feed(frame) / .close()     one frame per NDJSON line
    parse_error(status, headers, body) -> ProxyError

Policy choices, each one a place where the wire formats disagree:
- `stream` is always written: Ollama streams when it is left out.
- Tool-call arguments are JSON objects both ways (the IR keeps JSON text);
  calls keep their ids and tool messages name the call (`tool_call_id`) and
  the function (`tool_name`, which the model's chat template reads).
- Message content is one string: text parts are joined; images go in the
  message's `images` as bare base64 (URL images are refused: Ollama takes
  only inline data, and the proxy does not fetch).
- Max tokens, stop sequences and sampling go in `options` (`num_predict`,
  `stop`, `temperature`, `top_p`, `top_k`, `seed`).
- Reasoning is `think: true` (an effort of `none` or a zero budget is
  `think: false`); reasoning text comes back in `message.thinking`, and only
  Ollama's own goes back to it (other providers' thoughts are theirs).
- Ollama has no tool choice: `none` leaves the tools out, a forced choice
  (`required`, a named tool) is refused with a 400 naming `tool_choice`.
- JSON output is `format`: "json", or the JSON schema itself.
- `done_reason` says `stop` even when the model called tools: a reply with
  tool calls finishes with `tool_calls`, as Ollama's own OpenAI layer does.
  Usage counts are omitted when zero; absent means 0.
- Errors are `{"error": "..."}` with an HTTP status, or, once a stream has
  begun, the same object as an NDJSON line under HTTP 200: a StreamError,
  never a clean finish.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError, invalid, kind_for_status, redact
from app.jsonutil import dumps_str, loads
from app.protocols.base import Target, extras_to_send
from app.upstream.framing import Frame

PROTOCOL = "ollama"
RESPONSE_MODEL_FIELD = "model"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
_LABEL = "an Ollama backend"

_FINISH_BY_DONE_REASON = {"stop": ir.FinishReason.stop, "length": ir.FinishReason.length}


# ================================================================ build_body


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """IR request -> the JSON body of POST /api/chat."""
    if req.n > 1:
        raise invalid("Ollama returns one completion per request; n must be 1", param="n")
    body: dict[str, Any] = {"model": target.model, "messages": _messages(req.messages), "stream": req.stream}
    if not body["messages"]:
        raise invalid("at least one message is required", param="messages")
    tools = _tools(req)
    if tools:
        body["tools"] = tools
    think = _think(req.reasoning)
    if think is not None:
        body["think"] = think
    fmt = _format(req.response_format)
    if fmt is not None:
        body["format"] = fmt
    options = _options(req)
    if options:
        body["options"] = options
    body.update(extras_to_send(req, PROTOCOL, _LABEL))
    return body


def _messages(messages: tuple[ir.Message, ...]) -> list[dict[str, Any]]:
    names = ir.tool_names_by_id(messages)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if m.role in ("system", "developer"):
            text = "".join(p.text for p in m.parts if isinstance(p, ir.Text))
            if text.strip():
                out.append({"role": "system", "content": text})
        elif m.role == "tool":
            out.extend(_tool_message(p, names, f"{where}.content.{j}") for j, p in enumerate(m.parts)
                       if isinstance(p, ir.ToolResult))
        else:
            message = _message(m, where)
            if message is not None:
                out.append(message)
    return out


def _message(m: ir.Message, where: str) -> dict[str, Any] | None:
    """A user or assistant turn; None when it carries nothing (a turn of other protocols' thoughts)."""
    texts: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []
    for j, part in enumerate(m.parts):
        at = f"{where}.content.{j}"
        if isinstance(part, ir.Text | ir.Refusal):
            texts.append(part.text)
        elif isinstance(part, ir.Image):
            images.append(_image_data(part, at))
        elif isinstance(part, ir.ToolCall):
            calls.append(_tool_call(part, at))
        elif isinstance(part, ir.Thinking):
            if part.origin == PROTOCOL and part.text:
                thinking.append(part.text)
        elif isinstance(part, ir.Opaque):
            raise invalid(f"{part.kind} cannot be sent to {_LABEL}", param=part.where)
        # A ToolResult outside a tool turn does not occur in the IR (parsers put results in tool turns).
    if not (texts or images or calls or thinking):
        return None
    message: dict[str, Any] = {"role": "assistant" if m.role == "assistant" else "user", "content": "".join(texts)}
    if thinking:
        message["thinking"] = "".join(thinking)
    if images:
        message["images"] = images
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(call: ir.ToolCall, at: str) -> dict[str, Any]:
    try:
        arguments = call.arguments_object()
    except ValueError:
        raise invalid(f"tool call {call.id} ({call.name}) has arguments that are not a JSON object; "
                      "Ollama needs tool arguments as an object", param=at) from None
    return {"id": call.id, "function": {"name": call.name, "arguments": arguments}}


def _tool_message(result: ir.ToolResult, names: Mapping[str, str], at: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "tool", "content": result.text()}
    images = [_image_data(p, f"{at}.content.{k}") for k, p in enumerate(result.content) if isinstance(p, ir.Image)]
    if images:
        message["images"] = images
    for p in result.content:
        if isinstance(p, ir.Opaque):
            raise invalid(f"{p.kind} cannot be sent to {_LABEL}", param=p.where)
    name = result.name or names.get(result.call_id)
    if name:
        message["tool_name"] = name
    message["tool_call_id"] = result.call_id
    return message


def _image_data(image: ir.Image, at: str) -> str:
    """Bare base64, as `images` takes it."""
    if image.data:
        return image.data
    if image.url and image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        if not header.endswith(";base64") or not data:
            raise invalid("image data URLs must be base64-encoded", param=at)
        return data
    raise invalid("Ollama takes images inline (base64); image URLs are not supported", param=at)


def _tools(req: ir.Request) -> list[dict[str, Any]]:
    tools = ir.tools_for(PROTOCOL, req.tools)
    choice = req.tool_choice
    if choice is not None and choice.mode in ("required", "tool") and tools:
        raise invalid("Ollama has no tool choice: it cannot be made to call a tool; send tool_choice auto or none",
                      param="tool_choice")
    if not tools or (choice is not None and choice.mode == "none"):
        return []
    out = []
    for tool in tools:
        if tool.native is not None:
            raise invalid(f"{tool.native.kind} cannot be sent to {_LABEL}", param=tool.native.where)
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    return out


def _think(reasoning: ir.Reasoning | None) -> bool | None:
    if reasoning is None:
        return None  # the model's default
    if reasoning.effort == "none" or reasoning.budget_tokens == 0:
        return False
    if ir.thinking_budget(reasoning) is None:
        return None  # nothing asked of the reasoning (a summary level alone): the model's default
    return True


def _format(response_format: ir.ResponseFormat | None) -> str | dict | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema" and response_format.schema:
        return dict(response_format.schema)
    return "json"


def _options(req: ir.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if req.max_tokens is not None:
        options["num_predict"] = req.max_tokens
    if req.temperature is not None:
        options["temperature"] = req.temperature
    if req.top_p is not None:
        options["top_p"] = req.top_p
    if req.top_k is not None:
        options["top_k"] = req.top_k
    if req.seed is not None:
        options["seed"] = req.seed
    stop = [s for s in req.stop if s]
    if stop:
        options["stop"] = stop
    return options


# ============================================================ parse_response


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A chat reply (`stream: false`) -> IR. A body that is not one is a bad gateway."""
    data = _json_or_none(body)
    if isinstance(data, dict) and "error" in data:
        raise _error_of(500, data)  # an error object under HTTP 200
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or data.get("done") is not True:
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned a malformed Ollama chat reply")
    parts: list[ir.Part] = []
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking:
        parts.append(ir.Thinking(thinking, origin=PROTOCOL))
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        parts.append(ir.Text(content))
    calls = [_call_from_wire(c, i, data) for i, c in enumerate(_list(message.get("tool_calls")))]
    parts += calls
    done_reason = data.get("done_reason")
    return ir.Response(id="", model=req.model, parts=tuple(parts),
                       finish_reason=_finish_reason(done_reason, bool(calls)), usage=_usage(data),
                       raw_finish_reason=done_reason if isinstance(done_reason, str) else None)


def _finish_reason(done_reason: Any, called: bool) -> ir.FinishReason:
    finish = _FINISH_BY_DONE_REASON.get(done_reason, ir.FinishReason.stop)
    return ir.FinishReason.tool_calls if called and finish is ir.FinishReason.stop else finish


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(data: Mapping[str, Any]) -> ir.Usage:
    return ir.Usage(input_tokens=_count(data.get("prompt_eval_count")), output_tokens=_count(data.get("eval_count")))


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _call_from_wire(call: Any, index: int, reply: Mapping[str, Any]) -> ir.ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned a tool call without a function name")
    arguments = function.get("arguments")
    if isinstance(arguments, str):  # not Ollama's form, but JSON text is what the IR keeps
        text = arguments or "{}"
    else:
        text = dumps_str(arguments if isinstance(arguments, dict) else {})
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = _synthetic_id(reply, index, function["name"], text)
    return ir.ToolCall(call_id, function["name"], text)


def _synthetic_id(reply: Mapping[str, Any], index: int, name: str, arguments: str) -> str:
    """An id for a call from a server too old to give one: stable for the same reply (its
    timestamp, the call's place and content), so retries and tests see the same id."""
    seed = f"{reply.get('created_at')}|{index}|{name}|{arguments}".encode()
    return "call_" + hashlib.sha256(seed).hexdigest()[:8]


# ============================================================== StreamParser


def is_content_frame(frame: Frame) -> bool:
    """No client speaks this wire, so its frames are never passed through unparsed:
    every line goes through the parser (which is what finds an error line)."""
    return False


class StreamParser:
    """NDJSON lines (app.upstream.ndjson) -> IR events.

    Each line is a partial reply: `message.thinking` and `message.content`
    are deltas, `message.tool_calls` arrive whole; the line with `done: true`
    carries done_reason and usage. A thinking part closes when content or a
    call begins, so parts stay sequential."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._next_part = 0
        self._open: tuple[str, int] | None = None  # (kind, part index)
        self._calls = 0
        self._finished = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._finished:
            return []
        data = _json_or_none(frame.data)
        if not isinstance(data, dict):
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream sent a malformed stream line"))
        if "error" in data:
            return self._fail(_error_of(500, data))
        events = self._start()
        message = data.get("message")
        if isinstance(message, dict):
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                events += self._ensure("thinking") + [ir.ThinkingDelta(self._open[1], thinking)]
            content = message.get("content")
            if isinstance(content, str) and content:
                if content.strip() or (self._open is not None and self._open[0] == "text"):
                    # no text part opens on whitespace alone (the blank line after a model's thoughts)
                    events += self._ensure("text") + [ir.TextDelta(self._open[1], content)]
            for call in _list(message.get("tool_calls")):
                events += self._tool_call(call, data)
        if data.get("done") is True:
            events += self._close_part()
            self._finished = True
            done_reason = data.get("done_reason")
            events.append(ir.MessageStop(_finish_reason(done_reason, self._calls > 0), _usage(data),
                                         raw_finish_reason=done_reason if isinstance(done_reason, str) else None))
        return events

    def close(self) -> list[ir.Event]:
        if self._finished:
            return []
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._finished = True
        return [ir.StreamError(err)]

    def _start(self) -> list[ir.Event]:
        if self._started:
            return []
        self._started = True
        return [ir.MessageStart("", self._req.model)]

    def _tool_call(self, call: Any, line: Mapping[str, Any]) -> list[ir.Event]:
        parsed = _call_from_wire(call, self._calls, line)
        self._calls += 1
        events = self._close_part()
        index = self._next_part
        self._next_part += 1
        return events + [ir.PartStart(index, "tool_call", id=parsed.id, name=parsed.name),
                         ir.ToolArgumentsDelta(index, parsed.arguments), ir.PartStop(index)]

    def _ensure(self, kind: str) -> list[ir.Event]:
        if self._open is not None and self._open[0] == kind:
            return []
        events = self._close_part()
        self._open = (kind, self._next_part)
        self._next_part += 1
        return events + [ir.PartStart(self._open[1], kind)]  # type: ignore[arg-type]

    def _close_part(self) -> list[ir.Event]:
        open_part, self._open = self._open, None
        return [] if open_part is None else [ir.PartStop(open_part[1])]


# ================================================================== errors


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error -> ProxyError: `{"error": "..."}`, the kind from the status."""
    payload = _json_or_none(body)
    err = _error_of(status, payload if isinstance(payload, dict) else {}, body)
    retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    err.retry_after = retry_after.strip() if retry_after else None
    return err


def _error_of(status: int, payload: Mapping[str, Any], body: bytes = b"") -> ProxyError:
    message = payload.get("error")
    if isinstance(message, dict):  # a gateway in front of Ollama may nest it
        message = message.get("message")
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"upstream returned HTTP {status}"
    return ProxyError(kind_for_status(status), redact(message), status=status)


def _json_or_none(data: bytes | str) -> Any:
    try:
        return loads(data)
    except ValueError:
        return None
