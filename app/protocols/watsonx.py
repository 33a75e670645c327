"""IBM watsonx.ai text chat and text generation (protocols B §2), backend side only.

Chat (`/ml/v1/text/chat`, `/text/chat_stream`) carries OpenAI Chat's messages, tools and
tool calls unchanged, so those are written and read by the OpenAI Chat module's public
builder and parsers; what differs is this module's:
- the body: `model_id` for `model`; the tool choice split into `tool_choice_option`
  (`none` / `auto` / `required`) and `tool_choice` (a named function); `max_tokens`;
  `reasoning_effort` only as low / medium / high; no `stream` / `stream_options` (the
  endpoint says it streams, and its final chunk always carries usage), no `user`, no
  `parallel_tool_calls` (watsonx has no such switch: dropped, it only tunes);
  `developer` messages sent as `system` (watsonx has no developer role).
- finish reasons beyond OpenAI's: `time_limit` -> length, `cancelled` -> stop, `error` ->
  the model failed.
- streams: `id:` / `event: message` frames, no `[DONE]` (the stream just ends after the
  usage chunk), `event: error` with the error as data, `event: close`.
- errors: `{"errors": [{code, message, more_info, target?}], "trace", "status_code"}`.

Text generation (`/ml/v1/text/generation`, `/text/generation_stream`) is for models
without chat: the conversation is rendered into the model's prompt template
(`PROMPT_TEMPLATES`: "granite" for IBM Granite 3.x role tokens, "llama3" for Meta
Llama 3.x header tokens). A backend chooses per model with the option
`prompt_templates = {"<model id>" = "granite"}`; a model not listed there uses chat
(the default: every current watsonx chat model). Generation has no tools, images or JSON
modes: a request needing one is refused with a 400 naming the field. Its stream
carries the text as deltas, the output token count cumulatively and the input count
in the first event only, and ends with the first non-`not_finished` stop reason.

The reply's shape says which API answered (`results` or `choices`), so the readers
need no option.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from app import errors, ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import loads
from app.protocols import openai_chat as chat
from app.protocols.base import Target, extras_to_send
from app.upstream.framing import Frame

PROTOCOL = "watsonx"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
RESPONSE_MODEL_FIELD = "model_id"
TEMPLATES_OPTION = "prompt_templates"
# watsonx's own default is 20 new tokens, which cuts nearly every answer short.
DEFAULT_MAX_NEW_TOKENS = 1024
_LABEL = "a watsonx backend"
_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_DROPPED = ("stream", "stream_options", "user", "parallel_tool_calls")
_CHAT_FINISH = {"time_limit": ir.FinishReason.length, "cancelled": ir.FinishReason.stop,
                "error": ir.FinishReason.error}
_GENERATION_FINISH = {
    "eos_token": ir.FinishReason.stop, "stop_sequence": ir.FinishReason.stop, "cancelled": ir.FinishReason.stop,
    "max_tokens": ir.FinishReason.length, "token_limit": ir.FinishReason.length,
    "time_limit": ir.FinishReason.length, "error": ir.FinishReason.error,
}


# ====================================================================
# Prompt templates (text generation)
# ====================================================================


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """How one model family reads a conversation as plain text: each turn is
    `turn.format(role=..., text=...)`, then `generation_prompt` opens the answer."""
    name: str
    begin: str
    turn: str
    generation_prompt: str
    control_tokens: tuple[str, ...]  # refused inside message text: they would forge turns

    def render(self, turns: list[tuple[str, str]]) -> str:
        return self.begin + "".join(self.turn.format(role=r, text=t) for r, t in turns) + self.generation_prompt


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (
    # IBM Granite 3.x (granite-3-8b-instruct and kin): role markers, each turn ended by <|end_of_text|>.
    PromptTemplate("granite", "", "<|start_of_role|>{role}<|end_of_role|>{text}<|end_of_text|>\n",
                   "<|start_of_role|>assistant<|end_of_role|>",
                   ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>")),
    # Meta Llama 3.x instruct: header ids, each turn ended by <|eot_id|>.
    PromptTemplate("llama3", "<|begin_of_text|>", "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>",
                   "<|start_header_id|>assistant<|end_header_id|>\n\n",
                   ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
)}


def prompt_template(options: Mapping[str, Any], model: str) -> PromptTemplate | None:
    """The template a backend's options name for `model`; None: the model chats."""
    templates = options.get(TEMPLATES_OPTION)
    name = templates.get(model) if isinstance(templates, Mapping) else None
    return None if name is None else PROMPT_TEMPLATES[name]


