"""Known-gateway-bugs 18-23, the ones real agent clients hit (protocols/known-gateway-bugs.md,
real-clients.md), each as a request or stream shaped like the client's own, through the
protocol modules, with the exact shape every backend must get or every client must see."""
from __future__ import annotations

import json

import pytest

from app import ir
from app.errors import ErrorKind, ProxyError
from app.protocols import anthropic, gemini, gemini_schema, openai_chat
from app.upstream.framing import Frame
from tests.upstream_call import Upstream, built
from tests.conftest import REAL_SAMPLES, stream_events
from tests.real_clients import claude_code_read

TARGETS = {
    "openai": Upstream(backend="openai", base_url="https://api.openai.test/v1", model="gpt-5-nano", api_key="sk-1"),
    "anthropic": Upstream(backend="anthropic", base_url="https://api.anthropic.test", model="claude-sonnet-4-5",
                        api_key="sk-ant-1"),
    "gemini": Upstream(backend="gemini", base_url="https://gemini.test", model="gemini-2.5-flash", api_key="AIza-1"),
}
MODULES = {"openai": openai_chat, "anthropic": anthropic, "gemini": gemini}
TOOL = {"name": "Bash", "description": "Run a command.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
USER_ID = '{"device_id":"46ab","account_uuid":"","session_id":"c396"}'


def claude_code(*messages: dict, **fields) -> dict:
    """A Claude Code body for a non-Claude model name (real-clients.md), with `messages`."""
    return {"model": "gpt-5-nano", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Use the tools.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": list(messages), "tools": [TOOL], "metadata": {"user_id": USER_ID},
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}, **fields}


SAY_HELLO = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                         {"type": "text", "text": "Say hello", "cache_control": {"type": "ephemeral"}}]}
AGENTS = {"role": "system", "content": "Available agents: explore, plan."}


def body_for(backend: str, req: ir.Request, **options) -> dict:
    target = TARGETS[backend]
    if options:
        target = Upstream(target.backend, target.base_url, target.model, target.api_key, options=options)
    return json.loads(built(MODULES[backend], req, target).body)


# ------------------------------------------------------------ 18: role "system" inside messages


def test_18_a_mid_conversation_system_message_stays_in_place_in_the_ir():
    req = anthropic.parse_request(claude_code(SAY_HELLO, AGENTS))
    assert req.messages == (
        ir.Message("system", (ir.Text("You are a Claude agent."), ir.Text("Use the tools."))),
        ir.Message("user", (ir.Text("<system-reminder>ctx</system-reminder>"), ir.Text("Say hello"))),
        ir.Message("system", (ir.Text("Available agents: explore, plan."),)),
    )


def test_18_the_mid_conv_system_block_splits_its_turn_there():
    turn = {"role": "user", "content": [
        {"type": "text", "text": "Before"},
        {"type": "mid_conv_system", "content": [{"type": "text", "text": "Now be brief."}],
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "After"}]}
    assert anthropic.parse_request(claude_code(turn)).messages[1:] == (
        ir.Message("user", (ir.Text("Before"),)),
        ir.Message("system", (ir.Text("Now be brief."),)),
        ir.Message("user", (ir.Text("After"),)),
    )


def test_18_each_backend_gets_the_mid_conversation_system_message_where_it_takes_one():
    req = anthropic.parse_request(claude_code(SAY_HELLO, AGENTS))
    # OpenAI: a system message in place (any number, anywhere; reasoning models read it as developer).
    assert body_for("openai", req)["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "You are a Claude agent."},
                                       {"type": "text", "text": "Use the tools."}]},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                     {"type": "text", "text": "Say hello"}]},
        {"role": "system", "content": "Available agents: explore, plan."},
    ]
    # Gemini: the leading prompt is systemInstruction, the later one stays in its turn, marked.
    gemini_body = body_for("gemini", req)
    assert gemini_body["systemInstruction"] == {"parts": [{"text": "You are a Claude agent.\nUse the tools."}]}
    assert gemini_body["contents"] == [
        {"role": "user", "parts": [{"text": "<system-reminder>ctx</system-reminder>"}, {"text": "Say hello"}]},
        {"role": "user", "parts": [{"text": "System: Available agents: explore, plan."}]},
    ]
    # Anthropic, rebuilt: a marked user text by default (every model takes it) ...
    assert body_for("anthropic", req)["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": "Say hello"},
        {"type": "text", "text": "System: Available agents: explore, plan."}]}]
    # ... and a system message in place where the backend says its models take them.
    assert body_for("anthropic", req, mid_conversation_system=True)["messages"][1:] == [
        {"role": "system", "content": [{"type": "text", "text": "Available agents: explore, plan."}]}]
    # Passthrough: the client's body, only the model swapped.
    passed = json.loads(built(anthropic, req, TARGETS["anthropic"], passthrough=True).body)
    assert passed == {**claude_code(SAY_HELLO, AGENTS), "model": "claude-sonnet-4-5"}


