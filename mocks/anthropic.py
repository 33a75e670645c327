"""Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`,
`GET /v1/models`): x-api-key + anthropic-version, the validation the real
API applies (protocols §3 and Appendix A, including the tool_use /
tool_result adjacency rules with their real texts), scenario detection and
`event:`/`data:` framing.

The 2026 request forms are checked as the current API checks them, never
waved through: mid-conversation system messages (`role: "system"` in
`messages`, or a `mid_conv_system` block in a turn) are accepted only for the
models in MID_CONVERSATION_SYSTEM_MODELS (Sonnet 4.5 and Opus 4.5 here; Haiku
4.5 stands for the models that answer 400 "role 'system' is not supported on
this model"); `thinking {type: "adaptive"}`, `output_config {effort, format}`,
`context_management {edits}` and `cache_control {type: "ephemeral", ttl?:
"5m"|"1h"}` (at most 4 breakpoints) have their shapes checked field by field."""
from __future__ import annotations

import re
from typing import Any

from flask import Response

from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json, decode_base64, sniff_image_type, stable_id

# alias -> (dated id, display name, created_at, max output tokens)
MODELS = {
    "claude-sonnet-4-5": ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 64000),
    "claude-opus-4-5": ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 64000),
    "claude-haiku-4-5": ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 64000),
}
_BY_ID = {**{alias: alias for alias in MODELS}, **{info[0]: alias for alias, info in MODELS.items()}}
# Models that take mid-conversation system messages; the others refuse them.
MID_CONVERSATION_SYSTEM_MODELS = frozenset({"claude-sonnet-4-5", "claude-opus-4-5"})
SYSTEM_ROLE_UNSUPPORTED = "role 'system' is not supported on this model"
MAX_CACHE_BREAKPOINTS = 4
EFFORTS = ("low", "medium", "high", "xhigh", "max")
THINKING_FIELDS = {"enabled": {"type", "budget_tokens", "display"}, "disabled": {"type"},
                   "adaptive": {"type", "display"}}
CONTEXT_EDIT_FIELDS = {
    "clear_tool_uses_20250919": {"type", "clear_at_least", "clear_tool_inputs", "exclude_tools", "keep", "trigger"},
    "clear_thinking_20251015": {"type", "keep"},
}

MESSAGES_FIELDS = frozenset({
    "model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p", "top_k", "tools",
    "tool_choice", "thinking", "output_config", "metadata", "service_tier", "stream", "cache_control",
    "container", "inference_geo", "context_management", "mcp_servers",
})
COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control",
    "context_management", "mcp_servers",
})
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
USER_BLOCKS = ("text", "image", "document", "tool_result", "search_result", "mid_conv_system")
ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
                    "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result")
BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
    "mid_conv_system": {"type", "content", "cache_control"},
}
TOOL_FIELDS = {"name", "description", "input_schema", "cache_control", "strict", "input_examples", "type",
               "defer_loading", "allowed_callers", "eager_input_streaming"}
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
SERVER_TOOL_TYPE = re.compile(r"^[a-z_]+_\d{8}$")
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


# ------------------------------------------------------------------ envelopes

def invalid(message: str, status: int = 400, kind: str = "invalid_request_error") -> ApiError:
    """The body gets its request_id when rendered (it depends on the request)."""
    return ApiError(status, {"type": "error", "error": {"type": kind, "message": message}},
                    {"x-should-retry": "true" if status >= 500 or status == 429 else "false"})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _require(obj: dict, key: str, path: str) -> Any:
    if obj.get(key) is None:
        raise invalid(f"{path}.{key}: Field required" if path else f"{key}: Field required")
    return obj[key]


