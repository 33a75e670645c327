"""OpenRouter's dialect of the OpenAI Chat wire, as specifications: its reasoning fields
(`reasoning`, `reasoning_details` text / summary / encrypted) in replies and streams,
`: OPENROUTER PROCESSING` comments and in-stream errors at every byte boundary, integer
error codes (402 included), the `reasoning` object it is sent, and the keep-alive each
frontend answers an upstream keep-alive with."""
from __future__ import annotations

import json

import pytest

from app import ir
from app.errors import ErrorKind
from app.protocols import anthropic, gemini, openai_chat as oc, openai_responses
from app.protocols.base import Target
from app.upstream.framing import SSEFramer
from tests.conftest import every_split, stream_events

REQ = ir.Request(model="openrouter-llama-3.1-8b", messages=(ir.Message("user", (ir.Text("Hi"),)),), protocol="openai")
STREAM_REQ = ir.Request(model="openrouter-llama-3.1-8b", messages=REQ.messages, protocol="openai", stream=True)
TARGET = Target("openrouter", "meta-llama/llama-3.1-8b-instruct", {"reasoning_object": True})


def chunk(delta: dict | None = None, finish: str | None = None, **top) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return json.dumps({"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "provider": "DeepInfra", "choices": choices, **top})


def sse(*events: str) -> bytes:
    return b"".join(e.encode() if e.startswith(":") else b"data: " + e.encode() + b"\n\n" for e in events)


# ------------------------------------------------------------------ replies


def test_reply_reasoning_details_become_thinking_once():
    body = {"id": "gen-1", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "The answer is 42.",
        "reasoning": "Think. Sum.",  # the same text as the details: read once
        "reasoning_details": [{"type": "reasoning.text", "text": "Think. ", "signature": None, "format": "unknown"},
                              {"type": "reasoning.summary", "summary": "Sum."},
                              {"type": "reasoning.encrypted", "data": "ZW5j"}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 17, "total_tokens": 37,
                  "completion_tokens_details": {"reasoning_tokens": 12}, "cost": 0.0001}}
    resp = oc.parse_response(json.dumps(body).encode(), REQ)
    assert resp.parts == (ir.Thinking("Think. Sum."), ir.Thinking(redacted="ZW5j", origin="openai"),
                          ir.Text("The answer is 42."))
    assert resp.usage == ir.Usage(input_tokens=20, output_tokens=17, reasoning_tokens=12)


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reply_plain_reasoning_string(field):
    body = {"id": "gen-1", "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "42", field: "Hmm."}}]}
    assert oc.parse_response(json.dumps(body).encode(), REQ).parts == (ir.Thinking("Hmm."), ir.Text("42"))


def test_reply_finish_reason_error_is_a_failed_turn():
    body = {"id": "gen-1", "choices": [{"index": 0, "finish_reason": "error", "native_finish_reason": "error",
                                        "message": {"role": "assistant", "content": ""}}]}
    resp = oc.parse_response(json.dumps(body).encode(), REQ)
    assert (resp.finish_reason, resp.raw_finish_reason) == (ir.FinishReason.error, "error")


# ------------------------------------------------------------------ streams

REASONING_STREAM = sse(
    ": OPENROUTER PROCESSING\n\n",
    chunk({"role": "assistant", "content": ""}),
    ": OPENROUTER PROCESSING\n\n",
    chunk({"content": "", "reasoning": "Think",
           "reasoning_details": [{"type": "reasoning.text", "text": "Think", "index": 0}]}),
    chunk({"content": "", "reasoning": "ing.", "reasoning_details": [{"type": "reasoning.text", "text": "ing."}]}),
    chunk({"content": "", "reasoning_details": [{"type": "reasoning.encrypted", "data": "ZW5j"}]}),
    chunk({"content": "42"}),
    chunk({"content": ""}, "stop", native_finish_reason="stop"),
    chunk(usage={"prompt_tokens": 20, "completion_tokens": 17, "total_tokens": 37,
                 "completion_tokens_details": {"reasoning_tokens": 12}, "cost": 0.0001}),
    "[DONE]",
)


def test_stream_reasoning_text_encrypted_and_comments_at_every_split():
    expected = [
        ir.MessageStart(id="gen-1", model="m"),
        ir.PartStart(0, "thinking"), ir.ThinkingDelta(0, "Think"), ir.ThinkingDelta(0, "ing."), ir.PartStop(0),
        ir.PartStart(1, "redacted_thinking", data="ZW5j"), ir.PartStop(1),
        ir.PartStart(2, "text"), ir.TextDelta(2, "42"), ir.PartStop(2),
        ir.MessageStop(ir.FinishReason.stop, ir.Usage(input_tokens=20, output_tokens=17, reasoning_tokens=12),
                       raw_finish_reason="stop"),
    ]
    for chunks in every_split(REASONING_STREAM):
        assert stream_events(oc.StreamParser(STREAM_REQ), chunks) == expected


ERROR_STREAM = sse(
    ": OPENROUTER PROCESSING\n\n",
    chunk({"role": "assistant", "content": "Hello"}),
    chunk({"content": ""}, "error", error={"code": 429, "message": "Rate limit exceeded",
                                           "metadata": {"error_type": "rate_limit_exceeded"}}),
)


def test_stream_in_stream_error_at_every_split():
    for chunks in every_split(ERROR_STREAM):
        events = stream_events(oc.StreamParser(STREAM_REQ), chunks)
        assert events[:3] == [ir.MessageStart(id="gen-1", model="m"), ir.PartStart(0, "text"), ir.TextDelta(0, "Hello")]
        assert len(events) == 4 and isinstance(events[3], ir.StreamError)
        err = events[3].error
        assert (err.kind, err.message, err.code) == (ErrorKind.rate_limit, "Rate limit exceeded", "rate_limit_exceeded")


def test_stream_finish_reason_error_without_an_error_object_is_a_failed_turn():
    data = sse(chunk({"role": "assistant", "content": "Hel"}), chunk({}, "error"), "[DONE]")
    stop = stream_events(oc.StreamParser(STREAM_REQ), [data])[-1]
    assert stop == ir.MessageStop(ir.FinishReason.error, raw_finish_reason="error")


def test_framer_notes_comment_lines_at_every_split():
    for chunks in every_split(b": OPENROUTER PROCESSING\n\n"):
        framer = SSEFramer()
        assert [f for c in chunks for f in framer.feed(c)] == [] and framer.keepalive
    framer = SSEFramer()
    framer.feed(sse(chunk({"content": "x"})))
    assert not framer.keepalive


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("status,error_type,kind,code", [
    (400, None, ErrorKind.invalid_request, None),
    (401, "authentication", ErrorKind.authentication, "authentication"),
    (402, "payment_required", ErrorKind.rate_limit, "insufficient_quota"),
    (403, "content_policy_violation", ErrorKind.permission, "content_policy_violation"),
    (408, "timeout", ErrorKind.timeout, "timeout"),
    (429, "rate_limit_exceeded", ErrorKind.rate_limit, "rate_limit_exceeded"),
    (502, "provider_unavailable", ErrorKind.bad_gateway, "provider_unavailable"),
    (503, "provider_overloaded", ErrorKind.overloaded, "provider_overloaded"),
])
def test_integer_error_codes(status, error_type, kind, code):
    meta = {"error_type": error_type} if error_type else {}
    body = json.dumps({"error": {"code": status, "message": "Nope.", "metadata": meta}}).encode()
    err = oc.parse_error(status, {"Retry-After": "7"} if status == 429 else {}, body)
    assert (err.kind, err.message, err.code) == (kind, "Nope.", code)
    assert err.retry_after == ("7" if status == 429 else None)
    # The same envelope inside a 200 stream: the integer code is the status.
    in_stream = oc.StreamParser(STREAM_REQ).feed(
        SSEFramer().feed(sse(chunk({"content": ""}, "error", error=json.loads(body)["error"])))[0])
    assert (in_stream[0].error.kind, in_stream[0].error.code) == (kind, code)


# ------------------------------------------------------------------ the request


@pytest.mark.parametrize("reasoning,sent", [
    (ir.Reasoning(effort="high"), {"effort": "high"}),
    (ir.Reasoning(budget_tokens=2048), {"max_tokens": 2048}),
    (ir.Reasoning(budget_tokens=-1, include_thoughts=True), {"enabled": True}),
    (ir.Reasoning(include_thoughts=True), {"enabled": True}),
    (ir.Reasoning(effort="low", include_thoughts=False), {"effort": "low", "exclude": True}),
    (ir.Reasoning(budget_tokens=0), None),
])
def test_reasoning_object(reasoning, sent):
    body = oc.build_body(ir.Request(model="x", messages=REQ.messages, protocol="anthropic", reasoning=reasoning),
                         TARGET)
    assert body.get("reasoning") == sent
    assert "reasoning_effort" not in body


def test_without_the_option_the_effort_field_is_written():
    body = oc.build_body(ir.Request(model="x", messages=REQ.messages, protocol="anthropic",
                                    reasoning=ir.Reasoning(budget_tokens=2048)), Target("openai", "gpt-5"))
    assert body["reasoning_effort"] == "medium" and "reasoning" not in body


# ------------------------------------------------------------------ keep-alives


def test_each_frontend_keepalive_is_its_protocols_own_no_op():
    assert oc.StreamFormatter(STREAM_REQ).keepalive() == b": keep-alive\n\n"
    assert openai_responses.StreamFormatter(STREAM_REQ).keepalive() == b": keep-alive\n\n"
    assert anthropic.StreamFormatter(STREAM_REQ).keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert gemini.StreamFormatter(STREAM_REQ, sse=True).keepalive() == b"\n"
    assert gemini.StreamFormatter(STREAM_REQ, sse=False).keepalive() == b"\n"  # JSON whitespace in the array