# ------------------------------------------------- 19: cache_control ttl, context_management, betas


def test_19_anthropic_only_fields_never_reach_other_backends_and_all_reach_anthropic():
    body = claude_code(SAY_HELLO, cache_control={"type": "ephemeral", "ttl": "1h"})
    req = anthropic.parse_request(body)
    for backend in ("openai", "gemini"):
        text = json.dumps(body_for(backend, req))
        for field in ("cache_control", "context_management", "ttl", "output_config", "thinking", "metadata"):
            assert f'"{field}"' not in text, (backend, field)
    # What they mean is mapped: effort, and the user id as OpenAI's `user`.
    openai_body = body_for("openai", req)
    assert (openai_body["reasoning_effort"], openai_body["user"]) == ("high", USER_ID)
    assert body_for("gemini", req)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576,
                                                                             "includeThoughts": True}
    rebuilt = body_for("anthropic", req)
    assert (rebuilt["context_management"], rebuilt["cache_control"], rebuilt["metadata"]) == (
        body["context_management"], body["cache_control"], {"user_id": USER_ID})


@pytest.mark.parametrize("field, value", [
    ("mcp_servers", [{"type": "url", "url": "https://mcp.example.test", "name": "docs"}]),
    ("inference_geo", "eu"),
    ("container", "container_011"),
])
@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_19_fields_that_change_the_answer_are_refused_by_other_backends_naming_the_field(backend, field, value):
    req = anthropic.parse_request(claude_code(SAY_HELLO, **{field: value}))
    with pytest.raises(ProxyError) as caught:
        built(MODULES[backend], req, TARGETS[backend])
    assert (caught.value.kind, caught.value.param) == (ErrorKind.invalid_request, field)
    assert body_for("anthropic", req)[field] == value


# ---------------------------------------------- 20: tool input only through input_json_delta


def _claude_code_sees(events: list[ir.Event]) -> tuple[dict, list[str]]:
    req = anthropic.parse_request(claude_code(SAY_HELLO))
    formatter = anthropic.StreamFormatter(req)
    return claude_code_read(b"".join(formatter.feed(e) for e in events).decode())


def test_20_arguments_delivered_whole_by_gemini_reach_claude_code_as_input_json_delta():
    stream = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in [
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "Bash", "args": {"command": "ls"}}}]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3}}])
    events = stream_events(gemini.StreamParser(anthropic.parse_request(claude_code(SAY_HELLO))), [stream])
    got, problems = _claude_code_sees(events)
    assert problems == []
    assert (got["tool_calls"], got["stop_reason"]) == ([{"name": "Bash", "arguments": {"command": "ls"}}],
                                                       "tool_use")


def test_20_a_gateway_that_puts_the_input_in_content_block_start_is_repaired_when_relayed():
    start = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}}
    formatter = anthropic.StreamFormatter(anthropic.parse_request(claude_code(SAY_HELLO)))
    relayed = formatter.relay(Frame("content_block_start", json.dumps(start)))
    assert relayed == (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"input_json_delta","partial_json":"{\\"command\\":\\"ls\\"}"}}\n\n')
    placeholder = json.dumps({**start, "content_block": {**start["content_block"], "input": {}}})
    assert formatter.relay(Frame("content_block_start", placeholder)) == \
        f"event: content_block_start\ndata: {placeholder}\n\n".encode()


# --------------------------------- 22: Gemini 3 thought signatures and schema keywords Gemini rejects


def test_22_a_streamed_gemini_signature_survives_claude_code_and_goes_back_byte_exact():
    signature = "CikBcsjafFK1+8Ibt/toxVV0Tsn8O+eU45=="
    stream = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in [
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "Bash", "args": {"command": "ls"}}, "thoughtSignature": signature}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}]}])
    first = anthropic.parse_request(claude_code(SAY_HELLO))
    formatter = anthropic.StreamFormatter(first)
    seen = b"".join(formatter.feed(e) for e in stream_events(gemini.StreamParser(first), [stream])).decode()
    starts = [json.loads(data) for name, data in _sse_pairs(seen) if name == "content_block_start"]
    call_id = starts[0]["content_block"]["id"]
    # Claude Code's next turn echoes the tool_use with its id and answers it.
    second = anthropic.parse_request(claude_code(
        SAY_HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "Bash",
                                           "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "README.md"}]}))
    model_turn = body_for("gemini", second)["contents"][1]
    assert model_turn == {"role": "model", "parts": [
        {"functionCall": {"name": "Bash", "args": {"command": "ls"}}, "thoughtSignature": signature}]}


def _sse_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        pairs.append((name.removeprefix("event: "), data.removeprefix("data: ")))
    return pairs


# Every keyword real-clients.md lists for Claude Code's tool schemas, in one schema.
CLAUDE_CODE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["a", "b"], "description": "Mode.", "default": "a"},
        "kind": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "string", "const": "y"}]},
        "limit": {"type": "integer", "exclusiveMinimum": 0, "maximum": 2000},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "name": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z]+$"},
        "url": {"type": "string", "format": "uri"},
        "paths": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": ["mode"],
    "additionalProperties": False,
}
MAP_SCHEMA = {**CLAUDE_CODE_SCHEMA, "properties": {
    **CLAUDE_CODE_SCHEMA["properties"],
    "metadata": {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}}}}


