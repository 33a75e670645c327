"""Backend: a Responses `response` object read back into the IR."""
from __future__ import annotations

from typing import Any

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps, loads
from app.protocols.base import token_count
from app.protocols.openai_responses.common import PROTOCOL, _flat_name
from app.protocols.openai_responses.errors import _failure


def _usage_from_wire(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    inp = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), dict) else {}
    out = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), dict) else {}
    return ir.Usage(input_tokens=token_count(usage.get("input_tokens")),
                    output_tokens=token_count(usage.get("output_tokens")),
                    reasoning_tokens=token_count(out.get("reasoning_tokens")),
                    cache_read_tokens=token_count(inp.get("cached_tokens")),
                    cache_write_tokens=token_count(inp.get("cache_write_tokens")))


def _malformed(what: str) -> ProxyError:
    return ProxyError(ErrorKind.bad_gateway, f"Upstream returned a malformed Responses reply: {what}.")


def _finish(status: Any, incomplete: Any, has_calls: bool) -> tuple[ir.FinishReason, str | None]:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        finish = ir.FinishReason.content_filter if reason == "content_filter" else ir.FinishReason.length
        return finish, reason or "incomplete"
    return (ir.FinishReason.tool_calls if has_calls else ir.FinishReason.stop), status


def _reasoning_text(item: dict) -> str:
    texts = [s.get("text") for s in item.get("summary") or () if isinstance(s, dict)]
    if not any(texts):
        texts = [c.get("text") for c in item.get("content") or () if isinstance(c, dict)]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t)


def _flat_call_name(item: dict) -> str:
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    return _flat_name(namespace, item.get("name") or "")


def _item_parts(item: Any) -> list[ir.Part]:
    if not isinstance(item, dict):
        return []
    kind = item.get("type")
    if kind == "message":
        parts: list[ir.Part] = []
        for c in item.get("content") or ():
            if not isinstance(c, dict):
                continue
            if c.get("type") == "output_text" and isinstance(c.get("text"), str) and c["text"].strip():
                parts.append(ir.Text(c["text"]))
            elif c.get("type") == "refusal" and isinstance(c.get("refusal"), str) and c["refusal"]:
                parts.append(ir.Refusal(c["refusal"]))
        return parts
    if kind == "function_call":
        arguments = item.get("arguments")
        return [ir.ToolCall(item.get("call_id") or item.get("id") or "", _flat_call_name(item),
                            arguments if isinstance(arguments, str) and arguments else "{}")]
    if kind == "custom_tool_call":
        text = item.get("input") if isinstance(item.get("input"), str) else ""
        return [ir.ToolCall(item.get("call_id") or item.get("id") or "", _flat_call_name(item),
                            dumps({"input": text}).decode())]
    if kind == "reasoning":
        text = _reasoning_text(item)
        encrypted = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None
        if text or encrypted:
            return [ir.Thinking(text=text, signature=encrypted, origin=PROTOCOL if encrypted else None)]
    return []  # hosted-tool calls (web_search_call, ...) have no IR form


def parse_response(body: bytes, req: ir.Request) -> ir.Response:
    """A non-streamed `response` object -> IR response."""
    try:
        doc = loads(body)
    except ValueError:
        raise _malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the body is not a JSON object")
    status = doc.get("status")
    if status == "failed" or (doc.get("error") is not None and doc.get("object") != "response"):
        raise _failure(doc.get("error"), "Upstream reported a failed response.")
    if status not in ("completed", "incomplete", None):
        raise _malformed(f"status {status!r} is not a finished response")
    if not isinstance(doc.get("output"), list):
        raise _malformed("no output")
    parts = [p for item in doc["output"] for p in _item_parts(item)]
    finish, raw = _finish(status, doc.get("incomplete_details"), any(isinstance(p, ir.ToolCall) for p in parts))
    return ir.Response(id=doc.get("id") or "", model=doc.get("model") or req.model, parts=tuple(parts),
                       finish_reason=finish, usage=_usage_from_wire(doc.get("usage")), raw_finish_reason=raw)
