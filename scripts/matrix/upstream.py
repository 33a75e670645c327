"""Readers of the request the proxy sent upstream, one per backend wire and URL layout,
each into one UpstreamView the checks compare with the conversation."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping
from urllib.parse import unquote

from scripts.matrix.capabilities import GEMINI_REJECTED_SCHEMA_KEYS, Call, Image, Result, TextPart, Turn
from scripts.matrix.reply import differ


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str | None
    schema: Any
    channel: str  # where the schema was: parameters / input_schema / parametersJsonSchema


@dataclass
class UpstreamView:
    """The request the proxy sent upstream, in the same terms as a Conversation."""
    model: str | None = None
    stream: bool = False
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)
    tools: list[ToolDef] = field(default_factory=list)
    stop: list[str] | None = None
    max_tokens: int | None = None
    thinking: str | None = None  # how thinking was enabled, None when it was not
    problems: list[str] = field(default_factory=list)  # protocol-specific shape faults


def _b64decode(data: Any) -> bytes | None:
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4))
    except ValueError:
        return None


def _text_of(content: Any) -> str:
    """String content, or the text of a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") in (None, "text"))
    return ""


def _schema_types(schema: Any) -> Iterator[Any]:
    if isinstance(schema, dict):
        if "type" in schema:
            yield schema["type"]
        for value in schema.values():
            yield from _schema_types(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _schema_types(value)


def _schema_keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for v in schema.values() for k in _schema_keys(v)}
    if isinstance(schema, list):
        return {k for v in schema for k in _schema_keys(v)}
    return set()


def _json_schema_types_problem(schema: Any, where: str) -> str | None:
    bad = sorted({str(t) for t in _schema_types(schema) if not (isinstance(t, str) and t == t.lower())})
    return f"{where} has non-JSON-Schema types {bad}" if bad else None


