"""Segment files: the record framing, the encoder, and what the queue knows of each file.

A segment is ``<id>.seg`` (20-digit decimal id, increasing). It starts with an 8-byte
magic, then frames, little-endian::

    u32 length | u32 crc32(payload) | payload = msgpack [tag, time_ns, record]

A frame is written whole (one ``write`` per group commit), so a reader never sees half a
frame below the durable end; a frame cut at the end of a file can only be a torn write from
a crash (or disk corruption) and is detected by its length or CRC.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from kloghub import core

__all__ = [
    "FRAME",
    "HEADER_SIZE",
    "MAGIC",
    "Encoder",
    "Segment",
    "count_frames",
    "parse_segment_id",
    "segment_path",
]

MAGIC = b"KLGQ\x00\x00\x00\x01"
HEADER_SIZE = len(MAGIC)
FRAME = struct.Struct("<II")
_SUFFIX = ".seg"
_MAX_DEPTH = 64
_INT_MIN = -(2**63)
_INT_MAX = 2**64


def segment_path(directory: Path, segment_id: int) -> Path:
    return directory / f"{segment_id:020d}{_SUFFIX}"


def parse_segment_id(path: Path) -> int | None:
    """The id of a segment file name, or None for any other file."""
    if path.suffix != _SUFFIX or not path.stem.isdigit():
        return None
    return int(path.stem)


def _fallback(value: Any) -> Any:
    """msgpack ``default``: types msgpack does not know travel as their text."""
    return str(value)


def _sanitize(value: Any, depth: int = 0) -> Any:
    """A msgpack-safe copy of ``value``: lone surrogates escaped, huge ints as text."""
    if isinstance(value, str):
        result: Any = value.encode("utf-8", "backslashreplace").decode("utf-8")
    elif value is None or isinstance(value, bool | bytes | float):
        result = value
    elif isinstance(value, int):
        result = value if _INT_MIN <= value < _INT_MAX else str(value)
    elif depth > _MAX_DEPTH:
        result = "<nested too deeply>"
    elif isinstance(value, dict):
        result = {_sanitize(k, depth + 1): _sanitize(v, depth + 1) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        result = [_sanitize(v, depth + 1) for v in value]
    else:
        result = str(value)
    return result


class Encoder:
    """Frames events; one msgpack packer reused for every record (bytes stay ``bin``)."""

    def __init__(self) -> None:
        self._pack = msgpack.Packer(use_bin_type=True, default=_fallback).pack

    def encode(self, events: Iterable[core.Event]) -> tuple[bytes, int]:
        """The frames of ``events`` as one buffer, and how many records it holds."""
        parts: list[bytes] = []
        append = parts.append
        pack = self._pack
        header = FRAME.pack
        crc32 = zlib.crc32
        count = 0
        for event in events:
            item = (event.tag, event.time_ns, event.record)
            try:
                payload = pack(item)
            except (TypeError, ValueError, OverflowError):
                payload = pack(_sanitize(item))
            append(header(len(payload), crc32(payload)))
            append(payload)
            count += 1
        return b"".join(parts), count


class Segment:
    """The in-memory state of one segment file (never its records)."""

    __slots__ = (
        "acked",
        "deleted",
        "id",
        "inflight",
        "path",
        "planned",
        "planned_bytes",
        "records",
        "recovered",
        "sealed",
        "size",
        "skip",
        "total",
        "wfd",
    )

    def __init__(self, segment_id: int, path: Path, *, recovered: bool = False) -> None:
        self.id = segment_id
        self.path = path
        self.size = 0
        """Durable bytes on disk (magic included); 0 until the file exists."""
        self.records = 0
        """Durable records written in this run (unknown for a recovered segment)."""
        self.planned = 0
        """Records written or being written (``records`` plus the in-flight group)."""
        self.planned_bytes = HEADER_SIZE
        self.inflight = 0
        """Writes dispatched to the I/O thread and not yet completed."""
        self.sealed = recovered
        """The writer will not append to this segment any more."""
        self.recovered = recovered
        self.total: int | None = None
        """Record count, known once the reader went through the whole segment."""
        self.acked: list[list[int]] = []
        """Acknowledged record indexes as sorted, disjoint, merged ``[start, end)`` ranges."""
        self.skip: list[list[int]] = []
        """Ranges acknowledged before a restart: the reader does not hand them out again."""
        self.deleted = False
        self.wfd: int | None = None

    def add_ack(self, start: int, end: int) -> None:
        """Mark records ``[start, end)`` acknowledged (merging ranges; any order)."""
        ranges = self.acked
        if not ranges or start > ranges[-1][1]:
            ranges.append([start, end])
            return
        if start >= ranges[-1][0]:
            ranges[-1][1] = max(ranges[-1][1], end)
            return
        lo = bisect.bisect_left(ranges, start, key=lambda r: r[1])
        hi = bisect.bisect_right(ranges, end, key=lambda r: r[0])
        if lo < hi:
            ranges[lo:hi] = [[min(start, ranges[lo][0]), max(end, ranges[hi - 1][1])]]
        else:
            ranges.insert(lo, [start, end])

    def acked_through(self, total: int) -> bool:
        """Every record ``[0, total)`` is acknowledged."""
        if total <= 0:
            return True
        ranges = self.acked
        return bool(ranges) and ranges[0][0] <= 0 and ranges[0][1] >= total

    def acked_between(self, start: int, end: int) -> int:
        """How many records of ``[start, end)`` are acknowledged."""
        return sum(max(0, min(e, end) - max(s, start)) for s, e in self.acked)


def count_frames(path: Path, limit: int) -> int:
    """Valid frames in a segment file up to byte ``limit`` (stops at the first bad one)."""
    count = 0
    chunk_size = 1 << 20
    with path.open("rb") as file:
        file.seek(HEADER_SIZE)
        offset = HEADER_SIZE
        buf = b""
        pos = 0
        while True:
            if len(buf) - pos >= FRAME.size:
                length, crc = FRAME.unpack_from(buf, pos)
                end = pos + FRAME.size + length
                if end <= len(buf):
                    if length == 0 or zlib.crc32(memoryview(buf)[pos + FRAME.size : end]) != crc:
                        return count
                    count += 1
                    pos = end
                    continue
                need = end - len(buf)
            else:
                need = FRAME.size
            left = limit - offset
            if left <= 0:
                return count
            data = os.pread(file.fileno(), min(left, max(chunk_size, need)), offset)
            if not data:
                return count
            offset += len(data)
            buf = buf[pos:] + data
            pos = 0
