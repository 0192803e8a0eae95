"""The Fluentd Forward Protocol v1, shared by the client and the server.

What travels on a connection (the Fluentd wiki page "Forward Protocol Specification v1"):

- Requests are msgpack values, one after the other. ``nil`` is a keepalive. An array is an
  event request in one of four modes, told apart by its second element:

  - Message ``[tag, time, record, option?]`` (fluent-logger);
  - Forward ``[tag, [[time, record], ...], option?]``;
  - PackedForward ``[tag, <<[time, record]>>*, option?]``: the entries are concatenated
    msgpack values carried as ``bin`` (or ``str``, as Fluentd's ``out_forward`` does);
  - CompressedPackedForward: the same, gzip-compressed (possibly several concatenated gzip
    members), with the option ``compressed: "gzip"``.

- ``time`` is an EventTime (msgpack ext type 0: big-endian uint32 seconds and uint32
  nanoseconds), an integer number of seconds, or a float; Fluent Bit's metadata form
  ``[time, {metadata}]`` is accepted and its metadata ignored.
- Options: ``size`` (number of entries; informational, a mismatch is not an error),
  ``chunk`` (base64 of a 128-bit id: the server answers ``{"ack": chunk}`` once the events
  are safe), ``compressed``. A ``nil`` option (old Docker logging drivers) is accepted.
- The optional handshake: the server sends ``HELO`` (nonce, user-auth salt), the client
  ``PING`` (hostname, salt, ``sha512_hex(salt + hostname + nonce + shared_key)``, username,
  ``sha512_hex(auth_salt + username + password)``), the server ``PONG`` (result, reason,
  hostname, ``sha512_hex(salt + server_hostname + nonce + shared_key)``).

Decoding rules (the collector's side): record strings become ``str`` (invalid UTF-8 is
replaced with U+FFFD), ``bin`` values stay ``bytes``, time becomes nanoseconds since the
epoch without loss. An EventTime found inside a record decodes to an ``int`` of
nanoseconds. Map keys must be strings (``str`` or ``bin``), as in every Fluentd record.
Anything that is not the protocol, or breaks a size limit, raises :class:`ProtocolError`,
and nothing else: the caller closes that connection.

Stricter than the specification: a request that is neither an array nor ``nil`` is
refused (the specification says a server SHOULD ignore it; refusing closes a connection
that is sending garbage instead of reading on in a misaligned stream).

Not supported: the JSON form of a request that Fluentd's ``in_forward`` accepts, the UDP
heartbeat, ``zstd`` compression (Fluent Bit's extension), metrics and traces payloads
(``fluent_signal`` 1 and 2 are refused).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from kloghub import core

__all__ = [
    "DEFAULT_PORT",
    "EVENT_TIME_EXT",
    "KEEPALIVE",
    "SLICE_BYTES",
    "EventTime",
    "FrameTooLargeError",
    "Helo",
    "Ping",
    "Pong",
    "ProtocolError",
    "Request",
    "StreamDecoder",
    "check_entries",
    "decode_request",
    "encode_ack",
    "encode_forward",
    "encode_helo",
    "encode_message",
    "encode_packed_forward",
    "encode_ping",
    "encode_pong",
    "gunzip",
    "gzip_compress",
    "new_chunk_id",
    "new_packer",
    "pack_entry",
    "packed_slices",
    "parse_ack",
    "parse_helo",
    "parse_ping",
    "parse_pong",
    "password_digest",
    "shared_key_digest",
    "time_ns_of",
]

DEFAULT_PORT = 24224
EVENT_TIME_EXT = 0
KEEPALIVE = b"\xc0"
"""A msgpack ``nil``: the keepalive a client may send at any time."""

_NS = 1_000_000_000
_U32 = 0xFFFFFFFF
_II = struct.Struct(">II")
_ENTRY_HEAD = struct.Struct(">BBBII")  # fixarray(2), fixext8, type 0, seconds, nanoseconds
_MAX_CONTAINER = 1 << 20
"""Upper bound on the length of one msgpack array or map: msgpack-python allocates an
array for its declared length before reading it, so the bound caps what a 5-byte header
can make the decoder reserve."""
_MAX_EXT = 1024
_INITIAL_BUFFER = 64 * 1024
"""A connection's decoder buffer to begin with; frames at least this large shrink it after."""
SLICE_BYTES = 256 * 1024
"""Entries decoded into objects at a time (a few MB of objects), see :meth:`Request.slices`."""


