"""Docker json-file lines: ``{"log": "...\\n", "stream": "stdout", "time": "...Z"}``.

A ``log`` without its trailing newline is a partial: docker splits long lines into
16 KiB pieces and only the last one ends with ``\\n``.
"""

from __future__ import annotations

from kloghub.parse import _text, _timestamps

__all__ = ["STREAMS", "parse_docker"]

STREAMS: dict[str, str] = {"stdout": "stdout", "stderr": "stderr"}


def parse_docker(line: bytes) -> tuple[int | None, str, str, bool] | None:
    """``(time_ns or None, stream, log, invalid_utf8)`` of a json-file line, or ``None``.

    A missing or unknown ``stream`` reads as ``stdout``; a missing or unreadable ``time``
    gives ``None`` (the caller uses the read time).
    """
    loaded = _text.load_json(line)
    if loaded is None:
        return None
    obj, invalid = loaded
    if type(obj) is not dict:
        return None
    log = obj.get("log")
    if type(log) is not str:
        return None
    stream = obj.get("stream")
    stream = STREAMS.get(stream, "stdout") if type(stream) is str else "stdout"
    when = obj.get("time")
    time_ns = None
    if type(when) is str and when.isascii():
        time_ns = _timestamps.parse_rfc3339(when.encode())
    return time_ns, stream, log, invalid
