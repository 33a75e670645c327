"""Which model names a client may send: the one rule, checked by every
frontend's parse_request before anything is routed, logged or sent.

A model id is 1-256 characters of ASCII letters, digits and `. _ : / @ + -`,
in `/`-separated parts none of which is empty, `.` or `..`. That covers the
ids providers publish (`gpt-4o-2024-08-06`, `claude-sonnet-4-5@20250929`,
`anthropic.claude-3-sonnet-20240229-v1:0`, `meta-llama/llama-3.1-8b-instruct`,
`models/gemini-2.5-flash`, `ibm/granite-3-8b-instruct`, `llama3.1:8b`) and
keeps out what could change an upstream request or a log line: spaces,
controls, `? # % \\`, quotes, non-ASCII, path climbing. Values are still
percent-encoded when they go into a URL (app/upstream/urls.py); this rule is
the first of the two walls.
"""
from __future__ import annotations

import re

from app.errors import ProxyError, invalid

MAX_MODEL_ID = 256
_CHAR = r"[A-Za-z0-9._:@+\-]"
_PART = rf"(?!\.\.?(?:/|\Z)){_CHAR}+"  # a part, but not "." or ".."
_MODEL_ID = re.compile(rf"{_PART}(?:/{_PART})*\Z")
_ALLOWED = "ASCII letters, digits and . _ : / @ + -"


def check_model_id(value: str, param: str = "model") -> str:
    """`value` when it is a valid model id, else the client's 400 naming `param`."""
    if len(value) <= MAX_MODEL_ID and _MODEL_ID.match(value):
        return value
    raise _refusal(value, param)


def _refusal(value: str, param: str) -> ProxyError:
    # The message never echoes the value: it may be megabytes long or carry line breaks.
    if not value:
        return invalid(f"'{param}' must not be empty.", param)
    if len(value) > MAX_MODEL_ID:
        return invalid(f"'{param}' is {len(value)} characters long; a model id has at most {MAX_MODEL_ID}.", param)
    bad = re.search(rf"[^{_CHAR[1:-1]}/]", value)
    if bad is not None:
        return invalid(f"'{param}' contains the character U+{ord(bad.group()):04X} at position {bad.start()}; "
                       f"a model id has only {_ALLOWED}.", param)
    return invalid(f"'{param}' has an empty, '.' or '..' part between slashes, which a model id may not have.",
                   param)
