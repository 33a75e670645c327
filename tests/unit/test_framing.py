"""SSE framing: whole frames out, whatever the chunk boundaries."""
import pytest

from app.upstream.framing import FRAMINGS, Frame, SSEFramer, encode_sse, framer
from tests.conftest import every_split


def frames_of(chunks: list[bytes]) -> list[Frame]:
    framer = SSEFramer()
    out: list[Frame] = []
    for c in chunks:
        out.extend(framer.feed(c))
    out.extend(framer.close())
    return out


STREAM = (
    b'event: message_start\ndata: {"a":1}\n\n'
    b": comment line\n\n"
    b'data: {"text":"caf\xc3\xa9 \xe2\x9c\x93"}\r\n\r\n'
    b"data: first\ndata: second\n\n"
    b"data:no-space\n\n"
    b"event: ping\r\ndata: {}\r\n\r\n"
    b"data: [DONE]\n\n"
)

EXPECTED = [
    Frame("message_start", '{"a":1}'),
    Frame(None, '{"text":"café ✓"}'),
    Frame(None, "first\nsecond"),
    Frame(None, "no-space"),
    Frame("ping", "{}"),
    Frame(None, "[DONE]"),
]


def test_frames_are_identical_at_every_split():
    for chunks in every_split(STREAM):
        assert frames_of(chunks) == EXPECTED, chunks


def test_byte_at_a_time():
    assert frames_of([bytes([b]) for b in STREAM]) == EXPECTED


def test_lone_cr_line_ends():
    assert frames_of([b"data: x\r\rdata: y\r\r"]) == [Frame(None, "x"), Frame(None, "y")]


def test_last_event_without_blank_line_is_dispatched_at_close():
    assert frames_of([b'data: {"end":true}']) == [Frame(None, '{"end":true}')]


def test_raw_json_lines_become_a_raw_frame():
    body = b'data: {"ok":1}\n\n{\n  "error": {\n    "code": 500\n  }\n}\n'
    for chunks in every_split(body):
        assert frames_of(chunks) == [Frame(None, '{"ok":1}'),
                                     Frame("raw", '{\n  "error": {\n    "code": 500\n  }\n}')]


def test_encode_sse():
    assert encode_sse('{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_sse(b"{}", "ping") == b"event: ping\ndata: {}\n\n"


@pytest.mark.parametrize("name", FRAMINGS)
def test_every_framing_has_the_relays_interface(name):
    """What the pipeline's relay calls on any provider's framer: feed, close, and the
    keepalive flag (set only by a framing that has keep-alive messages)."""
    f = framer(name)
    assert f.feed(b"") == [] and f.close() == [] and f.keepalive is False