def check_templates(options: Mapping[str, Any], backend: str) -> None:
    """At start-up: the backend's prompt_templates option names known templates (ValueError)."""
    templates = options.get(TEMPLATES_OPTION, {})
    if not isinstance(templates, Mapping):
        raise ValueError(f"backend {backend}: options.{TEMPLATES_OPTION} must be a table of model id = template")
    for model, name in templates.items():
        if name not in PROMPT_TEMPLATES:
            raise ValueError(f"backend {backend}: options.{TEMPLATES_OPTION}.{model}: unknown template {name!r} "
                             f"(known: {', '.join(PROMPT_TEMPLATES)})")


# ====================================================================
# Backend: build upstream bodies
# ====================================================================


def build_body(req: ir.Request, target: Target) -> dict[str, Any]:
    """The chat body, or the generation body for a model the backend gives a prompt template.
    `project_id` / `space_id` are the provider's to add."""
    own = extras_to_send(req, PROTOCOL, _LABEL)  # other protocols' fields: dropped when optional, else a 400
    template = prompt_template(target.options, target.model)
    if template is not None:
        body = _generation_body(req, target.model, template)
    else:
        body = _chat_body(req, target)
    body.update(own)
    return body


def _chat_body(req: ir.Request, target: Target) -> dict[str, Any]:
    body = chat.build_body(dataclasses.replace(req, extras=()) if req.extras else req, target)
    body["model_id"] = body.pop("model")
    for key in _DROPPED:
        body.pop(key, None)
    if "max_completion_tokens" in body:
        body["max_tokens"] = body.pop("max_completion_tokens")
    choice = body.pop("tool_choice", None)
    if isinstance(choice, str):
        body["tool_choice_option"] = choice
    elif choice is not None:
        body["tool_choice"] = choice
    effort = body.pop("reasoning_effort", None)
    if effort in _EFFORTS:
        body["reasoning_effort"] = _EFFORTS[effort]
    for i, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            message["role"] = "system"
        content = message.get("content")
        if message.get("role") != "user" and isinstance(content, list):
            message["content"] = _one_string(content, message["role"], i)
    return body


def _one_string(parts: list[dict[str, Any]], role: str, index: int) -> str:
    """Only a user turn takes content parts on watsonx; a system, assistant or tool turn is one
    string. System blocks are sections (Claude Code sends several); other text runs on."""
    if any(p.get("type") != "text" for p in parts):
        raise errors.invalid(f"watsonx takes only text in a {role} message; message {index} has "
                             f"{next(p.get('type') for p in parts if p.get('type') != 'text')} content.",
                             f"messages.{index}.content")
    return ("\n\n" if role == "system" else "").join(p.get("text", "") for p in parts)


def _generation_body(req: ir.Request, model: str, template: PromptTemplate) -> dict[str, Any]:
    if req.tools:
        raise errors.invalid(f"Model '{req.model}' is served by watsonx text generation, which has no tools.",
                             "tools")
    if req.response_format is not None and req.response_format.type != "text":
        raise errors.invalid(f"Model '{req.model}' is served by watsonx text generation, which has no JSON mode.",
                             "response_format")
    parameters: dict[str, Any] = {"max_new_tokens": req.max_tokens or DEFAULT_MAX_NEW_TOKENS}
    sampled = req.temperature not in (None, 0) or req.top_p is not None or req.top_k is not None
    parameters["decoding_method"] = "sample" if sampled else "greedy"
    if sampled:
        for key in ("temperature", "top_p", "top_k"):
            value = getattr(req, key)
            if value is not None:
                parameters[key] = value
    if req.seed is not None:
        parameters["random_seed"] = req.seed
    if req.stop:
        parameters["stop_sequences"] = list(req.stop)
    return {"model_id": model, "input": render_prompt(req.messages, template), "parameters": parameters}


