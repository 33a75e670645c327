"""Google Gemini `generateContent` / `streamGenerateContent` (v1beta), both directions.

Frontend: a client speaks Gemini to the proxy (model and stream flag come from
the URL). Backend: the proxy speaks Gemini to the provider, always streaming
with `alt=sse`. Module shape: app/protocols/base.py.

Gemini facts that shape this module (protocol reference §4, hazards in §5):
- function calls usually carry no id; results pair to calls by position and
  name, so ids are synthesized deterministically (hazard 1);
- a call's `thoughtSignature` must come back byte-exact on the next turn, and
  clients of other protocols cannot carry it, so it rides inside the
  synthesized id (`call_<hash>_ts_<signature, URL-safe base64>`, hazard 25);
- `finishReason` is STOP for call turns, so tool_calls is derived from the parts;
- streams have no terminator: a finishReason then end-of-body is the normal end.

What Gemini defines but the IR cannot model (executableCode, codeExecutionResult,
toolCall and toolResponse parts; googleSearch, codeExecution and other built-in
tools) is kept as `ir.Opaque` in place: re-sent unchanged to a Gemini backend,
refused with a 400 naming the client's field by any other. Another protocol's
request fields with no IR meaning (`ir.Extra`) are dropped or refused by the one
rule every backend applies (base.extras_to_send).
"""
from __future__ import annotations

from app.protocols.gemini.common import (
    finish_reason_from_gemini, FORWARDED_CLIENT_HEADERS, PROVIDER, RESPONSE_MODEL_FIELD, usage_from_gemini)
from app.protocols.gemini.call_ids import (
    encode_signature_in_id, is_synthesized_id, split_signature_id, synthesize_call_id)
from app.protocols.gemini.errors import format_error, format_models, parse_error
from app.protocols.gemini.request import parse_request
from app.protocols.gemini.response import format_response
from app.protocols.gemini.stream_formatter import StreamFormatter
from app.protocols.gemini.body import build_body, count_tokens_body, parse_count_tokens, passthrough_body
from app.protocols.gemini.reply import parse_response
from app.protocols.gemini.stream_parser import is_content_frame, StreamParser
