"""HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), decoded incrementally:
the same payload, `done` and `rest` whatever the read boundaries."""
import pytest

from app.upstream.chunked import ChunkedDecoder, ChunkedError
from tests.conftest import every_split


def decode(pieces: list[bytes]) -> tuple[ChunkedDecoder, bytes]:
    """Feed the pieces in order; the decoder and the concatenated payload."""
    d = ChunkedDecoder()
    out = []
    for p in pieces:
        got = d.feed(p)
        assert type(got) is bytes
        out.append(got)
    return d, b"".join(out)


def check_every_way(wire: bytes, payload: bytes, rest: bytes = b"") -> None:
    """House rule: whole, split in two at every byte boundary, and byte by byte
    all give `payload`; `done` turns true exactly when the last byte of the
    body (len(wire) - len(rest)) has been fed; what follows is in `rest`."""
    end = len(wire) - len(rest)
    for pieces in every_split(wire):
        d = ChunkedDecoder()
        out = d.feed(pieces[0])
        cut = len(pieces[0])
        assert d.done is (cut >= end), (cut, pieces)
        assert d.rest == (wire[end:cut] if cut >= end else b""), cut
        if len(pieces) == 2:
            out += d.feed(pieces[1])
        assert out == payload, cut
        assert d.done is True, cut
        assert d.rest == rest, cut

    d = ChunkedDecoder()
    out = b""
    for i in range(len(wire)):
        out += d.feed(wire[i:i + 1])
        assert d.done is (i + 1 >= end), i
    assert out == payload
    assert d.rest == rest


# ------------------------------------------------------------------ bodies

SEVERAL = b"5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n3\r\n!\r\n\r\n0\r\n\r\n"


def test_several_chunks_whole():
    d = ChunkedDecoder()
    assert d.feed(SEVERAL) == b"hello 0123456789!\r\n"
    assert d.done is True
    assert d.rest == b""


def test_several_chunks_every_split():
    check_every_way(SEVERAL, b"hello 0123456789!\r\n")


def test_single_chunk_comes_back_as_one_piece():
    d = ChunkedDecoder()
    assert d.feed(b"3\r\nabc\r\n") == b"abc"
    assert d.done is False
    assert d.feed(b"0\r\n\r\n") == b""
    assert d.done is True


def test_partial_chunk_is_handed_on_at_once():
    d = ChunkedDecoder()
    assert d.feed(b"a\r\nhel") == b"hel"
    assert d.feed(b"lo") == b"lo"
    assert d.feed(b"wor") == b"wor"
    assert d.feed(b"ld\r\n4\r\nab") == b"ldab"
    assert d.feed(b"cd\r\n0\r\n") == b"cd"
    assert d.done is False
    assert d.feed(b"\r\n") == b""
    assert d.done is True


def test_empty_body():
    check_every_way(b"0\r\n\r\n", b"")


def test_chunk_extensions_are_ignored():
    wire = b'5;name=val\r\nhello\r\n6 ; a=1;b="x y"\r\n world\r\n0;last\r\n\r\n'
    d = ChunkedDecoder()
    assert d.feed(wire) == b"hello world"
    assert d.done is True
    check_every_way(wire, b"hello world")


def test_trailer_fields_are_consumed():
    wire = b"4\r\nwiki\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Checksum: abc\r\n\r\n"
    d = ChunkedDecoder()
    assert d.feed(wire) == b"wiki"
    assert d.done is True
    assert d.rest == b""
    check_every_way(wire, b"wiki")


