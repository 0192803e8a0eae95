"""JSON application logs: the well-known keys become ECS fields, the rest is kept as is.

``level`` / ``severity`` / ``log.level`` → ``log.level`` (pino's numeric levels by name),
``msg`` / ``message`` → ``message``, ``error`` / ``err`` → ``error.message`` (text) or
``error.{message,type,code,stack_trace}`` (object), ``stack`` / ``stack_trace`` /
``stacktrace`` → ``error.stack_trace``; every other key stays under the configured target
(mapped ``flattened`` / ``flat_object``, so no application can cause a mapping conflict).

A line stays text when it is not a JSON object, or when what would go under the target
breaks the limits of those field types: nesting deeper than :data:`MAX_DEPTH` or a key or
string longer than :data:`MAX_TEXT` characters (Lucene refuses terms over 32 KiB).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "MAX_TEXT", "AppLog", "from_object", "parse", "within_limits"]

MAX_DEPTH = 16
MAX_TEXT = 8191

_LEVEL_KEYS = ("level", "severity", "log.level")
_MESSAGE_KEYS = ("msg", "message")
_ERROR_KEYS = ("error", "err")
_STACK_KEYS = ("stack", "stack_trace", "stacktrace")
_ERROR_FIELDS = (
    (("message", "msg"), "message"),
    (("type", "kind", "name"), "type"),
    (("code",), "code"),
    (("stack", "stack_trace", "stacktrace"), "stack_trace"),
)
_PINO_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
_SCALARS = (str, int, float)


class AppLog:
    """What a JSON line gave: the ECS values and the remaining keys."""

    __slots__ = ("error", "level", "message", "rest")

    def __init__(
        self,
        message: str | None,
        level: str | None,
        error: dict[str, Any] | None,
        rest: dict[str, Any],
    ) -> None:
        self.message = message
        self.level = level
        self.error = error
        self.rest = rest


def _level(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return value if value else None
    if kind is int:
        return _PINO_LEVELS.get(value, str(value))
    if kind is float:
        return str(value)
    return None


def _as_text(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int or kind is float:
        return str(value)
    return None


def within_limits(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_TEXT
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        return all(
            len(key) <= MAX_TEXT and within_limits(item, depth + 1) for key, item in value.items()
        )
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        return all(within_limits(item, depth + 1) for item in value)
    return True


def _error_from(value: Any, error: dict[str, Any], rest: dict[str, Any], key: str) -> None:
    text = _as_text(value)
    if text is not None:
        if "message" in error:
            rest[key] = value
        else:
            error["message"] = text
        return
    if type(value) is not dict:
        rest[key] = value
        return
    left = dict(value)
    for names, field in _ERROR_FIELDS:
        for name in names:
            if name in left and field not in error:
                text = _as_text(left[name])
                if text is not None:
                    error[field] = text
                    del left[name]
                    break
    if left:
        rest[key] = left


def parse(line: str) -> AppLog | None:
    """The ECS view of a JSON application log line, or None when it stays text."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    # Only a long or deeply bracketed line can break the limits: skip the walk otherwise.
    check = len(line) > MAX_TEXT or line.count("{") + line.count("[") > MAX_DEPTH
    return from_object(obj, check)


def from_object(obj: dict[str, Any], check: bool = True) -> AppLog | None:
    """The ECS view of a decoded JSON object (taken apart: ``obj`` becomes the rest)."""
    rest = obj
    message = level = None
    for key in _MESSAGE_KEYS:
        value = rest.get(key)
        if type(value) is str:
            message = value
            del rest[key]
            break
    for key in _LEVEL_KEYS:
        if key in rest:
            level = _level(rest[key])
            if level is not None:
                del rest[key]
                break
    error: dict[str, Any] = {}
    for key in _ERROR_KEYS:
        if key in rest:
            _error_from(rest.pop(key), error, rest, key)
    for key in _STACK_KEYS:
        if key in rest and "stack_trace" not in error:
            text = _as_text(rest[key])
            if text is not None:
                error["stack_trace"] = text
                del rest[key]
    if check and not within_limits(rest):
        return None
    return AppLog(message, level, error or None, rest)