def test_22_claude_code_schema_keywords_become_what_gemini_parameters_accept():
    assert gemini_schema.to_gemini_parameters(CLAUDE_CODE_SCHEMA) == {
        "type": "object",
        "properties": {
            "mode": {"type": "string", "description": "Mode.", "enum": ["a", "b"]},
            "kind": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "string", "enum": ["y"]}]},
            "limit": {"type": "integer", "maximum": 2000, "minimum": 1},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 64},
            "url": {"type": "string"},
            "paths": {"type": "array", "maxItems": 5, "items": {"type": "string"}},
        },
        "required": ["mode"],
    }


def test_22_a_schema_with_a_free_form_object_goes_as_parameters_json_schema_with_supported_keys_only():
    tool = ir.Tool("TaskCreate", "Create a task.", MAP_SCHEMA)
    req = ir.Request(model="m", messages=(ir.Message("user", (ir.Text("Hi"),)),), protocol="anthropic",
                     tools=(tool, ir.Tool("Plain", None, CLAUDE_CODE_SCHEMA)))
    create, plain = body_for("gemini", req)["tools"][0]["functionDeclarations"]
    assert set(plain) == {"name", "parameters"}  # what the Schema subset can say goes the usual way
    assert create == {"name": "TaskCreate", "description": "Create a task.", "parametersJsonSchema": {
        "type": "object",
        "properties": {
            "mode": {"type": "string", "enum": ["a", "b"], "description": "Mode."},
            "kind": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "string", "enum": ["y"]}]},
            "limit": {"type": "integer", "maximum": 2000, "minimum": 1},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "name": {"type": "string"},
            "url": {"type": "string", "format": "uri"},
            "paths": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "metadata": {"type": "object", "additionalProperties": {}},
        },
        "required": ["mode"],
        "additionalProperties": False,
    }}


def test_22_the_recorded_claude_code_tools_all_reach_gemini_in_a_form_it_accepts(real_samples):
    recorded = json.loads((REAL_SAMPLES / "client-requests" / "claude-code_other-model_text.json").read_text())
    tools = [anthropic._tool_from_wire(t, f"tools.{k}") for k, t in enumerate(recorded["body"]["tools"])]
    req = ir.Request(model="m", messages=(ir.Message("user", (ir.Text("Hi"),)),), protocol="anthropic",
                     tools=tuple(tools))
    declarations = body_for("gemini", req)["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == [t.name for t in tools]
    for declaration in declarations:
        schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
        assert "$schema" not in json.dumps(schema) and "exclusiveMinimum" not in json.dumps(schema)
        assert '"propertyNames"' not in json.dumps(schema)
        if "parameters" in declaration:
            assert gemini_schema.fits_schema_subset(declaration["parameters"])


# ----------------------------------------------------- 23: reasoning_content echoed back


def test_23_reasoning_content_goes_back_to_backends_that_need_it_and_only_to_them():
    """DeepSeek-style backend -> Claude Code (a thinking block, no signature) -> next turn."""
    chunks = [
        {"id": "c1", "object": "chat.completion.chunk", "model": "deepseek-reasoner", "choices": [
            {"index": 0, "delta": {"role": "assistant", "reasoning_content": "List the files."},
             "finish_reason": None}]},
        {"id": "c1", "object": "chat.completion.chunk", "model": "deepseek-reasoner", "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {
                "name": "Bash", "arguments": '{"command":"ls"}'}}]}, "finish_reason": "tool_calls"}]},
    ]
    stream = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    first = anthropic.parse_request(claude_code(SAY_HELLO))
    formatter = anthropic.StreamFormatter(first)
    seen = b"".join(formatter.feed(e) for e in stream_events(openai_chat.StreamParser(first), [stream])).decode()
    blocks = [json.loads(d)["content_block"] for n, d in _sse_pairs(seen) if n == "content_block_start"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    # Claude Code echoes the thinking block verbatim (signature "") before the tool_use.
    second = anthropic.parse_request(claude_code(
        SAY_HELLO,
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "List the files.", "signature": ""},
            {"type": "tool_use", "id": blocks[1]["id"], "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[1]["id"], "content": "a.py"}]}))
    echoed = body_for("openai", second, echo_reasoning_content=True)["messages"][2]
    assert echoed["reasoning_content"] == "List the files."
    assert echoed["tool_calls"][0]["function"] == {"name": "Bash", "arguments": '{"command":"ls"}'}
    assert "reasoning_content" not in body_for("openai", second)["messages"][2]  # OpenAI itself refuses it