def test_trailer_fields_then_rest():
    wire = b"4\r\nwiki\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\n"
    check_every_way(wire, b"wiki", rest=b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("size", [b"1a", b"1A", b"01A", b"001a"])
def test_hex_sizes_in_either_case(size):
    payload = bytes(range(26))
    wire = size + b"\r\n" + payload + b"\r\n0\r\n\r\n"
    d = ChunkedDecoder()
    assert d.feed(wire) == payload
    assert d.done is True
    check_every_way(wire, payload)


def test_mixed_case_hex_size():
    payload = b"x" * 0xAbC
    wire = b"aBc\r\n" + payload + b"\r\n0\r\n\r\n"
    d = ChunkedDecoder()
    assert d.feed(wire) == payload
    assert d.done is True


def test_large_chunk_fed_in_pieces():
    payload = bytes(range(256)) * 300  # 76800 bytes
    wire = b"12c00\r\n" + payload + b"\r\n0\r\n\r\n"
    pieces = [wire[i:i + 1000] for i in range(0, len(wire), 1000)]
    d, out = decode(pieces)
    assert out == payload
    assert d.done is True


def test_bytes_after_the_body_go_to_rest():
    wire = b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    d = ChunkedDecoder()
    assert d.feed(wire) == b"abc"
    assert d.done is True
    assert d.rest == b"HTTP/1.1 204 No Content\r\n\r\n"
    check_every_way(wire, b"abc", rest=b"HTTP/1.1 204 No Content\r\n\r\n")


def test_feeds_after_done_append_to_rest():
    d = ChunkedDecoder()
    assert d.feed(b"2\r\nok\r\n0\r\n\r\nAB") == b"ok"
    assert d.rest == b"AB"
    assert d.feed(b"CD") == b""
    assert d.feed(b"5\r\nhello\r\n") == b""  # not a second body: connection bytes
    assert d.done is True
    assert d.rest == b"ABCD5\r\nhello\r\n"


def test_feed_after_done_with_empty_rest():
    d = ChunkedDecoder()
    d.feed(b"0\r\n\r\n")
    assert d.rest == b""
    assert d.feed(b"xyz") == b""
    assert d.rest == b"xyz"


def test_bare_lf_line_ends_are_tolerated():
    wire = b"5\nhello\n0\n\n"
    check_every_way(wire, b"hello")


def test_payload_may_contain_crlf_and_size_like_bytes():
    payload = b"0\r\n\r\n5\r\n"
    wire = b"8\r\n" + payload + b"\r\n0\r\n\r\n"
    check_every_way(wire, payload)


def test_empty_feed_is_harmless():
    d = ChunkedDecoder()
    assert d.feed(b"") == b""
    assert d.feed(b"2\r\n") == b""
    assert d.feed(b"") == b""
    assert d.feed(b"hi\r\n0\r\n\r\n") == b"hi"
    assert d.done is True


def test_size_line_of_exactly_4096_bytes_is_accepted_whole():
    line = b"5;" + b"e" * 4094
    assert len(line) == 4096
    d = ChunkedDecoder()
    assert d.feed(line) == b""  # buffered, not yet too long
    assert d.feed(b"\r\nhello\r\n0\r\n\r\n") == b"hello"
    assert d.done is True


# ------------------------------------------------------------------ errors


def raises_at_some_feed(wire: bytes, match: str) -> None:
    """Whole, at every split and byte by byte, feeding `wire` raises ChunkedError."""
    splits = list(every_split(wire)) + [[wire[i:i + 1] for i in range(len(wire))]]
    for pieces in splits:
        d = ChunkedDecoder()
        with pytest.raises(ChunkedError, match=match):
            for p in pieces:
                d.feed(p)
        assert d.done is False


@pytest.mark.parametrize("size", [b"xyz", b"5x", b"g", b"5 5", b"-5", b"+5", b"0x5", b"0X5", b"5.0",
                                  b"\xff", b"12345678901234567"])
def test_bad_chunk_size(size):
    raises_at_some_feed(size + b"\r\nhello\r\n0\r\n\r\n", "bad chunk-size line")


@pytest.mark.parametrize("line", [b"", b" ", b";ext=1", b"\t;x"])
def test_empty_size(line):
    raises_at_some_feed(line + b"\r\nhello\r\n0\r\n\r\n", "bad chunk-size line")


def test_bad_size_after_a_good_chunk():
    d = ChunkedDecoder()
    assert d.feed(b"2\r\nok\r\n") == b"ok"
    with pytest.raises(ChunkedError, match="bad chunk-size line b'zz'"):
        d.feed(b"zz\r\n")


def test_size_line_over_4096_bytes_without_newline():
    d = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="line is too long"):
        d.feed(b"1" * 4097)
    d = ChunkedDecoder()
    assert d.feed(b"5;" + b"a" * 4094) == b""  # 4096 bytes: still waiting
    with pytest.raises(ChunkedError, match="line is too long"):
        d.feed(b"a")
    raises_at_some_feed(b"5;" + b"a" * 4200, "line is too long")


def test_endless_size_line_fed_byte_by_byte_is_stopped():
    d = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="too long"):
        for _ in range(10_000):
            d.feed(b"0")


@pytest.mark.parametrize("after", [b"XY\r\n0\r\n\r\n", b"!\r\n0\r\n\r\n", b"\r\r\n0\r\n\r\n", b"\rX\n"])
def test_data_not_followed_by_crlf(after):
    raises_at_some_feed(b"5\r\nhello" + after, "does not end with CRLF")


def test_chunk_longer_than_its_size():
    raises_at_some_feed(b"3\r\nhello\r\n0\r\n\r\n", "does not end with CRLF")


def test_trailer_field_over_4096_bytes():
    d = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="line is too long"):
        d.feed(b"0\r\nX-Long: " + b"v" * 4100 + b"\r\n\r\n")
    raises_at_some_feed(b"0\r\nX-Long: " + b"v" * 4100 + b"\r\n\r\n", "line is too long")


# ------------------------------------------- the 4096-byte limit, at every split


def test_size_line_of_4096_bytes_is_accepted_at_every_split():
    line = b"5;" + b"e" * 4094
    assert len(line) == 4096
    check_every_way(line + b"\r\nhello\r\n0\r\n\r\n", b"hello")


def test_size_line_at_the_limit_split_between_cr_and_lf():
    line = b"5;" + b"e" * 4094  # 4096 bytes
    d = ChunkedDecoder()
    assert d.feed(line + b"\r") == b""
    assert d.feed(b"\nhello\r\n0\r\n\r\n") == b"hello"
    assert d.done is True


def test_size_line_of_4097_bytes_is_rejected_at_every_split():
    line = b"5;" + b"e" * 4095
    raises_at_some_feed(line + b"\r\nhello\r\n0\r\n\r\n", "line is too long")


def test_long_size_line_is_rejected_even_when_its_newline_comes_in_the_same_read():
    raises_at_some_feed(b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", "line is too long")


def test_trailer_line_of_4096_bytes_is_accepted_at_every_split():
    field = b"X-T: " + b"v" * 4091
    assert len(field) == 4096
    check_every_way(b"2\r\nhi\r\n0\r\n" + field + b"\r\n\r\n", b"hi")


def test_trailer_line_of_4097_bytes_is_rejected_at_every_split():
    field = b"X-T: " + b"v" * 4092
    raises_at_some_feed(b"2\r\nhi\r\n0\r\n" + field + b"\r\n\r\n", "line is too long")
