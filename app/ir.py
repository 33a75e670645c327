"""The internal representation: the only shape every protocol module shares.

Frontends parse client JSON into `Request`; backends turn `Request` into an
upstream call and upstream replies into `Response` or a stream of `Event`s;
frontends render those back. Nothing here knows a wire format.

Conventions every module relies on:
- Text is never empty in a part: parsers drop empty/whitespace-only text parts
  (hazard 11), so writers can emit every part they get.
- `ToolCall.arguments` is the raw JSON *string* (byte-exact round trip for
  OpenAI; parse with `arguments_object()` when a target needs an object).
- Usage is normalised: `input_tokens` is the whole prompt (cached included),
  `output_tokens` the whole output (reasoning included).
- Stream events are block-structured and sequential: at most one part is open
  at a time, every delta follows its `PartStart` and precedes its `PartStop`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Mapping, Union

from app.jsonutil import loads_bounded

# --------------------------------------------------------------------- parts


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image by URL or inline base64 (standard alphabet, no `data:` prefix)."""
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None  # OpenAI only; kept for OpenAI targets


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = "{}"  # raw JSON text as produced by the model
    # Provider-opaque data tied to this call (Gemini thoughtSignature).
    signature: str | None = None
    signature_origin: str | None = None

    def arguments_object(self) -> dict:
        """Arguments as an object; `{}` for empty text. Raises ValueError if not a JSON object."""
        return parse_arguments(self.arguments)


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: tuple[Text | Image | Opaque, ...] = ()  # Opaque: Anthropic search_result/document blocks
    name: str | None = None  # filled by parsers that know it, or by `fill_tool_names`
    is_error: bool = False

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, Text))


@dataclass(frozen=True, slots=True)
class Thinking:
    """Model reasoning. `signature`/`redacted` are opaque and only valid for `origin`."""
    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # Anthropic redacted_thinking.data
    origin: str | None = None  # protocol that produced the opaque data


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str


@dataclass(frozen=True, slots=True)
class Opaque:
    """A piece of a client request with no IR meaning, kept as the client sent it
    (an Anthropic document block, an OpenAI input_audio part, a Gemini executableCode
    part, a server tool). Only its own protocol's writer can send it: `data` goes
    out unchanged, in place; any other writer refuses it with a 400 naming `where`.
    It needs no capability beyond text (an opaque tool counts as "tools")."""
    protocol: str  # wire protocol it belongs to (app/protocols MODULES key)
    kind: str  # what it is, for messages: "document block", "googleSearch tool"
    data: Mapping[str, Any]  # the wire dict, unchanged
    where: str  # the client's field path: "messages.1.content.0", "tools[0].googleSearch"
    # A hosted tool the client can do without (Responses `web_search`, `tool_search`):
    # writers of other protocols leave it out (`tools_for`) instead of refusing it.
    droppable: bool = False


