"""AWS Bedrock Converse / ConverseStream, the backend direction: the IR written
as a Converse request body, and replies, event-stream frames and error
envelopes read back. Nothing here knows URLs, credentials or signing: the
model id travels in the URL (the provider's business); it is passed in only
because what a body may carry depends on the model family.

What the provider layer composes (it owns the URL `/model/{quote(model_id, safe="")}/converse`
or `/converse-stream`, SigV4 over the exact bytes of `build_body`, and the framing):
    build_body(req, target) -> dict              the same body for both paths
    parse_response(body, req) -> ir.Response
    StreamParser(req).feed(frame) / .close()     frames from app.upstream.eventstream.EventStreamFramer
    parse_error(status, headers, body) -> ProxyError

Policy choices, each one a place where the wire formats disagree:
- Turns alternate user/assistant, as Converse requires: IR tool messages
  become user turns of toolResult blocks, and consecutive same-role turns are
  merged, tool results kept ahead of the turn's other blocks (Claude's rule).
- Empty or blank text is never sent (the API refuses "text field is blank");
  a turn left with no blocks is dropped and its neighbours merge.
- Tool history needs a toolConfig (the API refuses toolUse/toolResult blocks
  without one): definitions are declared from the names in history when the
  request has none. Converse has no "none" tool choice: with `none` the tools
  are only sent when the history needs them.
- Thinking is Claude's (`additionalModelRequestFields.thinking`), with Claude's
  rules: no temperature, top_p only >= 0.95, forced tool choice relaxed to
  auto, max tokens above the budget, and no thinking when the last assistant
  turn calls tools without its reasoning block. Other families get no thinking.
- Signed reasoning (and redacted reasoning) is only valid where it was made:
  parts this module parsed carry origin `bedrock_converse` (a streamed
  redaction's PartStart too) and go back only to a Claude model on Bedrock, as
  `reasoningContent` with the signature byte-exact; signatures of the Anthropic
  API, Vertex or Gemini are dropped, never sent as Bedrock's, and ours never
  reach the Anthropic API (its writer checks the provider). An Anthropic client
  carries ours tagged `bedrock_converse:<signature>` and hands them back
  (the Anthropic module's docstring has the whole rule).
- Images go inline (base64 `bytes`); URL images are refused (400 naming the
  field) rather than fetched by the proxy. Tool-call ids outside the API's
  charset are rewritten by a pure function, so a call and its result agree.
- Usage is trailing in a stream (`metadata`, after `messageStop`): MessageStop
  is emitted when both have arrived, in either order.
- parallel_tool_calls, seed and user have no Converse field and are not sent; n > 1 and
  structured output are refused (400 naming the field).
- Exception frames and HTTP errors map to error kinds by exception name;
  `malformed_model_output`/`malformed_tool_use` stop reasons are
  `FinishReason.error`, never a clean stop.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError, invalid, kind_for_status, redact
from app.jsonutil import dumps, dumps_str, loads_or_none
from app.upstream.eventstream import ERROR_PREFIX, EXCEPTION_PREFIX
from app.protocols.base import Target, tool_input
from app.upstream.framing import Frame

PROTOCOL = "bedrock_converse"
RESPONSE_MODEL_FIELD = ""  # Converse replies do not name the model
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}

_TOOL_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_TOOL_ID_INVALID_CHAR = re.compile(r"[^a-zA-Z0-9_.:-]")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")

_FINISH_BY_STOP_REASON = {
    "end_turn": ir.FinishReason.stop,
    "stop_sequence": ir.FinishReason.stop,
    "max_tokens": ir.FinishReason.length,
    "model_context_window_exceeded": ir.FinishReason.length,
    "tool_use": ir.FinishReason.tool_calls,
    "guardrail_intervened": ir.FinishReason.content_filter,
    "content_filtered": ir.FinishReason.content_filter,
    "malformed_model_output": ir.FinishReason.error,
    "malformed_tool_use": ir.FinishReason.error,
}

# Exception name (x-amzn-ErrorType, or a stream's :exception-type capitalised) -> (kind, status).
# Statuses are what the kind means to a client: the API's 424 (model error) is a bad gateway,
# its 403 for unknown keys or bad signatures an authentication failure.
_ERROR_TYPES: dict[str, tuple[ErrorKind, int]] = {
    "ValidationException": (ErrorKind.invalid_request, 400),
    "ConflictException": (ErrorKind.invalid_request, 400),
    "SerializationException": (ErrorKind.invalid_request, 400),
    "AccessDeniedException": (ErrorKind.permission, 403),
    "UnrecognizedClientException": (ErrorKind.authentication, 401),
    "InvalidSignatureException": (ErrorKind.authentication, 401),
    "IncompleteSignatureException": (ErrorKind.authentication, 401),
    "MissingAuthenticationTokenException": (ErrorKind.authentication, 401),
    "ExpiredTokenException": (ErrorKind.authentication, 401),
    "ResourceNotFoundException": (ErrorKind.not_found, 404),
    "ModelTimeoutException": (ErrorKind.timeout, 504),
    "ThrottlingException": (ErrorKind.rate_limit, 429),
    "ServiceQuotaExceededException": (ErrorKind.rate_limit, 429),
    "ModelNotReadyException": (ErrorKind.overloaded, 503),
    "ModelErrorException": (ErrorKind.bad_gateway, 502),
    "ModelStreamErrorException": (ErrorKind.bad_gateway, 502),
    "InternalServerException": (ErrorKind.api_error, 500),
    "ServiceUnavailableException": (ErrorKind.overloaded, 503),
}


def is_claude(model_id: str) -> bool:
    """An Anthropic model: a base id (`anthropic.claude-…`), a cross-region profile
    (`us.anthropic.claude-…`) or an ARN ending in one."""
    return "anthropic.claude" in model_id


# ================================================================ build_body


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """IR request -> the JSON body of /model/{model_id}/converse (and /converse-stream:
    the same body; streaming is chosen by the path). The model id only tells the family."""
    _refuse_unsupported(req)
    claude = is_claude(target.model)
    system, conversation = ir.split_system(req.messages)
    positions = {id(m): i for i, m in enumerate(req.messages)}
    turns = _turns(conversation, positions, claude)
    if not turns:
        raise invalid("at least one user or assistant message is required", param="messages")

    budget = ir.thinking_budget(req.reasoning) if claude else None
    if budget is not None and not _history_allows_thinking(turns):
        budget = None  # the model would refuse the request; answering without thinking is the lesser loss
    thinking = budget is not None

    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = [{"text": text} for text in system]
    inference = _inference_config(req, budget)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(req, turns, thinking)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    extra: dict[str, Any] = {}
    if thinking:
        extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if claude and req.top_k is not None and not thinking:
        extra["top_k"] = req.top_k  # Anthropic's own field name, passed through to the model
    if extra:
        body["additionalModelRequestFields"] = extra
    return body


def _refuse_unsupported(req: ir.Request) -> None:
    if req.n > 1:
        raise invalid("Bedrock Converse returns one completion per request; n must be 1", param="n")
    if req.response_format is not None and req.response_format.type != "text":
        raise invalid(f"response_format '{req.response_format.type}' is not supported by this Bedrock backend",
                      param="response_format")


def wire_tool_id(call_id: str) -> str:
    """A toolUseId the API accepts ([a-zA-Z0-9_.:-]{1,64}). Pure, so a call and its result
    map alike; the digest keeps ids that differ only in bad characters apart."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:8]
    cleaned = _TOOL_ID_INVALID_CHAR.sub("_", call_id)[:55] or "tooluse"
    return f"{cleaned}_{digest}"


