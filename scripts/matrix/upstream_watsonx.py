"""Reader of a watsonx.ai request the proxy sent upstream: text chat (OpenAI Chat's messages
and tools under watsonx's own field names) or text generation (the conversation rendered into
a prompt template, read back into turns here)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from scripts.matrix.capabilities import TextPart, Turn
from scripts.matrix.upstream import OpenAIUpstream, UpstreamView

_PATH = re.compile(r"/ml/v1/text/(?P<api>chat|generation)(?P<stream>_stream)?")
_CHAT_ONLY = ("stream", "stream_options", "model", "max_completion_tokens", "user", "parallel_tool_calls")
# Template turns: (opening before the role, between role and text, end of turn).
_TEMPLATES = {
    "granite": re.compile(r"<\|start_of_role\|>(?P<role>\w+)<\|end_of_role\|>(?P<text>.*?)<\|end_of_text\|>\n", re.S),
    "llama3": re.compile(r"<\|start_header_id\|>(?P<role>\w+)<\|end_header_id\|>\n\n(?P<text>.*?)<\|eot_id\|>", re.S),
}
_OPENINGS = {"granite": "<|start_of_role|>assistant<|end_of_role|>",
             "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n"}


class WatsonxUpstream:
    def __init__(self) -> None:
        self._chat = OpenAIUpstream()

    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        match = _PATH.fullmatch(path)
        problems = []
        if match is None:
            problems.append(f"path {path!r} is not /ml/v1/text/chat or /ml/v1/text/generation (or _stream)")
        if not query.get("version"):
            problems.append("watsonx request without the version query parameter")
        if ("project_id" in body) == ("space_id" in body):
            problems.append("the body must carry exactly one of project_id and space_id")
        stream = bool(match and match["stream"])
        if "input" in body:
            v = self._generation(body, stream)
        else:
            v = self._chat_view(body, stream, query)
        v.problems[:0] = problems
        return v

    def _chat_view(self, body: Mapping[str, Any], stream: bool, query: Mapping[str, list[str]]) -> UpstreamView:
        as_openai = {k: v for k, v in body.items() if k not in ("model_id", "project_id", "space_id")}
        as_openai["model"] = body.get("model_id")
        if stream:
            as_openai["stream"], as_openai["stream_options"] = True, {"include_usage": True}  # always sent
        v = self._chat.view(as_openai, "/v1/chat/completions", query)
        v.problems.extend(f"watsonx chat body carries {k!r}" for k in _CHAT_ONLY if k in body)
        if isinstance(body.get("tool_choice"), str):
            v.problems.append("a string tool_choice (watsonx takes it as tool_choice_option)")
        return v

    @staticmethod
    def _generation(body: Mapping[str, Any], stream: bool) -> UpstreamView:
        v = UpstreamView(model=body.get("model_id"), stream=stream)
        prompt = body.get("input") or ""
        name = next((n for n, opening in _OPENINGS.items() if prompt.endswith(opening)), None)
        if name is None:
            v.problems.append("the generation input does not end by opening an assistant turn of a known template")
            return v
        turns = [(m["role"], m["text"]) for m in _TEMPLATES[name].finditer(prompt)]
        if turns and turns[0][0] == "system":
            v.system = turns.pop(0)[1]
        for role, text in turns:
            if role not in ("user", "assistant"):
                v.problems.append(f"a generation prompt turn has role {role!r}")
            v.turns.append(Turn(role, (TextPart(text),)))
        parameters = body.get("parameters") or {}
        v.max_tokens = parameters.get("max_new_tokens")
        v.stop = parameters.get("stop_sequences")
        return v