def render_prompt(messages: tuple[ir.Message, ...], template: PromptTemplate) -> str:
    """The conversation as `template`'s prompt text (text parts only: a tool call,
    tool result or image has no place in a plain prompt and is refused)."""
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        texts: list[str] = []
        for j, part in enumerate(m.parts):
            if isinstance(part, ir.Text):
                texts.append(part.text)
            elif not isinstance(part, ir.Thinking):  # earlier reasoning is not re-sent
                raise errors.invalid(f"watsonx text generation takes text only; message {i} has a "
                                     f"{type(part).__name__} part.", f"messages.{i}.content.{j}")
        text = "".join(texts)
        for token in template.control_tokens:
            if token in text:
                raise errors.invalid(f"Message {i} contains the prompt template's control token {token!r}.",
                                     f"messages.{i}.content")
        role = "system" if m.role in ("system", "developer") else "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1][0] == role:  # two turns of one role read as one
            turns[-1] = (role, turns[-1][1] + "\n\n" + text)
        else:
            turns.append((role, text))
    return template.render(turns)


# ====================================================================
# Backend: read upstream replies
# ====================================================================


def _malformed(what: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, f"watsonx returned a malformed reply: {what}.")


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A `text/chat` or `text/generation` reply -> IR response."""
    try:
        doc = loads(body)
    except ValueError:
        raise _malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the body is not a JSON object")
    if doc.get("errors"):
        raise error_from_envelope(doc, None)
    if "results" in doc:
        return _generation_response(doc, req)
    resp = chat.parse_response(body, req)
    finish = _CHAT_FINISH.get(resp.raw_finish_reason)
    return dataclasses.replace(resp, finish_reason=finish) if finish is not None else resp


def _generation_response(doc: dict, req: ir.Request) -> ir.Response:
    results = doc.get("results")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise _malformed("no results")
    result = results[0]
    text = result.get("generated_text")
    if not isinstance(text, str):
        raise _malformed("results[0].generated_text is not a string")
    raw = result.get("stop_reason")
    return ir.Response(id="", model=doc.get("model_id") or req.model,
                       parts=(ir.Text(text),) if text.strip() else (),
                       finish_reason=_GENERATION_FINISH.get(raw, ir.FinishReason.stop),
                       usage=ir.Usage(input_tokens=_int(result.get("input_token_count")),
                                      output_tokens=_int(result.get("generated_token_count"))),
                       raw_finish_reason=raw)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ------------------------------------------------------------------ errors

_KIND_BY_CODE = {
    "authentication_token_expired": ErrorKind.authentication,
    "authorization_rejected": ErrorKind.authentication,
    "user_authorization_failed": ErrorKind.permission,
    "model_not_supported": ErrorKind.not_found,
    "token_quota_reached": ErrorKind.rate_limit,
    "json_validation_error": ErrorKind.invalid_request,
    "json_type_error": ErrorKind.invalid_request,
    "invalid_input_argument": ErrorKind.invalid_request,
    "invalid_request_entity": ErrorKind.invalid_request,
    "model_no_support_for_function": ErrorKind.invalid_request,
}


def error_from_envelope(doc: Any, status: int | None, *, retry_after: str | None = None,
                        fallback: str = "") -> ProxyError:
    """watsonx's `{"errors": [...], "trace", "status_code"}` -> ProxyError (the first error's
    code, every message, the field its `target` names)."""
    items = doc.get("errors") if isinstance(doc, dict) else None
    items = [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []
    status = status if status is not None else (doc.get("status_code") if isinstance(doc, dict) else None)
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    first = items[0] if items else {}
    code = first.get("code") if isinstance(first.get("code"), str) else None
    if status is not None and status >= 400:
        kind = errors.kind_for_status(status)
    else:
        kind = _KIND_BY_CODE.get(code, ErrorKind.api_error)
    messages = [e["message"] for e in items if isinstance(e.get("message"), str) and e["message"]]
    message = "; ".join(messages) or fallback or "watsonx reported an error without a message."
    target = first.get("target")
    param = target.get("name") if isinstance(target, dict) and isinstance(target.get("name"), str) else None
    return ProxyError(kind, errors.redact(message), param=param, code=code, retry_after=retry_after)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """An upstream HTTP error reply -> ProxyError (message kept, keys redacted)."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    fallback = f"watsonx returned HTTP {status}" + (f": {errors.redact(text.strip()[:300])}" if text.strip() else ".")
    try:
        doc = loads(body) if text.strip() else None
    except ValueError:
        doc = None
    return error_from_envelope(doc, status, retry_after=errors.retry_after_from_headers(headers), fallback=fallback)


