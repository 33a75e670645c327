"""JSON in and out of the proxy: orjson (compact, fast) behind two names, so
the hot path has one serializer and tests can compare bytes."""
from __future__ import annotations

from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (no spaces), UTF-8, non-ASCII kept as is."""
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError is one) on bad input."""
    return orjson.loads(data)
