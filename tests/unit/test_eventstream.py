"""AWS event-stream framing: the real ConverseStream captures give the same
frames whatever the chunk boundaries; corruption and truncation are errors."""
from __future__ import annotations

import binascii
import struct

import pytest

from app.errors import ErrorKind, ProxyError
from app.upstream.eventstream import EventStreamFramer, is_exception
from app.upstream.framing import Frame
from mocks.eventstream import encode_event, encode_exception, encode_message
from tests.conftest import every_split

LIVE_FRAMES = [
    Frame("messageStart", '{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012","role":"assistant"}'),
    Frame("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"OK"},"p":"abcdefghijklmnopqrstuvwx"}'),
    Frame("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"."},"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}'),
    Frame("contentBlockStop", '{"contentBlockIndex":0,"p":"ab"}'),
    Frame("messageStop", '{"additionalModelResponseFields":{"delta":{"stop_sequence":null}},'
                         '"p":"abcdefghijklmnopqrstuvw","stopReason":"end_turn"}'),
    Frame("metadata", '{"metrics":{"latencyMs":802},"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS",'
                      '"usage":{"inputTokens":12,"outputTokens":5,"serverToolUsage":{},"totalTokens":17}}'),
]
EXCEPTION_FRAME = Frame("exception:modelStreamErrorException",
                        '{"message":"Model Stream Error","originalStatusCode":500,'
                        '"originalMessage":"The model stream failed."}')


def frames_of(chunks: list[bytes]) -> list[Frame]:
    framer = EventStreamFramer()
    out: list[Frame] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    out.extend(framer.close())
    return out


def test_live_capture_at_every_split(real_samples):
    data = (real_samples / "bedrock" / "converse_stream_live_ok.eventstream").read_bytes()
    for chunks in every_split(data):
        assert frames_of(chunks) == LIVE_FRAMES, len(chunks[0])


def test_live_capture_byte_at_a_time(real_samples):
    data = (real_samples / "bedrock" / "converse_stream_live_ok.eventstream").read_bytes()
    assert frames_of([bytes([b]) for b in data]) == LIVE_FRAMES


def test_exception_frame_at_every_split(real_samples):
    data = (real_samples / "bedrock" / "converse_stream_exception_frame.eventstream").read_bytes()
    for chunks in every_split(data):
        assert frames_of(chunks) == [EXCEPTION_FRAME]
    assert is_exception(EXCEPTION_FRAME) and not any(is_exception(f) for f in LIVE_FRAMES)


def test_the_mock_encoder_writes_the_real_bytes(real_samples):
    data = (real_samples / "bedrock" / "converse_stream_exception_frame.eventstream").read_bytes()
    assert encode_exception("modelStreamErrorException", EXCEPTION_FRAME.data.encode()) == data
    live = (real_samples / "bedrock" / "converse_stream_live_ok.eventstream").read_bytes()
    assert b"".join(encode_event(f.event, f.data.encode()) for f in LIVE_FRAMES) == live
    assert encode_message([], b"").hex() == "000000100000000005c248eb7d98c8ff"  # botocore's smallest test vector


def test_generic_error_message_uses_its_headers():
    data = encode_message([(":message-type", "error"), (":error-code", "InternalFailure"),
                           (":error-message", "boom")], b"")
    assert frames_of([data]) == [Frame("error:InternalFailure", "boom")]


def test_utf8_split_inside_a_character():
    data = encode_event("contentBlockDelta", '{"delta":{"text":"café ✓"}}'.encode())
    for chunks in every_split(data):
        assert frames_of(chunks) == [Frame("contentBlockDelta", '{"delta":{"text":"café ✓"}}')]


@pytest.mark.parametrize("offset", [10, 20, -2])  # prelude CRC, a header byte, the message CRC
def test_corrupted_byte_is_a_bad_gateway(offset):
    data = bytearray(encode_event("messageStart", b'{"role":"assistant"}'))
    data[offset] ^= 0x01
    framer = EventStreamFramer()
    with pytest.raises(ProxyError) as caught:
        framer.feed(bytes(data))
    assert caught.value.kind is ErrorKind.bad_gateway and "corrupted" in caught.value.message
    assert framer.feed(b"more") == [] and framer.close() == []  # failed once, quiet after


def test_corruption_in_a_later_message_keeps_the_earlier_frames_out():
    good = encode_event("messageStart", b"{}")
    bad = bytearray(encode_event("metadata", b"{}"))
    bad[-1] ^= 0xFF
    framer = EventStreamFramer()
    assert framer.feed(good) == [Frame("messageStart", "{}")]
    with pytest.raises(ProxyError):
        framer.feed(bytes(bad))


def test_truncated_trailing_message_is_reported_at_close():
    data = encode_event("messageStart", b"{}") + encode_event("metadata", b'{"usage":{}}')[:-5]
    framer = EventStreamFramer()
    assert framer.feed(data) == [Frame("messageStart", "{}")]
    with pytest.raises(ProxyError) as caught:
        framer.close()
    assert caught.value.kind is ErrorKind.bad_gateway and "ended inside a message" in caught.value.message


def test_clean_end_reports_nothing():
    framer = EventStreamFramer()
    framer.feed(encode_event("messageStart", b"{}"))
    assert framer.close() == []


@pytest.mark.parametrize("total, headers_length", [(0, 0), (12, 0), (16, 5), (20, 100)])
def test_impossible_lengths_behind_a_valid_prelude_crc_are_errors(total, headers_length):
    prelude = struct.pack(">II", total, headers_length)
    prelude += struct.pack(">I", binascii.crc32(prelude))
    with pytest.raises(ProxyError, match="corrupted"):
        EventStreamFramer().feed(prelude + b"\x00" * 40)