class ProtocolError(core.KloghubError):
    """The peer broke the Forward protocol or a limit; close the connection, ack nothing.

    ``reason`` is a short, stable label for logs and metrics.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class FrameTooLargeError(ProtocolError):
    """A request (or its decompressed entries) is larger than the configured limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="frame_too_large")


class EventTime(int):
    """An EventTime read from the wire, as nanoseconds since the epoch (it is an ``int``)."""

    __slots__ = ()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        seconds, nanos = _II.unpack(data)
        return EventTime(seconds * _NS + nanos)
    return msgpack.ExtType(code, data)


# --------------------------------------------------------------------------- encoding


def _fallback(value: Any) -> Any:
    """What msgpack cannot pack natively is sent as text rather than lost."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, set | frozenset):
        return list(value)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)


def new_packer(lenient: bool = False) -> Any:
    """A msgpack packer as the protocol wants it: ``str`` as str, ``bytes`` as bin.

    ``lenient`` packers send strings carrying surrogate escapes (undecodable bytes kept by a
    decoder) as their original bytes; they are about half as fast, so :func:`pack_entry`
    uses one only for the rare record that needs it.
    """
    if lenient:
        return msgpack.Packer(
            use_bin_type=True, unicode_errors="surrogateescape", default=_fallback
        )
    return msgpack.Packer(use_bin_type=True, default=_fallback)


def pack_entry(packer: Any, time_ns: int, record: dict[str, Any]) -> bytes:
    """One ``[EventTime, record]`` entry of a (Packed)Forward stream, as bytes.

    Times outside EventTime's range (before 1970 or after 2106) go as integer seconds.
    """
    seconds, nanos = divmod(time_ns, _NS)
    try:
        body: bytes = packer.pack(record)
    except UnicodeEncodeError:
        body = new_packer(lenient=True).pack(record)
    if 0 <= seconds <= _U32:
        return _ENTRY_HEAD.pack(0x92, 0xD7, EVENT_TIME_EXT, seconds, nanos) + body
    head: bytes = packer.pack(seconds)
    return b"\x92" + head + body


def _event_time(time_ns: int) -> Any:
    seconds, nanos = divmod(time_ns, _NS)
    if 0 <= seconds <= _U32:
        return msgpack.ExtType(EVENT_TIME_EXT, _II.pack(seconds, nanos))
    return seconds


def new_chunk_id() -> str:
    """A fresh ``chunk`` option value: base64 of 16 random bytes (as Fluent Bit makes them)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _option(size: int | None, chunk: str | None, compressed: bool) -> dict[str, Any]:
    option: dict[str, Any] = {}
    if size is not None:
        option["size"] = size
    if chunk is not None:
        option["chunk"] = chunk
    if compressed:
        option["compressed"] = "gzip"
    return option


def encode_packed_forward(
    tag: str,
    entries: bytes,
    size: int,
    chunk: str | None,
    *,
    compressed: bool = False,
    packer: Any = None,
) -> bytes:
    """A PackedForward request (CompressedPackedForward when ``compressed``: ``entries``
    must then already be gzip data)."""
    request = [tag, entries, _option(size, chunk, compressed)]
    try:
        return bytes((packer or new_packer(lenient=True)).pack(request))
    except UnicodeEncodeError:
        return bytes(new_packer(lenient=True).pack(request))


def encode_message(
    tag: str, time_ns: int, record: dict[str, Any], chunk: str | None = None
) -> bytes:
    """A Message-mode request (what fluent-logger sends)."""
    request: list[Any] = [tag, _event_time(time_ns), record]
    if chunk is not None:
        request.append({"chunk": chunk})
    return bytes(new_packer(lenient=True).pack(request))


def encode_forward(tag: str, events: Iterable[core.Event], chunk: str | None = None) -> bytes:
    """A Forward-mode request: the entries as a msgpack array."""
    entries = [[_event_time(e.time_ns), e.record] for e in events]
    request: list[Any] = [tag, entries]
    if chunk is not None:
        request.append({"size": len(entries), "chunk": chunk})
    return bytes(new_packer(lenient=True).pack(request))