def _no_extra(obj: dict, allowed: set | frozenset, path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise invalid(f"{path}.{key}: Extra inputs are not permitted" if path else
                          f"{key}: Extra inputs are not permitted")


def _tags(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def resolve_model(model: str) -> str | None:
    """The alias for a known alias or dated id; None when unknown."""
    return _BY_ID.get(model)


# ------------------------------------------------------------------ 2026 fields

def _check_cache_control(owner: dict, path: str) -> int:
    """A `cache_control` on `owner`, if any; returns the breakpoints it adds (0 or 1)."""
    value = owner.get("cache_control")
    if value is None:
        return 0
    where = f"{path}.cache_control" if path else "cache_control"
    if not isinstance(value, dict):
        raise invalid(f"{where}: Input should be a valid dictionary")
    if value.get("type") != "ephemeral":
        raise invalid(f"{where}.type: Input should be 'ephemeral'")
    _no_extra(value, {"type", "ttl"}, where)
    if value.get("ttl") is not None and value["ttl"] not in ("5m", "1h"):
        raise invalid(f"{where}.ttl: Input should be '5m' or '1h'")
    return 1


def _check_system_text_blocks(blocks: Any, path: str) -> int:
    """The text blocks of a system prompt, a system message or a mid_conv_system block."""
    if not isinstance(blocks, list):
        raise invalid(f"{path}: Input should be a valid list")
    breakpoints = 0
    for k, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"{path}.{k}: Input tag '{block.get('type') if isinstance(block, dict) else block}' found "
                          "using 'type' does not match any of the expected tags: 'text'")
        _no_extra(block, BLOCK_FIELDS["text"], f"{path}.{k}")
        text = block.get("text")
        if not isinstance(text, str):
            raise invalid(f"{path}.{k}.text: Field required")
        if not text.strip():
            raise invalid(f"{path}: text content blocks must be non-empty")
        breakpoints += _check_cache_control(block, f"{path}.{k}")
    return breakpoints


def _check_output_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise invalid("output_config: Input should be a valid dictionary")
    _no_extra(config, {"effort", "format"}, "output_config")
    if config.get("effort") is not None and config["effort"] not in EFFORTS:
        raise invalid(f"output_config.effort: Input should be {_tags(EFFORTS[:-1])} or '{EFFORTS[-1]}'")
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        raise invalid(f"output_config.format: Input tag '{kind}' found using 'type' does not match any of the "
                      "expected tags: 'json_schema'")
    _no_extra(fmt, {"type", "schema"}, "output_config.format")
    if not isinstance(_require(fmt, "schema", "output_config.format"), dict):
        raise invalid("output_config.format.schema: Input should be a valid dictionary")


def _check_context_management(config: Any) -> None:
    if not isinstance(config, dict):
        raise invalid("context_management: Input should be a valid dictionary")
    _no_extra(config, {"edits"}, "context_management")
    edits = config.get("edits", [])
    if not isinstance(edits, list):
        raise invalid("context_management.edits: Input should be a valid list")
    for k, edit in enumerate(edits):
        path = f"context_management.edits.{k}"
        kind = edit.get("type") if isinstance(edit, dict) else None
        if kind not in CONTEXT_EDIT_FIELDS:
            raise invalid(f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                          f"{_tags(tuple(CONTEXT_EDIT_FIELDS))}")
        _no_extra(edit, CONTEXT_EDIT_FIELDS[kind], f"{path}.{kind}")
        keep = edit.get("keep")
        if kind == "clear_thinking_20251015" and keep is not None and keep != "all":
            keep_kind = keep.get("type") if isinstance(keep, dict) else None
            if keep_kind == "thinking_turns":
                value = keep.get("value")
                if not _is_int(value) or value < 1:
                    raise invalid(f"{path}.{kind}.keep.thinking_turns.value: Input should be greater than or equal to 1")
            elif keep_kind != "all":
                raise invalid(f"{path}.{kind}.keep: Input should be 'all' or a valid dictionary with type "
                              "'thinking_turns' or 'all'")


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise invalid("metadata: Input should be a valid dictionary")
    _no_extra(metadata, {"user_id"}, "metadata")
    if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
        raise invalid("metadata.user_id: Input should be a valid string")


# ------------------------------------------------------------------ block checks (request indices)

def _check_image(block: dict, path: str) -> None:
    source = _require(block, "source", path)
    if not isinstance(source, dict):
        raise invalid(f"{path}.source: Input should be a valid dictionary")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise invalid(f"{path}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                          "'image/gif' or 'image/webp'")
        data = source.get("data")
        if not isinstance(data, str):
            raise invalid(f"{path}.source.base64.data: Field required")
        decoded = decode_base64(data)
        if decoded is None:
            raise invalid(f"{path}.source.base64.data: Invalid base64 data")
        actual = sniff_image_type(decoded)
        if actual is not None and actual != media_type:
            raise invalid(f"{path}.source.base64.data: The image was specified using the {media_type} media type, "
                          f"but the image appears to be a {actual} image")
    elif kind == "url":
        if not isinstance(source.get("url"), str):
            raise invalid(f"{path}.source.url.url: Field required")
    elif kind != "file":
        raise invalid(f"{path}.source: Input tag '{kind}' found using 'type' does not match any of the expected "
                      "tags: 'base64', 'url', 'file'")


def _check_block(block: Any, role: str, path: str) -> None:
    if not isinstance(block, dict):
        raise invalid(f"{path}: Input should be a valid dictionary or instance of ContentBlockParam")
    kind = block.get("type")
    allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
    if kind not in allowed:
        if kind in USER_BLOCKS + ASSISTANT_BLOCKS:
            raise invalid(f"{path}: `{kind}` blocks are not allowed in `{role}` messages")
        raise invalid(f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                      f"{_tags(allowed)}")
    if kind in BLOCK_FIELDS:
        _no_extra(block, BLOCK_FIELDS[kind], f"{path}.{kind}")
    if kind == "text":
        if not isinstance(_require(block, "text", f"{path}.text"), str):
            raise invalid(f"{path}.text.text: Input should be a valid string")
    elif kind == "image":
        _check_image(block, f"{path}.image")
    elif kind == "document":
        _require(block, "source", f"{path}.document")
    elif kind == "tool_use":
        tool_id = _require(block, "id", f"{path}.tool_use")
        if not isinstance(tool_id, str) or not TOOL_ID.match(tool_id):
            raise invalid(f"{path}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(_require(block, "name", f"{path}.tool_use"), str):
            raise invalid(f"{path}.tool_use.name: Input should be a valid string")
        if not isinstance(_require(block, "input", f"{path}.tool_use"), dict):
            raise invalid(f"{path}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        tool_id = _require(block, "tool_use_id", f"{path}.tool_result")
        if not isinstance(tool_id, str) or not TOOL_ID.match(tool_id):
            raise invalid(f"{path}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        content = block.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid(f"{path}.tool_result.content: Input should be a valid list")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                ipath = f"{path}.tool_result.content.{k}"
                if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document",
                                                                             "search_result"):
                    raise invalid(f"{ipath}: Input tag '{inner.get('type') if isinstance(inner, dict) else inner}' "
                                  "found using 'type' does not match any of the expected tags: 'text', 'image', "
                                  "'document', 'search_result'")
                if inner["type"] == "image":
                    _check_image(inner, f"{ipath}.image")
        if block.get("is_error") is not None and not isinstance(block["is_error"], bool):
            raise invalid(f"{path}.tool_result.is_error: Input should be a valid boolean")
    elif kind == "thinking":
        if not isinstance(_require(block, "thinking", f"{path}.thinking"), str):
            raise invalid(f"{path}.thinking.thinking: Input should be a valid string")
        if not isinstance(_require(block, "signature", f"{path}.thinking"), str):
            raise invalid(f"{path}.thinking.signature: Input should be a valid string")
    elif kind == "redacted_thinking":
        if not isinstance(_require(block, "data", f"{path}.redacted_thinking"), str):
            raise invalid(f"{path}.redacted_thinking.data: Input should be a valid string")
    elif kind == "mid_conv_system":
        _check_system_text_blocks(_require(block, "content", f"{path}.mid_conv_system"),
                                  f"{path}.mid_conv_system.content")
    if kind in BLOCK_FIELDS and "cache_control" in BLOCK_FIELDS[kind]:
        _check_cache_control(block, f"{path}.{kind}")


def _blocks(content: Any) -> list[dict]:
    """String shorthand -> one text block (an empty string -> no blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


# ------------------------------------------------------------------ conversation rules (merged indices)

def _merge_turns(messages: list[dict]) -> list[tuple[str, list[dict]]]:
    """Consecutive same-role messages become one turn, as the API does before
    its semantic checks (the recorded 400 reports merged indices)."""
    turns: list[tuple[str, list[dict]]] = []
    for message in messages:
        blocks = _blocks(message["content"])
        if turns and turns[-1][0] == message["role"]:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message["role"], blocks))
    return turns


def _check_turn_content(turns: list[tuple[str, list[dict]]]) -> None:
    last = len(turns) - 1
    for j, (role, blocks) in enumerate(turns):
        final_assistant = j == last and role == "assistant"
        if not blocks:
            if final_assistant:
                continue
            raise invalid(f"messages.{j}: all messages must have non-empty content except for the optional final "
                          "assistant message")
        if final_assistant and blocks[-1].get("type") == "text":
            text = blocks[-1]["text"]
            if text != text.rstrip():
                raise invalid("messages: final assistant content cannot end with trailing whitespace")
        for block in blocks:
            if block.get("type") != "text":
                continue
            if block["text"] == "":
                raise invalid("messages: text content blocks must be non-empty")
            if not block["text"].strip():
                raise invalid("messages: text content blocks must contain non-whitespace text")


def _check_tool_pairing(turns: list[tuple[str, list[dict]]]) -> None:
    for j, (role, blocks) in enumerate(turns):
        if role == "user":
            previous = turns[j - 1] if j > 0 else None
            offered = [b["id"] for b in previous[1] if b.get("type") == "tool_use"] \
                if previous and previous[0] == "assistant" else []
            for k, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block["tool_use_id"] not in offered:
                    unexpected = ", ".join(b["tool_use_id"] for b in blocks
                                           if b.get("type") == "tool_result" and b["tool_use_id"] not in offered)
                    raise invalid(f"messages.{j}.content.{k}: unexpected `tool_use_id` found in `tool_result` "
                                  f"blocks: {unexpected}. Each `tool_result` block must have a corresponding "
                                  "`tool_use` block in the previous message.")
            continue
        calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if not calls or j == len(turns) - 1:
            continue
        following = turns[j + 1][1]
        answered = {b["tool_use_id"] for b in following if b.get("type") == "tool_result"}
        missing = [c for c in calls if c not in answered]
        if missing:
            raise invalid(f"messages.{j}: `tool_use` ids were found without `tool_result` blocks immediately "
                          f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                          "`tool_result` block in the next message.")
        leading = 0
        for block in following:
            if block.get("type") != "tool_result":
                break
            leading += 1
        if leading < len(calls):
            raise invalid(f"messages.{j + 1}: Did not find {len(calls)} tool_result block(s) at the beginning of "
                          "this message. Messages following tool_use blocks must begin with a matching number of "
                          "tool_result blocks.")


def _check_messages(messages: Any, alias: str) -> list[tuple[str, list[dict]]]:
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: List should have at least 1 item after validation, not 0")
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid(f"{path}: Input should be a valid dictionary or instance of MessageParam")
        _no_extra(message, {"role", "content"}, path)
        role = _require(message, "role", path)
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{path}.role: Input should be 'user', 'assistant' or 'system'")
        content = _require(message, "content", path)
        if not isinstance(content, (str, list)):
            raise invalid(f"{path}.content: Input should be a valid list")
        mid_conversation = role == "system" or (
            isinstance(content, list)
            and any(isinstance(b, dict) and b.get("type") == "mid_conv_system" for b in content))
        if mid_conversation and alias not in MID_CONVERSATION_SYSTEM_MODELS:
            raise invalid(SYSTEM_ROLE_UNSUPPORTED)
        if role == "system":
            if isinstance(content, list):
                _check_system_text_blocks(content, f"{path}.content")
            elif not content.strip():
                raise invalid("messages: text content blocks must contain non-whitespace text")
            continue
        if isinstance(content, list):
            for k, block in enumerate(content):
                _check_block(block, role, f"{path}.content.{k}")
    turns = _merge_turns(messages)
    _check_turn_content(turns)
    _check_tool_pairing(turns)
    return turns


# ------------------------------------------------------------------ top-level checks

def _check_system(system: Any) -> None:
    if isinstance(system, str):
        return
    _check_system_text_blocks(system, "system")


def _count_breakpoints(body: dict) -> int:
    """cache_control marks anywhere in the request (each was checked where it stands)."""
    count = 1 if body.get("cache_control") is not None else 0
    items: list[Any] = list(body.get("system") or []) if isinstance(body.get("system"), list) else []
    items += body.get("tools") or []
    for message in body.get("messages") or []:
        if isinstance(message.get("content"), list):
            for block in message["content"]:
                items.append(block)
                if isinstance(block, dict) and isinstance(block.get("content"), list):
                    items += block["content"]  # mid_conv_system text blocks
    return count + sum(1 for item in items if isinstance(item, dict) and item.get("cache_control") is not None)


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    names = set()
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{k}: Input should be a valid dictionary")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if not isinstance(kind, str) or not SERVER_TOOL_TYPE.match(kind):
                raise invalid(f"tools.{k}: Input tag '{kind}' found using 'type' does not match any of the "
                              "expected tags")
            continue
        path = f"tools.{k}.custom"
        _no_extra(tool, TOOL_FIELDS, path)
        name = _require(tool, "name", path)
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid(f"{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
        _check_cache_control(tool, path)
        schema = _require(tool, "input_schema", path)
        if not isinstance(schema, dict):
            raise invalid(f"{path}.input_schema: Input should be a valid dictionary")
        if schema.get("type") != "object":
            raise invalid(f"{path}.input_schema.type: Input should be 'object'")


def _check_tool_choice(choice: Any) -> str:
    if not isinstance(choice, dict):
        raise invalid("tool_choice: Input should be a valid dictionary")
    kind = choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid(f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                      "'auto', 'any', 'tool', 'none'")
    if kind == "tool" and not isinstance(choice.get("name"), str):
        raise invalid("tool_choice.tool.name: Field required")
    return kind


def _check_thinking(thinking: Any) -> str:
    if not isinstance(thinking, dict):
        raise invalid("thinking: Input should be a valid dictionary")
    kind = thinking.get("type")
    if kind not in THINKING_FIELDS:
        raise invalid(f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                      "'enabled', 'disabled', 'adaptive'")
    _no_extra(thinking, THINKING_FIELDS[kind], f"thinking.{kind}")
    if thinking.get("display") is not None and thinking["display"] not in ("summarized", "omitted"):
        raise invalid(f"thinking.{kind}.display: Input should be 'summarized' or 'omitted'")
    if kind == "enabled":
        budget = _require(thinking, "budget_tokens", "thinking.enabled")
        if not _is_int(budget):
            raise invalid("thinking.enabled.budget_tokens: Input should be a valid integer")
        if budget < 1024:
            raise invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    return kind


def _has_tool_blocks(messages: list[dict]) -> bool:
    return any(isinstance(m.get("content"), list) and any(b.get("type") in ("tool_use", "tool_result")
                                                            for b in m["content"])
               for m in messages)


def validate_request(body: dict, count_tokens: bool = False) -> str:
    """Reject what the real API rejects; returns the model alias."""
    _no_extra(body, COUNT_TOKENS_FIELDS if count_tokens else MESSAGES_FIELDS, "")
    model = _require(body, "model", "")
    if not isinstance(model, str):
        raise invalid("model: Input should be a valid string")
    max_tokens = None
    if not count_tokens:
        max_tokens = _require(body, "max_tokens", "")
        if not _is_int(max_tokens):
            raise invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 0:
            raise invalid("max_tokens: Input should be greater than or equal to 0")
    messages = _require(body, "messages", "")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise invalid("stream: Input should be a valid boolean")
    alias = resolve_model(model)
    if alias is None:
        raise invalid(f"model: {model}", status=404, kind="not_found_error")
    dated, _, _, max_output = MODELS[alias]
    if max_tokens is not None and max_tokens > max_output:
        raise invalid(f"max_tokens: {max_tokens} > {max_output}, which is the maximum allowed number of output "
                      f"tokens for {dated}")
    for name, high in (("temperature", 1), ("top_p", 1)):
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise invalid(f"{name}: Input should be a valid number")
        if value < 0:
            raise invalid(f"{name}: Input should be greater than or equal to 0")
        if value > high:
            raise invalid(f"{name}: Input should be less than or equal to {high}")
    if body.get("top_k") is not None and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        raise invalid("top_k: Input should be greater than or equal to 0")
    if body.get("stop_sequences") is not None:
        stops = body["stop_sequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences: Input should be a valid list")
    if body.get("system") is not None:
        _check_system(body["system"])
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    choice = _check_tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    thinking = _check_thinking(body["thinking"]) if body.get("thinking") is not None else None
    if thinking == "enabled":
        if max_tokens is not None and max_tokens <= body["thinking"]["budget_tokens"]:
            raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                          f"documentation at {THINKING_DOCS}#max-tokens-and-context-window-size")
        if choice in ("any", "tool"):
            raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if thinking in ("enabled", "adaptive") and body.get("temperature") not in (None, 1):
        raise invalid("`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                      f"documentation at {THINKING_DOCS}#feature-compatibility")
    if body.get("output_config") is not None:
        _check_output_config(body["output_config"])
    if body.get("context_management") is not None:
        _check_context_management(body["context_management"])
    if body.get("metadata") is not None:
        _check_metadata(body["metadata"])
    _check_cache_control(body, "")
    _check_messages(messages, alias)
    breakpoints = _count_breakpoints(body)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise invalid(f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                      f"Found {breakpoints}.")
    if not tools and _has_tool_blocks(messages):
        raise invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    return alias


def estimate_input_tokens(body: dict) -> int:
    """A deterministic stand-in for the tokenizer: ~4 characters a token."""
    size = len(compact_json(body.get("messages", []))) + len(compact_json(body.get("system", "")))
    size += len(compact_json(body.get("tools", [])))
    return max(1, size // 4)


# ------------------------------------------------------------------ the provider

class _EventWriter:
    """`event: <name>` + `data: <json>` per frame."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        if frame.raw is not None:
            return fill_text(frame.raw, lookup).encode()
        head = f"event: {frame.event}\n" if frame.event else ""
        return f"{head}data: {fill_text(frame.encoded(compact_json), lookup)}\n\n".encode()

    def end(self) -> bytes:
        return b""


class AnthropicProvider(Provider):
    name = "anthropic"

    def request_id(self, call: Call) -> str:
        return "req_011C" + stable_id(call.path.encode() + call.raw_body, "request", 20)

    def authenticate(self, call: Call) -> None:
        key = call.header("x-api-key")
        if not key:
            scheme, _, token = (call.header("Authorization") or "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else ""
        if not key:
            raise invalid("x-api-key header is required", status=401, kind="authentication_error")
        if key == "invalid":
            raise invalid("invalid x-api-key", status=401, kind="authentication_error")
        if not call.header("anthropic-version"):
            raise invalid("anthropic-version: header is required")

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return invalid("There was an error parsing the body of your request. Please make sure the body is valid "
                       "JSON.")

    def too_large(self, call: Call) -> ApiError:
        return invalid("Request exceeds the maximum allowed number of bytes. The maximum request size is 32 MB.",
                       status=413, kind="request_too_large")

    def error(self, status: int, message: str, call: Call) -> ApiError:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(
            status, "api_error" if status >= 500 else "invalid_request_error")
        return invalid(message, status=status, kind=kind)

    def validate(self, call: Call) -> None:
        call.model = call.body.get("model") if isinstance(call.body.get("model"), str) else None
        call.stream = call.body.get("stream") is True
        validate_request(call.body)

    def detect(self, call: Call) -> str:
        body = call.body
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        if any(b.get("type") == "tool_result" for b in blocks):
            return "after_tool_result"
        if body.get("tools"):
            return "function_calling"
        if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            return "thinking"
        if any(b.get("type") == "image" for b in blocks):
            return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        if status >= 400 and isinstance(body, dict) and body.get("type") == "error" and "request_id" not in body:
            body = {**body, "request_id": self.request_id(call)}
        return compact_json(body).encode()

    def stream_writer(self, call: Call) -> _EventWriter:
        return _EventWriter()

    def response_headers(self, call: Call) -> dict[str, str]:
        return {"request-id": self.request_id(call)}

    # ----------------------------------------------------------- other endpoints
    def count_tokens(self, call: Call) -> Response:
        call.model = call.body.get("model") if isinstance(call.body.get("model"), str) else None
        validate_request(call.body, count_tokens=True)
        return self._json({"input_tokens": estimate_input_tokens(call.body)}, call)

    def _model_info(self, alias: str) -> dict[str, Any]:
        dated, display, created, max_output = MODELS[alias]
        return {"type": "model", "id": dated, "display_name": display, "created_at": created,
                "max_input_tokens": 200000, "max_tokens": max_output}

    def list_models(self, call: Call) -> Response:
        data = [self._model_info(alias) for alias in MODELS]
        return self._json({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
                          call)

    def get_model(self, call: Call, model: str) -> Response:
        alias = resolve_model(model)
        if alias is None:
            raise invalid(f"model: {model}", status=404, kind="not_found_error")
        return self._json(self._model_info(alias), call)

    def not_found(self, call: Call) -> ApiError:
        return invalid("Not Found", status=404, kind="not_found_error")

    def _json(self, body: Any, call: Call) -> Response:
        return Response(compact_json(body), status=200, headers=self.response_headers(call),
                        content_type="application/json")
