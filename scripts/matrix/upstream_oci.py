"""The reader of OCI Generative AI chat requests (ChatDetails at /20231130/actions/chat),
COHERE format: the model in `servingMode`, the system prompt in `preambleOverride`,
`chatHistory` then the current turn (`message`, `toolResults`), flat tool definitions.
Cohere calls have no ids: a call and its result refer to each other by name."""
from __future__ import annotations

import json
from typing import Any, Mapping

from scripts.matrix.capabilities import Call, Result, TextPart, Turn
from scripts.matrix.upstream import ToolDef, UpstreamView

# Cohere's Python-style parameter types, back to the JSON-Schema names the checks compare.
_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "List": "array",
               "Dict": "object"}


class OCICohereUpstream:
    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = UpstreamView()
        if path != "/20231130/actions/chat":
            v.problems.append(f"path {path!r} is not /20231130/actions/chat")
        serving = body.get("servingMode") or {}
        if serving.get("servingType") != "ON_DEMAND":
            v.problems.append(f"servingMode {serving} is not ON_DEMAND")
        if not str(body.get("compartmentId") or "").startswith("ocid1."):
            v.problems.append("ChatDetails has no compartmentId OCID")
        v.model = serving.get("modelId")
        chat = body.get("chatRequest") or {}
        if chat.get("apiFormat") != "COHERE":
            v.problems.append(f"apiFormat {chat.get('apiFormat')!r} is not COHERE")
        v.stream = bool(chat.get("isStream"))
        if v.stream and not (chat.get("streamOptions") or {}).get("isIncludeUsage"):
            v.problems.append("streamed upstream request did not ask for usage (streamOptions.isIncludeUsage)")
        v.system = chat.get("preambleOverride")
        for i, entry in enumerate(chat.get("chatHistory") or []):
            turn = self._turn(i, entry, v)
            if turn is not None:
                v.turns.append(turn)
        current: list[Any] = [self._result(r) for r in chat.get("toolResults") or []]
        if chat.get("message"):
            current.append(TextPart(chat["message"]))
        if current:
            v.turns.append(Turn("user", tuple(current)))
        for t in chat.get("tools") or []:
            v.tools.append(ToolDef(t.get("name"), t.get("description"), _schema(t.get("parameterDefinitions") or {}),
                                   "parameterDefinitions"))
        v.stop = chat.get("stopSequences")
        v.max_tokens = chat.get("maxTokens")
        return v

    def _turn(self, i: int, entry: Mapping[str, Any], v: UpstreamView) -> Turn | None:
        role = entry.get("role")
        if role == "USER":
            return Turn("user", (TextPart(entry.get("message") or ""),))
        if role == "CHATBOT":
            parts: list[Any] = [TextPart(entry["message"])] if entry.get("message") else []
            for call in entry.get("toolCalls") or []:
                if not isinstance(call.get("parameters"), dict):
                    v.problems.append(f"chatHistory[{i}] tool call parameters are not a JSON object")
                parts.append(Call(call.get("name"), call.get("parameters"), call.get("name")))
            return Turn("assistant", tuple(parts))
        if role == "TOOL":
            return Turn("user", tuple(self._result(r) for r in entry.get("toolResults") or []))
        v.problems.append(f"chatHistory[{i}] has role {role!r}")
        return None

    @staticmethod
    def _result(result: Mapping[str, Any]) -> Result:
        call = result.get("call") or {}
        return Result(json.dumps(result.get("outputs"), ensure_ascii=False), call.get("name"))


def _schema(definitions: Mapping[str, Any]) -> dict[str, Any]:
    """parameterDefinitions as the JSON Schema they were written from."""
    properties = {name: {"type": _JSON_TYPES.get(d.get("type"), d.get("type")), "description": d.get("description")}
                  for name, d in definitions.items()}
    return {"type": "object", "properties": properties,
            "required": [name for name, d in definitions.items() if d.get("isRequired")]}