def encode_ack(chunk: str | bytes) -> bytes:
    """The server's answer to a request with a ``chunk`` option: the id echoed unchanged."""
    return bytes(new_packer(lenient=True).pack({"ack": chunk}))


def parse_ack(value: Any) -> str | bytes | None:
    """The chunk id of an ``{"ack": chunk}`` answer, or None when ``value`` is not one."""
    if type(value) is dict:
        ack = value.get("ack")
        if isinstance(ack, str | bytes):
            return ack
    return None


def gzip_compress(data: bytes, level: int = 1) -> bytes:
    """One gzip member (level 1 by default: the CPU is the agent's scarce resource)."""
    return zlib.compress(data, level, wbits=31)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one or more concatenated gzip members, refusing more than ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        try:
            piece = inflater.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise ProtocolError(f"entries are not valid gzip data: {exc}") from None
        total += len(piece)
        if total > limit or inflater.unconsumed_tail:
            raise FrameTooLargeError(f"compressed entries inflate to more than {limit} bytes")
        if not inflater.eof:
            raise ProtocolError("gzip data is truncated")
        out.append(piece)
        rest = inflater.unused_data
    return b"".join(out)


# --------------------------------------------------------------------------- handshake


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


def shared_key_digest(
    salt: str | bytes, hostname: str | bytes, nonce: str | bytes, shared_key: str | bytes
) -> str:
    """``sha512_hex(salt + hostname + nonce + shared_key)``, as in PING and PONG."""
    digest = hashlib.sha512(_as_bytes(salt))
    digest.update(_as_bytes(hostname))
    digest.update(_as_bytes(nonce))
    digest.update(_as_bytes(shared_key))
    return digest.hexdigest()


def password_digest(auth_salt: str | bytes, username: str, password: str) -> str:
    """``sha512_hex(auth_salt + username + password)``, the PING's password field."""
    digest = hashlib.sha512(_as_bytes(auth_salt))
    digest.update(_as_bytes(username))
    digest.update(_as_bytes(password))
    return digest.hexdigest()


@dataclass(frozen=True)
class Helo:
    nonce: bytes
    auth_salt: bytes
    """Empty when the server does not ask for a username and password."""
    keepalive: bool = True


@dataclass(frozen=True)
class Ping:
    hostname: str
    salt: bytes
    digest: str
    username: str
    password_digest: str


@dataclass(frozen=True)
class Pong:
    ok: bool
    reason: str
    hostname: str
    digest: str


def encode_helo(nonce: bytes, auth_salt: bytes, keepalive: bool = True) -> bytes:
    return bytes(
        new_packer(lenient=True).pack(
            ["HELO", {"nonce": nonce, "auth": auth_salt, "keepalive": keepalive}]
        )
    )


def encode_ping(
    hostname: str, salt: str, digest: str, username: str = "", password: str = ""
) -> bytes:
    """``password`` is the digest (:func:`password_digest`), never the password itself."""
    return bytes(
        new_packer(lenient=True).pack(["PING", hostname, salt, digest, username, password])
    )


def encode_pong(*, ok: bool, reason: str, hostname: str, digest: str) -> bytes:
    return bytes(new_packer(lenient=True).pack(["PONG", ok, reason, hostname, digest]))


def _handshake_message(value: Any, kind: str, length: int) -> list[Any]:
    if type(value) is not list or len(value) != length or value[0] != kind:
        raise ProtocolError(f"expected a {kind} message", reason="handshake")
    return value


