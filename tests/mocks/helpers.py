"""Test helpers: credentials per provider, raw HTTP calls, SSE parsing, a
tiny real PNG, and summarizers that turn any provider's reply (body or
stream events) into the provider-neutral shape of a scenario's `expect`."""
from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Iterable

import requests

AUTH = {
    "openai": {"Authorization": "Bearer sk-test-key"},
    "anthropic": {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "AIza-test"},
    "openai_responses": {"Authorization": "Bearer sk-test-key"},
}
GOOD_SCENARIOS = ("text", "function_calling", "parallel_function_calling", "after_tool_result", "thinking",
                  "max_tokens", "stop_sequence", "vision")
FAULT_SCENARIOS = ("error_400", "error_401", "error_429", "error_500", "overloaded", "slow_first_byte",
                   "stall_mid_stream", "drop_mid_stream", "malformed_body", "error_mid_stream")


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid, solid-colour PNG (so magic-byte checks see a real image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def post(url: str, provider: str, path: str, body: Any, headers: dict[str, str] | None = None,
         raw: bytes | None = None, **kwargs: Any) -> requests.Response:
    merged = {**AUTH[provider], "content-type": "application/json", **(headers or {})}
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(url + path, data=data, headers=merged, timeout=kwargs.pop("timeout", 10), **kwargs)


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """(event, data) per SSE event; multi-line data joined with newlines."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
        events.append((event, "\n".join(data)))
    return events


def sse_json(text: str) -> list[Any]:
    """The JSON data of every SSE event (strings such as [DONE] kept as strings)."""
    out = []
    for _, data in parse_sse(text):
        try:
            out.append(json.loads(data))
        except json.JSONDecodeError:
            out.append(data)
    return out


# ---------------------------------------------------------------- neutral summaries

def _args(text: str) -> dict:
    return json.loads(text) if text else {}


def _neutral_usage(input_tokens: int, output: int, reasoning: int | None) -> dict[str, int]:
    usage = {"input": input_tokens, "output": output}
    if reasoning:
        usage["reasoning"] = reasoning
    return usage


def openai_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    details = usage.get("completion_tokens_details") or {}
    return _neutral_usage(usage["prompt_tokens"], usage["completion_tokens"], details.get("reasoning_tokens"))


def anthropic_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    prompt = usage.get("input_tokens", 0) + (usage.get("cache_creation_input_tokens") or 0) \
        + (usage.get("cache_read_input_tokens") or 0)
    details = usage.get("output_tokens_details") or {}
    return _neutral_usage(prompt, usage["output_tokens"], details.get("thinking_tokens"))


def gemini_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    thoughts = usage.get("thoughtsTokenCount", 0)
    return _neutral_usage(usage["promptTokenCount"], usage.get("candidatesTokenCount", 0) + thoughts, thoughts)


OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                    "refusal": "content_filter"}


def summarize_openai_body(body: dict) -> dict:
    choice = body["choices"][0]
    message = choice["message"]
    calls = [{"name": c["function"]["name"], "arguments": _args(c["function"]["arguments"])}
             for c in message.get("tool_calls") or []]
    return {"text": message.get("content") or "", "tool_calls": calls,
            "finish": OPENAI_FINISH[choice["finish_reason"]], "usage": openai_usage(body.get("usage"))}


def summarize_openai_stream(chunks: Iterable[Any]) -> dict:
    text, calls, finish, usage, done = [], {}, None, None, False
    for chunk in chunks:
        if chunk == "[DONE]":
            done = True
            break
        if "error" in chunk:
            raise AssertionError(f"in-stream error: {chunk}")
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if delta.get("content"):
                text.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"name": "", "arguments": ""})
                fn = call.get("function") or {}
                entry["name"] += fn.get("name") or ""
                entry["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish = OPENAI_FINISH[choice["finish_reason"]]
        if chunk.get("usage"):
            usage = openai_usage(chunk["usage"])
    assert done, "stream did not end with [DONE]"
    return {"text": "".join(text), "finish": finish, "usage": usage,
            "tool_calls": [{"name": c["name"], "arguments": _args(c["arguments"])} for _, c in sorted(calls.items())]}


def summarize_anthropic_body(body: dict) -> dict:
    text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    thinking = "".join(b["thinking"] for b in body["content"] if b["type"] == "thinking")
    calls = [{"name": b["name"], "arguments": b["input"]} for b in body["content"] if b["type"] == "tool_use"]
    out = {"text": text, "tool_calls": calls, "finish": ANTHROPIC_FINISH[body["stop_reason"]],
           "usage": anthropic_usage(body["usage"])}
    if thinking:
        out["thinking"] = thinking
    return out


def summarize_anthropic_stream(events: Iterable[tuple[str | None, Any]]) -> dict:
    blocks: dict[int, dict] = {}
    finish, usage, stopped = None, None, False
    for event, data in events:
        assert data["type"] == event, (event, data)
        if event == "content_block_start":
            block = dict(data["content_block"])
            block["partial"] = ""
            blocks[data["index"]] = block
        elif event == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                block["partial"] += delta["partial_json"]
        elif event == "message_delta":
            finish = ANTHROPIC_FINISH[data["delta"]["stop_reason"]]
            usage = anthropic_usage(data["usage"])
        elif event == "message_stop":
            stopped = True
        elif event == "error":
            raise AssertionError(f"in-stream error: {data}")
    assert stopped, "stream did not end with message_stop"
    ordered = [blocks[i] for i in sorted(blocks)]
    out = {"text": "".join(b["text"] for b in ordered if b["type"] == "text"),
           "tool_calls": [{"name": b["name"], "arguments": _args(b["partial"])}
                          for b in ordered if b["type"] == "tool_use"],
           "finish": finish, "usage": usage}
    thinking = "".join(b["thinking"] for b in ordered if b["type"] == "thinking")
    if thinking:
        out["thinking"] = thinking
    return out


def summarize_gemini(responses: Iterable[dict]) -> dict:
    """Works for one generateContent body ([body]) and for a list of stream chunks."""
    text, thinking, calls, finish, usage = [], [], [], None, None
    for response in responses:
        if "error" in response:
            raise AssertionError(f"in-stream error: {response}")
        for candidate in response.get("candidates", []):
            for part in (candidate.get("content") or {}).get("parts", []):
                if "functionCall" in part:
                    calls.append({"name": part["functionCall"]["name"], "arguments": part["functionCall"]["args"]})
                elif part.get("thought"):
                    thinking.append(part["text"])
                elif "text" in part:
                    text.append(part["text"])
            if candidate.get("finishReason"):
                finish = candidate["finishReason"]
        if response.get("usageMetadata"):
            usage = gemini_usage(response["usageMetadata"])
    neutral = {"STOP": "tool_calls" if calls else "stop", "MAX_TOKENS": "length"}.get(finish, "content_filter")
    out = {"text": "".join(text), "tool_calls": calls, "finish": neutral, "usage": usage}
    if thinking:
        out["thinking"] = "".join(thinking)
    return out


def responses_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    details = usage.get("output_tokens_details") or {}
    return _neutral_usage(usage["input_tokens"], usage["output_tokens"], details.get("reasoning_tokens"))


def _responses_finish(response: dict, has_calls: bool) -> str:
    if response["status"] == "incomplete":
        return {"max_output_tokens": "length", "content_filter": "content_filter"}[
            response["incomplete_details"]["reason"]]
    assert response["status"] == "completed", response["status"]
    return "tool_calls" if has_calls else "stop"


def summarize_responses_body(body: dict) -> dict:
    text, thinking, calls = [], [], []
    for item in body["output"]:
        if item["type"] == "message":
            text += [c["text"] for c in item["content"] if c["type"] == "output_text"]
        elif item["type"] == "function_call":
            calls.append({"name": item["name"], "arguments": _args(item["arguments"])})
        elif item["type"] == "reasoning":
            thinking += [s["text"] for s in item["summary"]]
    out = {"text": "".join(text), "tool_calls": calls, "finish": _responses_finish(body, bool(calls)),
           "usage": responses_usage(body.get("usage"))}
    if thinking:
        out["thinking"] = "".join(thinking)
    return out


def summarize_responses_stream(events: Iterable[tuple[str | None, Any]]) -> dict:
    """From the deltas (what a streaming client sees), checking the event grammar on the way:
    `event:` equal to `type`, consecutive sequence numbers, the terminal event last."""
    text, thinking, calls, terminal = [], [], {}, None
    for n, (event, data) in enumerate(events):
        assert terminal is None, f"{event} after the terminal event"
        assert data["type"] == event and data["sequence_number"] == n, (event, data)
        if event == "response.output_text.delta":
            text.append(data["delta"])
        elif event == "response.reasoning_summary_text.delta":
            thinking.append(data["delta"])
        elif event == "response.output_item.added" and data["item"]["type"] == "function_call":
            calls[data["item"]["id"]] = {"name": data["item"]["name"], "arguments": ""}
        elif event == "response.function_call_arguments.delta":
            calls[data["item_id"]]["arguments"] += data["delta"]
        elif event in ("response.completed", "response.incomplete"):
            terminal = data["response"]
        elif event in ("error", "response.failed"):
            raise AssertionError(f"in-stream error: {data}")
    assert terminal is not None, "stream did not end with response.completed / response.incomplete"
    out = {"text": "".join(text), "finish": _responses_finish(terminal, bool(calls)),
           "usage": responses_usage(terminal.get("usage")),
           "tool_calls": [{"name": c["name"], "arguments": _args(c["arguments"])} for c in calls.values()]}
    if thinking:
        out["thinking"] = "".join(thinking)
    return out


def expected_summary(expect: dict) -> dict:
    """The comparable part of a scenario's expect."""
    return {k: expect[k] for k in ("text", "tool_calls", "finish", "usage", "thinking") if k in expect}


# ---------------------------------------------------------------- Bedrock (SigV4-signed raw calls)

BEDROCK_KEY_ID = "AKIDEXAMPLE"
BEDROCK_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
BEDROCK_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}


