"""The entry layout shared by both kernels: ``[EventTime, record]`` msgpack arrays.

Each entry is what one event of a Forward ``PackedForward`` body is (DATAPLANE.md):

- ``fixarray(2)``; the time as an EventTime (``fixext8`` type 0: big-endian ``uint32``
  seconds and nanoseconds), or — outside EventTime's range (before 1970, after 2106) — as
  integer seconds, as ``transport.pack_entry`` always did;
- the record map, keys in this order: ``log``, ``stream``, ``kubernetes`` (only with pod
  metadata), ``kloghub`` → ``file``, ``file_id``, ``offset``, ``flags`` (only when set),
  ``raw`` (``bin``, only for invalid UTF-8), ``owner`` (only when known), ``parser`` (only
  with a parser hint).

msgpack forms are the smallest ones, as msgpack-python's ``Packer(use_bin_type=True)``
writes them. What is constant for a file is encoded once, in :class:`EntryContext`.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from kloghub import parse

__all__ = ["EntryContext", "decode_entries", "encode_records"]

_NS = 1_000_000_000
_U32 = 0xFFFFFFFF
_TIME_HEAD = struct.Struct(">BBBII")  # fixarray(2), fixext8, type 0, seconds, nanoseconds
_EVENT_TIME_EXT = 0
_INVALID_UTF8 = parse.INVALID_UTF8


def _fallback(value: Any) -> Any:
    """What msgpack cannot pack natively (in pod metadata) is sent as text, not lost."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def _packer() -> Any:
    """Packer for the constant pieces: paths may carry surrogate escapes (``os.fsdecode``),
    which go as their original bytes."""
    return msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", default=_fallback)


_pack = msgpack.Packer(use_bin_type=True).pack
_KEY_LOG = _pack("log")
_KEY_STREAM = _pack("stream")
_KEY_KLOGHUB = _pack("kloghub")
_KEY_OFFSET = _pack("offset")
_KEY_FLAGS = _pack("flags")
_KEY_RAW = _pack("raw")
_STREAMS = {s: _pack(s) for s in ("stdout", "stderr", "")}
_FLAGS = {bits: _pack(parse.flag_names(bits)) for bits in range(1, 32)}


class EntryContext:
    """What is constant for one file's entries, encoded once.

    Built once per file, and again when its pod metadata changes (then handed to
    :meth:`FileEncoder.set_context`).
    """

    __slots__ = (
        "file_id",
        "file_piece",
        "kloghub_size",
        "kubernetes",
        "kubernetes_piece",
        "owner",
        "parser_hint",
        "path",
        "record_head",
        "tail_piece",
    )

    def __init__(
        self,
        path: str,
        file_id: str,
        kubernetes: dict[str, Any] | None,
        owner: dict[str, Any] | None,
        parser_hint: str | None,
    ) -> None:
        self.path = path
        self.file_id = file_id
        self.kubernetes = kubernetes
        self.owner = owner
        self.parser_hint = parser_hint
        pack = _packer().pack
        self.record_head = b"\x83" if kubernetes is None else b"\x84"
        """The record map's header: ``log``, ``stream``, [``kubernetes``,] ``kloghub``."""
        self.kubernetes_piece = b"" if kubernetes is None else pack("kubernetes") + pack(kubernetes)
        """``"kubernetes"`` and its map, or nothing."""
        self.file_piece = pack("file") + pack(path) + pack("file_id") + pack(file_id)
        """The first two pairs of the ``kloghub`` map."""
        tail = b""
        size = 3
        if owner is not None:
            tail += pack("owner") + pack(owner)
            size += 1
        if parser_hint is not None:
            tail += pack("parser") + pack(parser_hint)
            size += 1
        self.tail_piece = tail
        """The ``owner`` and ``parser`` pairs that end the ``kloghub`` map, when present."""
        self.kloghub_size = size
        """Pairs of the ``kloghub`` map without ``flags`` and ``raw``."""

    def __repr__(self) -> str:
        return f"EntryContext(path={self.path!r}, file_id={self.file_id!r})"


def _time(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, _NS)
    if 0 <= seconds <= _U32:
        return _TIME_HEAD.pack(0x92, 0xD7, _EVENT_TIME_EXT, seconds, nanos)
    head: bytes = _pack(seconds)
    return b"\x92" + head


def _text(value: str) -> bytes:
    try:
        return _pack(value)  # type: ignore[no-any-return]
    except UnicodeEncodeError:  # lone surrogates: never from the parsers, kept as-is anyway
        return _packer().pack(value)  # type: ignore[no-any-return]


def encode_records(records: list[parse.Record], ctx: EntryContext) -> bytes:
    """The reference encoder: ``records`` as concatenated entries (module docstring)."""
    head = ctx.record_head
    k8s = ctx.kubernetes_piece
    file_piece = ctx.file_piece
    tail = ctx.tail_piece
    size = ctx.kloghub_size
    out: list[bytes] = []
    append = out.append
    for r in records:
        flags = r.flags
        stream = _STREAMS.get(r.stream)
        parts = [
            _time(r.time_ns),
            head,
            _KEY_LOG,
            _text(r.message),
            _KEY_STREAM,
            _text(r.stream) if stream is None else stream,
            k8s,
            _KEY_KLOGHUB,
        ]
        if not flags:
            parts += (bytes((0x80 | size,)), file_piece, _KEY_OFFSET, _pack(r.end_offset), tail)
        else:
            raw = r.raw if flags & _INVALID_UTF8 else None
            n = size + 1 + (raw is not None)
            parts += (
                bytes((0x80 | n,)),
                file_piece,
                _KEY_OFFSET,
                _pack(r.end_offset),
                _KEY_FLAGS,
                _FLAGS.get(flags) or _pack(parse.flag_names(flags)),
            )
            if raw is not None:
                parts += (_KEY_RAW, _pack(raw))
            parts.append(tail)
        append(b"".join(parts))
    return b"".join(out)


class _EventTimeNs(int):
    """An EventTime as nanoseconds (told apart from integer seconds while decoding)."""

    __slots__ = ()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EVENT_TIME_EXT and len(data) == 8:
        seconds, nanos = struct.unpack(">II", data)
        return _EventTimeNs(seconds * _NS + nanos)
    return msgpack.ExtType(code, data)


def decode_entries(entries: bytes) -> list[tuple[int, dict[str, Any]]]:
    """``(time_ns, record)`` of each entry (for tests and the local outputs, not the hot path).

    Raises ``ValueError`` when ``entries`` is not a sequence of ``[time, map]`` arrays.
    """
    unpacker = msgpack.Unpacker(
        raw=False, ext_hook=_ext_hook, unicode_errors="surrogateescape", strict_map_key=True
    )
    unpacker.feed(entries)
    out: list[tuple[int, dict[str, Any]]] = []
    for entry in unpacker:
        if type(entry) is not list or len(entry) != 2 or type(entry[1]) is not dict:
            raise ValueError("not a [time, record] entry")
        when = entry[0]
        if type(when) is _EventTimeNs:
            out.append((int(when), entry[1]))
        elif type(when) is int:
            out.append((when * _NS, entry[1]))
        else:
            raise ValueError("entry time is neither an EventTime nor integer seconds")
    return out
