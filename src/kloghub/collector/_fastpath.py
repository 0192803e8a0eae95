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

JSON lines (when JSON is parsed) are read by the kernel too (``native/src/applog.rs``, the
specification being ``normalize._applog``): their message, level, error and other keys go
into slots of the template that a second probe, with a JSON line, shows the place of.

Records the kernel does not take — audit events, JSON lines serde_json refuses, times out
of range, lines with invalid UTF-8, records of other layouts (Fluent Bit, fluent-logger)
— come back as byte ranges and go through the Python path, in the same slice and the same
queue push (after the kernel's frames).

It applies when every sink stores the same encoding of the data stream, the id and the
document alone — ``_bulk`` lines (Elasticsearch, OpenSearch, ``null:``) or document lines
(``file:``, ``stdout:``) — and
the detection rules read only audit documents (container documents made here are never
seen by the detection stage); otherwise, or without the compiled extension, or with
``KLOGHUB_KERNELS=python``, every request takes the Python path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import orjson

from kloghub import buffer, core, kernels, normalize, outputs, runtime, sinks, transport

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
_LEVEL, _ERROR, _REST = "\ue002", "\ue003", "\ue004"
_OFFSET = 0xABCDEF12345
_OFFSET_HEX = f"{_OFFSET:012x}"
# The slots (native/src/documents.rs).
_TIMESTAMP, _INGESTED_AT, _MESSAGE, _OFFSET_DEC, _OFFSET_ID, _ORIGINAL, _APP, _LOG_LEVEL = range(8)
_MARKERS = {
    normalize.Rfc3339(9)(_TIME_NS).encode(): _TIMESTAMP,
    _INGESTED.encode(): _INGESTED_AT,
    _LINE.encode(): _MESSAGE,
    str(_OFFSET).encode(): _OFFSET_DEC,
    _OFFSET_HEX.encode(): _OFFSET_ID,
    # stand-ins of the JSON probe's segments (0xff is never in UTF-8)
    b"\xff\x05": _ORIGINAL,
    b"\xff\x06": _APP,
    b"\xff\x07": _LOG_LEVEL,
}
_MARKER = re.compile(b"|".join(re.escape(m) for m in _MARKERS))
_ONCE = (_TIMESTAMP, _INGESTED_AT, _OFFSET_DEC, _OFFSET_ID)
_JSON_LINE = orjson.dumps(
    {"message": _LINE, "level": _LEVEL, "error": _ERROR, "zz": _REST}
).decode()
_LEVEL_SEGMENT = b'"level":' + orjson.dumps(_LEVEL) + b","
_ORIGINAL_SEGMENT = orjson.dumps(_JSON_LINE)[1:-1]

Template = tuple[bytes, bytes, list[bytes], list[int], bytes | None]
Encode = Callable[[core.Event], bytes]

_ENCODINGS: dict[str, Encode] = {
    sinks.BULK_CODEC: sinks.bulk_encode,
    outputs.DOCUMENT_CODEC: outputs.encode_document,
}
"""The queue encodings the kernel writes: those made of the data stream, the id and the
document alone (a HEC event's ``time`` is another rendering of the time: not one of them)."""


def _document(
    normalizer: normalize.Normalizer,
    origin: core.Origin | None,
    event: core.Event,
    line: str,
    encode: Encode,
) -> tuple[str, str, bytes] | None:
    """``(index, id, _bulk bytes)`` of the probe of ``event`` with ``line`` and the marker
    time and offset, or None when its document does not take them as the template needs."""
    record = dict(event.record)
    record["log"] = line
    record["kloghub"] = {**record["kloghub"], "offset": _OFFSET}
    doc = normalizer.shape_document(core.Event(event.tag, _TIME_NS, record), origin, _INGESTED)
    if doc is None or doc.time_ns != _TIME_NS:
        return None
    doc_id = doc.record.get("id")
    if type(doc_id) is not str or not doc_id.endswith(_OFFSET_HEX):
        return None
    return doc.tag, doc_id, encode(doc)


def _cut(data: bytes) -> tuple[list[bytes], list[int]] | None:
    """The pieces and slots of ``data`` cut at the markers, if each is there as often as a
    template has it."""
    pieces: list[bytes] = []
    slots: list[int] = []
    start = 0
    for match in _MARKER.finditer(data):
        pieces.append(data[start : match.start()])
        slots.append(_MARKERS[match.group()])
        start = match.end()
    pieces.append(data[start:])
    if any(slots.count(slot) != 1 for slot in _ONCE) or _MESSAGE not in slots:
        return None
    return pieces, slots


def _render_plain(pieces: list[bytes], slots: list[int]) -> bytes:
    """What a template makes of the probe's plain line (for checking it)."""
    values = {slot: marker for marker, slot in _MARKERS.items()}
    values[_ORIGINAL], values[_APP], values[_LOG_LEVEL] = _LINE.encode(), b"", b""
    return b"".join(p + values[s] for p, s in zip(pieces, slots, strict=False)) + pieces[-1]


def template(
    normalizer: normalize.Normalizer,
    origin: core.Origin | None,
    tag: str,
    entry: bytes,
    encode: Encode = sinks.bulk_encode,
) -> Template | None:
    """The template of ``entry``'s shape — ``(index, id prefix, pieces, slots, target
    key)`` — or None when its document is not the same for every time, line and offset.

    Made of two probes: the entry with a plain marker line, and with a JSON line that has
    a message, a level, an error and one other key. When cutting the JSON probe's segments
    out of its document gives the plain probe's document, the template has the slots of
    JSON lines too (``target key``: the bytes before the JSON target's object); otherwise
    JSON lines of this shape are left to Python.
    """
    try:
        (event,) = next(transport.protocol.packed_slices(tag, entry))
    except (transport.ProtocolError, StopIteration, ValueError):
        return None
    if type(event.record.get("kloghub")) is not dict or type(event.record.get("log")) is not str:
        return None
    plain = _document(normalizer, origin, event, _LINE, encode)
    if plain is None or plain[2].count(b"\xff"):
        return None
    index, doc_id, data = plain
    cut = _cut(data)
    if cut is None:
        return None
    pieces, slots = cut
    target_key = None
    target = normalizer.json_target
    json = (
        _document(normalizer, origin, event, _JSON_LINE, encode) if normalizer.parse_json else None
    )
    if json is not None and len(target) == 1:
        key = b"," + orjson.dumps(target[0]) + b":"
        app = b',"error":{"message":' + orjson.dumps(_ERROR) + b"}" + key
        app += b'{"zz":' + orjson.dumps(_REST) + b"}"
        jdata = json[2]
        originals = slots.count(_MESSAGE) - 1
        if jdata.count(app) == 1 and jdata.count(_LEVEL_SEGMENT) == 1:
            jdata = jdata.replace(app, b"\xff\x06").replace(_LEVEL_SEGMENT, b"\xff\x07")
            if jdata.count(_ORIGINAL_SEGMENT) == originals:
                jcut = _cut(jdata.replace(_ORIGINAL_SEGMENT, b"\xff\x05"))
                if jcut is not None and _render_plain(*jcut) == data:
                    pieces, slots = jcut
                    target_key = key
    return index.encode(), doc_id[: -len(_OFFSET_HEX)].encode(), pieces, slots, target_key


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
        self._encode = (
            _ENCODINGS.get(self._queues[0].codec, sinks.bulk_encode)
            if queues
            else sinks.bulk_encode
        )
        self._parse_json = parse_json
        self._detect = detections
        cls = kernels.bulk_documents_class()
        assert cls is not None, "FastPath.applies() said no"
        self._kernel = cls(parse_json, self._template)
        self._origin: core.Origin | None = None
        self._generation = normalizer.metadata_generation
        self._scopes: dict[core.Origin, bytes] = {}
        self._compiled = runtime.metrics.KERNEL_RECORDS.labels(path="compiled")
        self._python = runtime.metrics.KERNEL_RECORDS.labels(path="python")

    @staticmethod
    def applies(queues: Iterable[buffer.DiskQueue], detections: detect.Stage | None) -> bool:
        """Whether the compiled path makes what these queues store (and the rules see all
        they read)."""
        if kernels.bulk_documents_class() is None:
            return False
        if detections is not None and not detections.detector.audit_only:
            return False
        queues = list(queues)
        codecs = {q.codec for q in queues}
        return len(codecs) == 1 and codecs <= _ENCODINGS.keys()

    def _template(self, tag: str, entry: bytes) -> Template | None:
        """Called by the kernel, during ``encode``, for the sender being read."""
        return template(self._normalize, self._origin, tag, entry, self._encode)

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
        if self._normalize.metadata_generation != self._generation:
            self._generation = self._normalize.metadata_generation
            kernel.clear()
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
            self._compiled.inc(records)
            if docs:
                self._python.inc(len(docs))
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