def _text(value: Any, field: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return value
    raise ProtocolError(f"{field} must be a string", reason="handshake")


def parse_helo(value: Any) -> Helo:
    options = _handshake_message(value, "HELO", 2)[1]
    if type(options) is not dict:
        raise ProtocolError("HELO options must be a map", reason="handshake")
    nonce = options.get("nonce")
    auth = options.get("auth", b"")
    if not isinstance(nonce, str | bytes) or not isinstance(auth, str | bytes):
        raise ProtocolError("HELO nonce and auth must be strings", reason="handshake")
    return Helo(_as_bytes(nonce), _as_bytes(auth), options.get("keepalive", True) is not False)


def parse_ping(value: Any) -> Ping:
    fields = _handshake_message(value, "PING", 6)
    salt = fields[2]
    if not isinstance(salt, str | bytes):
        raise ProtocolError("PING salt must be a string", reason="handshake")
    return Ping(
        hostname=_text(fields[1], "PING hostname"),
        salt=_as_bytes(salt),
        digest=_text(fields[3], "PING digest"),
        username=_text(fields[4], "PING username"),
        password_digest=_text(fields[5], "PING password"),
    )


def parse_pong(value: Any) -> Pong:
    fields = _handshake_message(value, "PONG", 5)
    if type(fields[1]) is not bool:
        raise ProtocolError("PONG auth_result must be a boolean", reason="handshake")
    return Pong(
        ok=fields[1],
        reason=_text(fields[2], "PONG reason"),
        hostname=_text(fields[3], "PONG hostname"),
        digest=_text(fields[4], "PONG digest"),
    )


# --------------------------------------------------------------------------- decoding


class StreamDecoder:
    """Splits the bytes of one connection into msgpack values, holding at most one frame.

    A frame (one request) larger than ``max_frame_bytes`` raises :class:`FrameTooLargeError`
    while it is still arriving: the decoder never buffers more than the limit plus the
    last read.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        limit = max(int(max_frame_bytes), 64)
        self.max_frame_bytes = limit
        self._unpacker = self._new_unpacker()
        self._fed = 0
        self._consumed = 0
        self._last = b""
        """The last bytes fed (until the frames in them are taken): see _shrink."""

    def _new_unpacker(self) -> Any:
        limit = self.max_frame_bytes
        return msgpack.Unpacker(
            None,
            # The buffer starts small (msgpack's default is 1 MiB per connection) and
            # grows to the largest frame; see _shrink.
            read_size=min(limit, _INITIAL_BUFFER),
            raw=False,
            # Keeps the exact bytes of a PackedForward stream sent as ``str``; records of
            # Message and Forward requests are cleaned afterwards (see _clean).
            unicode_errors="surrogateescape",
            ext_hook=_ext_hook,
            strict_map_key=True,
            max_buffer_size=limit,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=min(limit, _MAX_CONTAINER),
            max_map_len=min(limit, _MAX_CONTAINER),
            max_ext_len=_MAX_EXT,
        )

    def _shrink(self) -> None:
        """msgpack never shrinks its buffer: after a large frame, start a fresh unpacker
        with the bytes of the next frame so far, so that an idle connection holds little.
        Those bytes are the end of the last bytes fed, where that frame ended."""
        pending = self.pending
        if pending > len(self._last):
            return
        rest = self._last[len(self._last) - pending :]
        self._unpacker = self._new_unpacker()
        self._fed = self._consumed = 0
        if rest:
            self.feed(rest)

    @property
    def pending(self) -> int:
        """Bytes of a frame that started and is not complete yet."""
        return self._fed - self._consumed

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise FrameTooLargeError(
                f"a request is larger than max_frame_bytes ({self.max_frame_bytes})"
            ) from None
        self._fed += len(data)
        self._last = data

    def frames(self) -> Iterator[tuple[Any, int]]:
        """Each complete value with its size in bytes; stops when more data is needed."""
        unpacker = self._unpacker
        large = False
        while True:
            try:
                value = unpacker.unpack()
            except msgpack.OutOfData:
                if large:
                    self._shrink()
                self._last = b""
                return
            except (ValueError, TypeError, MemoryError, msgpack.UnpackException) as exc:
                raise ProtocolError(f"invalid msgpack: {exc or type(exc).__name__}") from None
            position = unpacker.tell()
            size = position - self._consumed
            self._consumed = position
            large = large or size >= _INITIAL_BUFFER
            yield value, size


class Request:
    """One decoded event request: its events and the options the server acts on.

    The entries of a (Compressed)PackedForward request stay bytes until :meth:`slices`
    decodes them, a slice at a time, so that a frame of many records never exists as
    objects all at once; when there is more than one slice, their msgpack structure is
    checked whole first (skipping, about an eighth of the cost of decoding), so broken
    msgpack anywhere refuses the request before any slice. Message and Forward requests
    arrive decoded (one slice).
    """

    __slots__ = ("_decoded", "_packed", "chunk", "mode", "size_option", "tag")

    def __init__(
        self,
        tag: str,
        events: list[core.Event] | None,
        chunk: str | bytes | None,
        mode: str,
        size_option: int | None,
        *,
        packed: bytes | None = None,
    ) -> None:
        self.tag = tag
        self._decoded = events
        self._packed = packed
        self.chunk = chunk
        """The ``chunk`` option, exactly as received (``str`` or ``bytes``), or None."""
        self.mode = mode
        """``message``, ``forward``, ``packed_forward`` or ``compressed_packed_forward``."""
        self.size_option = size_option

    def slices(self, max_bytes: int = SLICE_BYTES) -> Iterator[list[core.Event]]:
        """The events in order, in lists decoded from about ``max_bytes`` of entries each.
        Raises :class:`ProtocolError` at the first entry that is not ``[time, map]``: the
        slices before it were valid."""
        if self._packed is None:
            if self._decoded:
                yield self._decoded
            return
        if len(self._packed) > max_bytes:
            check_entries(self._packed)  # before the first slice leaves
        yield from packed_slices(self.tag, self._packed, max_bytes)

    @property
    def packed(self) -> bytes | None:
        """The entries of a (Compressed)PackedForward request not decoded yet, or None."""
        return self._packed if self._decoded is None else None

    @property
    def events(self) -> list[core.Event]:
        """Every event, decoded at once (kept after the first call)."""
        if self._decoded is None:
            self._decoded = [event for part in self.slices() for event in part]
            self._packed = None
        return self._decoded


def _clean_text(value: str) -> str:
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _clean(value: Any) -> Any:
    """Replace the undecodable bytes that the outer decoder kept as surrogate escapes."""
    kind = type(value)
    if kind is str:
        return _clean_text(value)
    if kind is dict:
        return {(_clean_text(k) if type(k) is str else k): _clean(v) for k, v in value.items()}
    if kind is list:
        return [_clean(v) for v in value]
    return value


def time_ns_of(value: Any) -> int:
    """Nanoseconds since the epoch from an EventTime, integer or float seconds, or
    Fluent Bit's ``[time, metadata]``."""
    kind = type(value)
    if kind is EventTime:
        return int(value)
    if kind is int:
        return int(value) * _NS
    if kind is float:
        if not math.isfinite(value):
            raise ProtocolError("event time is not a finite number")
        return round(float(value) * _NS)
    if kind is list and len(value) == 2 and type(value[0]) is not list:
        return time_ns_of(value[0])
    raise ProtocolError(f"event time has an invalid type ({kind.__name__})")


def _entries_unpacker(data: bytes) -> Any:
    limit = max(len(data), 64)
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        unicode_errors="replace",
        ext_hook=_ext_hook,
        strict_map_key=True,
        max_buffer_size=limit,
        max_str_len=limit,
        max_bin_len=limit,
        max_array_len=min(limit, _MAX_CONTAINER),
        max_map_len=min(limit, _MAX_CONTAINER),
        max_ext_len=_MAX_EXT,
    )
    unpacker.feed(data)
    return unpacker


