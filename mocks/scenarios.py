"""Scenario fixtures: `scenarios/<provider>/<name>.yaml`, loaded once and
checked for shape at load time (a broken fixture should fail at startup,
not in the middle of a test). The format is documented in scenarios/README.md."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

PROVIDERS = ("openai", "anthropic", "gemini", "bedrock", "openai_responses", "ollama", "oci", "openrouter")
FAULT_TYPES = ("stall_mid_stream", "drop_mid_stream", "malformed_body", "slow_first_byte")
FINISH_VALUES = ("stop", "length", "tool_calls", "content_filter")


def _bundled_root() -> Path:
    """The bundled fixtures: `mocks/fixtures/` in an installed copy (setup.py installs the
    repository's scenarios/ there), else scenarios/ beside mocks/ in a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "fixtures"
    return installed if installed.is_dir() else here.parent / "scenarios"


DEFAULT_ROOT = _bundled_root()

_TOP_KEYS = {"description", "base", "status", "headers", "first_byte_delay_ms", "fault", "expect",
             "body", "body_raw", "stream"}
_FRAME_KEYS = {"event", "data", "raw", "delay_ms"}
_FAULT_KEYS = {"type", "after_frames", "after_bytes", "stall_ms", "delay_ms"}
_EXPECT_KEYS = {"text", "tool_calls", "finish", "usage", "thinking", "error", "partial_text"}


class ScenarioFormatError(ValueError):
    """A fixture file does not follow scenarios/README.md."""


@dataclass(frozen=True)
class ScenarioFrame:
    """One streamed event: `data` (JSON value, or a string written as is
    after `data: `) or `raw` (bytes written verbatim), optional SSE `event`."""
    data: Any = None
    raw: str | None = None
    event: str | None = None
    delay_ms: int = 0
    # JSON text of `data` per encoder, placeholders still in: fixtures are encoded
    # once, and each request only substitutes ids (the replay hot path).
    _encoded: dict[Callable[[Any], str], str] = field(default_factory=dict, compare=False, repr=False)

    def encoded(self, encode: Callable[[Any], str]) -> str:
        """`data` as text: a string is used as is, anything else through `encode`."""
        text = self._encoded.get(encode)
        if text is None:
            text = self.data if isinstance(self.data, str) else encode(self.data)
            self._encoded[encode] = text
        return text


@dataclass(frozen=True)
class Fault:
    type: str
    after_frames: int | None = None  # stall/drop: frames sent before the fault
    after_bytes: int | None = None   # stall/drop of a non-streamed body (default: half of it)
    stall_ms: int = 60000            # stall: how long to hang before closing
    delay_ms: int = 0                # slow_first_byte: wait before the headers


@dataclass(frozen=True)
class Scenario:
    provider: str
    name: str
    description: str
    status: int
    headers: dict[str, str]
    body: Any
    body_raw: str | None
    stream: tuple[ScenarioFrame, ...] | None
    first_byte_delay_ms: int
    fault: Fault | None
    expect: dict[str, Any]
    source: str = field(default="", compare=False)

    @property
    def first_byte_delay(self) -> float:
        """Seconds to wait before anything (headers included) is sent."""
        if self.fault is not None and self.fault.type == "slow_first_byte":
            return max(self.fault.delay_ms, self.first_byte_delay_ms) / 1000
        return self.first_byte_delay_ms / 1000


# ----------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\{\{(\w+)(?::(\w+))?\}\}")


def fill_text(text: str, lookup: Callable[[str, str | None], str]) -> str:
    """Replace placeholders inside JSON text; values are escaped as JSON string content."""
    if "{{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: json.dumps(lookup(m.group(1), m.group(2)))[1:-1], text)


def fill(value: Any, lookup: Callable[[str, str | None], str]) -> Any:
    """Replace `{{name}}` / `{{name:salt}}` in every string of a fixture value."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        return _PLACEHOLDER.sub(lambda m: lookup(m.group(1), m.group(2)), value)
    if isinstance(value, dict):
        return {k: fill(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, lookup) for v in value]
    return value


# ----------------------------------------------------------------- loading

def _fail(path: Path, message: str) -> ScenarioFormatError:
    return ScenarioFormatError(f"{path}: {message}")


def _int(path: Path, value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(path, f"{what} must be an integer >= {minimum}")
    return value


def _frame(path: Path, i: int, raw: Any) -> ScenarioFrame:
    if not isinstance(raw, dict) or not raw.keys() <= _FRAME_KEYS:
        raise _fail(path, f"stream[{i}] must be a mapping with keys from {sorted(_FRAME_KEYS)}")
    if ("data" in raw) == ("raw" in raw):
        raise _fail(path, f"stream[{i}] needs exactly one of data / raw")
    if "raw" in raw and not isinstance(raw["raw"], str):
        raise _fail(path, f"stream[{i}].raw must be a string")
    if "event" in raw and not isinstance(raw["event"], str):
        raise _fail(path, f"stream[{i}].event must be a string")
    return ScenarioFrame(data=raw.get("data"), raw=raw.get("raw"), event=raw.get("event"),
                         delay_ms=_int(path, raw.get("delay_ms", 0), f"stream[{i}].delay_ms"))


def _fault(path: Path, raw: Any) -> Fault | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.keys() <= _FAULT_KEYS or raw.get("type") not in FAULT_TYPES:
        raise _fail(path, f"fault must be a mapping with type in {FAULT_TYPES} and keys from {sorted(_FAULT_KEYS)}")
    return Fault(
        type=raw["type"],
        after_frames=_int(path, raw["after_frames"], "fault.after_frames") if "after_frames" in raw else None,
        after_bytes=_int(path, raw["after_bytes"], "fault.after_bytes") if "after_bytes" in raw else None,
        stall_ms=_int(path, raw.get("stall_ms", 60000), "fault.stall_ms"),
        delay_ms=_int(path, raw.get("delay_ms", 0), "fault.delay_ms"),
    )


def _expect(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.keys() <= _EXPECT_KEYS:
        raise _fail(path, f"expect must be a mapping with keys from {sorted(_EXPECT_KEYS)}")
    if "finish" in raw and raw["finish"] not in FINISH_VALUES:
        raise _fail(path, f"expect.finish must be one of {FINISH_VALUES}")
    for call in raw.get("tool_calls", []):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) \
                or not isinstance(call.get("arguments"), dict):
            raise _fail(path, "expect.tool_calls items need a name and an arguments mapping")
    error = raw.get("error")
    if error is not None and (not isinstance(error, dict) or "status" not in error or "type" not in error):
        raise _fail(path, "expect.error needs status and type")
    return raw


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, "a scenario file is a mapping")
    unknown = data.keys() - _TOP_KEYS
    if unknown:
        raise _fail(path, f"unknown keys {sorted(unknown)}")
    return data


def _resolve(folder: Path, name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A file's mapping with its `base` chain merged in (own keys win)."""
    path = folder / f"{name}.yaml"
    if name in seen:
        raise _fail(path, f"base cycle: {' -> '.join(seen + (name,))}")
    if not path.is_file():
        raise _fail(folder / f"{seen[-1]}.yaml" if seen else path, f"base scenario {name!r} not found")
    data = _read_yaml(path)
    base = data.get("base")
    if base is None:
        return data
    merged = dict(_resolve(folder, base, seen + (name,)))
    merged.update(data)
    return merged


def _build(provider: str, name: str, path: Path, data: dict[str, Any]) -> Scenario:
    status = _int(path, data.get("status", 200), "status", 100)
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _fail(path, "headers must map strings to strings")
    if "body" not in data and "body_raw" not in data:
        raise _fail(path, "a scenario needs a non-streamed `body` or `body_raw`")
    if "body_raw" in data and not isinstance(data["body_raw"], str):
        raise _fail(path, "body_raw must be a string")
    stream = data.get("stream")
    if stream is not None:
        if not isinstance(stream, list) or not stream:
            raise _fail(path, "stream must be a non-empty list of frames")
        stream = tuple(_frame(path, i, f) for i, f in enumerate(stream))
    fault = _fault(path, data.get("fault"))
    if fault is not None and fault.type in ("stall_mid_stream", "drop_mid_stream") and stream is not None \
            and fault.after_frames is not None and fault.after_frames > len(stream):
        raise _fail(path, "fault.after_frames is beyond the end of the stream")
    return Scenario(
        provider=provider, name=name, description=str(data.get("description", "")), status=status,
        headers=dict(headers), body=data.get("body"), body_raw=data.get("body_raw"), stream=stream,
        first_byte_delay_ms=_int(path, data.get("first_byte_delay_ms", 0), "first_byte_delay_ms"),
        fault=fault, expect=_expect(path, data.get("expect", {})), source=str(path),
    )


class ScenarioLibrary:
    """Every fixture of every provider, by provider and name."""

    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = root
        self._scenarios: dict[str, dict[str, Scenario]] = {p: {} for p in PROVIDERS}
        for provider in PROVIDERS:
            folder = root / provider
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.yaml")):
                name = path.stem
                self._scenarios[provider][name] = _build(provider, name, path, _resolve(folder, name, ()))

    def names(self, provider: str) -> list[str]:
        return sorted(self._scenarios.get(provider, {}))

    def get(self, provider: str, name: str) -> Scenario | None:
        return self._scenarios.get(provider, {}).get(name)

    def all(self) -> list[Scenario]:
        return [s for p in PROVIDERS for _, s in sorted(self._scenarios[p].items())]
