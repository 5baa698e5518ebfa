"""JSON encoding of stored documents: orjson where it can (fast), the standard library where it
cannot (integers beyond 64 bits). Pure: no I/O."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value``; datetimes and other objects as their text."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)
    except TypeError:
        return json.dumps(value, default=str, separators=(",", ":")).encode()


def json_dumps(value: Any) -> str:
    """JSON text of ``value``."""
    return json_bytes(value).decode()


def json_loads(data: Any) -> Any:
    """Parse JSON text. SQLite may hand back a stored scalar already converted (a JSON column
    has numeric affinity), so anything that is not text is returned as it is."""
    if not isinstance(data, str | bytes | bytearray | memoryview):
        return data
    return orjson.loads(data)
