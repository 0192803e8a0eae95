"""The collector's compiled path: PackedForward entries → sink-queue frames, one request
slice at a time, without a Python object per record.

The kernel (``kloghub._native.BulkDocuments``, native/src/documents.rs) reads each entry
and, for the records of kloghub's agent layout (a ``log`` text, ``kloghub.offset``), splices
the record's time, line and offset into the *template* of its shape — everything else in
the entry, which is the same for a container's stream: the pod metadata, the file, the
stream, the flags. The template is made here, by the Python path itself: the normalizer
and ``sinks._bulk.encode`` on a probe of the entry whose time, line, offset and
``event.ingested`` are marker values, cut at the markers (:func:`template`). So the
frames are byte for byte what the Python path (:class:`~kloghub.normalize.Normalizer`,
the ``_bulk`` encoding, the queue's framing) makes of the same request; the property test
``tests/collector/test_fastpath.py`` holds the two to it.

Records the kernel does not take — audit events, JSON lines (when JSON is parsed), times
out of range, lines with invalid UTF-8, records of other layouts (Fluent Bit, fluent-logger)
— come back as byte ranges and go through the Python path, in the same slice and the same
queue push (after the kernel's frames).

It applies when every sink sends ``_bulk`` lines (Elasticsearch, OpenSearch, ``null:``) and
the detection rules read only audit documents (container documents made here are never
seen by the detection stage); otherwise, or without the compiled extension, or with
``KLOGHUB_KERNELS=python``, every request takes the Python path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from kloghub import buffer, core, kernels, normalize, sinks, transport

if TYPE_CHECKING:
    from kloghub import detect

__all__ = ["FastPath", "template"]

_SLICE_BYTES = transport.protocol.SLICE_BYTES
_SCOPES_MAX = 4096

# Marker values of a probe record; each must appear in the encoded document exactly as
# many times as the template has slots for it (else the shape is left to Python).
_TIME_NS = 2_000_000_000 * 1_000_000_000 + 123_456_789
_LINE = "\ue000"
_INGESTED = "\ue001"
_OFFSET = 0xABCDEF12345
_SLOT_TIMESTAMP, _SLOT_INGESTED, _SLOT_MESSAGE, _SLOT_OFFSET, _SLOT_OFFSET_HEX = range(5)
_OFFSET_HEX = f"{_OFFSET:012x}"
_MARKERS = {
    normalize.Rfc3339(9)(_TIME_NS).encode(): _SLOT_TIMESTAMP,
    _INGESTED.encode(): _SLOT_INGESTED,
    _LINE.encode(): _SLOT_MESSAGE,
    str(_OFFSET).encode(): _SLOT_OFFSET,
    _OFFSET_HEX.encode(): _SLOT_OFFSET_HEX,
}
_MARKER = re.compile(b"|".join(re.escape(m) for m in _MARKERS))
_EXPECTED = {_SLOT_TIMESTAMP: 1, _SLOT_INGESTED: 1, _SLOT_OFFSET: 1, _SLOT_OFFSET_HEX: 1}

Template = tuple[bytes, bytes, list[bytes], list[int]]


def template(
    normalizer: normalize.Normalizer, origin: core.Origin | None, tag: str, entry: bytes
) -> Template | None:
    """The template of ``entry``'s shape — ``(index, id prefix, pieces, slots)`` — or None
    when its document is not the same for every time, line and offset."""
    try:
        (event,) = next(transport.protocol.packed_slices(tag, entry))
    except (transport.ProtocolError, StopIteration, ValueError):
        return None
    record = dict(event.record)
    kh = record.get("kloghub")
    if type(kh) is not dict or type(record.get("log")) is not str:
        return None
    record["log"] = _LINE
    record["kloghub"] = {**kh, "offset": _OFFSET}
    probe = core.Event(event.tag, _TIME_NS, record)
    doc = normalizer.shape_document(probe, origin, _INGESTED)
    if doc is None or doc.time_ns != _TIME_NS:
        return None
    doc_id = doc.record.get("id")
    if type(doc_id) is not str or not doc_id.endswith(_OFFSET_HEX):
        return None
    data = sinks.bulk_encode(doc)
    pieces: list[bytes] = []
    slots: list[int] = []
    counts = dict.fromkeys(_MARKERS.values(), 0)
    start = 0
    for match in _MARKER.finditer(data):
        slot = _MARKERS[match.group()]
        counts[slot] += 1
        pieces.append(data[start : match.start()])
        slots.append(slot)
        start = match.end()
    pieces.append(data[start:])
    if any(counts[slot] != n for slot, n in _EXPECTED.items()) or counts[_SLOT_MESSAGE] < 1:
        return None
    return doc.tag.encode(), doc_id[: -len(_OFFSET_HEX)].encode(), pieces, slots


class FastPath:
    """Stores PackedForward requests through the kernel (see the module docstring)."""

    def __init__(
        self,
        normalizer: normalize.Normalizer,
        queues: Sequence[buffer.DiskQueue],
        parse_json: bool,
        detections: detect.Stage | None = None,
    ) -> None:
        self._normalize = normalizer
        self._queues = list(queues)
        self._parse_json = parse_json
        self._detect = detections
        cls = kernels.bulk_documents_class()
        assert cls is not None, "FastPath.applies() said no"
        self._kernel = cls(parse_json, self._template)
        self._origin: core.Origin | None = None
        self._scopes: dict[core.Origin, bytes] = {}

    @staticmethod
    def applies(queues: Iterable[buffer.DiskQueue], detections: detect.Stage | None) -> bool:
        """Whether the compiled path makes what these queues store (and the rules see all
        they read)."""
        if kernels.bulk_documents_class() is None:
            return False
        if detections is not None and not detections.detector.audit_only:
            return False
        queues = list(queues)
        return bool(queues) and all(q.codec == sinks.BULK_CODEC for q in queues)

    def _template(self, tag: str, entry: bytes) -> Template | None:
        """Called by the kernel, during ``encode``, for the sender being read."""
        return template(self._normalize, self._origin, tag, entry)

    def _scope(self, origin: core.Origin) -> bytes:
        """What of the sender its documents depend on (``Normalizer._attest``, the ids)."""
        scope = self._scopes.get(origin)
        if scope is None:
            if len(self._scopes) >= _SCOPES_MAX:
                self._scopes.clear()
            parts = (origin.method, origin.identity or "", origin.node or "", origin.namespace)
            scope = self._scopes[origin] = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return scope

    async def deliver(self, tag: str, data: bytes, origin: core.Origin) -> int:
        """Stores the entries of one request (``transport.DeliverPacked``); returns the
        number of records."""
        kernel = self._kernel
        scope = self._scope(origin)
        if len(data) > _SLICE_BYTES and not kernel.whole(data):
            transport.protocol.check_entries(data)  # raises the ProtocolError
        count = 0
        start = 0
        while start < len(data):
            ingested = self._normalize.ingested().encode()
            self._origin = origin
            frames, records, end, others = kernel.encode(
                tag, data, start, _SLICE_BYTES, ingested, scope
            )
            if end < 0:
                # Not msgpack from some entry on (in a request of one slice: larger ones
                # were checked whole): refused before anything of the slice is stored.
                transport.protocol.check_entries(data[start:])
                raise transport.ProtocolError("invalid msgpack in packed entries")
            docs: list[core.Event] = []
            if others:
                rest = b"".join(data[first:last] for first, last in others)
                for events in transport.protocol.packed_slices(tag, rest, len(rest)):
                    docs.extend(self._normalize(event, origin) for event in events)
            count += records + len(docs)
            alerts = self._detect(docs) if self._detect is not None and docs else None
            if alerts:
                docs.extend(alerts)
            await self._push(frames, records, docs)
            if alerts:
                assert self._detect is not None
                self._detect.notify(alerts)
            start = end
        return count

    async def _push(self, frames: bytes, records: int, docs: list[core.Event]) -> None:
        queues = self._queues
        if len(queues) == 1:
            await queues[0].push_encoded(frames, records, docs)
        else:
            await asyncio.gather(*(q.push_encoded(frames, records, docs) for q in queues))
