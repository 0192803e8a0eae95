"""The disk queue: bounded, crash-safe, acknowledged segment files (see ``DESIGN.md``).

A queue holds one kind of item, each one frame of a segment (an item is the unit of
acknowledgement):

- events (the collector's sink queues): ``push`` appends a batch durably (write +
  ``fsync``, concurrent pushes share one ``fsync``) and then settles it: for the producer,
  "in the queue" is "safe"; ``pop`` hands out events sharing one finalizer;
- chunks (the agent's buffer): ``push_chunk`` returns once the chunk is admitted, without
  waiting for its ``fsync``; the writer group-commits everything pushed during
  ``flush_interval`` with one write and one ``fsync`` (whatever the number of files the
  chunks came from), and settles each chunk once it is durable, which is what moves the
  tail checkpoints. The bytes pushed and not yet durable are bounded
  (``max_unsynced_bytes``): past it the writer commits at once and ``push_chunk`` waits —
  the back-pressure on the tailer. ``pop_chunks`` hands chunks out as they are stored,
  wire-ready; only their small header is decoded.

When the consumer settles what it popped (delivered, dead-lettered or dropped) it is
acknowledged here, in any order, and a segment file is deleted once every item of it was
acknowledged. After a restart, even after SIGKILL, exactly the items not acknowledged are
handed out again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from kloghub import config, core
from kloghub.buffer import _acklog, _checksum, _segment
from kloghub.runtime import metrics

__all__ = ["DiskQueue"]

_TAKE_WIRE: Callable[..., tuple[list[Any], int, int]] | None
"""The compiled loop over encoded-event frames (native/src/wire.rs), when built."""
try:
    from kloghub._native import take_wire_frames

    _TAKE_WIRE = take_wire_frames
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _TAKE_WIRE = None

_log = logging.getLogger("kloghub.buffer")

_T = TypeVar("_T")

_READ_AHEAD = 256 * 1024
"""Bytes read from a segment at a time: the reader's memory bound (plus one record)."""
_ACK_SYNC_INTERVAL = 1.0
"""The power-cut window of acknowledgements (SIGKILL loses none)."""
_ACK_COMPACT_BYTES = 1 << 20
_MAX_BACKOFF = 5.0
START_RETRY_S = 1.0
"""How often a queue whose disk was full at start tries again to rewrite its acknowledgements."""
_REASON_FULL = "buffer_full"
_REASON_CORRUPT = "buffer_corrupt"
_FRAME_SIZE = _segment.FRAME.size
_FRAME_HEADER = _segment.FRAME.unpack_from
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
_MAX_UNSYNCED_BYTES = 8 * 1024 * 1024
_MAX_RECENT_BYTES = 2 * 1024 * 1024
"""Chunks committed and not yet popped that the queue keeps in memory (``max_recent_bytes``):
a reader that keeps up takes them from there instead of reading them back from disk."""

Kind = Literal["events", "chunks"]
_Make = Callable[[bytes, int, int, core.Finalizer], Any]


class _Pending:
    """A pushed batch or chunk, encoded, waiting for the writer."""

    __slots__ = ("chunk", "data", "entries", "fin", "future", "records", "size", "tail")

    def __init__(
        self,
        data: bytes,
        records: int,
        future: asyncio.Future[None] | None,
        chunk: core.Chunk | None = None,
    ) -> None:
        self.data = data
        self.tail = chunk.entries if chunk is not None else b""
        """Written right after ``data`` (a chunk's entries: never copied into its frame)."""
        self.size = len(data) + len(self.tail)
        self.records = records
        self.future = future
        """Set when the item is durable (someone waits for it)."""
        self.fin = chunk.finalizer if chunk is not None else None
        """The chunk's finalizer, settled (one count) when the item is durable."""
        self.entries = chunk.count if chunk is not None else records
        """Records the item holds (a chunk's entries; for counting drops)."""
        self.chunk = chunk
        """The chunk pushed (its fields and entries are handed out again from memory)."""


class _Take:
    """One pop in progress: its items, their finalizer and the limits."""

    __slots__ = ("events", "fin", "full", "max_bytes", "max_records", "nbytes")

    def __init__(self, fin: core.Finalizer, max_records: int, max_bytes: int) -> None:
        self.fin = fin
        self.events: list[Any] = []
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.full = False
        """A limit was reached: stop reading for this pop."""


class _Write:
    """What one group commit writes into one segment."""

    __slots__ = ("create", "items", "nbytes", "records", "segment")

    def __init__(self, segment: _segment.Segment, create: bool) -> None:
        self.segment = segment
        self.create = create
        self.items: list[_Pending] = []
        self.nbytes = 0
        self.records = 0


