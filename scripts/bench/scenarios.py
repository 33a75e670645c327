"""The generated bench scenarios (numbered tokens, per-chunk delays) beside the bundled fixtures."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from mocks.scenarios import DEFAULT_ROOT


TOKEN_RE = re.compile(rb"w(\d{4})\b")


def token(i: int) -> str:
    """The i-th streamed word (1-based): unique, so the tap and the client can
    match the same chunk on both sides of the proxy whatever the protocol."""
    return f"w{i:04d} "


def stream_scenarios(chunks: int, delay_ms: int, description: str) -> dict[str, dict]:
    """Scenario fixtures (scenarios/README.md format) for each provider: `chunks`
    one-word text deltas, each `delay_ms` after the previous one."""
    words = [token(i) for i in range(1, chunks + 1)]
    text = "".join(words)
    usage = {"input": 12, "output": chunks}
    expect = {"text": text, "tool_calls": [], "finish": "stop", "usage": usage}
    cid = "chatcmpl-{{id}}"
    head = {"id": cid, "object": "chat.completion.chunk", "created": 1760000000, "model": "{{model}}",
            "system_fingerprint": "fp_bench"}
    o_usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    openai = {
        "description": description, "status": 200, "expect": expect,
        "body": {"id": cid, "object": "chat.completion", "created": 1760000000, "model": "{{model}}",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                              "logprobs": None, "finish_reason": "stop"}],
                 "usage": o_usage},
        "stream": [{"data": {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "logprobs": None, "finish_reason": None}]}}]
        + [{"data": {**head, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None,
                                          "finish_reason": None}]}, "delay_ms": delay_ms} for w in words]
        + [{"data": {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}},
           {"data": {**head, "choices": [], "usage": o_usage}},
           {"data": "[DONE]"}],
    }
    a_usage = {"input_tokens": 12, "output_tokens": chunks}
    anthropic = {
        "description": description, "status": 200, "expect": expect,
        "body": {"model": "{{model}}", "id": "msg_01{{id}}", "type": "message", "role": "assistant",
                 "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                 "stop_sequence": None, "usage": a_usage},
        "stream": [{"event": "message_start",
                    "data": {"type": "message_start", "message": {
                        "model": "{{model}}", "id": "msg_01{{id}}", "type": "message", "role": "assistant",
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": 12, "output_tokens": 1}}}},
                   {"event": "content_block_start",
                    "data": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}}]
        + [{"event": "content_block_delta", "delay_ms": delay_ms,
            "data": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}}
           for w in words]
        + [{"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
           {"event": "message_delta", "data": {"type": "message_delta",
                                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                               "usage": {"output_tokens": chunks}}},
           {"event": "message_stop", "data": {"type": "message_stop"}}],
    }

    def g_chunk(i: int, w: str) -> dict:
        cand: dict[str, Any] = {"content": {"parts": [{"text": w}], "role": "model"}, "index": 0}
        if i == chunks:
            cand["finishReason"] = "STOP"
        return {"candidates": [cand],
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": i, "totalTokenCount": 12 + i},
                "modelVersion": "{{model}}", "responseId": "{{id}}"}

    gemini = {
        "description": description, "status": 200, "expect": expect,
        "body": {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                 "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": chunks,
                                   "totalTokenCount": 12 + chunks},
                 "modelVersion": "{{model}}", "responseId": "{{id}}"},
        "stream": [{"data": g_chunk(i, w), "delay_ms": delay_ms} for i, w in enumerate(words, 1)],
    }
    b_usage = {"inputTokens": 12, "outputTokens": chunks, "totalTokens": 12 + chunks}
    bedrock = {
        "description": description, "status": 200, "expect": expect,
        "body": {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                 "stopReason": "end_turn", "usage": b_usage, "metrics": {"latencyMs": delay_ms * chunks}},
        "stream": [{"event": "messageStart", "data": {"role": "assistant"}}]
        + [{"event": "contentBlockDelta", "delay_ms": delay_ms,
            "data": {"contentBlockIndex": 0, "delta": {"text": w}}} for w in words]
        + [{"event": "contentBlockStop", "data": {"contentBlockIndex": 0}},
           {"event": "messageStop", "data": {"stopReason": "end_turn"}},
           {"event": "metadata", "data": {"usage": b_usage, "metrics": {"latencyMs": delay_ms * chunks}}}],
    }
    return {"openai": openai, "anthropic": anthropic, "gemini": gemini, "bedrock": bedrock}


def write_scenario_root(dest: Path, stream_chunks: int, stream_delay_ms: int,
                        hold_chunks: int, hold_delay_ms: int) -> Path:
    """The repository's fixtures plus the generated bench scenarios, in `dest`.
    (Generated rather than committed: scenarios/ holds exactly the set every
    provider must have, and the chunk count/delay are options of the run.)"""
    import yaml

    root = dest / "scenarios"
    shutil.copytree(DEFAULT_ROOT, root)
    for name, (chunks, delay, what) in {
        "bench_stream": (stream_chunks, stream_delay_ms, "Benchmark: one-word deltas with a per-chunk delay."),
        "bench_long": (hold_chunks, hold_delay_ms, "Benchmark: a long stream, for holding many at once."),
    }.items():
        for provider, doc in stream_scenarios(chunks, delay, what).items():
            (root / provider / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root