def check_entries(data: bytes) -> None:
    """Refuse entries that are not a whole msgpack stream, before any of them is decoded
    into objects (skipping builds nothing)."""
    if not data:
        return
    unpacker = _entries_unpacker(data)
    skip = unpacker.skip
    try:
        while unpacker.tell() < len(data):
            skip()
    except msgpack.OutOfData:
        raise ProtocolError("packed entries end with an incomplete entry") from None
    except (ValueError, TypeError, MemoryError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"invalid msgpack in packed entries: {exc}") from None


def packed_slices(
    tag: str, data: bytes, max_bytes: int = SLICE_BYTES
) -> Iterator[list[core.Event]]:
    """The events of a MessagePackEventStream, ``max_bytes`` of it at a time (the hot path
    of the collector)."""
    if not data:
        return
    unpacker = _entries_unpacker(data)
    start = 0
    while start < len(data):
        events, end = _decode_slice(tag, unpacker, start, max_bytes, len(data))
        if not events:
            return
        size = (end - start) // len(events)
        for item in events:
            item.size = size
        yield events
        start = end


def _decode_slice(
    tag: str, unpacker: Any, start: int, max_bytes: int, total: int
) -> tuple[list[core.Event], int]:
    """Events from ``start`` until at least ``max_bytes`` are decoded or the entries end,
    and the offset after the last of them."""
    events: list[core.Event] = []
    append = events.append
    event = core.Event
    tell = unpacker.tell
    end = start
    # Decoding creates tens of container objects per record, each of which counts towards
    # the cyclic GC's thresholds; with batches in flight, the collections that would run
    # in the middle of one request halve the throughput (bench/forward_bench.py). The GC
    # is paused while one slice is decoded (nothing here can form a cycle) and resumed.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for entry in unpacker:
            end = tell()
            if type(entry) is not list or len(entry) != 2:
                raise ProtocolError("a packed entry is not a [time, record] pair")
            when, record = entry
            if type(record) is not dict:
                raise ProtocolError("a packed entry's record is not a map")
            append(event(tag, int(when) if type(when) is EventTime else time_ns_of(when), record))
            if end - start >= max_bytes:
                return events, end
    except (ValueError, TypeError, MemoryError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"invalid msgpack in packed entries: {exc}") from None
    finally:
        if gc_was_enabled:
            gc.enable()
    if end != total:
        raise ProtocolError("packed entries end with an incomplete entry")
    return events, end


