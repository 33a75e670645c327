"""Readers of a Responses request the proxy sent upstream (OpenAI's URL and Azure's two forms)."""
from __future__ import annotations

import json
from typing import Any, Mapping

from scripts.matrix.capabilities import Call, Image, Result, TextPart, Turn
from scripts.matrix.upstream import ToolDef, UpstreamView, _b64decode, _json_schema_types_problem

_TEXT_PARTS = {"user": "input_text", "system": "input_text", "developer": "input_text", "assistant": "output_text"}


class ResponsesUpstream:
    """The Responses wire: `instructions` or leading system items for the system prompt,
    `input` items (messages, function_call / function_call_output paired by call_id),
    flat function tools, `max_output_tokens`, `reasoning.effort`."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=bool(body.get("stream")))
        self.place(v, body, path, query)
        for key in ("messages", "stop", "max_tokens", "stream_options"):
            if key in body and not (key == "stream_options" and v.stream):
                v.problems.append(f"Responses body carries {key!r}")
        items = body.get("input")
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        items = list(items or [])
        system = [body["instructions"]] if body.get("instructions") else []
        while items and items[0].get("type", "message") == "message" \
                and items[0].get("role") in ("system", "developer"):
            system.append(self._text(items.pop(0), v))
        v.system = "\n\n".join(system) if system else None
        for i, item in enumerate(items):
            self._item(i, item, v)
        for t in body.get("tools") or []:
            if t.get("type") != "function" or "function" in t:
                v.problems.append(f"tool {sorted(t)} is not a flat Responses function tool")
            v.tools.append(ToolDef(t.get("name"), t.get("description"), t.get("parameters"), "parameters"))
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool parameters")]))
        v.max_tokens = body.get("max_output_tokens")
        effort = (body.get("reasoning") or {}).get("effort")
        v.thinking = f"reasoning.effort={effort}" if effort and effort != "none" else None
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/v1/responses":
            v.problems.append(f"path {path!r} is not /v1/responses")

    @staticmethod
    def _text(item: Mapping[str, Any], v: UpstreamView) -> str:
        content = item.get("content")
        if isinstance(content, str):
            return content
        want = _TEXT_PARTS.get(str(item.get("role")))
        texts = []
        for part in content or []:
            if part.get("type") != want:
                v.problems.append(f"a {item.get('role')} message has a {part.get('type')!r} text part")
            texts.append(part.get("text") or "")
        return "".join(texts)

    def _item(self, i: int, item: Mapping[str, Any], v: UpstreamView) -> None:
        kind = item.get("type", "message")
        last = v.turns[-1] if v.turns else None
        if kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "")
            except (TypeError, ValueError):
                v.problems.append(f"input[{i}] function_call arguments are not a JSON string")
                args = item.get("arguments")
            call = Call(item.get("name"), args, item.get("call_id"))
            if last is not None and last.role == "assistant":
                v.turns[-1] = Turn("assistant", last.parts + (call,))
            else:
                v.turns.append(Turn("assistant", (call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else "".join(p.get("text") or "" for p in output or [])
            result = Result(text, item.get("call_id"))
            if last is not None and last.role == "user" and all(isinstance(p, Result) for p in last.parts):
                v.turns[-1] = Turn("user", last.parts + (result,))
            else:
                v.turns.append(Turn("user", (result,)))
        elif kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant"):
                v.problems.append(f"input[{i}] has role {role!r} after the start")
            content = item.get("content")
            parts: list[Any] = []
            for part in [{"type": _TEXT_PARTS.get(str(role)), "text": content}] if isinstance(content, str) \
                    else content or []:
                if part.get("type") == "input_image":
                    url = part.get("image_url") or ""
                    head, _, data = url.partition(",")
                    media = head.removeprefix("data:").removesuffix(";base64") if url.startswith("data:") else url
                    parts.append(Image(media, _b64decode(data) or b""))
                elif part.get("type") == _TEXT_PARTS.get(str(role)):
                    parts.append(TextPart(part.get("text") or ""))
                else:
                    v.problems.append(f"input[{i}] ({role}) has a {part.get('type')!r} part")
            v.turns.append(Turn(role, tuple(parts)))
        elif kind != "reasoning":
            v.problems.append(f"input[{i}] has an unexpected item type {kind!r}")


class AzureResponsesUpstream(ResponsesUpstream):
    """Responses at Azure: `/openai/v1/responses` (no dated api-version) or
    `/openai/responses?api-version=…`; the body's model is the deployment either way."""

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path == "/openai/responses":
            if not query.get("api-version"):
                v.problems.append("Azure /openai/responses without api-version")
        elif path != "/openai/v1/responses":
            v.problems.append(f"path {path!r} is neither /openai/v1/responses nor /openai/responses")
