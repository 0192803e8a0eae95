"""The dead-letter queue: events a destination refused for good, kept with the reason.

Layout: ``<state_dir>/dlq/<20-digit id>.ndjson``, one JSON object per line::

    {"time": "<when it was dead-lettered, RFC 3339>", "sink": "<sink URL>",
     "error": "<short kind, e.g. document_parsing_exception>", "reason": "<full text>",
     "status": <HTTP status or null>, "tag": "<data stream>", "time_ns": <event time>,
     "id": "<document id>", "doc": {...}}

- :meth:`DeadLetterQueue.put` appends the entries of one call with one ``write`` and
  ``fsync``s before it returns: only then does a sink settle the events ``REJECTED`` (which
  acknowledges them in its disk queue).
- Segments never grow past ``segment_bytes`` (plus one ``put``); each process run starts a
  new one. The segment being written is ``flock``-ed, so ``replay`` in another process
  leaves it alone.
- Size bound: beyond ``max_bytes`` the oldest segments are deleted; their entries are
  counted in ``kloghub_records_dropped{reason="dead_letter_full"}`` and each deleted
  segment logs a warning.
- :func:`summarize` and :func:`read` work on the directory without a running queue (the
  CLI's ``kloghub dlq list``); :mod:`kloghub.sinks._replay` re-sends entries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from kloghub import core
from kloghub.runtime import metrics

__all__ = [
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetters",
    "Rejection",
    "Summary",
    "encode_entry",
    "read",
    "segments",
    "summarize",
]

_log = logging.getLogger("kloghub.sinks.dlq")

SEGMENT_SUFFIX = ".ndjson"
_SEGMENT_BYTES = 8 * 1024 * 1024
_DROP_REASON = "dead_letter_full"


class Rejection(NamedTuple):
    """One event a destination refused for good, and why."""

    event: core.Event
    error: str
    """Short, low-cardinality kind: ``document_parsing_exception``, ``hec_code_6``, ..."""
    reason: str
    """The destination's full explanation."""
    status: int | None
    """The HTTP status of the refusal, when there was one."""


