"""The JSON nesting limit: one MAX_DEPTH for what clients may send, under
what orjson can write, checked where client JSON is read."""
import threading

import orjson
import pytest

from app import ir
from app.errors import ProxyError
from app.jsonutil import _WRITE_DEPTH, MAX_DEPTH, TooDeep, dumps, loads_bounded, within_depth
from app.pipeline import decode_body


def lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def mixed(depth: int) -> str:
    """Objects and arrays alternating, with siblings at every level."""
    text = "1"
    for level in range(depth):
        text = f'{{"k":{text},"s":"x"}}' if level % 2 else f'[0,{text},"s"]'
    return text


def test_orjson_limits_this_module_relies_on():
    # If an orjson upgrade moves these, _WRITE_DEPTH (and the probe) must follow.
    orjson.dumps(orjson.loads(lists(_WRITE_DEPTH)))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(orjson.loads(lists(_WRITE_DEPTH + 1)))
    orjson.loads(lists(1024))
    with pytest.raises(orjson.JSONDecodeError, match="^depth limit exceeded"):
        orjson.loads(lists(1025))
    assert MAX_DEPTH + 8 < _WRITE_DEPTH  # room for what the proxy wraps around a client's value


@pytest.mark.parametrize("shape", [lists, objects, mixed])
def test_max_depth_is_read_one_more_is_too_deep(shape):
    assert loads_bounded(shape(MAX_DEPTH)) == orjson.loads(shape(MAX_DEPTH))
    for depth in (MAX_DEPTH + 1, 200, _WRITE_DEPTH, _WRITE_DEPTH + 1, 1024, 1025, 5000):
        with pytest.raises(TooDeep, match=f"nested deeper than {MAX_DEPTH} levels"):
            loads_bounded(shape(depth))


def test_what_is_read_can_always_be_written_inside_the_proxys_own_wrapping():
    wrapped = loads_bounded(mixed(MAX_DEPTH))
    for _ in range(8):  # body -> messages -> message -> content -> part -> input: more than any conversion adds
        wrapped = {"w": [wrapped]}
    assert dumps(wrapped)


def test_scalars_and_bad_json():
    assert loads_bounded("3") == 3 and loads_bounded('"x"') == "x"
    with pytest.raises(ValueError) as info:
        loads_bounded("[1,")
    assert not isinstance(info.value, TooDeep)


def test_probe_is_left_empty_and_is_per_thread():
    big = orjson.loads(mixed(MAX_DEPTH))
    assert within_depth(big)
    results = []

    def other():
        results.append((within_depth(orjson.loads(lists(MAX_DEPTH + 1))), within_depth([[1]])))
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert results == [(False, True)]
    from app.jsonutil import _probe
    assert _probe.slot == [None]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1025, 100_000])
def test_decode_body_refuses_deep_bodies_naming_the_body(depth):
    with pytest.raises(ProxyError) as info:
        decode_body(('{"model":"m","x":' + lists(depth) + "}").encode())
    assert (info.value.status, info.value.message) == (
        400, f"The request body nests arrays and objects deeper than {MAX_DEPTH} levels.")


def test_tool_arguments_are_bounded_like_a_body():
    assert ir.parse_arguments('{"a":' + lists(MAX_DEPTH - 1) + "}") == {"a": orjson.loads(lists(MAX_DEPTH - 1))}
    for depth in (MAX_DEPTH, 300, 2000):
        with pytest.raises(ValueError):
            ir.parse_arguments('{"a":' + lists(depth) + "}")
