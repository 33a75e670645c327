"""Gemini wire tables and conversions both halves of the Gemini module use (finish reasons, usage, base64)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from app import errors, ir
from app.protocols.base import token_count


PROVIDER = "gemini"
FORWARDED_CLIENT_HEADERS: tuple[str, ...] = ()
RESPONSE_MODEL_FIELD = "modelVersion"
_CONTENT_FILTER = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})
_TOOL_FAILURES = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
_GEMINI_FINISH_REASONS = _CONTENT_FILTER | _TOOL_FAILURES | {
    "FINISH_REASON_UNSPECIFIED", "STOP", "MAX_TOKENS", "LANGUAGE", "OTHER", "NO_IMAGE", "IMAGE_OTHER"}
_FINISH_TO_GEMINI = {
    ir.FinishReason.stop: "STOP",
    ir.FinishReason.tool_calls: "STOP",  # Gemini says STOP for call turns
    ir.FinishReason.length: "MAX_TOKENS",
    ir.FinishReason.content_filter: "SAFETY",
    ir.FinishReason.error: "OTHER",
}


def finish_reason_from_gemini(value: str | None, has_calls: bool) -> ir.FinishReason:
    """Gemini finishReason -> IR. Never a silent stop for a failed call
    (known-gateway-bugs #6); a call turn is tool_calls although Gemini says STOP (#7)."""
    if value == "MAX_TOKENS":
        return ir.FinishReason.length  # also with empty text (thinking used the budget)
    if value in _CONTENT_FILTER:
        return ir.FinishReason.content_filter
    if value in _TOOL_FAILURES:
        return ir.FinishReason.error
    return ir.FinishReason.tool_calls if has_calls else ir.FinishReason.stop


def _finish_reason_to_gemini(reason: ir.FinishReason, raw: str | None) -> str:
    # A raw Gemini value that means the same thing is more precise (RECITATION, MALFORMED_FUNCTION_CALL).
    if raw in _GEMINI_FINISH_REASONS and finish_reason_from_gemini(raw, reason == ir.FinishReason.tool_calls) == reason:
        return raw
    return _FINISH_TO_GEMINI[reason]


def usage_from_gemini(meta: Mapping[str, Any]) -> ir.Usage:
    """usageMetadata -> IR usage. Gemini's candidatesTokenCount excludes thoughts;
    the IR output includes them. Tool-use prompt tokens count as prompt so the
    totals add up."""
    thoughts = token_count(meta.get("thoughtsTokenCount"))
    return ir.Usage(
        input_tokens=token_count(meta.get("promptTokenCount")) + token_count(meta.get("toolUsePromptTokenCount")),
        output_tokens=token_count(meta.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
        cache_read_tokens=token_count(meta.get("cachedContentTokenCount")),
    )


def _usage_metadata(usage: ir.Usage) -> dict:
    meta = {"promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0)}
    if usage.reasoning_tokens > 0:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens > 0:
        meta["cachedContentTokenCount"] = usage.cache_read_tokens
    meta["totalTokenCount"] = usage.total_tokens
    return meta


def _standard_base64(data: str, where: str) -> str:
    """Base64 in either alphabet (the Python SDK sends URL-safe) -> the standard
    alphabet with padding, the IR's form."""
    text = "".join(data.split()).replace("-", "+").replace("_", "/").rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9+/]*", text) or len(text) % 4 == 1:
        raise errors.invalid(f"{where} is not valid base64", where)
    return text + "=" * (-len(text) % 4)