# ------------------------------------------------------------------ streams


def is_content_frame(frame: Frame) -> bool:
    """Only used for same-protocol relays, which watsonx (a backend only) never has."""
    return False


class StreamParser:
    """`chat_stream` or `generation_stream` frames -> IR events; the first data frame says which."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._chat: chat.StreamParser | None = None
        self._generation: _GenerationStream | None = None
        self._done = False

    def feed(self, frame: Frame) -> list[ir.Event]:
        if self._done:
            return []
        if frame.event == "error":
            return self._fail(_stream_error(frame.data))
        if frame.event == "close" or frame.event == "raw" or not frame.data.strip():
            return []
        if '"errors"' in frame.data:
            try:
                doc = loads(frame.data)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and doc.get("errors"):
                return self._fail(error_from_envelope(doc, None))
        if self._chat is None and self._generation is None:
            if '"results"' in frame.data:
                self._generation = _GenerationStream(self._req)
            else:
                self._chat = chat.StreamParser(self._req)
        if self._generation is not None:
            return self._ended(self._generation.feed(frame))
        return self._ended(_chat_finish(self._chat.feed(frame)))

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        if self._generation is not None:
            return self._ended(self._generation.close())
        if self._chat is not None:
            return self._ended(_chat_finish(self._chat.close()))
        return self._fail(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))

    def _ended(self, events: list[ir.Event]) -> list[ir.Event]:
        if events and isinstance(events[-1], (ir.MessageStop, ir.StreamError)):
            self._done = True
        return events

    def _fail(self, err: ProxyError) -> list[ir.Event]:
        self._done = True
        return [ir.StreamError(err)]


def _chat_finish(events: list[ir.Event]) -> list[ir.Event]:
    """OpenAI's reader maps finish reasons it does not know to stop: watsonx's own, mapped."""
    if events and isinstance(events[-1], ir.MessageStop):
        finish = _CHAT_FINISH.get(events[-1].raw_finish_reason)
        if finish is not None:
            events[-1] = dataclasses.replace(events[-1], finish_reason=finish)
    return events


def _stream_error(data: str) -> ProxyError:
    """`event: error`: the data is watsonx's error envelope, or plain text."""
    try:
        doc = loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return error_from_envelope(doc, None, fallback="watsonx reported an error in the stream.")
    text = errors.redact(data.strip()[:300]) or "watsonx reported an error in the stream."
    return ProxyError(ErrorKind.api_error, text)


class _GenerationStream:
    """`generation_stream` events: one text part streamed live."""

    def __init__(self, req: ir.Request) -> None:
        self._req = req
        self._started = False
        self._open = False
        self._blank = ""  # leading whitespace, held until text follows (IR convention)
        self._input = 0
        self._output = 0

    def feed(self, frame: Frame) -> list[ir.Event]:
        try:
            doc = loads(frame.data)
        except ValueError:
            return [ir.StreamError(_malformed("a stream event is not JSON"))]
        if not isinstance(doc, dict):
            return []
        results = doc.get("results")
        result = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else None
        if result is None:
            return []
        events: list[ir.Event] = []
        if not self._started:
            self._started = True
            events.append(ir.MessageStart(id="", model=doc.get("model_id") or self._req.model))
        self._input = max(self._input, _int(result.get("input_token_count")))  # first event only
        self._output = max(self._output, _int(result.get("generated_token_count")))  # cumulative
        text = result.get("generated_text")
        if isinstance(text, str) and text:
            self._text(text, events)
        raw = result.get("stop_reason")
        if raw is not None and raw != "not_finished":
            if self._open:
                events.append(ir.PartStop(0))
            events.append(ir.MessageStop(finish_reason=_GENERATION_FINISH.get(raw, ir.FinishReason.stop),
                                         usage=ir.Usage(input_tokens=self._input, output_tokens=self._output),
                                         raw_finish_reason=raw))
        return events

    def _text(self, text: str, events: list[ir.Event]) -> None:
        if not self._open:
            text = self._blank + text
            if not text.strip():
                self._blank = text
                return
            self._open = True
            events.append(ir.PartStart(index=0, kind="text"))
        events.append(ir.TextDelta(0, text))

    def close(self) -> list[ir.Event]:
        return [ir.StreamError(ProxyError(ErrorKind.bad_gateway, "upstream stream ended before completion"))]
