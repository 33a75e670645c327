"""Replays one scenario as an HTTP response: first-byte delay, the streamed
frames (with per-frame delays) or the non-streamed body, and the faults
(stall, drop). How a frame becomes bytes is the provider's `StreamWriter`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import gevent
from flask import Response

from mocks.scenarios import Fault, Scenario, ScenarioFrame, fill
from mocks.wire import drop_connection

if TYPE_CHECKING:
    from mocks.provider import Call, Provider

MID_STREAM_FAULTS = ("stall_mid_stream", "drop_mid_stream")


Lookup = Callable[[str, "str | None"], str]


class StreamWriter(Protocol):
    """Turns fixture frames into wire bytes for one response, filling the
    placeholders (may keep state, e.g. Gemini's JSON-array form needs to
    know whether a frame came before)."""

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes: ...

    def end(self) -> bytes: ...


def _fault_point(fault: Fault | None, total: int) -> int | None:
    """Index of the first frame *not* sent because of a stall/drop, if any."""
    if fault is None or fault.type not in MID_STREAM_FAULTS:
        return None
    return min(fault.after_frames if fault.after_frames is not None else total // 2, total)


def _after_fault(fault: Fault, call: Call) -> None:
    if fault.type == "stall_mid_stream":
        gevent.sleep(fault.stall_ms / 1000)
    drop_connection(call.socket)


def _stream_body(frames: list[ScenarioFrame], writer: StreamWriter, lookup: Lookup, fault: Fault | None,
                 call: Call) -> Iterator[bytes]:
    cut = _fault_point(fault, len(frames))
    for index, frame in enumerate(frames):
        if index == cut:
            _after_fault(fault, call)
            return
        if frame.delay_ms:
            gevent.sleep(frame.delay_ms / 1000)
        yield writer.frame(frame, lookup)
    if cut is not None and cut >= len(frames):
        _after_fault(fault, call)
        return
    tail = writer.end()
    if tail:
        yield tail


def _cut_body(data: bytes, fault: Fault, call: Call) -> Iterator[bytes]:
    cut = fault.after_bytes if fault.after_bytes is not None else len(data) // 2
    yield data[:cut]
    _after_fault(fault, call)


def respond(provider: Provider, scenario: Scenario, call: Call) -> Response:
    """The full reply for `call` under `scenario` (the streamed form when the
    call streams and the scenario has one; otherwise status + body)."""
    lookup = provider.placeholders(call)
    delay = scenario.first_byte_delay
    if delay:
        gevent.sleep(delay)  # before the status line: the client sees nothing at all
    headers = {**provider.response_headers(call), **fill(scenario.headers, lookup)}
    fault = scenario.fault

    if call.stream and scenario.stream is not None:
        frames = provider.select_frames(list(scenario.stream), call)
        body = _stream_body(frames, provider.stream_writer(call), lookup, fault, call)
        return Response(body, status=200, headers=headers, content_type=provider.stream_content_type(call),
                        direct_passthrough=True)

    if scenario.body_raw is not None:
        data = fill(scenario.body_raw, lookup).encode()
    else:
        data = provider.encode_body(provider.select_body(fill(scenario.body, lookup), call), scenario.status, call)
    content_type = provider.body_content_type(call)
    if fault is not None and fault.type in MID_STREAM_FAULTS:
        return Response(_cut_body(data, fault, call), status=scenario.status, headers=headers,
                        content_type=content_type, direct_passthrough=True)
    return Response(data, status=scenario.status, headers=headers, content_type=content_type)