def bedrock_signed(url: str, model_id: str, body: Any, *, stream: bool = False, raw: bytes | None = None,
                   secret: str = BEDROCK_SECRET, key_id: str = BEDROCK_KEY_ID, service: str = "bedrock",
                   headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """(url, headers, body) of a Converse call signed the way botocore signs it."""
    from urllib.parse import quote

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    data = raw if raw is not None else json.dumps(body).encode()
    target = f"{url}/model/{quote(model_id, safe='')}/{'converse-stream' if stream else 'converse'}"
    request = AWSRequest("POST", target, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(key_id, secret), service, "us-east-1").add_auth(request)
    return target, dict(request.headers.items()), data


def bedrock_post(url: str, model_id: str, body: Any, **kwargs: Any) -> requests.Response:
    target, headers, data = bedrock_signed(url, model_id, body, **kwargs)
    return requests.post(target, data=data, headers=headers, timeout=10)


def bedrock_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    prompt = usage["inputTokens"] + usage.get("cacheReadInputTokens", 0) + usage.get("cacheWriteInputTokens", 0)
    return _neutral_usage(prompt, usage["outputTokens"], None)


def summarize_bedrock_body(body: dict) -> dict:
    content = body["output"]["message"]["content"]
    thinking = "".join(b["reasoningContent"]["reasoningText"]["text"] for b in content if "reasoningContent" in b)
    out = {"text": "".join(b["text"] for b in content if "text" in b),
           "tool_calls": [{"name": b["toolUse"]["name"], "arguments": b["toolUse"]["input"]}
                          for b in content if "toolUse" in b],
           "finish": BEDROCK_FINISH[body["stopReason"]], "usage": bedrock_usage(body["usage"])}
    if thinking:
        out["thinking"] = thinking
    return out


def summarize_bedrock_stream(events: Iterable[tuple[str, Any]]) -> dict:
    """(event type, payload) pairs, as decoded from the event stream (or boto3's {type: payload} dicts)."""
    blocks: dict[int, dict] = {}
    finish, usage = None, None
    for event, data in events:
        if event.endswith("Exception"):
            raise AssertionError(f"in-stream exception: {event} {data}")
        if event == "contentBlockStart":
            use = data["start"]["toolUse"]
            blocks[data["contentBlockIndex"]] = {"kind": "tool", "name": use["name"], "input": ""}
        elif event == "contentBlockDelta":
            delta = data["delta"]
            if "text" in delta:
                blocks.setdefault(data["contentBlockIndex"], {"kind": "text", "text": ""})["text"] += delta["text"]
            elif "toolUse" in delta:
                blocks[data["contentBlockIndex"]]["input"] += delta["toolUse"]["input"]
            elif "reasoningContent" in delta:
                block = blocks.setdefault(data["contentBlockIndex"], {"kind": "thinking", "text": ""})
                block["text"] += delta["reasoningContent"].get("text", "")
        elif event == "messageStop":
            finish = BEDROCK_FINISH[data["stopReason"]]
        elif event == "metadata":
            usage = bedrock_usage(data["usage"])
    assert finish is not None and usage is not None, "stream did not end with messageStop and metadata"
    ordered = [blocks[i] for i in sorted(blocks)]
    out = {"text": "".join(b["text"] for b in ordered if b["kind"] == "text"),
           "tool_calls": [{"name": b["name"], "arguments": _args(b["input"])} for b in ordered if b["kind"] == "tool"],
           "finish": finish, "usage": usage}
    thinking = "".join(b["text"] for b in ordered if b["kind"] == "thinking")
    if thinking:
        out["thinking"] = thinking
    return out


# ---------------------------------------------------------------- Ollama (native /api/chat)

OLLAMA_FINISH = {"stop": "stop", "length": "length"}


def summarize_ollama(lines: list[dict]) -> dict:
    """A non-streamed reply (one object) or a stream's lines, folded: deltas joined, the
    `done` line's reason and counts; `stop` with tool calls is `tool_calls`."""
    text, thinking, calls = "", "", []
    for line in lines:
        assert "error" not in line, f"error line: {line}"
        message = line.get("message") or {}
        text += message.get("content") or ""
        thinking += message.get("thinking") or ""
        calls += [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                  for c in message.get("tool_calls") or []]
    last = lines[-1]
    assert last["done"] is True and all(line["done"] is False for line in lines[:-1])
    finish = OLLAMA_FINISH[last["done_reason"]]
    out = {"text": text, "tool_calls": calls, "finish": "tool_calls" if calls and finish == "stop" else finish,
           "usage": _neutral_usage(last.get("prompt_eval_count", 0), last.get("eval_count", 0), None)}
    if thinking:
        out["thinking"] = thinking
    return out

# ---------------------------------------------------------------- OCI Generative AI (apiFormat COHERE)

OCI_FINISH = {"COMPLETE": "stop", "MAX_TOKENS": "length", "ERROR_LIMIT": "length", "ERROR_TOXIC": "content_filter",
              "USER_CANCEL": "stop"}


def _oci_usage(usage: dict | None) -> dict | None:
    return _neutral_usage(usage["promptTokens"], usage["completionTokens"], None) if usage else None


def _oci_summary(text: str, calls: list, finish: str, usage: dict | None) -> dict:
    return {"text": text, "tool_calls": [{"name": c["name"], "arguments": c["parameters"]} for c in calls],
            "finish": "tool_calls" if calls else OCI_FINISH[finish], "usage": _oci_usage(usage)}


def summarize_oci_body(body: dict) -> dict:
    chat = body["chatResponse"]
    return _oci_summary(chat["text"], chat.get("toolCalls") or [], chat["finishReason"], chat.get("usage"))


def summarize_oci_stream(events: list) -> dict:
    """COHERE stream events: text deltas, whole tool calls, then the terminal event (which repeats both)."""
    *deltas, terminal = events
    assert "finishReason" in terminal and not any("finishReason" in e for e in deltas), "no single terminal event"
    text = "".join(e.get("text", "") for e in deltas)
    calls = [c for e in deltas for c in e.get("toolCalls") or []]
    assert terminal["text"] == text and (terminal.get("toolCalls") or []) == calls, "the terminal event repeats all"
    return _oci_summary(text, calls, terminal["finishReason"], terminal.get("usage"))