def _turns(conversation: list[ir.Message], positions: Mapping[int, int], claude: bool) -> list[dict]:
    turns: list[dict] = []
    for m in conversation:
        where = f"messages.{positions.get(id(m), '?')}"
        blocks = _message_blocks(m, where, claude)
        if blocks:
            _append_turn(turns, "assistant" if m.role == "assistant" else "user", blocks)
    _trim_prefill(turns)
    return turns


def _append_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Converse needs strict alternation: a same-role turn is merged into the previous one,
    its tool results placed after that turn's results and before its other blocks."""
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    content = turns[-1]["content"]
    results = [b for b in blocks if "toolResult" in b]
    if results:
        at = next((i for i, b in enumerate(content) if "toolResult" not in b), len(content))
        content[at:at] = results
        blocks = [b for b in blocks if "toolResult" not in b]
    content.extend(blocks)


def _trim_prefill(turns: list[dict]) -> None:
    """A final assistant turn is a prefill; Claude refuses one ending in whitespace."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    content = turns[-1]["content"]
    if "text" in content[-1]:
        text = content[-1]["text"].rstrip()
        if text:
            content[-1] = {"text": text}
        else:
            content.pop()
    if not content:
        turns.pop()


def _message_blocks(m: ir.Message, where: str, claude: bool) -> list[dict]:
    blocks: list[dict] = []
    assistant = m.role == "assistant"
    for j, part in enumerate(m.parts):
        at = f"{where}.content.{j}"
        if isinstance(part, ir.Text | ir.Refusal):
            if part.text.strip():
                blocks.append({"text": part.text})
        elif isinstance(part, ir.Image):
            if not assistant:  # assistant turns have no image slot
                blocks.append(_image_block(part, at))
        elif isinstance(part, ir.ToolCall):
            blocks.append({"toolUse": {"toolUseId": wire_tool_id(part.id), "name": part.name,
                                       "input": tool_input(part, at, "Bedrock")}})
        elif isinstance(part, ir.ToolResult):
            blocks.append(_tool_result_block(part, at))
        elif isinstance(part, ir.Thinking):
            block = _reasoning_block(part, claude)
            if block is not None:
                blocks.append(block)
        elif isinstance(part, ir.Opaque):
            raise invalid(f"{part.kind} cannot be sent to a Bedrock backend", param=part.where)
    return blocks


def _reasoning_block(part: ir.Thinking, claude: bool) -> dict | None:
    """Only reasoning Bedrock made goes back, and only to Claude (its signatures check it)."""
    if part.origin != PROTOCOL or not claude:
        return None
    if part.redacted:
        return {"reasoningContent": {"redactedContent": part.redacted}}
    if not part.signature:
        return None  # unsigned reasoning cannot be verified; the model does not need it back
    return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": part.signature}}}


def _tool_result_block(result: ir.ToolResult, at: str) -> dict:
    content: list[dict] = []
    for k, part in enumerate(result.content):
        if isinstance(part, ir.Image):
            content.append(_image_block(part, f"{at}.content.{k}"))
        elif isinstance(part, ir.Opaque):
            raise invalid(f"{part.kind} cannot be sent to a Bedrock backend", param=part.where)
        elif part.text.strip():
            content.append({"text": part.text})
    block: dict[str, Any] = {"toolUseId": wire_tool_id(result.call_id), "content": content}
    if result.is_error:
        block["status"] = "error"
    return {"toolResult": block}


def _image_block(image: ir.Image, at: str) -> dict:
    data, media_type = image.data, image.media_type
    if not data and image.url and image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        media_type, _, encoding = header[len("data:"):].partition(";")
        if encoding != "base64" or not data:
            raise invalid("image data URLs must be base64-encoded", param=at)
    if not data:
        raise invalid("Bedrock Converse takes images inline (base64); image URLs are not supported", param=at)
    if media_type:
        image_format = IMAGE_FORMATS.get(media_type.strip().lower())
    else:
        sniffed = ir.sniff_image_type(data)
        image_format = sniffed.removeprefix("image/") if sniffed else None
    if image_format is None:
        raise invalid(f"image media type {media_type!r} is not supported by Bedrock "
                      "(image/png, image/jpeg, image/gif, image/webp)", param=at)
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _history_allows_thinking(turns: list[dict]) -> bool:
    """With thinking on, Claude requires the last assistant turn, if it calls tools,
    to start with its reasoning block."""
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any("toolUse" in b for b in last["content"]):
        return True
    return "reasoningContent" in last["content"][0]


def _inference_config(req: ir.Request, budget: int | None) -> dict:
    config: dict[str, Any] = {}
    max_tokens = req.max_tokens
    if budget is not None and (max_tokens or 0) <= budget:
        max_tokens = budget + ir.MIN_THINKING_BUDGET  # the answer needs room beyond the thinking budget
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    # With thinking on Claude refuses a changed temperature and top_p below 0.95.
    if req.temperature is not None and budget is None:
        config["temperature"] = min(max(req.temperature, 0.0), 1.0)  # the API's range; clamp, never rescale
    if req.top_p is not None and (budget is None or req.top_p >= 0.95):
        config["topP"] = req.top_p
    stop = [s for s in req.stop if s]
    if stop:
        config["stopSequences"] = stop
    return config


def _tool_config(req: ir.Request, turns: list[dict], thinking: bool) -> dict | None:
    choice = req.tool_choice
    history = _history_tool_names(turns)
    uses_tools = bool(history) or any("toolResult" in b for t in turns for b in t["content"])
    if req.tools and (choice is None or choice.mode != "none" or uses_tools):
        config: dict[str, Any] = {"tools": [_tool_spec(t, f"tools[{i}]") for i, t in enumerate(req.tools)]}
        wire_choice = _tool_choice(choice, thinking) if choice is None or choice.mode != "none" else None
        if wire_choice is not None:
            config["toolChoice"] = wire_choice
        return config
    if history:
        # The API refuses toolUse/toolResult history without a toolConfig.
        return {"tools": [{"toolSpec": {"name": name, "description": "Declared by the proxy for the conversation "
                                        "history.", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                          for name in history]}
    return None


def _history_tool_names(turns: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for turn in turns:
        for block in turn["content"]:
            if "toolUse" in block:
                names[block["toolUse"]["name"]] = None
    return list(names)


def _tool_spec(tool: ir.Tool, where: str) -> dict:
    if tool.native is not None:
        raise invalid(f"{tool.native.kind} cannot be sent to a Bedrock backend", param=tool.native.where)
    if not _TOOL_NAME.fullmatch(tool.name):
        raise invalid(f"tool name {tool.name!r} is not accepted by Bedrock ([a-zA-Z0-9_-], 1-64 characters)",
                      param=f"{where}.name")
    schema = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
    if "type" not in schema:
        schema = {"type": "object", **schema}
    spec: dict[str, Any] = {"name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["inputSchema"] = {"json": schema}
    return {"toolSpec": spec}


def _tool_choice(choice: ir.ToolChoice | None, thinking: bool) -> dict | None:
    if choice is None:
        return None
    mode = choice.mode
    if thinking and mode in ("required", "tool"):
        mode = "auto"  # Claude refuses forced tool use with thinking on
    if mode == "required":
        return {"any": {}}
    if mode == "tool":
        if not choice.name:
            raise invalid("tool_choice of type 'tool' needs a tool name", param="tool_choice")
        return {"tool": {"name": choice.name}}
    return {"auto": {}}


# ============================================================ parse_response


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A Converse reply -> IR. A body that is not one is a bad gateway."""
    data = loads_or_none(body)
    output = data.get("output") if isinstance(data, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ProxyError(ErrorKind.bad_gateway, "upstream returned a malformed Bedrock Converse reply")
    stop_reason = data.get("stopReason")
    return ir.Response(
        id="",  # Converse replies carry no id (the request id is a header)
        model=req.model,
        parts=tuple(p for p in map(_part_from_block, message["content"]) if p is not None),
        finish_reason=_finish_reason(stop_reason),
        usage=_usage_from_wire(data.get("usage")),
        stop_sequence=_stop_sequence(data.get("additionalModelResponseFields")) if stop_reason == "stop_sequence"
        else None,
        raw_finish_reason=stop_reason if isinstance(stop_reason, str) else None,
    )


def _finish_reason(stop_reason: Any) -> ir.FinishReason:
    return _FINISH_BY_STOP_REASON.get(stop_reason, ir.FinishReason.stop)


def _stop_sequence(fields: Any) -> str | None:
    """Claude on Bedrock reports the matched sequence in additionalModelResponseFields
    (`stop_sequence`, or `delta.stop_sequence` in streams)."""
    if not isinstance(fields, dict):
        return None
    value = fields.get("stop_sequence")
    if value is None and isinstance(fields.get("delta"), dict):
        value = fields["delta"].get("stop_sequence")
    return value if isinstance(value, str) and value else None


def _part_from_block(block: Any) -> ir.Part | None:
    """One content block -> IR part; blocks the IR has no form for are skipped."""
    if not isinstance(block, dict):
        return None
    if "text" in block:
        text = block["text"]
        return ir.Text(text) if isinstance(text, str) and text.strip() else None
    if "toolUse" in block and isinstance(block["toolUse"], dict):
        use = block["toolUse"]
        arguments = use.get("input")
        return ir.ToolCall(str(use.get("toolUseId") or ""), str(use.get("name") or ""),
                           dumps_str(arguments if isinstance(arguments, dict) else {}))
    if "reasoningContent" in block and isinstance(block["reasoningContent"], dict):
        reasoning = block["reasoningContent"]
        if reasoning.get("redactedContent"):
            return ir.Thinking(redacted=str(reasoning["redactedContent"]), origin=PROTOCOL)
        text_block = reasoning.get("reasoningText")
        if isinstance(text_block, dict):
            text = text_block.get("text") if isinstance(text_block.get("text"), str) else ""
            signature = text_block.get("signature") or None
            if text or signature:
                return ir.Thinking(text, signature, origin=PROTOCOL)
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage_from_wire(usage: Any) -> ir.Usage:
    """Converse usage -> the IR's whole-prompt count. inputTokens leaves the cached part
    out when totalTokens counts it separately (input + output + cache read + cache write)."""
    if not isinstance(usage, dict):
        return ir.Usage()
    input_tokens = _count(usage.get("inputTokens"))
    output_tokens = _count(usage.get("outputTokens"))
    cache_read = _count(usage.get("cacheReadInputTokens"))
    cache_write = _count(usage.get("cacheWriteInputTokens"))
    whole_prompt = input_tokens + cache_read + cache_write
    if (cache_read or cache_write) and usage.get("totalTokens") == input_tokens + output_tokens:
        whole_prompt = input_tokens  # this model counted the cache inside inputTokens
    return ir.Usage(input_tokens=whole_prompt, output_tokens=output_tokens,
                    cache_read_tokens=cache_read, cache_write_tokens=cache_write)


# ============================================================== StreamParser


class _Block:
    """The upstream content block being read: its contentBlockIndex, IR kind and part index."""

    __slots__ = ("wire_index", "kind", "part")

    def __init__(self, wire_index: Any, kind: str, part: int):
        self.wire_index = wire_index
        self.kind = kind
        self.part = part


def is_content_frame(frame: Frame) -> bool:
    """A contentBlockDelta: content only (no end, no error, no usage)."""
    return frame.event == "contentBlockDelta"


class StreamParser:
    """ConverseStream frames (from app.upstream.eventstream) -> IR events.

    Text and reasoning blocks open at their first non-empty delta (a text block
    has no contentBlockStart); a delta for another contentBlockIndex closes the
    open block first, so parts stay sequential."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._next_part = 0
        self._block: _Block | None = None
        self._stop: dict | None = None  # the messageStop payload, held until usage arrives
        self._usage: ir.Usage | None = None
        self._finished = False
        self._handlers: dict[str, Callable[[dict], list[ir.Event]]] = {
            "messageStart": self._message_start,
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "contentBlockStop": self._block_stop,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._finished:
            return []
        event = frame.event or ""
        if event.startswith(EXCEPTION_PREFIX) or event.startswith(ERROR_PREFIX):
            return self._fail(exception_error(frame))
        handler = self._handlers.get(event)
        if handler is None:
            return []  # event types newer than this parser
        data = loads_or_none(frame.data)
        if not isinstance(data, dict):
            return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream sent a malformed stream event"))
        return handler(data)

    def close(self) -> list[ir.Event]:
        if self._finished:
            return []
        if self._stop is not None:
            return self._finish()  # messageStop came but no metadata: the answer is whole, usage unknown
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._finished = True
        return [ir.StreamError(err)]

    # -------------------------------------------------------- message level

    def _start(self) -> list[ir.Event]:
        if self._started:
            return []
        self._started = True
        return [ir.MessageStart("", self._req.model)]

    def _message_start(self, data: dict) -> list[ir.Event]:
        return self._start()

    def _message_stop(self, data: dict) -> list[ir.Event]:
        events = self._start() + self._close_block()
        self._stop = data
        return events + (self._finish() if self._usage is not None else [])

    def _metadata(self, data: dict) -> list[ir.Event]:
        self._usage = _usage_from_wire(data.get("usage"))
        return self._finish() if self._stop is not None else []

    def _finish(self) -> list[ir.Event]:
        self._finished = True
        stop_reason = self._stop.get("stopReason")
        return [ir.MessageStop(
            finish_reason=_finish_reason(stop_reason),
            usage=self._usage or ir.Usage(),
            stop_sequence=_stop_sequence(self._stop.get("additionalModelResponseFields"))
            if stop_reason == "stop_sequence" else None,
            raw_finish_reason=stop_reason if isinstance(stop_reason, str) else None,
        )]

    # ---------------------------------------------------------- block level

    def _block_start(self, data: dict) -> list[ir.Event]:
        events = self._start() + self._close_block()
        start = data.get("start") if isinstance(data.get("start"), dict) else {}
        use = start.get("toolUse")
        if isinstance(use, dict):
            events += self._open(data.get("contentBlockIndex"), "tool_call",
                                 id=str(use.get("toolUseId") or ""), name=str(use.get("name") or ""))
        return events  # other starts (toolResult, image) carry nothing the IR keeps

    def _block_delta(self, data: dict) -> list[ir.Event]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        index = data.get("contentBlockIndex")
        events = self._start()
        text = delta.get("text")
        if isinstance(text, str):
            if not text:
                return events
            return events + self._ensure(index, "text") + [ir.TextDelta(self._block.part, text)]
        use = delta.get("toolUse")
        if isinstance(use, dict):
            fragment = use.get("input")
            block = self._block
            if not fragment or not isinstance(fragment, str) or block is None or block.kind != "tool_call" \
                    or block.wire_index != index:
                return events  # a fragment for no open tool block has nowhere to go
            return events + [ir.ToolArgumentsDelta(block.part, fragment)]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            return events + self._reasoning(index, reasoning)
        return events  # citations and newer delta types carry nothing the IR keeps

    def _reasoning(self, index: Any, reasoning: dict) -> list[ir.Event]:
        redacted = reasoning.get("redactedContent")
        if redacted and isinstance(redacted, str):
            return self._close_block() + self._open(index, "redacted_thinking", data=redacted, origin=PROTOCOL)
        events: list[ir.Event] = []
        text = reasoning.get("text")
        if text and isinstance(text, str):
            events += self._ensure(index, "thinking") + [ir.ThinkingDelta(self._block.part, text)]
        signature = reasoning.get("signature")
        if signature and isinstance(signature, str):
            events += self._ensure(index, "thinking") + [ir.SignatureDelta(self._block.part, signature, PROTOCOL)]
        return events

    def _block_stop(self, data: dict) -> list[ir.Event]:
        return self._close_block()

    def _ensure(self, index: Any, kind: str) -> list[ir.Event]:
        """The open block if it is this one, else close it and open this one."""
        block = self._block
        if block is not None and block.wire_index == index and block.kind == kind:
            return []
        return self._close_block() + self._open(index, kind)

    def _open(self, index: Any, kind: str, id: str | None = None, name: str | None = None,
              data: str | None = None, origin: str | None = None) -> list[ir.Event]:
        self._block = _Block(index, kind, self._next_part)
        self._next_part += 1
        return [ir.PartStart(self._block.part, kind, id=id, name=name, data=data, origin=origin)]

    def _close_block(self) -> list[ir.Event]:
        block, self._block = self._block, None
        return [] if block is None else [ir.PartStop(block.part)]


# ================================================================== errors


def exception_error(frame: Frame) -> ProxyError:
    """An exception (or generic error) frame of the event stream -> ProxyError."""
    event = frame.event or ""
    if event.startswith(EXCEPTION_PREFIX):
        name = event[len(EXCEPTION_PREFIX):]
        payload = loads_or_none(frame.data)
        message = payload.get("message") if isinstance(payload, dict) else None
        if isinstance(payload, dict) and payload.get("originalMessage"):
            message = f"{message or 'Model stream error'} (the model said {payload.get('originalStatusCode')}: " \
                      f"{payload['originalMessage']})"
        if not isinstance(message, str) or not message:
            message = frame.data.strip()[:500] or "upstream reported an error in the stream"
    else:
        name = event[len(ERROR_PREFIX):]
        message = frame.data or "upstream reported an error in the stream"
    code = name[:1].upper() + name[1:]  # stream members are lowerCamel, the HTTP names capitalised
    kind, status = _ERROR_TYPES.get(code, (ErrorKind.api_error, 500))
    return ProxyError(kind, redact(message), status=status, code=code or None)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error -> ProxyError: the type from `x-amzn-ErrorType` (else the
    body's `__type`/`code`), the message from `{"message": ...}`."""
    lowered = {name.lower(): value for name, value in headers.items()}
    payload = loads_or_none(body)
    payload = payload if isinstance(payload, dict) else {}
    code = _error_code(lowered.get("x-amzn-errortype") or payload.get("__type") or payload.get("code")
                       or payload.get("Code"))
    if code in _ERROR_TYPES:
        kind, wire_status = _ERROR_TYPES[code]
    else:
        kind, wire_status = kind_for_status(status), status
    message = payload.get("message") or payload.get("Message")
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"upstream returned HTTP {status}"
    retry_after = lowered.get("retry-after")
    return ProxyError(kind, redact(message), status=wire_status, code=code,
                      retry_after=retry_after.strip() if retry_after else None)


def _error_code(value: Any) -> str | None:
    """`ValidationException:http://internal.amazon.com/coral/…` or
    `com.amazon.coral.validate#ValidationException` -> `ValidationException`."""
    if not isinstance(value, str) or not value:
        return None
    return value.split(":", 1)[0].rsplit("#", 1)[-1].strip() or None
