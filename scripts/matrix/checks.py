"""The checks of one cell: the reply against the scenario fixture's expect: section,
the upstream request against the conversation."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs

import yaml

from app.config import BackendConfig
from scripts.matrix.capabilities import (RED_SQUARE_PNG, TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA, Call, Capability,
                                         Conversation, Image, Result, TextPart, Turn)
from scripts.matrix.defaults import REPO, SCENARIOS
from scripts.matrix.frontend import Frontend
from scripts.matrix.frontends import FRONTENDS
from scripts.matrix.kinds import UPSTREAM_KINDS, is_generation_call
from scripts.matrix.reply import Reply, ToolCall, clip, differ
from scripts.matrix.upstream import ToolDef, UpstreamView


class FixtureError(Exception):
    pass


@lru_cache(maxsize=None)
def load_expect(protocol: str, scenario: str) -> Mapping[str, Any]:
    """The `expect:` section of scenarios/<protocol>/<scenario>.yaml (after its `base:` chain)."""
    expect = _fixture(SCENARIOS / protocol, scenario, ()).get("expect")
    if not isinstance(expect, dict):
        raise FixtureError(f"fixture scenarios/{protocol}/{scenario}.yaml has no expect: section")
    return expect


def _fixture(folder: Path, name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A fixture mapping with its `base:` fixture's keys underneath (own keys win)."""
    path = folder / f"{name}.yaml"
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if name in seen:
        raise FixtureError(f"fixture {where}: base cycle {' -> '.join(seen + (name,))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise FixtureError(f"fixture {where} is missing") from None
    except yaml.YAMLError as e:
        raise FixtureError(f"fixture {where} is not valid YAML: {clip(str(e), 120)}") from None
    if not isinstance(data, dict):
        raise FixtureError(f"fixture {where} is not a mapping")
    if isinstance(data.get("base"), str):
        data = {**_fixture(folder, data["base"], seen + (name,)), **data}
    return data


def check_reply(reply: Reply, expect: Mapping[str, Any], frontend: Frontend, conv: Conversation,
                headers: Mapping[str, str]) -> list[str]:
    """What the client got, against the fixture's expect: section."""
    problems = list(reply.problems)
    if "error" in expect:
        return problems + _check_error(reply, expect["error"], headers)
    if reply.error is None and reply.status != 200:
        problems.append(differ("HTTP status", 200, reply.status))
    if reply.error is not None:
        return problems + [f"HTTP {reply.status} {reply.error.get('type')}: {clip(str(reply.error.get('message')), 200)}"]
    if "text" in expect and reply.text != expect["text"]:
        problems.append(differ("text", expect["text"], reply.text))
    if reply.thinking != expect.get("thinking", ""):  # none expected: none may be made up
        problems.append(differ("thinking", expect.get("thinking", ""), reply.thinking))
    problems += _check_tool_calls(reply.tool_calls, expect.get("tool_calls"), frontend)
    if "finish" in expect and reply.finish != expect["finish"]:
        problems.append(differ("finish", expect["finish"], f"{reply.finish} ({reply.raw_finish})"))
    if reply.stop_sequence is not None and reply.stop_sequence not in conv.stop:
        problems.append(differ("stop_sequence", list(conv.stop), reply.stop_sequence))
    problems += _check_usage(reply.usage, expect.get("usage"))
    return problems


def _check_tool_calls(got: list[ToolCall], expected: Any, frontend: Frontend) -> list[str]:
    expected = expected or []
    want = [(c.get("name"), c.get("arguments")) for c in expected]
    have = [(c.name, c.arguments) for c in got]
    if want != have:
        return [differ("tool_calls", want, have)]
    if frontend.call_id is None:
        return []  # the protocol has no call ids
    ids = [c.id for c in got]
    if any(not i for i in ids):
        return [f"tool call ids missing: {ids}"]
    if len(set(ids)) != len(ids):
        return [f"tool call ids not unique: {ids}"]
    return []


def _check_usage(got: Mapping[str, Any] | None, expected: Any) -> list[str]:
    if not expected:
        return []
    if got is None:
        return [differ("usage", dict(expected), None)]
    problems = []
    for key in ("input", "output", "reasoning"):
        if key not in expected or (key == "reasoning" and got.get(key) is None):
            continue  # reasoning is checked only where the frontend reports it
        if got.get(key) != expected[key]:
            problems.append(differ(f"usage.{key}", expected[key], got.get(key)))
    return problems


def _check_error(reply: Reply, expected: Mapping[str, Any], headers: Mapping[str, str]) -> list[str]:
    if reply.error is None:
        return [f"expected an error reply, got HTTP {reply.status} with text {clip(repr(reply.text), 60)}"]
    problems = []
    if reply.status != expected.get("status"):
        problems.append(differ("status", expected.get("status"), reply.status))
    want_kind = _error_kind(expected.get("type"))
    if want_kind and reply.error.get("kind") != want_kind:
        problems.append(differ("error kind", want_kind, f"{reply.error.get('kind')} ({reply.error.get('type')})"))
    retry = expected.get("retry_after")
    if retry is not None and headers.get("Retry-After") != str(retry):
        problems.append(differ("Retry-After header", str(retry), headers.get("Retry-After")))
    return problems


def _error_kind(wire_type: Any) -> str | None:
    """A fixture names the error kind, or a type in its provider's vocabulary; read either."""
    kinds = {kind for frontend in FRONTENDS.values() for kind in frontend.error_kinds.values()}
    if wire_type in kinds:
        return wire_type
    for frontend in FRONTENDS.values():
        if wire_type in frontend.error_kinds:
            return frontend.error_kinds[wire_type]
    return None


def check_upstream(log: list[Mapping[str, Any]], backend: BackendConfig, upstream_model: str,
                   capability: Capability) -> list[str]:
    """The one generation request the mock saw, against what the conversation says it must carry."""
    calls = [e for e in log if is_generation_call(e)]
    if len(calls) != 1:
        seen = ", ".join(f"{e.get('provider')} {e.get('method')} {e.get('path')}" for e in log)
        return [f"mock saw {len(calls)} generation requests, expected exactly 1"
                + (f" (all calls: {seen})" if seen else "")]
    entry = calls[0]
    kind = UPSTREAM_KINDS.get(backend.kind)
    if kind is None:
        return [f"the matrix cannot read requests of backend kind {backend.kind!r} (add it to UPSTREAM_KINDS)"]
    problems = []
    if entry.get("provider") != kind.mock_provider:
        return [differ("upstream provider", kind.mock_provider, entry.get("provider"))]
    scenario = str(entry.get("scenario") or "").rpartition("/")[2]
    if scenario != capability.scenario:
        problems.append(differ("mock scenario", capability.scenario, entry.get("scenario")))
    body = entry.get("body")
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            return problems + ["upstream body is not JSON"]
    view = kind.reader.view(body or {}, str(entry.get("path") or ""), _query(entry.get("query")))
    return problems + view.problems + _compare_view(view, capability.conversation, upstream_model)


def _query(query: Any) -> dict[str, list[str]]:
    if isinstance(query, str):
        return parse_qs(query.lstrip("?"))
    if isinstance(query, dict):
        return {k: v if isinstance(v, list) else [str(v)] for k, v in query.items()}
    return {}


def _compare_view(view: UpstreamView, conv: Conversation, upstream_model: str) -> list[str]:
    problems = []
    if view.model != upstream_model:
        problems.append(differ("upstream model", upstream_model, view.model))
    if view.stream != conv.stream:
        problems.append(differ("upstream stream", conv.stream, view.stream))
    if (view.system or None) != conv.system:
        problems.append(differ("upstream system", conv.system, view.system))
    problems += _compare_turns(conv.turns, view.turns)
    if conv.tools:
        problems += _compare_tools(view.tools)
    if conv.stop and view.stop != list(conv.stop):
        problems.append(differ("upstream stop sequences", list(conv.stop), view.stop))
    if conv.max_tokens is not None and view.max_tokens != conv.max_tokens:
        problems.append(differ("upstream max tokens", conv.max_tokens, view.max_tokens))
    if conv.thinking and view.thinking is None:
        problems.append("upstream request did not enable thinking")
    return problems


def _compare_turns(expected: Sequence[Turn], got: Sequence[Turn]) -> list[str]:
    want_roles, have_roles = [t.role for t in expected], [t.role for t in got]
    if want_roles != have_roles:
        return [differ("upstream history roles", want_roles, have_roles)]
    problems = []
    for i, (want, have) in enumerate(zip(expected, got)):
        problems += _compare_parts(i, want, have, got[i - 1] if i else None)
    return problems


def _of(turn: Turn, kind: type) -> list[Any]:
    return [p for p in turn.parts if isinstance(p, kind)]


def _compare_parts(i: int, want: Turn, have: Turn, previous: Turn | None) -> list[str]:
    problems = []
    want_text, have_text = "".join(p.text for p in _of(want, TextPart)), "".join(p.text for p in _of(have, TextPart))
    if want_text != have_text:
        problems.append(differ(f"upstream turn {i} text", want_text, have_text))
    want_images = [(p.media_type, p.data) for p in _of(want, Image)]
    have_images = [(p.media_type, p.data) for p in _of(have, Image)]
    if want_images != have_images:
        problems.append(differ(f"upstream turn {i} images", [(m, f"{len(d)} bytes PNG") for m, d in want_images],
                                [(m, f"{len(d)} bytes" + (" (same bytes)" if d == RED_SQUARE_PNG else ""))
                                 for m, d in have_images]))
    want_calls = [(c.name, c.arguments) for c in _of(want, Call)]
    have_calls = [(c.name, c.arguments) for c in _of(have, Call)]
    if want_calls != have_calls:
        problems.append(differ(f"upstream turn {i} tool calls", want_calls, have_calls))
    if any(not c.ref for c in _of(have, Call)):
        problems.append(f"upstream turn {i}: a tool call has no id")
    results = _of(have, Result)
    if len(results) != len(_of(want, Result)):
        problems.append(differ(f"upstream turn {i} tool results", len(_of(want, Result)), len(results)))
    call_refs = [c.ref for c in _of(previous, Call)] if previous else []
    for r, w in zip(results, _of(want, Result)):
        if w.content not in r.content:
            problems.append(differ(f"upstream turn {i} tool result", w.content, r.content))
        if r.ref not in call_refs:
            problems.append(f"upstream turn {i}: tool result answers {r.ref!r}, previous turn's calls are {call_refs}")
    return problems


def _compare_tools(tools: list[ToolDef]) -> list[str]:
    if [t.name for t in tools] != [TOOL_NAME]:
        return [differ("upstream tools", [TOOL_NAME], [t.name for t in tools])]
    tool = tools[0]
    problems = []
    if tool.description != TOOL_DESCRIPTION:
        problems.append(differ("upstream tool description", TOOL_DESCRIPTION, tool.description))
    schema = tool.schema if isinstance(tool.schema, dict) else {}
    location = (schema.get("properties") or {}).get("location") or {}
    if str(location.get("type", "")).lower() != "string" or location.get("description") != "City name":
        problems.append(differ("upstream tool schema location", TOOL_SCHEMA["properties"]["location"], location))
    if schema.get("required") != ["location"]:
        problems.append(differ("upstream tool schema required", ["location"], schema.get("required")))
    return problems
