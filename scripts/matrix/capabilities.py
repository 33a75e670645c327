"""What the matrix sends: the conversation parts, the capability columns and the
scenario each asks the mock for."""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any


TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "Get the current weather for a location"
# Carries additionalProperties and $schema on purpose: Gemini's `parameters`
# rejects both, so a Gemini backend shows whether the proxy cleans them.
TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City name"}},
    "required": ["location"],
    "additionalProperties": False,
    "$schema": "http://json-schema.org/draft-07/schema#",
}
# What a Gemini client writes (the official SDK's dialect: OpenAPI subset,
# upper-case types). Sending TOOL_SCHEMA here would be an invalid Gemini
# request that a same-protocol hop rightly forwards to a 400.
GEMINI_TOOL_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {"location": {"type": "STRING", "description": "City name"}},
    "required": ["location"],
}
GEMINI_REJECTED_SCHEMA_KEYS = ("additionalProperties", "$schema")
ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")

WEATHER_QUESTION = "What's the weather in Paris?"
WEATHER_ARGS = {"location": "Paris"}
WEATHER_RESULT = "18°C and sunny"
STOP_WORD = "four"
SMALL_MAX_TOKENS = 16  # the least max_output_tokens the Responses API accepts


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG, built here so the image bytes are known exactly."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + bytes(rgb) * width) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


RED_SQUARE_PNG = _png(8, 8, (255, 0, 0))


# Conversation parts, shared by what we send (Conversation) and what the mock
# saw upstream (UpstreamView): comparing the two is then one generic function.

@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class Image:
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    name: str
    arguments: Any
    ref: str | None = None  # what a result points at: the call id, or the name on Gemini


@dataclass(frozen=True)
class Result:
    content: str
    ref: str | None = None


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant" (tool results count as user turns)
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Conversation:
    """One request, protocol-neutral; each frontend renders it in its own wire format."""
    turns: tuple[Turn, ...]
    system: str | None = None
    tools: bool = False
    stream: bool = False
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    thinking: bool = False


def _ask(text: str) -> Turn:
    return Turn("user", (TextPart(text),))


_HELLO = (_ask("Say hello."),)


@dataclass(frozen=True)
class Capability:
    name: str
    scenario: str
    ask_mock: bool  # send X-Mock-Scenario: the mock's detection alone would not pick the scenario
    needs: frozenset[str]  # backend capabilities (config names) the cell requires
    conversation: Conversation
    expect_keys: tuple[str, ...]  # fixture `expect:` keys the cell cannot be judged without


def _cap(name: str, scenario: str, ask_mock: bool, needs: set[str], conversation: Conversation,
         expect_keys: tuple[str, ...] = ("text", "finish")) -> Capability:
    return Capability(name, scenario, ask_mock, frozenset(needs), conversation, expect_keys)


# Columns, in table order. The mock detects tools, tool results, thinking and
# images by itself (so those cells also prove the upstream request carried
# them); the rest ask for their scenario by header.
CAPABILITY_LIST: tuple[Capability, ...] = (
    _cap("text", "text", False, {"text"}, Conversation(_HELLO)),
    _cap("system", "text", False, {"text"},
         Conversation(_HELLO, system="You are a friendly assistant. Keep answers short.")),
    _cap("multi_turn", "text", False, {"text"}, Conversation((
        _ask("My name is Ada."), Turn("assistant", (TextPart("Nice to meet you, Ada."),)),
        _ask("What is my name?")))),
    _cap("tools", "function_calling", False, {"tools"},
         Conversation((_ask(WEATHER_QUESTION),), tools=True), ("tool_calls", "finish")),
    _cap("parallel_tools", "parallel_function_calling", True, {"tools"},
         Conversation((_ask("What's the weather in Paris and in London?"),), tools=True),
         ("tool_calls", "finish")),
    _cap("tool_result", "after_tool_result", False, {"tools"}, Conversation((
        _ask(WEATHER_QUESTION), Turn("assistant", (Call(TOOL_NAME, WEATHER_ARGS),)),
        Turn("user", (Result(WEATHER_RESULT),))), tools=True)),
    _cap("stream_text", "text", False, {"streaming"}, Conversation(_HELLO, stream=True)),
    _cap("stream_tools", "function_calling", False, {"tools", "streaming"},
         Conversation((_ask(WEATHER_QUESTION),), tools=True, stream=True), ("tool_calls", "finish")),
    _cap("stop_sequence", "stop_sequence", True, {"text"},
         Conversation((_ask("Count from one to five."),), stop=(STOP_WORD,))),
    _cap("max_tokens", "max_tokens", True, {"text"},
         Conversation((_ask("Tell me a long story about a fox."),), max_tokens=SMALL_MAX_TOKENS)),
    _cap("thinking", "thinking", False, {"thinking"},
         Conversation((_ask("What is the answer to everything? Think it over first."),), thinking=True)),
    _cap("vision", "vision", False, {"vision"},
         Conversation((Turn("user", (TextPart("What is in this image?"), Image("image/png", RED_SQUARE_PNG))),))),
    _cap("upstream_error", "error_429", True, {"text"}, Conversation(_HELLO), ("error",)),
)
CAPABILITIES: dict[str, Capability] = {c.name: c for c in CAPABILITY_LIST}