class OpenAIUpstream:
    """The OpenAI Chat wire; `place` reads what the URL says (here: nothing but the path)."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=bool(body.get("stream")))
        self.place(v, body, path, query)
        messages = body.get("messages") or []
        leading = 0
        while leading < len(messages) and messages[leading].get("role") in ("system", "developer"):
            leading += 1
        if leading:
            v.system = "\n\n".join(_text_of(m.get("content")) for m in messages[:leading])
        if any(m.get("role") in ("system", "developer") for m in messages[leading:]):
            v.problems.append("a system message is not at the start of messages")
        for m in messages[leading:]:
            self._turn(m, v)
        v.tools = [ToolDef(fn.get("name"), fn.get("description"), fn.get("parameters"), "parameters")
                   for t in body.get("tools") or [] for fn in [t.get("function") or {}]]
        for t in body.get("tools") or []:
            if t.get("type") != "function":
                v.problems.append(f"tool type {t.get('type')!r} is not 'function'")
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool parameters")]))
        stop = body.get("stop")
        v.stop = [stop] if isinstance(stop, str) else stop
        v.max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
        v.thinking = f"reasoning_effort={effort}" if effort and effort != "none" else None
        if v.stream and not (body.get("stream_options") or {}).get("include_usage"):
            v.problems.append("streamed upstream request did not ask for usage (stream_options.include_usage)")
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/v1/chat/completions":
            v.problems.append(f"path {path!r} is not /v1/chat/completions")

    @staticmethod
    def _turn(m: Mapping[str, Any], v: UpstreamView) -> None:
        role = m.get("role")
        if role == "tool":
            result = Result(_text_of(m.get("content")), m.get("tool_call_id"))
            if v.turns and v.turns[-1].role == "user" and all(isinstance(p, Result) for p in v.turns[-1].parts):
                v.turns[-1] = Turn("user", v.turns[-1].parts + (result,))  # consecutive tool messages: one turn
            else:
                v.turns.append(Turn("user", (result,)))
            return
        if role not in ("user", "assistant"):
            v.problems.append(f"unexpected message role {role!r}")
        parts: list[Any] = []
        content = m.get("content")
        for p in content if isinstance(content, list) else ([{"type": "text", "text": content}] if content else []):
            if p.get("type") == "text":
                parts.append(TextPart(p.get("text") or ""))
            elif p.get("type") == "image_url":
                url = (p.get("image_url") or {}).get("url") or ""
                head, _, data = url.partition(",")
                media = head.removeprefix("data:").removesuffix(";base64") if url.startswith("data:") else url
                parts.append(Image(media, _b64decode(data) or b""))
            else:
                v.problems.append(f"unexpected content part {p.get('type')!r}")
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            raw = fn.get("arguments")
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
                if not isinstance(raw, str):
                    v.problems.append("assistant tool_calls arguments are not a JSON string")
            except ValueError:
                args = raw
            parts.append(Call(fn.get("name"), args, tc.get("id")))
        v.turns.append(Turn(role, tuple(parts)))


class AnthropicUpstream:
    """The Anthropic Messages wire at Anthropic's URL."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=bool(body.get("stream")))
        self.place(v, body, path, query)
        if "system" in body:
            v.system = _text_of(body["system"])
        for i, m in enumerate(body.get("messages") or []):
            v.turns.append(self._turn(i, m, v))
        v.tools = [ToolDef(t.get("name"), t.get("description"), t.get("input_schema"), "input_schema")
                   for t in body.get("tools") or []]
        for tool in v.tools:
            if not isinstance(tool.schema, dict) or tool.schema.get("type") != "object":
                v.problems.append("tool input_schema root type is not 'object'")
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool input_schema")]))
        v.stop = body.get("stop_sequences")
        v.max_tokens = body.get("max_tokens")
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled":
            budget, limit = thinking.get("budget_tokens"), body.get("max_tokens")
            if not isinstance(budget, int) or budget < 1024 or not isinstance(limit, int) or budget >= limit:
                v.problems.append(f"thinking budget_tokens {budget} must be >= 1024 and < max_tokens {limit}")
            v.thinking = f"thinking enabled, budget {budget}"
        elif thinking.get("type") == "adaptive":
            v.thinking = "thinking adaptive"
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/v1/messages":
            v.problems.append(f"path {path!r} is not /v1/messages")

    @staticmethod
    def _turn(i: int, m: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = m.get("role")
        if role not in ("user", "assistant"):
            v.problems.append(f"messages[{i}] has role {role!r}")
        content = m.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        parts: list[Any] = []
        seen_other = False
        for block in blocks:
            kind = block.get("type")
            if kind == "tool_result":
                if seen_other:
                    v.problems.append(f"messages[{i}]: tool_result blocks are not first in the message")
                parts.append(Result(_text_of(block.get("content")), block.get("tool_use_id")))
                continue
            seen_other = True
            if kind == "text":
                if not (block.get("text") or "").strip():
                    v.problems.append(f"messages[{i}] has an empty text block")
                parts.append(TextPart(block.get("text") or ""))
            elif kind == "image":
                source = block.get("source") or {}
                if source.get("type") != "base64":
                    v.problems.append(f"messages[{i}] image source is {source.get('type')!r}, not base64")
                parts.append(Image(source.get("media_type"), _b64decode(source.get("data")) or b""))
            elif kind == "tool_use":
                parts.append(Call(block.get("name"), block.get("input"), block.get("id")))
            elif kind not in ("thinking", "redacted_thinking"):
                v.problems.append(f"messages[{i}] has an unexpected block {kind!r}")
        return Turn(role, tuple(parts))


class GeminiUpstream:
    """The Gemini wire at Google AI's URL: the model and the streaming choice are in the path."""
    url_path = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)")
    shape = "/v1beta/models/<model>"

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView()
        match = self.url_path.fullmatch(path)
        if match is None or match["method"] not in ("generateContent", "streamGenerateContent"):
            v.problems.append(f"path {path!r} is not {self.shape}:generateContent|streamGenerateContent")
        else:
            v.model, v.stream = match["model"], match["method"] == "streamGenerateContent"
        if v.stream and query.get("alt") != ["sse"]:
            v.problems.append(f"streamGenerateContent without alt=sse (query {dict(query)})")
        if "systemInstruction" in body:
            v.system = "".join(p.get("text") or "" for p in (body["systemInstruction"] or {}).get("parts") or [])
        for i, content in enumerate(body.get("contents") or []):
            v.turns.append(self._turn(i, content, v))
        for t in body.get("tools") or []:
            for fd in t.get("functionDeclarations") or []:
                channel = "parametersJsonSchema" if "parametersJsonSchema" in fd else "parameters"
                v.tools.append(ToolDef(fd.get("name"), fd.get("description"), fd.get(channel), channel))
        for tool in v.tools:
            # Gemini's `parameters` (OpenAPI subset) rejects both keys; its JSON-Schema channel rejects $schema.
            rejected = GEMINI_REJECTED_SCHEMA_KEYS if tool.channel == "parameters" else ("$schema",)
            left = sorted(set(rejected) & _schema_keys(tool.schema))
            if left:
                v.problems.append(f"Gemini tool {tool.channel} still has {', '.join(left)}")
        config = body.get("generationConfig") or {}
        v.stop = config.get("stopSequences")
        v.max_tokens = config.get("maxOutputTokens")
        thinking = config.get("thinkingConfig") or {}
        if thinking.get("thinkingBudget") not in (None, 0) or thinking.get("thinkingLevel"):
            v.thinking = f"thinkingConfig {json.dumps(thinking, sort_keys=True)}"
            if not thinking.get("includeThoughts"):
                v.problems.append("thinkingConfig.includeThoughts is not true: the thought text cannot come back")
        return v

    @staticmethod
    def _turn(i: int, content: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = content.get("role")
        if role not in ("user", "model"):
            v.problems.append(f"contents[{i}] has role {role!r}")
        parts: list[Any] = []
        for part in content.get("parts") or []:
            if "text" in part:
                if not part["text"]:
                    v.problems.append(f"contents[{i}] has an empty text part")
                parts.append(TextPart(part["text"]))
            elif "inlineData" in part:
                blob = part["inlineData"] or {}
                parts.append(Image(blob.get("mimeType"), _b64decode(blob.get("data")) or b""))
            elif "functionCall" in part:
                fc = part["functionCall"] or {}
                parts.append(Call(fc.get("name"), fc.get("args"), fc.get("name")))
            elif "functionResponse" in part:
                fr = part["functionResponse"] or {}
                if not isinstance(fr.get("response"), dict):
                    v.problems.append(f"contents[{i}] functionResponse.response is not an object")
                parts.append(Result(json.dumps(fr.get("response"), ensure_ascii=False), fr.get("name")))
            else:
                v.problems.append(f"contents[{i}] has an unexpected part {sorted(part)}")
        return Turn("assistant" if role == "model" else "user", tuple(parts))


# Vertex AI's model URLs (both publishers): /v1/projects/{p}/locations/{l}/publishers/{pub}/models/{m}:{method}
_VERTEX_PATH = r"/v1/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/publishers/%s/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)"


class AzureUpstream(OpenAIUpstream):
    """The OpenAI wire at Azure's URLs: the deployments form names the model in the path
    and needs an api-version; the v1 form names it in the body."""
    url_path = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        match = self.url_path.fullmatch(path)
        if match is not None:
            v.model = unquote(match["deployment"])
            if not query.get("api-version"):
                v.problems.append("Azure deployments URL without api-version")
            if body.get("model") not in (None, v.model):
                v.problems.append(differ("body model beside the deployment", v.model, body.get("model")))
        elif path != "/openai/v1/chat/completions":
            v.problems.append(f"path {path!r} is neither /openai/deployments/<d>/chat/completions nor "
                              "/openai/v1/chat/completions")


class VertexAnthropicUpstream(AnthropicUpstream):
    """The Messages wire on Vertex: the model (with its @version) and streaming in the path,
    no `model` in the body, `anthropic_version` in it."""
    url_path = re.compile(_VERTEX_PATH % "anthropic")

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        match = self.url_path.fullmatch(path)
        if match is None or match["method"] not in ("rawPredict", "streamRawPredict"):
            v.problems.append(f"path {path!r} is not a Vertex …/publishers/anthropic/models/<m>:rawPredict|streamRawPredict")
            return
        v.model = unquote(match["model"])
        if v.stream != (match["method"] == "streamRawPredict"):
            v.problems.append(f"body stream {v.stream} does not match :{match['method']}")
        if "model" in body:
            v.problems.append("Vertex Claude body carries model (it belongs in the URL)")
        if not body.get("anthropic_version"):
            v.problems.append("Vertex Claude body has no anthropic_version")


class VertexGeminiUpstream(GeminiUpstream):
    url_path = re.compile(_VERTEX_PATH % "google")
    shape = "/v1/projects/<p>/locations/<l>/publishers/google/models/<model>"


class BedrockUpstream:
    """The Converse wire: the model and streaming in the path (`/model/{id}/converse[-stream]`),
    blocks keyed by kind, images as base64 bytes, Claude's thinking in additionalModelRequestFields."""
    url_path = re.compile(r"/model/(?P<model>.+)/(?P<action>converse|converse-stream)")

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView()
        match = self.url_path.fullmatch(path)
        if match is None:
            v.problems.append(f"path {path!r} is not /model/<model id>/converse|converse-stream")
        else:
            v.model, v.stream = unquote(match["model"]), match["action"] == "converse-stream"
        if "stream" in body or "modelId" in body:
            v.problems.append("Converse body carries stream/modelId (they belong in the path)")
        system = body.get("system") or []
        if system:
            v.system = "".join(block.get("text") or "" for block in system)
            if any(not (block.get("text") or "").strip() for block in system if "text" in block):
                v.problems.append("a system block has blank text")
        for i, m in enumerate(body.get("messages") or []):
            v.turns.append(self._turn(i, m, v))
        tool_config = body.get("toolConfig") or {}
        for t in tool_config.get("tools") or []:
            spec = t.get("toolSpec") or {}
            v.tools.append(ToolDef(spec.get("name"), spec.get("description"),
                                   (spec.get("inputSchema") or {}).get("json"), "inputSchema.json"))
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool inputSchema.json")]))
        inference = body.get("inferenceConfig") or {}
        v.stop = inference.get("stopSequences")
        v.max_tokens = inference.get("maxTokens")
        fields = body.get("additionalModelRequestFields") or {}
        thinking = fields.get("thinking") or {}
        if thinking.get("type") == "enabled":
            budget, limit = thinking.get("budget_tokens"), inference.get("maxTokens")
            if not isinstance(budget, int) or budget < 1024 or (limit is not None and budget >= limit):
                v.problems.append(f"thinking budget_tokens {budget} must be >= 1024 and < maxTokens {limit}")
            if "anthropic.claude" not in (v.model or ""):
                v.problems.append(f"Claude's thinking field sent to {v.model}")
            v.thinking = f"additionalModelRequestFields.thinking enabled, budget {budget}"
        return v

    @staticmethod
    def _turn(i: int, m: Mapping[str, Any], v: UpstreamView) -> Turn:
        role = m.get("role")
        if role not in ("user", "assistant"):
            v.problems.append(f"messages[{i}] has role {role!r}")
        parts: list[Any] = []
        seen_other = False
        for block in m.get("content") or []:
            if "toolResult" in block:
                if seen_other:
                    v.problems.append(f"messages[{i}]: toolResult blocks are not first in the message")
                result = block["toolResult"] or {}
                text = "".join(c.get("text") or json.dumps(c.get("json"), ensure_ascii=False)
                               for c in result.get("content") or [] if "text" in c or "json" in c)
                parts.append(Result(text, result.get("toolUseId")))
                continue
            seen_other = True
            if "text" in block:
                if not block["text"].strip():
                    v.problems.append(f"messages[{i}] has a blank text block")
                parts.append(TextPart(block["text"]))
            elif "image" in block:
                image = block["image"] or {}
                source = image.get("source") or {}
                if "bytes" not in source:
                    v.problems.append(f"messages[{i}] image source is {sorted(source)}, not bytes")
                parts.append(Image(f"image/{image.get('format')}", _b64decode(source.get("bytes")) or b""))
            elif "toolUse" in block:
                use = block["toolUse"] or {}
                if not isinstance(use.get("input"), dict):
                    v.problems.append(f"messages[{i}] toolUse input is not a JSON object")
                parts.append(Call(use.get("name"), use.get("input"), use.get("toolUseId")))
            elif "reasoningContent" not in block:
                v.problems.append(f"messages[{i}] has an unexpected block {sorted(block)}")
        return Turn(role, tuple(parts))