class DeadLetters(Protocol):
    """Where a sink puts what it cannot deliver. Returns once the entries are durable."""

    async def put(self, sink: str, rejections: Sequence[Rejection]) -> None: ...


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One entry read back from the dead-letter queue."""

    time: str
    sink: str
    error: str
    reason: str
    status: int | None
    tag: str
    time_ns: int
    id: str | None
    doc: Any

    @classmethod
    def from_json(cls, value: Any) -> DeadLetter:
        """Raises ValueError when ``value`` is not an entry."""
        if not isinstance(value, dict) or not isinstance(value.get("sink"), str):
            raise ValueError("not a dead-letter entry")
        status = value.get("status")
        time_ns = value.get("time_ns")
        doc_id = value.get("id")
        return cls(
            time=str(value.get("time", "")),
            sink=value["sink"],
            error=str(value.get("error", "")),
            reason=str(value.get("reason", "")),
            status=status if isinstance(status, int) else None,
            tag=str(value.get("tag", "")),
            time_ns=time_ns if isinstance(time_ns, int) else 0,
            id=doc_id if isinstance(doc_id, str) else None,
            doc=value.get("doc"),
        )

    def to_event(self, finalizer: core.Finalizer | None = None) -> core.Event:
        """The event as a sink receives it from the normalizer."""
        return core.Event(self.tag, self.time_ns, {"id": self.id, "doc": self.doc}, finalizer)


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)


def _now() -> str:
    return dt.datetime.now(tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_entry(sink: str, rejection: Rejection, when: str | None = None) -> bytes:
    """One NDJSON line (with its newline) for ``rejection``; never fails on odd values."""
    event = rejection.event
    record = event.record if isinstance(event.record, dict) else {"doc": event.record}
    doc_id = record.get("id")
    entry = {
        "time": when or _now(),
        "sink": sink,
        "error": rejection.error,
        "reason": rejection.reason,
        "status": rejection.status,
        "tag": event.tag,
        "time_ns": event.time_ns,
        "id": doc_id if isinstance(doc_id, str) else None,
        "doc": record.get("doc", record),
    }
    return orjson.dumps(
        entry,
        default=_default,
        option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS,
    )


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of ``directory``, oldest first."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            stem, suffix = path.stem, path.suffix
            if suffix == SEGMENT_SUFFIX and stem.isdigit():
                found.append((int(stem), path))
    found.sort()
    return found


def segment_path(directory: Path, sid: int) -> Path:
    return directory / f"{sid:020d}{SEGMENT_SUFFIX}"


def parse_line(line: bytes) -> DeadLetter | None:
    """The entry on ``line``, or None when it is not one (a torn write, garbage)."""
    try:
        return DeadLetter.from_json(orjson.loads(line))
    except (orjson.JSONDecodeError, ValueError):
        return None


def read(directory: Path) -> Iterator[DeadLetter]:
    """Every readable entry, oldest first; unreadable lines are skipped."""
    for _sid, path in segments(directory):
        try:
            with path.open("rb") as handle:
                for line in handle:
                    entry = parse_line(line)
                    if entry is not None:
                        yield entry
        except FileNotFoundError:
            continue


@dataclasses.dataclass
class Summary:
    """What ``kloghub dlq list`` shows."""

    entries: int = 0
    bytes: int = 0
    segments: int = 0
    unreadable: int = 0
    """Lines that are not entries (a write torn by a crash)."""
    by_error: dict[str, int] = dataclasses.field(default_factory=dict)
    by_sink: dict[str, int] = dataclasses.field(default_factory=dict)
    newest: list[DeadLetter] = dataclasses.field(default_factory=list)
    """The last entries written, oldest of them first."""


def summarize(directory: Path, newest: int = 10) -> Summary:
    """Counts by error kind and by sink, and the ``newest`` last entries."""
    summary = Summary()
    by_error: collections.Counter[str] = collections.Counter()
    by_sink: collections.Counter[str] = collections.Counter()
    last: collections.deque[DeadLetter] = collections.deque(maxlen=max(0, newest))
    for _sid, path in segments(directory):
        try:
            with path.open("rb") as handle:
                summary.segments += 1
                for line in handle:
                    summary.bytes += len(line)
                    entry = parse_line(line)
                    if entry is None:
                        summary.unreadable += 1
                        continue
                    summary.entries += 1
                    by_error[entry.error] += 1
                    by_sink[entry.sink] += 1
                    last.append(entry)
        except FileNotFoundError:
            continue
    summary.by_error = dict(by_error.most_common())
    summary.by_sink = dict(by_sink.most_common())
    summary.newest = list(last)
    return summary


def try_lock(fd: int) -> bool:
    """Take the exclusive advisory lock of a segment without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeadLetterQueue(core.Service):
    """Size-bounded NDJSON segments under ``directory`` (``<state_dir>/dlq``).

    One instance per collector, shared by its sinks (:meth:`put` is serialized).
    """

    name = "dead-letter-queue"

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int = _SEGMENT_BYTES,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.directory = Path(directory)
        self._max_bytes = max(1, int(max_bytes))
        self._segment_bytes = max(1, min(int(segment_bytes), self._max_bytes // 4 or 1))
        self._lock = asyncio.Lock()
        self._fd: int | None = None
        self._active_id = 0
        self._active_bytes = 0
        self._bytes = 0
        self._next_id = 1

    @property
    def disk_bytes(self) -> int:
        """Bytes on disk, as last counted."""
        return self._bytes

    async def put(self, sink: str, rejections: Sequence[Rejection]) -> None:
        """Append ``rejections`` durably (written and ``fsync``-ed) for ``sink``."""
        if self.state is not core.State.RUNNING and self.state is not core.State.STOPPING:
            raise RuntimeError("the dead-letter queue is not running")
        if not rejections:
            return
        when = _now()
        data = b"".join(encode_entry(sink, r, when) for r in rejections)
        async with self._lock:
            await asyncio.to_thread(self._append, data)

    async def _on_start(self) -> None:
        await asyncio.to_thread(self._scan)

    async def _on_drain(self) -> None:
        async with self._lock:
            pass

    async def _on_close(self) -> None:
        self._close_active()

    # ------------------------------------------------------------------ in a thread

    def _scan(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found = segments(self.directory)
        self._next_id = (found[-1][0] + 1) if found else 1
        self._bytes = sum(_size(path) for _sid, path in found)

    def _append(self, data: bytes) -> None:
        full = self._active_bytes + len(data) > self._segment_bytes
        if self._fd is not None and self._active_bytes and full:
            self._close_active()
        if self._fd is None:
            self._open_active()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self._active_bytes += len(data)
        self._bytes += len(data)
        if self._bytes > self._max_bytes:
            self._trim()

    def _open_active(self) -> None:
        sid = self._next_id
        path = segment_path(self.directory, sid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try_lock(fd)
        fsync_dir(self.directory)
        self._fd, self._active_id, self._active_bytes = fd, sid, 0
        self._next_id = sid + 1

    def _close_active(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # also releases the lock
        self._fd = None
        self._active_id = 0
        self._active_bytes = 0

    def _trim(self) -> None:
        """Delete the oldest segments until the bytes on disk fit (sizes re-read from disk,
        since a replay may have shrunk or removed segments)."""
        found = segments(self.directory)
        sizes = {sid: _size(path) for sid, path in found}
        total = sum(sizes.values())
        for sid, path in found:
            if total <= self._max_bytes:
                break
            if sid == self._active_id:
                continue
            total -= self._drop_counted(path, sizes[sid])
        if total > self._max_bytes and self._active_id:
            # One put larger than the bound: seal the segment it went to and drop it too.
            sid, path = self._active_id, segment_path(self.directory, self._active_id)
            self._close_active()
            total -= self._drop_counted(path, sizes.get(sid, _size(path)))
        self._bytes = total

    def _drop_counted(self, path: Path, size: int) -> int:
        """Delete ``path`` unless a replay holds it; count its entries. Returns bytes freed."""
        dropped = _drop(path)
        if dropped is None:
            return 0
        metrics.DROPPED.labels(_DROP_REASON).inc(dropped)
        _log.warning(
            "dead-letter queue full; oldest segment deleted",
            extra={"segment": path.name, "entries": dropped, "max_bytes": self._max_bytes},
        )
        return size


def _drop(path: Path) -> int | None:
    """Delete ``path`` unless another process holds its lock; returns the entries it held."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        if not try_lock(fd):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            count = sum(1 for _line in handle)
        path.unlink(missing_ok=True)
        return count
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
