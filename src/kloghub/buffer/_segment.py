"""Segment files: the record framing, the encoder, and what the queue knows of each file.

A segment is ``<id>.seg`` (20-digit decimal id, increasing). It starts with an 8-byte
magic, then frames, little-endian::

    u32 length | u32 crc32(payload) | payload

The payload is one of three kinds, told apart by the magic (a queue holds one kind):

- an event (``MAGIC``, the sink queues of sinks that need the document, the store):
  msgpack ``[tag, time_ns, record]``;
- an encoded event (``WIRE_MAGIC``, the sink queues of sinks that send bytes: the
  ``_bulk`` lines, the HEC event, the file line, made by the sink's ``encode`` before the
  queue): ``u8 0 | i64 time_ns | u16 tag length | u16 id length (0xffff: none) | tag |
  id | bytes``, handed out as a ``core.Encoded`` record without decoding the bytes; or
  ``u8 1 | msgpack [tag, time_ns, record]`` for an event the sink could not encode (its
  send then dead-letters it with the document, as it would have);
- a chunk (``CHUNK_MAGIC``, the agent's buffer): ``u16 header length | msgpack [tag,
  path, file_id, first, end, count] | entries``, the entries exactly as they go on the
  wire (a PackedForward body), so that popping a chunk decodes only its small header.

A frame is written whole (one ``write`` per group commit), so a reader never sees half a
frame below the durable end; a frame cut at the end of a file can only be a torn write from
a crash (or disk corruption) and is detected by its length or CRC.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import msgpack

from kloghub import core
from kloghub.buffer import _checksum

__all__ = [
    "CHUNK_MAGIC",
    "FRAME",
    "HEADER_SIZE",
    "MAGIC",
    "WIRE_MAGIC",
    "ChunkEncoder",
    "Encoder",
    "Segment",
    "WireEncoder",
    "count_frames",
    "decode_chunk",
    "decode_event",
    "decode_wire",
    "frame_counts",
    "parse_segment_id",
    "segment_path",
]

MAGIC = b"KLGQ\x00\x00\x00\x01"
CHUNK_MAGIC = b"KLGC\x00\x00\x00\x01"
WIRE_MAGIC = b"KLGQ\x00\x00\x00\x02"
WIRE_HEAD = struct.Struct("<BqHH")
_WIRE, _WIRE_EVENT = 0, 1
_NO_ID = 0xFFFF
HEADER_SIZE = len(MAGIC)
FRAME = struct.Struct("<II")
CHUNK_HEAD = struct.Struct("<H")
_SUFFIX = ".seg"
_MAX_DEPTH = 64
_INT_MIN = -(2**63)
_INT_MAX = 2**64
_crc32 = _checksum.crc32
"""The frames' CRC-32 (zlib's; compiled when the kernels are built)."""


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
        crc32 = _crc32
        count = 0
        for event in events:
            item = (event.tag, event.time_ns, event.record)
            try:
                payload = pack(item)
            except (TypeError, ValueError, OverflowError):
                payload = pack(_sanitize(item))
            append(header(len(payload), crc32(payload, 0)))
            append(payload)
            count += 1
        return b"".join(parts), count


class WireEncoder:
    """Frames encoded events: ``encode`` (the sink's) makes the bytes of each event once."""

    def __init__(self, encode: Callable[[core.Event], bytes]) -> None:
        self._encode = encode
        self._events = Encoder()
        self._tags: dict[str, bytes] = {}

    def encode(self, events: Iterable[core.Event]) -> tuple[bytes, int]:
        """The frames of ``events`` as one buffer, and how many records it holds."""
        parts: list[bytes] = []
        append = parts.append
        encode, head, header, crc32 = self._encode, WIRE_HEAD.pack, FRAME.pack, _crc32
        tags = self._tags
        count = 0
        for event in events:
            count += 1
            record = event.record
            try:
                if isinstance(record, core.Encoded):
                    data, doc_id = record.data, record.id
                else:
                    data = encode(event)
                    doc_id = record.get("id")
                tag = tags.get(event.tag)
                if tag is None:
                    tag = event.tag.encode()
                    if len(tags) < 4096:
                        tags[event.tag] = tag
                if doc_id is None:
                    ident, id_len = b"", _NO_ID
                else:
                    ident = (doc_id if type(doc_id) is str else str(doc_id)).encode()
                    id_len = len(ident) if len(ident) < _NO_ID else _NO_ID + 1  # struct.error
                prefix = head(_WIRE, event.time_ns, len(tag), id_len) + tag + ident
            except Exception:  # noqa: BLE001 - kept as the event; the sink dead-letters it
                frame, _ = self._events.encode((event,))
                payload = bytes((_WIRE_EVENT,)) + frame[FRAME.size :]
                append(header(len(payload), crc32(payload, 0)))
                append(payload)
                continue
            append(header(len(prefix) + len(data), crc32(data, crc32(prefix, 0))))
            append(prefix)
            append(data)
        return b"".join(parts), count


class ChunkEncoder:
    """Frames chunks: a small msgpack header, then the entries bytes untouched."""

    def __init__(self) -> None:
        self._pack = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack

    def head(self, chunk: core.Chunk) -> bytes:
        """The frame of ``chunk`` up to its entries, which follow it unchanged."""
        head: bytes = self._pack(
            (chunk.tag, chunk.path, chunk.file_id, chunk.first, chunk.end, chunk.count)
        )
        length = CHUNK_HEAD.size + len(head) + len(chunk.entries)
        prefix = CHUNK_HEAD.pack(len(head)) + head
        crc = _crc32(chunk.entries, _crc32(prefix, 0))
        return FRAME.pack(length, crc) + prefix

    def encode(self, chunk: core.Chunk) -> bytes:
        """The whole frame of ``chunk`` (tests and tools; the queue writes head + entries)."""
        return self.head(chunk) + chunk.entries


def decode_chunk(buf: bytes, start: int, stop: int, finalizer: core.Finalizer | None) -> core.Chunk:
    """The chunk framed in ``buf[start:stop]`` (raises ValueError or msgpack errors when it
    is not one); the entries are copied once, nothing else is decoded."""
    (hlen,) = CHUNK_HEAD.unpack_from(buf, start)
    head_end = start + CHUNK_HEAD.size + hlen
    if head_end > stop:
        raise ValueError("chunk header longer than its frame")
    tag, path, file_id, first, last, count = msgpack.unpackb(
        memoryview(buf)[start + CHUNK_HEAD.size : head_end],
        raw=False,
        unicode_errors="surrogateescape",
    )
    return core.Chunk(
        tag,
        buf[head_end:stop],
        count,
        path=path,
        file_id=file_id,
        first=first,
        end=last,
        finalizer=finalizer,
    )


def decode_event(buf: bytes, start: int, stop: int, finalizer: core.Finalizer) -> core.Event:
    """The event framed in ``buf[start:stop]`` (raises msgpack errors when it is not one)."""
    tag, time_ns, record = msgpack.unpackb(buf[start:stop], raw=False, strict_map_key=False)
    return core.Event(tag, time_ns, record, finalizer, stop - start)


def decode_wire(buf: bytes, start: int, stop: int, finalizer: core.Finalizer) -> core.Event:
    """The encoded event framed in ``buf[start:stop]``: a ``core.Encoded`` record (or the
    event its sink could not encode); raises ValueError (or msgpack errors) otherwise."""
    kind = buf[start]
    if kind == _WIRE:
        _, time_ns, tag_len, id_len = WIRE_HEAD.unpack_from(buf, start)
        pos = start + WIRE_HEAD.size
        tag = buf[pos : pos + tag_len].decode()
        pos += tag_len
        doc_id = None
        if id_len != _NO_ID:
            doc_id = buf[pos : pos + id_len].decode()
            pos += id_len
        if pos > stop:
            raise ValueError("encoded event header longer than its frame")
        # Event.record is typed as the dict; the sinks behind this queue check for Encoded.
        record = cast("dict[str, Any]", core.Encoded(doc_id, buf[pos:stop]))
        return core.Event(tag, time_ns, record, finalizer, stop - start)
    if kind == _WIRE_EVENT:
        return decode_event(buf, start + 1, stop, finalizer)
    raise ValueError(f"unknown encoded event kind {kind}")


class Segment:
    """The in-memory state of one segment file (never its records)."""

    __slots__ = (
        "acked",
        "counts",
        "deleted",
        "id",
        "inflight",
        "magic",
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
        self.counts: list[int] = []
        """Entries in each durable frame written in this run (chunk queues only)."""
        self.deleted = False
        self.wfd: int | None = None
        self.magic = b""
        """The kind of its frames (``MAGIC``, ``WIRE_MAGIC``, ``CHUNK_MAGIC``); set when the
        segment is created or recovered."""

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

    def unacked_sum(self, counts: list[int], start: int) -> int:
        """The sum of ``counts[i]`` over the frames ``i >= start`` not acknowledged."""
        total, pos = 0, start
        for s, e in self.acked:
            if e <= pos:
                continue
            if s > pos:
                total += sum(counts[pos:s])
            pos = max(pos, e)
        return total + sum(counts[pos:])

    def acked_between(self, start: int, end: int) -> int:
        """How many records of ``[start, end)`` are acknowledged."""
        return sum(max(0, min(e, end) - max(s, start)) for s, e in self.acked)


def count_frames(path: Path, limit: int) -> int:
    """Valid frames in a segment file up to byte ``limit`` (stops at the first bad one)."""
    return len(frame_counts(path, limit, chunks=False))


def frame_counts(path: Path, limit: int, *, chunks: bool) -> list[int]:
    """Entries in each valid frame of a segment file up to byte ``limit`` (1 per event;
    a chunk's count from its header), stopping at the first bad frame."""
    counts: list[int] = []
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
                    start = pos + FRAME.size
                    if length == 0 or _crc32(memoryview(buf)[start:end], 0) != crc:
                        return counts
                    if chunks:
                        try:
                            counts.append(decode_chunk(buf, start, end, None).count)
                        except Exception:  # noqa: BLE001 - undecodable: skipped when read
                            counts.append(0)
                    else:
                        counts.append(1)
                    pos = end
                    continue
                need = end - len(buf)
            else:
                need = FRAME.size
            left = limit - offset
            if left <= 0:
                return counts
            data = os.pread(file.fileno(), min(left, max(chunk_size, need)), offset)
            if not data:
                return counts
            offset += len(data)
            buf = buf[pos:] + data
            pos = 0
