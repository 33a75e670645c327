"""Client values in log lines and messages: bounded and escaped, so a value
can neither flood the log (a 30 MB model name) nor forge a line (a `\\n`)."""
from __future__ import annotations

LOG_FIELD_LIMIT = 120  # characters of a value kept; the rest is counted, not written


def log_field(value: object, limit: int = LOG_FIELD_LIMIT) -> str:
    """`value` as one log token: at most `limit` characters of it, written as
    is when it is plain printable text without spaces, quotes or backslashes,
    else double-quoted with every control, non-ASCII, quote and backslash
    escaped; a cut value ends with `...(+N chars)`."""
    text = value if isinstance(value, str) else str(value)
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    if not (text.isascii() and text.isprintable()) or " " in text or '"' in text or "\\" in text or not text:
        text = '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return text + f"...(+{extra} chars)" if extra > 0 else text