Part = Union[Text, Image, ToolCall, ToolResult, Thinking, Refusal, Opaque]

Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. `tool` messages hold only ToolResult parts (all results for one
    assistant turn may share one message); system/developer hold Text only and
    may stand anywhere: a later one is an instruction given at that point of the
    conversation (OpenAI system messages, Anthropic mid-conversation system
    messages), and writers keep it there (`split_system`)."""
    role: Role
    parts: tuple[Part, ...]
    name: str | None = None


# ------------------------------------------------------------------ request


@dataclass(frozen=True, slots=True)
class Tool:
    """A function tool, or (with `native`) a tool the IR cannot model (server tools,
    OpenAI custom tools): then `name` is only a label and the rest is unset.

    `kind == "custom"`: a free-form-text tool (OpenAI Responses `custom`, e.g.
    apply_patch with a grammar), modelled as a function of one string argument
    `input` so every target can offer it; its calls carry `{"input": <text>}`.
    A Responses writer sends it back as `custom` with `input_format`.
    `namespace`: the client's tool group (Responses `namespace`); `name` is then the
    flattened `<namespace>__<name>`, restored from this field on the way back."""
    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None  # JSON Schema as the client sent it
    strict: bool | None = None
    native: Opaque | None = None
    kind: Literal["function", "custom"] = "function"
    input_format: Mapping[str, Any] | None = None  # custom: the input format as sent (grammar / text)
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # with mode == "tool"


@dataclass(frozen=True, slots=True)
class Reasoning:
    effort: str | None = None  # none|minimal|low|medium|high|xhigh|max
    budget_tokens: int | None = None
    include_thoughts: bool | None = None
    summary: str | None = None  # Responses reasoning summary level (auto|detailed|concise); None: auto
    # The client leaves thinking to the model (Anthropic's `adaptive`): a backend
    # without thinking serves the request without it instead of refusing it.
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Extra:
    """A top-level request field of the client's protocol that the IR has no
    meaning for (Anthropic `context_management`, `cache_control`, `mcp_servers`).
    The frontend, which knows its own fields, says whether the field only tunes
    how the provider serves the request (`optional`: caching, context editing,
    priority) or changes what the answer may be (extra tools, data residency).
    Every writer applies one rule (`app.protocols.base.extras_to_send`): its
    own protocol's extras go out unchanged; another protocol's are dropped when
    optional and refused with a 400 naming the field otherwise."""
    protocol: str  # wire protocol it belongs to (app/protocols MODULES key)
    name: str  # the wire field, which is also the client's field path
    value: Any  # as the client sent it
    optional: bool


@dataclass(frozen=True, slots=True)
class Request:
    model: str
    messages: tuple[Message, ...]
    protocol: str  # the client protocol that produced it
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    extras: tuple[Extra, ...] = ()
    # Responses: the stored response this one continues (resolved by the pipeline
    # from the state store) and whether this one may be stored (None: the default).
    previous_response_id: str | None = None
    store: bool | None = None
    # The client's body as parsed JSON: same-protocol hops send it on with only
    # the model swapped, so nothing the IR does not model is lost.
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def capabilities(self) -> frozenset[str]:
        """What a backend must support to serve this request (routing input)."""
        caps = {"text"}  # Opaque parts add nothing; a native (opaque) tool is still a tool
        if self.tools or any(isinstance(p, (ToolCall, ToolResult)) for m in self.messages for p in m.parts):
            caps.add("tools")
        if self.stream:
            caps.add("streaming")
        if any(isinstance(p, Image) for m in self.messages for p in _all_parts(m)):
            caps.add("vision")
        if self.reasoning is not None and self.reasoning.effort != "none" and self.reasoning.budget_tokens != 0 \
                and not self.reasoning.optional:
            caps.add("thinking")
        if self.response_format is not None and self.response_format.type != "text":
            caps.add("json")
        return frozenset(caps)


def _all_parts(m: Message):
    for p in m.parts:
        yield p
        if isinstance(p, ToolResult):
            yield from p.content


# ----------------------------------------------------------------- response


class FinishReason(str, Enum):
    stop = "stop"
    length = "length"
    tool_calls = "tool_calls"
    content_filter = "content_filter"
    error = "error"  # the model failed (Gemini MALFORMED_FUNCTION_CALL): never a silent stop


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # whole prompt, cached included
    output_tokens: int = 0  # whole output, reasoning included
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Response:
    id: str
    model: str
    parts: tuple[Part, ...]
    finish_reason: FinishReason = FinishReason.stop
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None  # which stop sequence matched, when known
    raw_finish_reason: str | None = None  # provider value, for logs and errors
    finish_message: str | None = None  # provider's explanation (Gemini finishMessage, e.g. the malformed call)


# ------------------------------------------------------------ stream events

PartKind = Literal["text", "tool_call", "thinking", "redacted_thinking", "refusal"]


@dataclass(frozen=True, slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage | None = None  # prompt usage when the provider knows it up front


@dataclass(frozen=True, slots=True)
class PartStart:
    index: int
    kind: PartKind
    id: str | None = None  # tool call id
    name: str | None = None  # tool name
    data: str | None = None  # redacted_thinking payload (arrives whole)
    origin: str | None = None  # the protocol that made `data` (as Thinking.origin); None: the frontend's own


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolArgumentsDelta:
    index: int
    json: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    """Opaque signature for the open part (Anthropic thinking, Gemini thoughtSignature)."""
    index: int
    signature: str
    origin: str | None = None  # the protocol that made the signature


@dataclass(frozen=True, slots=True)
class PartStop:
    index: int


@dataclass(frozen=True, slots=True)
class MessageStop:
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    raw_finish_reason: str | None = None
    finish_message: str | None = None  # as Response.finish_message


@dataclass(frozen=True, slots=True)
class StreamError:
    """The upstream failed after the stream began (or ended without a terminal event)."""
    error: Any  # app.errors.ProxyError


Event = Union[MessageStart, PartStart, TextDelta, RefusalDelta, ToolArgumentsDelta, ThinkingDelta,
              SignatureDelta, PartStop, MessageStop, StreamError]


# ------------------------------------------------------------------ helpers


# The first base64 characters of each image format's magic bytes.
_BASE64_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
                 ("UklGR", "image/webp"))


def sniff_image_type(data: str) -> str | None:
    """The media type of inline base64 image data from its magic bytes; None when unknown."""
    for prefix, media_type in _BASE64_MAGIC:
        if data.startswith(prefix):
            return media_type
    return None


# Reasoning effort -> a thinking budget in tokens, for targets that take a budget
# (Claude, Gemini). Every writer uses this one table.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32000, "max": 32000}
MIN_THINKING_BUDGET = 1024  # the smallest budget Claude takes, wherever it is served (Anthropic, Bedrock, Vertex)


def thinking_budget(reasoning: Reasoning | None) -> int | None:
    """Reasoning intent -> a Claude thinking budget (budget_tokens), or None for no thinking."""
    if reasoning is None or reasoning.effort == "none" or reasoning.budget_tokens == 0:
        return None
    if reasoning.budget_tokens is not None:
        budget = reasoning.budget_tokens
    elif reasoning.effort is not None or reasoning.include_thoughts:
        budget = EFFORT_BUDGETS.get(reasoning.effort or "medium", EFFORT_BUDGETS["medium"])
    else:
        return None
    return max(budget, MIN_THINKING_BUDGET)


def parse_arguments(arguments: str) -> dict:
    """Tool-call argument text -> object. Empty text is `{}` (OpenAI sends "" for no-arg calls)."""
    if not arguments or not arguments.strip():
        return {}
    value = loads_bounded(arguments)  # a client's text: bounded like a body (app/jsonutil.py)
    if not isinstance(value, dict):
        raise ValueError("tool call arguments must be a JSON object")
    return value


def tools_for(protocol: str, tools: tuple[Tool, ...]) -> tuple[Tool, ...]:
    """The tools a writer of `protocol` sends: another protocol's droppable hosted
    tools (`Opaque.droppable`) are left out; anything else is the writer's to send or refuse."""
    if not any(t.native is not None and t.native.droppable for t in tools):
        return tools
    return tuple(t for t in tools
                 if t.native is None or not t.native.droppable or t.native.protocol == protocol)


