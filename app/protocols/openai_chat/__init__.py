"""OpenAI Chat Completions (`POST /v1/chat/completions`), both directions.

Frontend: clients speaking OpenAI Chat are parsed into the IR and answered in
`chat.completion` / `chat.completion.chunk` form. Backend: the IR is sent to
an OpenAI-compatible provider and its replies, streams and errors are read
back into the IR.

Policy choices (each one a deliberate answer to a known conversion hazard):
- Requests are validated as strictly as OpenAI does, so a client gets a 400
  naming the field from us instead of an odd error from another provider.
  Unknown tool-call ids in `tool` messages and unanswered assistant tool calls
  are rejected (results cannot be paired otherwise).
- Tool-call `arguments` stay the raw string both ways (byte-exact round trips).
- Reasoning text goes to clients only as the non-standard `reasoning_content`
  field, and only when the client asked for reasoning (`reasoning_effort`).
- A turn the model failed (`FinishReason.error`) is never reported as a clean
  stop: `format_response` raises a bad_gateway ProxyError and the stream
  formatter ends with an in-stream error.
- Upstream streams always request usage; clients get the usage chunk only when
  they asked for it (strict clients index `choices[0]`).
- The stream parser keeps a tool call open from its first fragment to the
  finish chunk, and holds back whatever arrives meanwhile (further calls,
  text) until then: OpenAI does not forbid interleaved tool fragments, and a
  closed IR part cannot be reopened. Calls are emitted in arrival order.
- Tool-call ids longer than OpenAI's 40 characters are replaced by a
  deterministic hash (same for the call and its result), so the stateless
  proxy maps every turn of a history the same way.
- What OpenAI defines but the IR cannot model (user `input_audio` / `file`
  parts, `custom` tools and their calls in history) is kept as `ir.Opaque` in
  place: re-sent unchanged to an OpenAI backend, refused with a 400 naming the
  client's field by any other.
- Another protocol's request fields with no IR meaning (`ir.Extra`: Anthropic
  context_management, cache_control, mcp_servers) are dropped when they only
  tune serving and refused with a 400 naming the field when they change the
  answer (base.extras_to_send, the same rule for every backend).
"""
from __future__ import annotations

from app.protocols.openai_chat.common import FORWARDED_CLIENT_HEADERS, KEEPALIVE_COMMENT, PROTOCOL, RESPONSE_MODEL_FIELD
from app.protocols.openai_chat.errors import format_error, format_models, parse_error
from app.protocols.openai_chat.request import parse_request
from app.protocols.openai_chat.response import format_response
from app.protocols.openai_chat.stream_formatter import annotation_only, StreamFormatter
from app.protocols.openai_chat.body import _reasoning_effort, build_body, passthrough_body, wire_call_id
from app.protocols.openai_chat.reply import parse_response
from app.protocols.openai_chat.stream_parser import is_content_frame, StreamParser
