"""log_field: client values in log lines, bounded and escaped."""
import pytest

from app.logfields import LOG_FIELD_LIMIT, log_field


@pytest.mark.parametrize("value,shown", [
    ("gpt-4o", "gpt-4o"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5@20250929"),
    ("a\nINFO forged line", '"a\\nINFO forged line"'),
    ("a\r\x00\x1b[31m", '"a\\r\\x00\\x1b[31m"'),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("é\u2028", '"\\xe9\\u2028"'),
    ("", '""'),
    (42, "42"),
])
def test_plain_values_as_is_others_quoted_and_escaped(value, shown):
    assert log_field(value) == shown


def test_long_values_are_cut_and_counted():
    assert log_field("x" * (LOG_FIELD_LIMIT + 5)) == "x" * LOG_FIELD_LIMIT + "...(+5 chars)"
    assert log_field("x" * LOG_FIELD_LIMIT) == "x" * LOG_FIELD_LIMIT
    assert log_field("\n" * 30_000_000, limit=3) == '"\\n\\n\\n"...(+29999997 chars)'


def test_no_output_has_a_line_break():
    for code in range(0x110000):
        if code in range(0xD800, 0xE000):
            continue
        assert "\n" not in log_field(chr(code)) and "\r" not in log_field(chr(code))
