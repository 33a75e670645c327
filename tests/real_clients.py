"""The real agent clients in tests: their recorded requests made whole again, and
what they need from a stream (../shared/protocols/real-clients.md) as readers that
return what the client got and every need the stream failed."""
from __future__ import annotations

import json
import re

from tests.mocks.helpers import parse_sse

# Recorded bodies replace prose over 200 characters with `<text N chars>`.
_PLACEHOLDER = re.compile(r"<text (\d+) chars>")
_PROSE = ("Read each file before you change it and keep every edit small. When a command fails, look at its "
          "output, find the cause and run it again; do not guess. Prefer the helpers the project already has, "
          "follow its style, and say what you changed and why in one short paragraph at the end. ")


def prose(length: int) -> str:
    """`length` characters of plain English, ending in a full stop (never in a space)."""
    text = (_PROSE * (length // len(_PROSE) + 1))[:length]
    return text[:-1] + "." if text.endswith(" ") else text


def expand_prose(value):
    """The recorded body with every `<text N chars>` placeholder replaced by N characters of prose."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: prose(int(m.group(1))), value)
    if isinstance(value, list):
        return [expand_prose(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_prose(v) for k, v in value.items()}
    return value


def claude_code_read(text: str) -> tuple[dict, list[str]]:
    """An Anthropic SSE stream read the way Claude Code reads it -> (what it got, problems)."""
    events = [(name, json.loads(data)) for name, data in parse_sse(text)]
    problems: list[str] = []
    got = {"text": "", "tool_calls": [], "stop_reason": None}
    if not events or events[0][1].get("type") != "message_start":
        problems.append("the stream does not open with message_start (Claude Code retries without streaming)")
    open_blocks: dict[int, dict] = {}
    for name, data in events:
        kind = data.get("type")
        if name != kind:
            problems.append(f"event line {name!r} does not match data type {kind!r}")
        if kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "tool_use" and block.get("input") != {}:
                problems.append(f"tool_use block {data['index']} carries input in content_block_start "
                                "(Claude Code ignores it: input must come as input_json_delta)")
            open_blocks[data["index"]] = {**block, "json": ""}
        elif kind == "content_block_delta":
            block = open_blocks.get(data["index"])
            if block is None:
                problems.append(f"delta for block {data['index']}, which is not open")
                continue
            delta = data["delta"]
            if delta["type"] == "text_delta":
                got["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                block["json"] += delta["partial_json"]
        elif kind == "content_block_stop":
            block = open_blocks.pop(data["index"], None)
            if block is None:
                problems.append(f"content_block_stop for block {data['index']}, which is not open")
                continue
            if block["type"] == "tool_use":
                got["tool_calls"].append({"name": block["name"], "arguments": json.loads(block["json"] or "{}")})
        elif kind == "message_delta":
            if open_blocks:
                problems.append(f"blocks {sorted(open_blocks)} still open at message_delta (their content is lost)")
            got["stop_reason"] = data["delta"].get("stop_reason")
    if got["stop_reason"] is None:
        problems.append("no message_delta with a stop_reason")
    if not events or events[-1][1].get("type") != "message_stop":
        problems.append("the stream does not end with message_stop (Claude Code then reads usage as 0)")
    return got, problems


def gemini_cli_read(text: str) -> tuple[dict, list[str]]:
    """A Gemini SSE stream read the way Gemini CLI reads it -> (what it got, problems)."""
    chunks = [json.loads(data) for _, data in parse_sse(text)]
    problems: list[str] = []
    got = {"text": "", "tool_calls": [], "finish": None}
    for i, chunk in enumerate(chunks):
        candidates = chunk.get("candidates")
        if not candidates:
            problems.append(f"chunk {i} has no candidates")
            continue
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "text" in part and not part.get("thought"):
                got["text"] += part["text"]
            if "functionCall" in part:
                call = part["functionCall"]
                got["tool_calls"].append({"name": call["name"], "arguments": call["args"]})
        if "finishReason" in candidate:
            if i != len(chunks) - 1:
                problems.append(f"chunk {i} of {len(chunks)} carries a finishReason before the last chunk")
            got["finish"] = candidate["finishReason"]
    if not chunks or "finishReason" not in (chunks[-1].get("candidates") or [{}])[0]:
        problems.append("the last chunk has no finishReason (Gemini CLI: INVALID_STREAM, retries)")
    return got, problems