def _option_of(request: list[Any], index: int) -> dict[str, Any]:
    if len(request) <= index:
        return {}
    option = request[index]
    if option is None:  # old Docker logging drivers send nil
        return {}
    if type(option) is not dict:
        raise ProtocolError("the option element is not a map")
    return option


def decode_request(value: Any, frame_bytes: int, max_entries_bytes: int) -> Request | None:
    """Turn one value from :class:`StreamDecoder` into a :class:`Request`.

    Returns None for a keepalive (``nil``). ``max_entries_bytes`` bounds the decompressed
    size of CompressedPackedForward entries.
    """
    if value is None:
        return None
    if type(value) is not list:
        raise ProtocolError(f"a request must be an array, got {type(value).__name__}")
    if not 2 <= len(value) <= 4:
        raise ProtocolError(f"a request array has {len(value)} elements")
    tag = value[0]
    if type(tag) is not str:
        raise ProtocolError("the tag is not a string")
    tag = _clean_text(tag)
    kind = type(value[1])
    if kind is list or kind is bytes or kind is str:
        if len(value) > 3:
            raise ProtocolError("a (Packed)Forward request has more than three elements")
        option = _option_of(value, 2)
        packed = None
        if kind is list:
            mode = "forward"
            events = _forward_events(tag, value[1], frame_bytes)
        else:
            events = None
            mode, packed = _packed_request(value[1], option, max_entries_bytes)
    else:
        option = _option_of(value, 3)
        mode, packed = "message", None
        events = [_message_event(tag, value, frame_bytes)]
    signal = option.get("fluent_signal", 0)
    if signal != 0:
        raise ProtocolError(f"fluent_signal {signal!r} (metrics or traces) is not supported")
    chunk = option.get("chunk")
    if chunk is not None and not isinstance(chunk, str | bytes):
        raise ProtocolError("the chunk option is not a string")
    size = option.get("size")
    return Request(tag, events, chunk, mode, size if type(size) is int else None, packed=packed)


def _message_event(tag: str, value: list[Any], frame_bytes: int) -> core.Event:
    if len(value) < 3:
        raise ProtocolError("a Message request needs a time and a record")
    record = value[2]
    if type(record) is not dict:
        raise ProtocolError("the record of a Message request is not a map")
    return core.Event(tag, time_ns_of(value[1]), _clean(record), None, frame_bytes)


def _packed_request(
    entries: bytes | str, option: dict[str, Any], max_entries_bytes: int
) -> tuple[str, bytes]:
    data = entries if isinstance(entries, bytes) else entries.encode("utf-8", "surrogateescape")
    compressed = option.get("compressed")
    if compressed == "gzip":
        data, mode = gunzip(data, max_entries_bytes), "compressed_packed_forward"
    elif compressed == "zstd":
        raise ProtocolError("zstd compression is not supported; use gzip")
    else:
        mode = "packed_forward"
    return mode, data


def _forward_events(tag: str, entries: list[Any], frame_bytes: int) -> list[core.Event]:
    events: list[core.Event] = []
    size = frame_bytes // max(len(entries), 1)
    for entry in entries:
        if type(entry) is not list or len(entry) != 2:
            raise ProtocolError("a Forward entry is not a [time, record] pair")
        when, record = entry
        if type(record) is not dict:
            raise ProtocolError("a Forward entry's record is not a map")
        events.append(core.Event(tag, time_ns_of(when), _clean(record), None, size))
    return events
