"""Frontend: an IR response rendered as a Gemini generateContent reply."""
from __future__ import annotations

from typing import Any

from app import ir
from app.protocols.gemini.common import PROVIDER, _finish_reason_to_gemini, _usage_metadata


def format_response(resp: ir.Response, req: ir.Request) -> dict:
    """ir.Response -> GenerateContentResponse."""
    parts = [wire for part in resp.parts if (wire := _part_out(part)) is not None]
    candidate: dict[str, Any] = {"content": _model_content(parts),
                                 "finishReason": _finish_reason_to_gemini(resp.finish_reason, resp.raw_finish_reason),
                                 "index": 0}
    if resp.finish_message:
        candidate["finishMessage"] = resp.finish_message
    return {"candidates": [candidate], "usageMetadata": _usage_metadata(resp.usage),
            "modelVersion": resp.model or req.model, "responseId": resp.id}


def _model_content(parts: list[dict]) -> dict:
    return {"role": "model", "parts": parts}


def _part_out(part: ir.Part) -> dict | None:
    if isinstance(part, (ir.Text, ir.Refusal)):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Thinking):
        if not part.text:
            return None  # redacted or signature-only thinking of another provider
        wire = {"text": part.text, "thought": True}
        if part.signature and part.origin == PROVIDER:
            wire["thoughtSignature"] = part.signature
        return wire
    if isinstance(part, ir.ToolCall):
        return _function_call_part(part.id, part.name, part.arguments,
                                   part.signature if part.signature_origin == PROVIDER else None)
    if isinstance(part, ir.Image):
        if part.data:
            return {"inlineData": {"mimeType": part.media_type or "application/octet-stream", "data": part.data}}
        if part.url:
            file_data = {"fileUri": part.url}
            if part.media_type:
                file_data["mimeType"] = part.media_type
            return {"fileData": file_data}
    return None


def _function_call_part(call_id: str, name: str, arguments: str, signature: str | None) -> dict:
    """A whole functionCall part for a client. The id is included so clients can
    echo it; args unparseable as an object become {} (Gemini args are objects)."""
    try:
        args = ir.parse_arguments(arguments)
    except ValueError:
        args = {}
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args, "id": call_id}}
    if signature:
        part["thoughtSignature"] = signature
    return part
