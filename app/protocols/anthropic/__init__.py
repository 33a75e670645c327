"""Anthropic Messages (`POST /v1/messages`), both directions.

Frontend: a client speaking the Messages API is parsed into the IR, and IR
responses, stream events, errors and model lists are rendered the way
api.anthropic.com renders them (event order, block indices, error envelope,
529 for overload, `x-should-retry`).
Backend: the IR is written as a Messages request, and replies, SSE streams and
error envelopes (including the Google envelope of Vertex fronts) are read back.

Policy choices, each one a place where the wire formats disagree:
- Tool results. A user turn holding tool_result blocks becomes one IR `tool`
  message with every result in order, then a user message with the turn's
  other text/images. Writing, consecutive IR tool messages become one user turn
  that starts with all the results, and the user message that follows is merged
  in after them (the API's "results first, in one message" rule).
- A tool_result whose id is not a tool_use of the previous assistant turn is
  refused (400), as the real API does: other backends need the tool name.
- Thinking: which signatures travel where. A signature (or redacted payload) is
  opaque and valid only for the family that made it, named by Thinking.origin:
  `anthropic` for this wire (the Anthropic API and Claude on Vertex),
  `bedrock_converse` for Claude on Bedrock, `gemini`, `openai_responses`. Writing
  a request, only Anthropic's go (others' parts are dropped, and the missing-
  thinking rule below applies). Rendering for a client, Anthropic's are shown as
  they are and another family's tagged `<family>:<data>` (Anthropic's are
  base64, which has no colon); clients echo thinking blocks verbatim, and a tag
  read back restores the family, so Claude on Bedrock gets its own signed
  reasoning back on the next turn (bedrock_converse writes only its own) while
  the Anthropic API never sees it: a request holding a tagged block is written
  afresh, never passed through. We do not rely on signatures being portable
  between platforms. Signature-only blocks (empty text, the default for recent
  models) are kept and re-sent byte-exact.
- Thinking requested while the last assistant turn calls tools without its
  thinking block (the client's protocol could not carry it): the request goes
  out without thinking rather than failing with the API's 400. With thinking
  on, forced tool_choice becomes auto and temperature/top_k are not sent.
- Tool-call ids from other providers are rewritten to the API's charset by a
  pure function, so a call and its result always get the same id.
- Tool history without tool definitions (the API refuses it): placeholder
  definitions are declared from the names in history, with tool_choice none.
- response_format (structured output) and n > 1 cannot be honoured: 400 naming
  the field, never a silent drop.
- Replies carry the IR's model name (the pipeline puts the client's there),
  else `req.model`.
- `FinishReason.error` (the model failed) is never rendered as a clean stop:
  format_response raises bad_gateway, the stream formatter ends with `error`
  (the pipeline normally turns it into an error before it gets here).
- Mid-conversation system messages (`role: "system"` in `messages`, and the
  `mid_conv_system` block inside a turn, which splits the turn there) become
  IR system messages at their position. Writing, a later system message goes
  out as a user turn marked "System: " (every model takes it), or as a
  `role: "system"` message when the backend's option `mid_conversation_system`
  says its models take them (others answer 400 "role 'system' is not supported
  on this model"). Same-wire passthrough sends the client's messages as they are.
- Top-level fields with no IR meaning (`context_management`, `cache_control`,
  `mcp_servers`, ...) ride as `ir.Extra`, marked optional or not in
  `_EXTRA_FIELDS`; an Anthropic writer re-sends them, others drop or refuse them
  by one rule (base.extras_to_send). Block-level `cache_control` marks have no
  IR form: other backends never see them (OpenAI and Gemini cache prefixes on
  their own); passthrough keeps them.
- Blocks and tools the IR has no form for (document/search_result blocks, server
  tools and their server_tool_use/…_tool_result history blocks, any newer type)
  are kept as `ir.Opaque` in place: re-sent unchanged to an Anthropic backend,
  refused with a 400 naming the client's field by any other. IR block types in
  the wrong place (tool_use in a user turn) are still the client's error.
"""
from __future__ import annotations

from app.protocols.anthropic.common import (
    API_VERSION, FORWARDED_CLIENT_HEADERS, IMAGE_MEDIA_TYPES, MAX_INT, MIN_THINKING_BUDGET, PROTOCOL,
    RESPONSE_MODEL_FIELD)
from app.protocols.anthropic.errors import format_error, format_models, parse_error
from app.protocols.anthropic.request import _tool_from_wire, OUTPUT_EFFORTS, parse_request
from app.protocols.anthropic.response import format_response, message_id
from app.protocols.anthropic.stream_formatter import StreamFormatter
from app.protocols.anthropic.body import (
    build_body, count_tokens_body, DEFAULT_MAX_TOKENS, parse_count_tokens, passthrough_body, wire_tool_id)
from app.protocols.anthropic.reply import parse_response
from app.protocols.anthropic.stream_parser import is_content_frame, StreamParser