def tool_names_by_id(messages: tuple[Message, ...]) -> dict[str, str]:
    """Map tool-call id -> function name from the assistant turns of a history."""
    names: dict[str, str] = {}
    for m in messages:
        if m.role == "assistant":
            for p in m.parts:
                if isinstance(p, ToolCall):
                    names[p.id] = p.name
    return names


def split_system(messages: tuple[Message, ...], *, keep_later: bool = False) -> tuple[list[str], list[Message]]:
    """Hoist system/developer turns for targets with one system slot.

    Leading system/developer turns become the system texts, in order. One that
    appears later in the conversation keeps its position: as a system message
    (one text part) when the target takes those there (`keep_later`), else as a
    user turn whose text is marked `System: ` (hoisting it would change what the
    model saw when; dropping it would lose an instruction).
    """
    system: list[str] = []
    rest: list[Message] = []
    leading = True
    for m in messages:
        if m.role in ("system", "developer"):
            text = "\n".join(p.text for p in m.parts if isinstance(p, Text))
            if not text.strip():
                continue
            if leading:
                system.append(text)
            elif keep_later:
                rest.append(Message("system", (Text(text),)))
            else:
                rest.append(Message("user", (Text("System: " + text),)))
            continue
        leading = False
        rest.append(m)
    return system, rest


def response_from_events(events: list[Event]) -> Response:
    """Fold a complete event stream into a Response (tests and stream-to-JSON bridges)."""
    start = next((e for e in events if isinstance(e, MessageStart)), None)
    stop = next((e for e in events if isinstance(e, MessageStop)), None)
    parts: list[Part] = []
    open_kind: str | None = None
    buf: list[str] = []
    sig: list[str] = []
    meta: dict[str, Any] = {}
    for e in events:
        if isinstance(e, PartStart):
            open_kind, buf, sig, meta = e.kind, [], [], {"id": e.id, "name": e.name, "data": e.data,
                                                         "origin": e.origin}
        elif isinstance(e, (TextDelta, RefusalDelta, ThinkingDelta)):
            buf.append(e.text)
        elif isinstance(e, ToolArgumentsDelta):
            buf.append(e.json)
        elif isinstance(e, SignatureDelta):
            sig.append(e.signature)
            meta["origin"] = e.origin
        elif isinstance(e, PartStop):
            text = "".join(buf)
            signature = "".join(sig) or None
            if open_kind == "text":
                parts.append(Text(text))
            elif open_kind == "refusal":
                parts.append(Refusal(text))
            elif open_kind == "tool_call":
                parts.append(ToolCall(meta["id"], meta["name"], text or "{}", signature, meta.get("origin")))
            elif open_kind == "thinking":
                parts.append(Thinking(text, signature, None, meta.get("origin")))
            elif open_kind == "redacted_thinking":
                parts.append(Thinking("", None, meta["data"], meta.get("origin")))
            open_kind = None
    return Response(
        id=start.id if start else "",
        model=start.model if start else "",
        parts=tuple(parts),
        finish_reason=stop.finish_reason if stop else FinishReason.error,
        usage=stop.usage if stop else (start.usage if start and start.usage else Usage()),
        stop_sequence=stop.stop_sequence if stop else None,
        raw_finish_reason=stop.raw_finish_reason if stop else None,
        finish_message=stop.finish_message if stop else None,
    )
