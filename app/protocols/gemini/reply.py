"""Backend: a Gemini generateContent reply read back into the IR."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps_str, loads
from app.protocols.gemini.common import (
    PROVIDER, _standard_base64, finish_reason_from_gemini, usage_from_gemini)
from app.protocols.gemini.call_ids import _CallIds
from app.protocols.gemini.errors import _error_from_status


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """GenerateContentResponse -> ir.Response."""
    data = _json_body(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise _malformed("upstream Gemini response is not a JSON object")
    if isinstance(data.get("error"), dict):
        raise _error_from_status(data["error"], 0, {})
    response_id = data.get("responseId") or ""
    model = data.get("modelVersion") or req.model
    usage = usage_from_gemini(data.get("usageMetadata") or {})
    candidates = data.get("candidates") or []
    if not candidates:
        feedback = data.get("promptFeedback") or {}
        if feedback.get("blockReason"):  # the prompt was blocked: a filter result, not an HTTP error
            return ir.Response(response_id, model, (), ir.FinishReason.content_filter, usage,
                               raw_finish_reason=feedback["blockReason"],
                               finish_message=feedback.get("blockReasonMessage"))
        raise _malformed("upstream Gemini response has no candidates")
    candidate = candidates[0]
    parts = _response_parts(candidate, _CallIds(response_id))
    raw_reason = candidate.get("finishReason")
    has_calls = any(isinstance(p, ir.ToolCall) for p in parts)
    return ir.Response(response_id, model, parts, finish_reason_from_gemini(raw_reason, has_calls), usage,
                       raw_finish_reason=raw_reason, finish_message=candidate.get("finishMessage"))


def _response_parts(candidate: Mapping[str, Any], ids: _CallIds) -> tuple[ir.Part, ...]:
    parts: list[ir.Part] = []
    for raw in (candidate.get("content") or {}).get("parts") or ():
        if not isinstance(raw, dict):
            continue
        signature = raw.get("thoughtSignature") or None
        if isinstance(raw.get("functionCall"), dict):
            parts.append(_tool_call(raw["functionCall"], signature, ids))
        elif "text" in raw:
            text = raw.get("text") or ""
            if raw.get("thought"):
                if text or signature:
                    parts.append(ir.Thinking(text, signature, None, PROVIDER))
            elif text:
                if parts and isinstance(parts[-1], ir.Text):
                    parts[-1] = ir.Text(parts[-1].text + text)  # one text block, not many
                else:
                    parts.append(ir.Text(text))
            elif signature and parts and isinstance(parts[-1], ir.Thinking) and parts[-1].signature is None:
                parts[-1] = dataclasses.replace(parts[-1], signature=signature)
        elif isinstance(raw.get("inlineData"), dict):
            inline = raw["inlineData"]
            parts.append(ir.Image(data=_standard_base64(inline.get("data") or "", "inlineData.data"),
                                  media_type=inline.get("mimeType")))
    return tuple(p for p in parts if not isinstance(p, ir.Text) or p.text.strip())


def _tool_call(function_call: Mapping[str, Any], signature: str | None, ids: _CallIds) -> ir.ToolCall:
    name = function_call.get("name") or ""
    args = function_call.get("args")
    return ir.ToolCall(ids.make(function_call.get("id"), name, signature), name,
                       dumps_str(args if isinstance(args, dict) else {}),
                       signature, PROVIDER if signature else None)


def _json_body(body: bytes) -> Any:
    try:
        return loads(body)
    except ValueError:
        raise _malformed("upstream Gemini response is not JSON") from None


def _malformed(message: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, message, backend=PROVIDER)
