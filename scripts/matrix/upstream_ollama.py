"""The reader of Ollama's native chat requests (`POST /api/chat`): the model and
`stream` in the body (which must say it: Ollama streams when it is left out),
one string `content` per message with `images` beside it, tool calls with
object arguments, tool results naming their call and function, max tokens and
stop sequences in `options`, reasoning as `think`. Fields Ollama would
silently ignore are flagged: a setting it drops is a request not carried."""
from __future__ import annotations

from typing import Any, Mapping

from scripts.matrix.capabilities import Call, Image, Result, TextPart, Turn
from scripts.matrix.upstream import OpenAIUpstream, ToolDef, UpstreamView, _b64decode, _json_schema_types_problem

CHAT_FIELDS = {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"}
MESSAGE_FIELDS = {"role", "content", "thinking", "images", "tool_calls", "tool_name", "tool_call_id"}
OPTION_FIELDS = {"num_predict", "stop", "temperature", "top_p", "top_k", "seed", "num_ctx", "min_p",
                 "repeat_penalty", "presence_penalty", "frequency_penalty"}


class OllamaUpstream:
    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView(model=body.get("model"), stream=body.get("stream") is not False)
        if path != "/api/chat":
            v.problems.append(f"path {path!r} is not /api/chat")
        if "stream" not in body:
            v.problems.append("body has no `stream` (Ollama streams by default)")
        v.problems += [f"Ollama ignores the body field {k!r}" for k in sorted(set(body) - CHAT_FIELDS)]
        messages = body.get("messages") or []
        leading = 0
        while leading < len(messages) and messages[leading].get("role") == "system":
            leading += 1
        if leading:
            v.system = "\n\n".join(m.get("content") or "" for m in messages[:leading])
        for i, m in enumerate(messages[leading:], leading):
            self._turn(i, m, v)
        for t in body.get("tools") or []:
            fn = t.get("function") or {}
            v.tools.append(ToolDef(fn.get("name"), fn.get("description"), fn.get("parameters"), "parameters"))
            if t.get("type") != "function":
                v.problems.append(f"tool type {t.get('type')!r} is not 'function'")
        for tool in v.tools:
            v.problems.extend(filter(None, [_json_schema_types_problem(tool.schema, "tool parameters")]))
        options = body.get("options") or {}
        v.problems += [f"Ollama ignores the option {k!r}" for k in sorted(set(options) - OPTION_FIELDS)]
        v.stop = options.get("stop")
        v.max_tokens = options.get("num_predict")
        think = body.get("think")
        v.thinking = f"think={think}" if think not in (None, False) else None
        return v

    @staticmethod
    def _turn(i: int, m: Mapping[str, Any], v: UpstreamView) -> None:
        role = m.get("role")
        v.problems += [f"messages[{i}] field {k!r} is not Ollama's" for k in sorted(set(m) - MESSAGE_FIELDS)]
        if not isinstance(m.get("content", ""), str):
            v.problems.append(f"messages[{i}] content is not a string")
        if role == "tool":
            if not m.get("tool_name"):
                v.problems.append(f"messages[{i}] tool result names no function (tool_name)")
            calls = [p for t in v.turns[-1:] for p in t.parts if isinstance(p, Call)] if v.turns else []
            if calls and m.get("tool_name") not in [c.name for c in calls]:
                v.problems.append(f"messages[{i}] tool_name {m.get('tool_name')!r} names none of the previous calls")
            result = Result(m.get("content") or "", m.get("tool_call_id"))
            if v.turns and v.turns[-1].role == "user" and all(isinstance(p, Result) for p in v.turns[-1].parts):
                v.turns[-1] = Turn("user", v.turns[-1].parts + (result,))
            else:
                v.turns.append(Turn("user", (result,)))
            return
        if role not in ("user", "assistant"):
            v.problems.append(f"messages[{i}] has role {role!r}")
        parts: list[Any] = []
        if m.get("content"):
            parts.append(TextPart(m["content"]))
        for image in m.get("images") or []:
            data = _b64decode(image) or b""
            parts.append(Image("image/png" if data.startswith(b"\x89PNG") else "unknown", data))
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            if not isinstance(fn.get("arguments"), dict):
                v.problems.append(f"messages[{i}] tool call arguments are not a JSON object")
            parts.append(Call(fn.get("name"), fn.get("arguments"), call.get("id")))
        v.turns.append(Turn(role, tuple(parts)))


class OllamaOpenAIUpstream(OpenAIUpstream):
    """The OpenAI wire at Ollama's compatible route, which reads only `max_tokens` for the
    token limit (a `max_completion_tokens` would be dropped) and only base64 images."""

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = super().view(body, path, query)
        if "max_completion_tokens" in body:
            v.problems.append("max_completion_tokens sent: Ollama reads only max_tokens")
        v.max_tokens = body.get("max_tokens")
        return v
