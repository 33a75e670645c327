"""The frontend driver interface: one subclass per client protocol."""
from __future__ import annotations

import json
from typing import Any, Mapping

from scripts.matrix.capabilities import Conversation
from scripts.matrix.reply import HttpRequest, Reply, clip


def _usage(input_tokens: Any, output_tokens: Any, reasoning: Any = None) -> dict[str, int | None]:
    return {"input": input_tokens, "output": output_tokens, "reasoning": reasoning}


def parse_arguments(raw: Any, reply: Reply, where: str) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        reply.problem(f"{where}: arguments are {type(raw).__name__}, not a JSON string")
        return raw
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        reply.problem(f"{where}: arguments are not valid JSON: {clip(raw, 80)!r}")
        return raw


class Frontend:
    """A client of one protocol, at the wire level. One subclass per protocol;
    adding a frontend is one more subclass registered in FRONTENDS."""

    name: str = ""
    call_id: str | None = None  # id this client gives the history tool call (None: the protocol has none)
    finish_reasons: Mapping[str, str] = {}  # wire value -> normalized finish
    error_kinds: Mapping[str, str] = {}  # wire error type -> normalized kind
    unsupported: Mapping[str, str] = {}  # capability name -> why the protocol cannot ask for it (n/a)
    asks_for_thoughts = True  # thinking on asks to see it (Chat's reasoning_effort does not)

    def request(self, conv: Conversation, model: str) -> HttpRequest:
        raise NotImplementedError

    def read_reply(self, data: Any, model: str) -> Reply:
        raise NotImplementedError

    def read_stream(self, text: str, model: str) -> Reply:
        raise NotImplementedError

    def read_error(self, status: int, data: Any) -> Reply:
        raise NotImplementedError

    def _finish(self, raw: Any, reply: Reply) -> None:
        reply.raw_finish = raw
        reply.finish = self.finish_reasons.get(raw) if isinstance(raw, str) else None
        if reply.finish is None:
            reply.problem(f"finish reason {raw!r} is not in the {self.name} vocabulary")