class _Recent:
    """Chunks committed and not popped yet, kept in memory in write order for a reader that
    keeps up (DESIGN.md, "Chunks"): at most ``limit`` bytes of frames, the oldest forgotten
    first (the reader then reads them from disk)."""

    __slots__ = ("frames", "limit", "nbytes")

    def __init__(self, limit: int) -> None:
        self.frames: collections.deque[tuple[_segment.Segment, int, int, core.Chunk]] = (
            collections.deque()
        )
        """(segment, index in it, frame size, chunk)."""
        self.limit = max(0, int(limit))
        self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self.frames)

    def remember(self, seg: _segment.Segment, first: int, items: list[_Pending]) -> None:
        """The chunks just committed to ``seg``, from frame index ``first``."""
        frames = self.frames
        for index, item in enumerate(items, first):
            chunk, item.chunk = item.chunk, None
            if chunk is not None and self.limit:
                frames.append((seg, index, item.size, chunk))
                self.nbytes += item.size
        while self.nbytes > self.limit and frames:
            self.nbytes -= frames.popleft()[2]

    def head(self, seg: _segment.Segment, index: int) -> tuple[int, core.Chunk] | None:
        """The kept chunk that is frame ``index`` of ``seg`` (its frame size and the chunk),
        forgetting those before it (the reader is past them: read from disk, or dropped)."""
        frames = self.frames
        while frames:
            fseg, findex, size, chunk = frames[0]
            if fseg is seg and findex == index:
                return size, chunk
            if fseg.id > seg.id or (fseg is seg and findex > index):
                return None
            self.forget_head()
        return None

    def forget_head(self) -> None:
        self.nbytes -= self.frames.popleft()[2]

    def clear(self) -> None:
        self.frames.clear()
        self.nbytes = 0


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` in order, whole (``writev``: the items are not joined first)."""
    views = [memoryview(p) for p in parts if p]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + _IOV_MAX])
        while written:
            size = len(views[first])
            if written >= size:
                written -= size
                first += 1
            else:
                views[first] = views[first][written:]
                written = 0


class DiskQueue(core.Service):
    """A bounded queue of events (or chunks: ``kind="chunks"``) in segment files under
    ``directory``.

    ``cfg.max_bytes`` bounds the bytes on disk; ``cfg.when_full`` says what a push does
    when they are reached: ``block`` waits for acknowledgements to free space,
    ``drop_oldest`` deletes the oldest segment (counted in
    ``kloghub_records_dropped{reason="buffer_full"}``) and never waits. A batch larger than
    ``max_bytes`` is accepted whole once the queue holds nothing else (``block``) or at
    once (``drop_oldest``): the bound can be passed by one batch, never deadlocked on.
    """

    def __init__(
        self,
        directory: Path,
        cfg: config.QueueConfig,
        name: str,
        supervisor: core.Supervisor | None = None,
        *,
        kind: Kind = "events",
        flush_interval: float = 0.0,
        max_unsynced_bytes: int = _MAX_UNSYNCED_BYTES,
        max_recent_bytes: int = _MAX_RECENT_BYTES,
        encode: Callable[[core.Event], bytes] | None = None,
        codec: str = "",
    ) -> None:
        super().__init__(supervisor)
        self.name = name
        self.directory = Path(directory)
        self._kind = kind
        self._magic = _segment.CHUNK_MAGIC if kind == "chunks" else _segment.MAGIC
        self._codec = codec
        self._encoder: _segment.Encoder | _segment.WireEncoder = _segment.Encoder()
        if encode is not None:
            if kind != "events" or not codec:
                raise ValueError("encode is for queues of events, with the codec's name")
            self._magic = _segment.WIRE_MAGIC
            self._encoder = _segment.WireEncoder(encode)
        self._chunk_encoder = _segment.ChunkEncoder()
        # Group commit: how long pushed chunks may wait for the next write + fsync.
        self._flush_interval = max(0.0, float(flush_interval))
        self._max_unsynced = max(1, int(max_unsynced_bytes))
        self._recent = _Recent(max_recent_bytes if kind == "chunks" else 0)
        self._pending_since = 0.0
        self._draining = False
        self._urgent = False
        """A pending item is awaited: commit it without waiting for the interval."""
        self._max_bytes = int(cfg.max_bytes)
        # Segments are at most a quarter of the bound, so that freeing or dropping space
        # happens in steps and the segment being written is rarely the one in the way.
        self._segment_limit = max(1, min(int(cfg.segment_bytes), self._max_bytes // 4))
        self._drop_oldest = cfg.when_full == "drop_oldest"
        self._gauge = metrics.BUFFER_BYTES.labels(buffer=name)
        self._segments: dict[int, _segment.Segment] = {}
        """Live segments in id (= age) order."""
        self._next_id = 1
        self._disk_bytes = 0
        self._reserved = 0
        """Bytes of admitted pushes not yet on disk."""
        self._closed = False
        # writer
        self._active: _segment.Segment | None = None
        self._pending: list[_Pending] = []
        self._writing: list[_Pending] = []
        self._writer_wake: asyncio.Future[None] | None = None
        self._space_waiters: list[asyncio.Future[None]] = []
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._threads: set[asyncio.Future[Any]] = set()
        # reader
        self._rseg: _segment.Segment | None = None
        self._rlast = 0
        """Id of the last segment the reader finished (or saw deleted)."""
        self._rfd: int | None = None
        self._roff = 0
        self._rbuf = b""
        self._rpos = 0
        self._ridx = 0
        self._rskip = 0
        self._pop_lock = asyncio.Lock()
        self._data_waiter: asyncio.Future[None] | None = None
        self._acks = _acklog.AckLog(self.directory / "acks.log")

    # ------------------------------------------------------------------ public API

    @property
    def disk_bytes(self) -> int:
        """Bytes the queue holds on disk (segments, including acknowledged records)."""
        return self._disk_bytes

    async def push(self, batch: core.Batch) -> None:
        """Append ``batch`` durably, then settle it as delivered.

        Waits for space under the ``block`` policy. Raises ``RuntimeError`` when the queue
        is not running or stops before the batch is durable (the batch stays unsettled, so
        its producer sends it again).
        """
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"disk queue {self.name} is not running")
        if not batch.events:
            batch.settle(core.Delivery.DELIVERED)
            return
        if self._kind != "events":
            raise TypeError(f"disk queue {self.name} holds chunks: use push_chunk")
        data, records = self._encoder.encode(batch.events)
        await self._admit(len(data))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add_pending(_Pending(data, records, future))
        await future
        batch.settle(core.Delivery.DELIVERED)

    @property
    def codec(self) -> str:
        """The name of the encoding of a queue of encoded events (``""`` for the others)."""
        return self._codec

    async def push_encoded(
        self, frames: bytes, records: int, events: Sequence[core.Event] = ()
    ) -> None:
        """Append ``records`` frames made for this queue's codec elsewhere (the collector's
        compiled path: the frames its sink's ``encode`` would have made), then ``events``
        encoded as :meth:`push` does, durably; returns once they are."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"disk queue {self.name} is not running")
        if not isinstance(self._encoder, _segment.WireEncoder):
            raise TypeError(f"disk queue {self.name} does not hold encoded events")
        if events:
            more, count = self._encoder.encode(events)
            frames, records = frames + more, records + count
        if not records:
            return
        await self._admit(len(frames))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add_pending(_Pending(frames, records, future))
        await future

    async def push_chunk(self, chunk: core.Chunk) -> None:
        """Admit ``chunk``; it is settled (delivered) once durable, at the next group commit.

        Waits for space under the ``block`` policy, and while more than
        ``max_unsynced_bytes`` are pushed and not yet durable. Raises ``RuntimeError`` when
        the queue is not running; a chunk the queue stops before writing stays unsettled,
        so its source reads it again after a restart.
        """
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"disk queue {self.name} is not running")
        if self._kind != "chunks":
            raise TypeError(f"disk queue {self.name} holds events: use push")
        if not chunk.count:
            chunk.settle(core.Delivery.DELIVERED)
            return
        head = self._chunk_encoder.head(chunk)
        size = len(head) + len(chunk.entries)
        await self._admit(size)
        if self._reserved + size <= self._max_unsynced:
            self._add_pending(_Pending(head, 1, None, chunk))
            return
        # Over the bound of bytes not yet durable: commit now, and wait for it.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add_pending(_Pending(head, 1, future, chunk))
        await future

    def _add_pending(self, item: _Pending) -> None:
        if not self._pending:
            self._pending_since = asyncio.get_running_loop().time()
        self._pending.append(item)
        self._reserved += item.size
        if item.future is not None:
            self._urgent = True  # someone waits for this item to be durable
        _wake(self._writer_wake)

    async def pop(self, max_records: int, max_bytes: int, timeout: float) -> core.Batch:
        """The next records not handed out yet: at least one, or an empty batch on timeout.

        The events share one finalizer; settling them (with any status) acknowledges them
        in the queue. ``max_bytes`` counts encoded record bytes and is exceeded only by a
        single record larger than it.
        """
        if self._kind != "events":
            raise TypeError(f"disk queue {self.name} holds chunks: use pop_chunks")
        return core.Batch(await self._pop(_segment.decode_event, max_records, max_bytes, timeout))

    async def pop_chunks(self, max_chunks: int, max_bytes: int, timeout: float) -> list[core.Chunk]:
        """The next chunks not handed out yet: at least one, or none on timeout.

        The chunks share one finalizer (one count each); settling every one of them (with
        any status) acknowledges them in the queue. ``max_bytes`` counts frame bytes and is
        exceeded only by a single chunk larger than it.
        """
        if self._kind != "chunks":
            raise TypeError(f"disk queue {self.name} holds events: use pop")
        return await self._pop(_segment.decode_chunk, max_chunks, max_bytes, timeout)

    async def _pop(
        self, make: _Make, max_records: int, max_bytes: int, timeout: float
    ) -> list[Any]:
        if self.state in (core.State.NEW, core.State.STOPPED):
            raise RuntimeError(f"disk queue {self.name} is not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._pop_lock.acquire()
        except TimeoutError:
            return []
        try:
            while True:
                if self._closed:
                    return []
                items = self._take(make, max(1, max_records), max_bytes)
                remaining = deadline - loop.time()
                if items or remaining <= 0:
                    return items
                waiter = loop.create_future()
                self._data_waiter = waiter
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    return []
                finally:
                    self._data_waiter = None
        finally:
            self._pop_lock.release()

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        await asyncio.to_thread(self._recover)
        await self._open_acks()
        self.spawn("writer", self._write_loop())
        self.spawn("acks", self._ack_loop())

    async def _on_drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._draining = True  # no more waiting for the flush interval
        _wake(self._writer_wake)
        while self._pending or self._writing:
            waiter = loop.create_future()
            self._commit_waiters.append(waiter)
            await waiter

    async def _on_close(self) -> None:
        self._closed = True
        stopped = RuntimeError(f"disk queue {self.name} stopped before the batch was durable")
        for item in self._writing + self._pending:
            if item.future is not None and not item.future.done():
                item.future.set_exception(stopped)
        self._pending = []
        self._wake_space()
        _wake(self._data_waiter)
        _wake_all(self._commit_waiters)
        # A write or fsync may still run in a thread: never close a descriptor under it.
        for future in list(self._threads):
            with contextlib.suppress(BaseException):
                await asyncio.wait([future])
        self._writing = []
        self._reclaim()  # a fully acknowledged last segment need not wait for the next run
        for seg in self._segments.values():
            _close_fd(seg.wfd)
            seg.wfd = None
        self._close_reader()
        self._recent.clear()
        if not self._acks.closed:
            try:
                self._compact()
            except OSError as exc:
                _log.warning(
                    "could not persist the acknowledgements of a disk queue; "
                    "the unpersisted ones will be delivered again",
                    extra={"queue": self.name, "error": str(exc)},
                )
            self._acks.close()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Find the segments and acknowledgements a previous run left (runs in a thread)."""
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        found = sorted(
            (sid, path)
            for path in directory.iterdir()
            if (sid := _segment.parse_segment_id(path)) is not None
        )
        highest = 0
        for sid, path in found:
            highest = max(highest, sid)
            seg = self._recover_segment(sid, path)
            if seg is not None:
                self._segments[sid] = seg
                self._disk_bytes += seg.size
        entries, torn = _acklog.read_entries(self._acks.path)
        if torn:
            _log.warning(
                "the acknowledgement log of a disk queue ends with a torn entry; "
                "it is ignored and its records will be delivered again",
                extra={"queue": self.name, "path": str(self._acks.path)},
            )
        for sid, start, end in entries:
            highest = max(highest, sid)
            seg = self._segments.get(sid)
            if seg is not None:
                seg.add_ack(start, end)
        for seg in self._segments.values():
            seg.skip = [list(r) for r in seg.acked]
        if self._codec:
            self._check_codec()
        # Ids never go back, even past segments deleted after their last acknowledgement:
        # an old entry must never match a new segment.
        self._next_id = highest + 1
        self._gauge.set(self._disk_bytes)
        if self._segments:
            _log.info(
                "disk queue recovered",
                extra={
                    "queue": self.name,
                    "segments": len(self._segments),
                    "bytes": self._disk_bytes,
                },
            )

    def _check_codec(self) -> None:
        """Encoded events are only sent by a sink that encodes them the same way: the
        codec's name is kept beside the segments, and another one refuses to start."""
        path = self.directory / "codec"
        try:
            stored = path.read_text().strip()
        except FileNotFoundError:
            stored = ""
        if stored == self._codec:
            return
        if stored and any(s.magic == _segment.WIRE_MAGIC for s in self._segments.values()):
            raise RuntimeError(
                f"disk queue {self.name}: {self.directory} holds events encoded as {stored} "
                f"and this sink sends {self._codec}; deliver them with the sink that wrote "
                "them, or move the directory away"
            )
        path.write_text(self._codec + "\n")

    async def _open_acks(self) -> None:
        """Rewrite the acknowledgement log (compacted) and open it for appending. While the
        disk is full this waits and tries again: the process stays up (a collector that
        is not listening yet, an agent that is not reading) and starts by itself when
        space returns, instead of failing its start into a crash loop."""
        warned = False
        while True:
            try:
                await asyncio.to_thread(self._compact)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                if not warned:
                    warned = True
                    _log.warning(
                        "disk queue cannot start: its disk is full; waiting for space",
                        extra={"queue": self.name, "path": str(self.directory)},
                    )
                await asyncio.sleep(START_RETRY_S)
                continue
            if warned:
                _log.info("disk queue has space again; starting", extra={"queue": self.name})
            return

    def _recover_segment(self, sid: int, path: Path) -> _segment.Segment | None:
        try:
            size = path.stat().st_size
            with path.open("rb") as file:
                magic = file.read(_segment.HEADER_SIZE)
        except OSError as exc:
            _log.warning(
                "unreadable disk queue segment skipped",
                extra={"queue": self.name, "path": str(path), "error": str(exc)},
            )
            metrics.DROPPED.labels(reason=_REASON_CORRUPT).inc()
            return None
        if size > _segment.HEADER_SIZE and magic == _segment.WIRE_MAGIC != self._magic:
            raise RuntimeError(
                f"disk queue {self.name}: {path} holds events encoded for the network by "
                "another sink than this one, which needs the documents; deliver them with "
                f"the sink that wrote them, or move {self.directory} away"
            )
        readable = magic == self._magic or (
            magic == _segment.MAGIC and self._magic == _segment.WIRE_MAGIC
        )
        if size <= _segment.HEADER_SIZE or not readable:
            # The magic and the first frames are one write: a file this short holds no
            # record (a crash while creating it); a wrong magic is not ours to read.
            if size > _segment.HEADER_SIZE:
                _log.warning(
                    "disk queue segment with a bad header skipped and deleted",
                    extra={"queue": self.name, "path": str(path), "bytes": size},
                )
                metrics.DROPPED.labels(reason=_REASON_CORRUPT).inc()
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        seg = _segment.Segment(sid, path, recovered=True)
        seg.magic = magic
        seg.size = size
        seg.planned_bytes = size
        return seg

    # ------------------------------------------------------------------ admission

    def _fits(self, need: int) -> bool:
        return self._disk_bytes + self._reserved + need <= self._max_bytes

    async def _admit(self, need: int) -> None:
        """Wait for (``block``) or make (``drop_oldest``) room for ``need`` bytes."""
        loop = asyncio.get_running_loop()
        while True:
            if self.state is not core.State.RUNNING or self._closed:
                raise RuntimeError(f"disk queue {self.name} is not running")
            if self._fits(need):
                return
            if self._drop_oldest:
                self._drop_for(need)
                return
            self._reclaim()
            if self._fits(need) or self._disk_bytes + self._reserved == 0:
                return
            waiter = loop.create_future()
            self._space_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._space_waiters:
                    self._space_waiters.remove(waiter)

    def _reclaim(self) -> None:
        """Free what is fully acknowledged, including the segment being written."""
        self._advance_reader()
        seg = self._active
        if (
            seg is not None
            and not self._writing
            and seg.inflight == 0
            and seg is self._rseg
            and self._reader_drained(seg)
            and seg.acked_through(seg.records)
        ):
            self._retire_active()
            self._advance_reader()

    def _drop_for(self, need: int) -> None:
        """``drop_oldest``: delete the oldest segments until ``need`` bytes fit."""
        while not self._fits(need):
            victim = next(iter(self._segments.values()), None)
            if victim is None or victim.size == 0:
                return
            if victim is self._active:
                if self._writing:
                    return  # one group in flight: accept passing the bound by it
                self._retire_active()
            lost = self._unread(victim)
            self._delete(victim)
            if lost:
                metrics.DROPPED.labels(reason=_REASON_FULL).inc(lost)
            _log.warning(
                "disk queue full; dropped its oldest segment",
                extra={
                    "queue": self.name,
                    "segment": victim.id,
                    "records_dropped": lost,
                    "max_bytes": self._max_bytes,
                },
            )

    def _unread(self, seg: _segment.Segment) -> int:
        """Records of ``seg`` never handed out and not acknowledged (a chunk counts its
        entries)."""
        if seg.total is not None:
            return 0
        start = self._ridx if seg is self._rseg else 0
        if self._kind == "chunks":
            counts = seg.counts
            if seg.recovered:
                try:
                    counts = _segment.frame_counts(seg.path, seg.size, chunks=True)
                except OSError:
                    return 0
            return seg.unacked_sum(counts, start)
        if seg.recovered:
            try:
                total = _segment.count_frames(seg.path, seg.size)
            except OSError:
                return 0
        else:
            total = seg.planned
        return max(0, total - start - seg.acked_between(start, total))

    def _wake_space(self) -> None:
        waiters, self._space_waiters = self._space_waiters, []
        _wake_all(waiters)

    # ------------------------------------------------------------------ writer

    def _plan(self, group: list[_Pending]) -> tuple[list[_Write], list[_segment.Segment]]:
        writes: list[_Write] = []
        retired: list[_segment.Segment] = []
        for item in group:
            seg = self._active
            size = item.size
            if seg is None or (
                seg.planned_bytes > _segment.HEADER_SIZE
                and seg.planned_bytes + size > self._segment_limit
            ):
                if seg is not None:
                    seg.sealed = True
                    retired.append(seg)
                seg = _segment.Segment(
                    self._next_id, _segment.segment_path(self.directory, self._next_id)
                )
                seg.magic = self._magic
                self._next_id += 1
                self._segments[seg.id] = seg
                self._active = seg
                writes.append(_Write(seg, create=True))
            elif not writes or writes[-1].segment is not seg:
                writes.append(_Write(seg, create=False))
            write = writes[-1]
            write.items.append(item)
            write.nbytes += size
            write.records += item.records
            seg.planned_bytes += size
            seg.planned += item.records
        for write in writes:
            write.segment.inflight += 1
        return writes, retired

    @staticmethod
    def _io(
        writes: list[_Write], retired: list[_segment.Segment], directory: Path, magic: bytes
    ) -> None:
        """Write and ``fsync`` one group (runs in a thread; touches only these segments)."""
        created = False
        for write in writes:
            seg = write.segment
            data = [part for item in write.items for part in (item.data, item.tail)]
            if write.create:
                seg.wfd = os.open(
                    seg.path,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                    0o640,
                )
                data.insert(0, magic)
                created = True
            assert seg.wfd is not None
            _write_all(seg.wfd, data)
            os.fsync(seg.wfd)
        for seg in retired:
            if seg.wfd is not None:
                _close_fd(seg.wfd)
                seg.wfd = None
        if created:
            _acklog.fsync_directory(directory)

    @staticmethod
    def _abandon(writes: list[_Write]) -> None:
        """After a failed group: cut each segment back to its durable end and close it."""
        for write in writes:
            seg = write.segment
            if seg.wfd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(seg.wfd, seg.size)
                _close_fd(seg.wfd)
                seg.wfd = None
            if seg.size == 0:
                with contextlib.suppress(OSError):
                    seg.path.unlink()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while True:
            if not self._pending:
                self._writer_wake = loop.create_future()
                try:
                    await self._writer_wake
                finally:
                    self._writer_wake = None
                continue
            delay = self._commit_delay(loop.time())
            if delay > 0:
                self._writer_wake = waiter = loop.create_future()
                timer = loop.call_later(delay, _wake, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._writer_wake = None
                continue
            group, self._pending = self._pending, []
            self._urgent = False
            self._writing = group
            writes, retired = self._plan(group)
            try:
                await self._in_thread(self._io, writes, retired, self.directory, self._magic)
            except OSError as exc:
                _log.warning(
                    "disk queue write failed; retrying in a new segment",
                    extra={"queue": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                await self._in_thread(self._abandon, writes)
                self._undo(writes)
                self._writing = []
                self._pending[:0] = group
                self._urgent = self._urgent or any(i.future is not None for i in group)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.1
            self._writing = []
            self._commit(writes)

    def _commit_delay(self, now: float) -> float:
        """How long the writer may still wait before committing what is pending."""
        if (
            self._flush_interval <= 0
            or self._draining
            or self._closed
            or self._reserved >= self._max_unsynced
            or self._urgent
        ):
            return 0.0
        return self._pending_since + self._flush_interval - now

    def _undo(self, writes: list[_Write]) -> None:
        for write in writes:
            seg = write.segment
            seg.inflight -= 1
            seg.planned_bytes -= write.nbytes
            seg.planned -= write.records
            if seg is self._active:
                self._active = None
            seg.sealed = True
            if seg.size == 0 and not seg.deleted:
                seg.deleted = True
                self._segments.pop(seg.id, None)

    def _commit(self, writes: list[_Write]) -> None:
        for write in writes:
            seg = write.segment
            seg.inflight -= 1
            self._reserved -= write.nbytes
            if not seg.deleted:
                added = write.nbytes + (_segment.HEADER_SIZE if write.create else 0)
                seg.size += added
                seg.records += write.records
                self._disk_bytes += added
                if self._kind == "chunks":
                    seg.counts.extend(item.entries for item in write.items)
                    self._recent.remember(seg, seg.records - write.records, write.items)
            if seg.wfd is not None and seg is not self._active:
                _close_fd(seg.wfd)  # retired or dropped while this write was in flight
                seg.wfd = None
            for item in write.items:
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
                if item.fin is not None:
                    fin, item.fin = item.fin, None
                    fin.settle(core.Delivery.DELIVERED, 1)
        self._gauge.set(self._disk_bytes)
        self._advance_reader()
        _wake(self._data_waiter)
        _wake_all(self._commit_waiters)
        self._commit_waiters = []
        if self._space_waiters:
            self._wake_space()

    def _from_recent(self, seg: _segment.Segment, take: _Take) -> bool:
        """Hand out the reader's next frames of ``seg`` that are kept in memory (durable, as
        pushed: not read back); True if there was at least one."""
        took = False
        while len(take.events) < take.max_records:
            kept = self._recent.head(seg, self._ridx)
            if kept is None:
                return took
            length, chunk = kept
            if take.nbytes + length > take.max_bytes and take.events:
                take.full = True
                return took
            self._recent.forget_head()
            self._roff += length
            self._ridx += 1
            take.events.append(_again(chunk, take.fin))
            take.nbytes += length
            took = True
        take.full = True
        return took

    def _retire_active(self) -> None:
        """Seal the segment being written; the next push starts a new one."""
        seg = self._active
        if seg is None:
            return
        self._active = None
        seg.sealed = True
        if not self._writing and seg.wfd is not None:
            _close_fd(seg.wfd)
            seg.wfd = None

    # ------------------------------------------------------------------ reader

    def _reader_segment(self) -> _segment.Segment | None:
        seg = self._rseg
        if seg is not None:
            if not seg.deleted:
                return seg
            self._close_reader()
        for seg in list(self._segments.values()):
            if seg.id <= self._rlast:
                continue
            if seg.size == 0:
                return None  # its first write is still in flight
            try:
                self._rfd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                _log.warning(
                    "disk queue segment vanished; skipped",
                    extra={"queue": self.name, "path": str(seg.path), "error": str(exc)},
                )
                metrics.DROPPED.labels(reason=_REASON_CORRUPT).inc()
                self._rlast = seg.id
                self._delete(seg)
                continue
            self._rseg = seg
            self._roff = _segment.HEADER_SIZE
            self._rbuf = b""
            self._rpos = 0
            self._ridx = 0
            self._rskip = 0
            return seg
        return None

    def _close_reader(self) -> None:
        if self._rseg is not None:
            self._rlast = max(self._rlast, self._rseg.id)
        _close_fd(self._rfd)
        self._rfd = None
        self._rseg = None
        self._rbuf = b""
        self._rpos = 0

    def _reader_drained(self, seg: _segment.Segment) -> bool:
        return self._roff >= seg.size and self._rpos >= len(self._rbuf)

    def _advance_reader(self) -> None:
        """Finish the reader's segment if it is complete and fully read."""
        seg = self._rseg
        if (
            seg is not None
            and not seg.deleted
            and seg.sealed
            and seg.inflight == 0
            and self._reader_drained(seg)
        ):
            self._finish_reader_segment(seg)

    def _finish_reader_segment(self, seg: _segment.Segment) -> None:
        seg.total = self._ridx
        seg.skip = []
        self._close_reader()
        self._maybe_delete(seg)

    def _take(self, make: _Make, max_records: int, max_bytes: int) -> list[Any]:
        ranges: list[tuple[int, int, int]] = []
        take = _Take(
            core.Finalizer(functools.partial(self._on_ack, ranges)), max_records, max_bytes
        )
        while not take.full:
            seg = self._reader_segment()
            if seg is None:
                break
            first = self._ridx
            decode = _segment.decode_wire if seg.magic == _segment.WIRE_MAGIC else make
            ended = self._decode(seg, take, decode)
            while not ended and not take.full and self._from_recent(seg, take):
                ended = self._decode(seg, take, decode)
            if self._ridx > first:
                ranges.append((seg.id, first, self._ridx))
            if not ended:
                break
            self._finish_reader_segment(seg)
            take.full = take.full or take.nbytes >= take.max_bytes
        if take.events:
            take.fin.add(len(take.events))
            take.fin.seal()
        return take.events

    def _decode(  # noqa: PLR0912, PLR0915 - the pop hot path: one loop, locals only
        self, seg: _segment.Segment, take: _Take, make: _Make
    ) -> bool:
        """Decode frames of ``seg`` into ``take`` (``make`` builds an item of a frame's
        payload); True when the segment ended.

        "Ended" means the segment is complete and fully read, or the rest of it is corrupt.
        This is the pop hot path: one loop, locals only.
        """
        buf, pos, idx = self._rbuf, self._rpos, self._ridx
        size, skip, ended = len(buf), seg.skip, False
        header, crc32 = _FRAME_HEADER, _checksum.crc32
        events, fin, nbytes, max_bytes = take.events, take.fin, take.nbytes, take.max_bytes
        append, room = events.append, take.max_records - len(events)
        recent = self._recent
        # The compiled loop takes the plain frames of encoded events (no acknowledged
        # ranges to skip); this loop then goes on at the first frame it left.
        fast = _TAKE_WIRE if make is _segment.decode_wire and not skip else None
        while room > 0:
            if fast is not None:
                got, pos, nbytes = fast(
                    buf, pos, room, nbytes, max_bytes, bool(events), fin, core.Event, core.Encoded
                )
                events.extend(got)
                idx += len(got)
                room -= len(got)
                if room <= 0:
                    continue
            avail = size - pos
            if not avail and recent and recent.head(seg, idx) is not None:
                break  # the next frame is in memory: ``_from_recent`` hands it out
            if avail >= _FRAME_SIZE:
                length, crc = header(buf, pos)
                end = pos + _FRAME_SIZE + length
                if end <= size:
                    if nbytes + length > max_bytes and events:
                        break
                    start = pos + _FRAME_SIZE
                    if not length or crc32(memoryview(buf)[start:end], 0) != crc:
                        self._corrupt(seg, self._roff - avail, "checksum mismatch")
                        buf, pos, ended = b"", 0, True
                        break
                    pos = end
                    idx += 1
                    if skip and self._skipped(skip, idx - 1):
                        continue
                    try:
                        item = make(buf, start, end, fin)
                    except Exception as exc:  # noqa: BLE001 - any undecodable payload
                        self._undecodable(seg, exc)
                        continue
                    append(item)
                    nbytes += length
                    room -= 1
                    continue
                missing = end - size
            else:
                missing = _FRAME_SIZE - avail
            more = self._read_more(seg, missing)
            if not more:
                ended = self._at_durable_end(seg, more, avail)
                if ended:
                    buf, pos = b"", 0
                break
            buf = buf[pos:] + more if avail else more
            pos = 0
            size = len(buf)
        else:
            take.full = True
        take.nbytes = nbytes
        self._rbuf, self._rpos, self._ridx = buf, pos, idx
        return ended

    def _at_durable_end(self, seg: _segment.Segment, more: bytes | None, avail: int) -> bool:
        """Nothing more to read now: True if the segment ended (complete, or corrupt)."""
        if more is None and avail == 0:
            return seg.sealed and seg.inflight == 0  # else: wait for the writer
        if more is None:
            # Writes are whole frames: a frame cut at the durable end is torn.
            self._corrupt(seg, self._roff - avail, "truncated record")
        return True

    def _read_more(self, seg: _segment.Segment, missing: int) -> bytes | None:
        """The next durable bytes of ``seg`` (at least ``missing``); None when there are
        none now, ``b""`` when the segment is corrupt from here (counted)."""
        left = seg.size - self._roff
        if left <= 0:
            return None
        if left < missing:
            self._corrupt(seg, self._roff, "truncated record")
            return b""
        assert self._rfd is not None
        try:
            chunk = os.pread(self._rfd, min(left, max(_READ_AHEAD, missing)), self._roff)
        except OSError as exc:
            self._corrupt(seg, self._roff, f"read failed: {exc}")
            return b""
        if len(chunk) < missing:
            self._corrupt(seg, self._roff, "segment shorter than expected")
            return b""
        self._roff += len(chunk)
        return chunk

    def _skipped(self, skip: list[list[int]], index: int) -> bool:
        """Record ``index`` was acknowledged before a restart (the reader moves forward)."""
        ski = self._rskip
        while ski < len(skip) and skip[ski][1] <= index:
            ski += 1
        self._rskip = ski
        return ski < len(skip) and skip[ski][0] <= index

    def _corrupt(self, seg: _segment.Segment, offset: int, why: str) -> None:
        metrics.DROPPED.labels(reason=_REASON_CORRUPT).inc()
        _log.warning(
            "corrupt or torn record in a disk queue; skipping the rest of its segment",
            extra={"queue": self.name, "path": str(seg.path), "offset": offset, "reason": why},
        )
        if seg is self._active:
            self._retire_active()
        self._roff = seg.size  # nothing past this point is read: the segment ends here

    def _undecodable(self, seg: _segment.Segment, exc: Exception) -> None:
        metrics.DROPPED.labels(reason=_REASON_CORRUPT).inc()
        _log.warning(
            "undecodable record in a disk queue skipped",
            extra={"queue": self.name, "path": str(seg.path), "error": repr(exc)},
        )

    # ------------------------------------------------------------------ acknowledgements

    def _on_ack(self, ranges: list[tuple[int, int, int]], _status: core.Delivery) -> None:
        """A popped batch was settled: persist and apply its acknowledgement."""
        if self._acks.closed:
            return  # stopped: these records will be delivered again (at-least-once)
        try:
            self._acks.append(ranges)
        except OSError as exc:
            _log.warning(
                "could not log a disk queue acknowledgement; its records may be resent",
                extra={"queue": self.name, "error": str(exc)},
            )
        for sid, start, end in ranges:
            seg = self._segments.get(sid)
            if seg is None:
                continue  # deleted already (dropped, or acknowledged twice)
            seg.add_ack(start, end)
            if seg is self._rseg:
                self._advance_reader()
            else:
                self._maybe_delete(seg)
        if self._space_waiters:
            self._wake_space()

    def _maybe_delete(self, seg: _segment.Segment) -> None:
        if not seg.deleted and seg.total is not None and seg.acked_through(seg.total):
            self._delete(seg)

    def _delete(self, seg: _segment.Segment) -> None:
        seg.deleted = True
        self._segments.pop(seg.id, None)
        self._disk_bytes -= seg.size
        if seg is self._active:
            self._active = None
        if seg is self._rseg:
            self._close_reader()
        if seg.wfd is not None and not self._writing:
            _close_fd(seg.wfd)
            seg.wfd = None
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning(
                "could not delete a disk queue segment",
                extra={"queue": self.name, "path": str(seg.path), "error": str(exc)},
            )
        self._gauge.set(self._disk_bytes)
        if self._space_waiters:
            self._wake_space()

    def _compact(self) -> None:
        self._acks.rewrite(
            (seg.id, start, end) for seg in self._segments.values() for start, end in seg.acked
        )

    async def _ack_loop(self) -> None:
        """``fsync`` the acknowledgement log now and then; rewrite it when it grew."""
        while True:
            await asyncio.sleep(_ACK_SYNC_INTERVAL)
            try:
                if self._acks.size > _ACK_COMPACT_BYTES:
                    self._compact()
                elif self._acks.dirty and (fd := self._acks.fileno()) is not None:
                    self._acks.dirty = False
                    await self._in_thread(os.fsync, fd)
            except OSError as exc:
                _log.warning(
                    "could not sync the acknowledgement log of a disk queue",
                    extra={"queue": self.name, "error": str(exc)},
                )

    # ------------------------------------------------------------------ helpers

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` in a thread; if we are cancelled, the thread's work still completes
        and ``_on_close`` waits for it before closing descriptors."""
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._threads.add(future)
        future.add_done_callback(_forget_thread(self._threads))
        return await asyncio.shield(future)


def _again(chunk: core.Chunk, fin: core.Finalizer) -> core.Chunk:
    """The chunk as a pop hands it out (``_segment.decode_chunk``'s result, from memory)."""
    return core.Chunk(
        chunk.tag,
        chunk.entries,
        chunk.count,
        path=chunk.path,
        file_id=chunk.file_id,
        first=chunk.first,
        end=chunk.end,
        finalizer=fin,
    )


def _forget_thread(threads: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        threads.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: a write error is handled by the awaiting loop

    return done


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _wake_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        _wake(future)


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
