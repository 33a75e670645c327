"""OpenAI Responses (`POST /v1/responses`), both directions.

Frontend: clients speaking Responses (the SDK's `client.responses`, Codex) are
parsed into the IR and answered with a `response` object or its event stream.
Backend: the IR is sent to a Responses provider (OpenAI, Azure) and its replies,
event streams and errors are read back into the IR.

Policy choices (each one a deliberate answer to a known conversion hazard):
- Requests are validated as strictly as OpenAI does; Chat-only fields
  (`messages`, `max_tokens`, `stop`, `n`) get a 400 naming them, not silence.
- Input items pair by `call_id`: a `function_call_output` must answer a
  `function_call` earlier in `input` (unless `previous_response_id` is set: its
  calls are in the stored response) and every call in `input` must be answered.
- `instructions` becomes the first system message. `previous_response_id` and
  `store` are carried in the IR for the pipeline's state store; nothing here
  resolves them.
- Codex's tools: a `custom` tool (free-form input, e.g. apply_patch's grammar)
  is an IR function of one string argument `input` (`ir.Tool.kind == "custom"`)
  and its calls go back to the client as `custom_tool_call` with the raw input;
  a `namespace` group is flattened to `<namespace>__<name>` functions and the
  calls are restored to `{namespace, name}` by looking the flattened name up
  in the request's tools (never by splitting strings).
- Hosted tools ride as `ir.Opaque` tools: sent unchanged to a Responses
  backend. `web_search*` and `tool_search` are droppable (the pipeline leaves
  them out for other wires, `ir.tools_for`: the client works without them); every other
  hosted tool (file_search, mcp, code_interpreter, ...) is refused by other
  writers with a 400 naming `tools[i]`.
- Reasoning items become `ir.Thinking` (summary text, `encrypted_content` as the
  signature, origin this protocol); encrypted content goes back only to a
  Responses backend, and to clients only when it came from one. OpenAI and
  Azure are one family here, deliberately: the blob's format is the same on
  both, and what really binds it is the account that made it (an OpenAI
  organisation, an Azure resource), which no wire-level tag could tell apart
  either (two Azure resources differ as much as Azure and OpenAI). The proxy
  routes a client model name to one backend, so a conversation's reasoning
  goes back where it was made; a blob moved elsewhere is the provider's 400,
  relayed to the client as an invalid request.
- Streams carry `event:` lines equal to the JSON `type`, a `sequence_number`
  on every event, every `.done` event, and end with the terminal event
  (`response.completed` / `.incomplete` / `.failed`), never `[DONE]`
  (known-gateway-bugs 17, 21).
- Error envelopes are OpenAI's (protocols §2.7): the Chat module's are reused.
"""
from __future__ import annotations

from app.protocols.openai_responses.common import (
    FORWARDED_CLIENT_HEADERS, NAMESPACE_SEPARATOR, PROTOCOL, RESPONSE_MODEL_FIELD)
from app.protocols.openai_responses.errors import format_error, format_models, parse_error
from app.protocols.openai_responses.request import continue_request, custom_input_schema, input_items, parse_request
from app.protocols.openai_responses.response import format_response
from app.protocols.openai_responses.stream_formatter import StreamFormatter
from app.protocols.openai_responses.body import build_body, MIN_OUTPUT_TOKENS, passthrough_body
from app.protocols.openai_responses.reply import parse_response
from app.protocols.openai_responses.stream_parser import is_content_frame, StreamParser

__all__ = ["PROTOCOL", "RESPONSE_MODEL_FIELD", "FORWARDED_CLIENT_HEADERS", "parse_request", "format_response",
           "StreamFormatter", "format_error", "format_models", "build_body", "passthrough_body",
           "parse_response", "StreamParser", "parse_error", "is_content_frame", "custom_input_schema"]
