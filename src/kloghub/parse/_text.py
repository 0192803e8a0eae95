"""Plain text (node logs) and JSON lines (the API server's audit log).

Text lines have no framing: the message is the line. When a line starts with an RFC 3339
timestamp (rsyslog's high-precision format, journald's ``short-iso``), that is its time.
Audit lines are JSON objects; their time is the ``stageTimestamp`` (else the
``requestReceivedTimestamp``, else a ``time``/``timestamp`` field of wrapped formats).
"""

from __future__ import annotations

from typing import Any

import orjson

from kloghub.parse import _timestamps

__all__ = ["JSON_TIME_KEYS", "json_time", "leading_time", "load_json"]

JSON_TIME_KEYS = ("stageTimestamp", "requestReceivedTimestamp", "time", "timestamp")
"""Fields tried in order for the time of a JSON line."""


def leading_time(line: bytes) -> int | None:
    """Epoch nanoseconds of an RFC 3339 timestamp that starts ``line``, or ``None``."""
    if len(line) < 20 or line[4] != 45 or line[7] != 45 or not line[:4].isdigit():
        return None
    end = line.find(b" ", 19, 48)
    return _timestamps.parse_rfc3339(line[:end] if end > 0 else line[:48])


def load_json(line: bytes) -> tuple[Any, bool] | None:
    """The JSON value of ``line`` and whether its bytes were invalid UTF-8, or ``None``."""
    try:
        return orjson.loads(line), False
    except orjson.JSONDecodeError:
        pass
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return orjson.loads(line.decode("utf-8", "replace")), True
        except orjson.JSONDecodeError:
            return None
    return None


def json_time(obj: Any) -> int | None:
    """The time carried by a decoded JSON line (see ``JSON_TIME_KEYS``), or ``None``."""
    if type(obj) is not dict:
        return None
    for key in JSON_TIME_KEYS:
        value = obj.get(key)
        if type(value) is str and value.isascii():
            parsed = _timestamps.parse_rfc3339(value.encode())
            if parsed is not None:
                return parsed
    return None
