"""Records as NDJSON lines: the record itself plus ``@timestamp`` and ``tag``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from kloghub import core

__all__ = ["encode", "encode_document", "rfc3339_ns"]


def rfc3339_ns(time_ns: int) -> str:
    """``2026-11-27T06:20:43.123456789Z`` (nanoseconds kept)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def encode(event: core.Event) -> bytes:
    """One NDJSON line (with its newline) for ``event``."""
    doc = {"@timestamp": rfc3339_ns(event.time_ns), "tag": event.tag, **event.record}
    return orjson.dumps(doc, default=_default, option=orjson.OPT_APPEND_NEWLINE)


DOCUMENT_CODEC = "ndjson-document/1"
"""What :func:`encode_document` makes (the collector's ``file:`` and ``stdout:`` sinks)."""


def encode_document(event: core.Event) -> bytes:
    """One NDJSON line for a document event (``record = {"id", "doc"}``): the document
    with its id as ``_id``."""
    doc = {"_id": event.record["id"], **event.record["doc"]}
    return orjson.dumps(doc, default=_default, option=orjson.OPT_APPEND_NEWLINE)
