"""The tailer: discovery, reading, rotation, truncation, deletion and checkpoints.

The tailer knows files, not Kubernetes, nor lines: a source gives it :class:`FileSpec`
globs and a :class:`Reader` that takes the bytes read from each file with their offset
(and cuts, parses and encodes them). For what it hands on, the source asks
:meth:`Tailer.finalizer`; when that fires, the file's :class:`OffsetTracker` moves and the
new committed offset is written to the checkpoint store. See DESIGN.md
next to this file for the cases and the known limits.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import gzip
import logging
import os
import sqlite3
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Protocol

from kloghub import config, core
from kloghub.runtime import metrics
from kloghub.tail._checkpoints import Checkpoint, CheckpointStore, StateUnavailableError
from kloghub.tail._file import TailedFile, fingerprint_matches
from kloghub.tail._inotify import Watcher
from kloghub.tail._spec import FileSpec

__all__ = ["Reader", "Tailer"]

_log = logging.getLogger("kloghub.tail")


class Reader(Protocol):
    """What the tailer hands bytes to (the source); both wait under back-pressure."""

    async def read(self, tf: TailedFile, data: bytes, offset: int) -> None:
        """``data`` was read from ``tf`` at ``offset`` (after a truncation or a
        :meth:`TailedFile.seek`, not where the previous read ended)."""

    async def flush(self, tf: TailedFile, *, force: bool) -> None:
        """Hand on what is held for ``tf`` past its timeouts (everything with ``force``:
        end of a rotated file, drain)."""

    def holding(self, tf: TailedFile) -> bool:
        """Whether bytes of ``tf`` are held that a later timed :meth:`flush` may hand on."""


CHUNK_BYTES = 1024 * 1024
_READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)
"""What reading a file (a damaged gzip among them) may raise: the file is skipped, counted."""
_RESCAN_MIN_S = 0.25
_GAUGE_INTERVAL_S = 5.0  # lag in bytes: one fstat per file; scrapes come every 15-60 s
_FORGET_DONE_AFTER_S = 3600.0
STATE_RETRY_S = 1.0
"""How often a full state disk is tried again (the checkpoint store, while reading waits)."""
_EXPIRE_EVERY_S = 60.0
_UNSEEN_HORIZON_S = _FORGET_DONE_AFTER_S - 300.0
"""A rotated file no row knows is read when modified after this long before the tailer
was last alive: a row outlives its file by ``_FORGET_DONE_AFTER_S``, so within this
horizon "no row" means "never read", not "read and forgotten"."""


class Tailer(core.Service):
    """Tails every file matched by ``specs`` and emits parsed records."""

    name = "tailer"

    def __init__(
        self,
        specs: list[FileSpec],
        sources: config.SourcesConfig,
        state_dir: Path,
        reader: Reader,
        *,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.specs = specs
        self.sources = sources
        self.state_dir = state_dir
        self._reader = reader
        self.files: dict[tuple[int, int], TailedFile] = {}
        self._store: CheckpointStore | None = None
        self._watcher = Watcher()
        self._last_scan = 0.0
        self._first_scan = True
        self._active: set[tuple[int, int]] = set()  # files that gave data on their last read
        self._held: set[tuple[int, int]] = set()  # files the reader holds bytes of
        self.paused_seconds = 0.0
        self.stats = {
            "rotations": 0,
            "truncations": 0,
            "gz_continuations": 0,
            "deleted_unread_bytes": 0,
            "unseen_rotated": 0,
            "unseen_too_old": 0,
            "resumed_at_start": 0,
            "state_retries": 0,
        }
        self._horizon: float | None = None
        self._last_expire = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        self._watcher.open()
        self._read_task = self.spawn("read-loop", self._run())
        self.spawn("gauges", self._gauge_loop())

    def problem(self) -> str | None:
        """A readiness check: why the tailer does not read now (``None``: it does)."""
        if self._store is None:
            return self._open_problem
        if self._store.problem is not None:
            return (
                f"checkpoints cannot be written ({self._store.problem}): reading paused "
                "until the state directory has space"
            )
        return None

    _open_problem: str | None = "opening the checkpoint database"

    async def _open_state(self) -> bool:
        """Open the checkpoint store; while the state disk cannot take it (full), wait
        and try again (the daemon stays up, not ready). ``False``: stopped meanwhile."""
        path = self.state_dir / "checkpoints.db"
        warned = False
        while not self._stopping:
            try:
                store = CheckpointStore(path)
            except StateUnavailableError as exc:
                self._open_problem = f"cannot open the checkpoint database: {exc}"
                if not warned:
                    warned = True
                    _log.warning(
                        "cannot open the checkpoint database; waiting for the state "
                        "directory to take it",
                        extra={"path": str(path), "error": str(exc)},
                    )
                self.stats["state_retries"] += 1
                await asyncio.sleep(STATE_RETRY_S)
                continue
            alive = store.alive()
            self._horizon = None if alive is None else alive - _UNSEEN_HORIZON_S
            store.touch_alive()
            self._store = store
            self._open_problem = None
            if warned:
                _log.info("checkpoint database open", extra={"path": str(path)})
            return True
        return False

    async def _run(self) -> None:
        if not await self._open_state():
            return
        try:
            self._resume_rotated()
        except sqlite3.Error as exc:
            assert self._store is not None
            self._store.failed(exc)
        await self._loop()

    async def _wait_for_space(self) -> None:
        """Back-pressure from the state disk: read nothing (the lines stay in the files)
        until the checkpoints that could not be written are."""
        store = self._store
        assert store is not None
        _log.warning(
            "state directory cannot take checkpoints; reading paused until it can",
            extra={"path": str(store.path), "error": store.problem},
        )
        while not self._stopping:
            await asyncio.sleep(STATE_RETRY_S)
            self.stats["state_retries"] += 1
            if store.retry():
                _log.info("state directory writable again; reading resumes")
                return

    async def _on_drain(self) -> None:
        # Stop reading; flush what parsers hold, then wait for outstanding acknowledgements.
        self._stopping = True
        self._watcher.poke()
        if self._read_task is not None:
            await asyncio.wait({self._read_task})
        for tf in list(self.files.values()):
            await self._reader.flush(tf, force=True)
        # Acknowledgements arrive through finalizer callbacks of other components.
        while any(tf.tracker.in_flight for tf in self.files.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _on_close(self) -> None:
        for tf in list(self.files.values()):
            tf.close()
        self.files.clear()
        self._watcher.close()
        metrics.FILES_TAILED.set(0)
        if self._store is not None:
            self._store.close()
            self._store = None

    _stopping = False
    _read_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ main loop

    async def _loop(self) -> None:
        last_full = 0.0
        store = self._store
        assert store is not None
        while not self._stopping:
            if store.problem is not None:
                await self._wait_for_space()
                continue
            now = time.monotonic()
            since = now - self._last_scan
            if (
                self._first_scan
                or since >= self.sources.rescan_interval
                or (since >= _RESCAN_MIN_S and self._watcher.take_structural())
            ):
                try:
                    self._scan()
                except sqlite3.Error as exc:
                    store.failed(exc)
                    continue
            changed = self._watcher.take_changed()
            full = (
                changed is None
                or not self._watcher.complete
                or now - last_full >= self.sources.progress_check_interval
            )
            if full:
                last_full = now
                due = [tf for tf in self.files.values() if self._moved_on(tf)]
            else:
                due = [tf for tf in self.files.values() if self._due(tf, changed)]
            progressed = False
            read: list[TailedFile] = []
            for tf in due:
                if self._stopping:
                    return
                if await self._read_once(tf):
                    progressed = True
                    read.append(tf)
                    self._active.add(tf.key)
                else:
                    self._active.discard(tf.key)
            await self._flush_timeouts(read)
            if progressed:
                await asyncio.sleep(0)
                continue
            await self._watcher.wait(self._idle_wait(last_full))

    def _moved_on(self, tf: TailedFile) -> bool:
        """The progress check: one ``stat`` tells whether ``tf`` grew, shrank or was
        renamed or deleted since it was last read to its end (then it is read)."""
        if tf.detached or tf.key in self._active or tf.key in self._held:
            return True
        try:
            st = os.stat(tf.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != tf.key or st.st_size != tf.pos

    def _due(self, tf: TailedFile, changed: set[str] | None) -> bool:
        """Whether ``tf`` is read on a pass that is not a full one."""
        return (
            tf.key in self._active
            or tf.key in self._held
            or tf.detached
            or changed is None
            or os.path.dirname(tf.path) in changed
        )

    def _idle_wait(self, last_full: float) -> float:
        """How long an idle loop sleeps: with complete inotify coverage, until the next
        progress check (or a held line's timeout); else ``poll_interval`` (stat polling)."""
        if self._watcher.structural_pending:
            return _RESCAN_MIN_S
        if not self._watcher.complete or self._held:
            return self.sources.poll_interval
        elapsed = time.monotonic() - last_full
        return max(self.sources.poll_interval, self.sources.progress_check_interval - elapsed)

    async def _read_once(self, tf: TailedFile) -> bool:
        """One read from ``tf``; at EOF, check for rotation, truncation and deletion."""
        store = self._store
        if store is not None and store.problem is not None:
            return False  # nothing goes out under a row (or fingerprint) not on disk yet
        if tf.pos and not self._same_head(tf):
            self._truncated(tf, tf.size())  # copytruncate, then more written than was read
        offset = tf.pos
        try:
            data = tf.read(CHUNK_BYTES)
        except _READ_ERRORS as exc:
            _log.warning("read failed; closing file", extra={"path": tf.path, "error": str(exc)})
            metrics.DROPPED.labels("read_failed").inc()
            await self._finish(tf)
            return False
        if not data:
            await self._at_eof(tf)
            return False
        metrics.BYTES_READ.labels(tf.spec.kind).inc(len(data))
        if len(tf.fingerprint) < self.sources.fingerprint_bytes and not tf.compressed:
            self._grow_fingerprint(tf)
            if store is not None and store.problem is not None:
                # The grown fingerprint did not reach the disk: after a crash the file
                # would look like another one and be read again under a new file_id.
                tf.seek(offset)
                return False
        started = time.monotonic()
        await self._reader.read(tf, data, offset)
        waited = time.monotonic() - started
        if waited > 0.01:
            self.paused_seconds += waited
            metrics.TAIL_PAUSED_SECONDS.inc(waited)
        return True

    def _grow_fingerprint(self, tf: TailedFile) -> None:
        """A file opened short (often empty: a new ``0.log``) gets its fingerprint as it
        grows, stored *before* its bytes are handed on: a row never claims a file_id for
        data whose head it does not know (inode reuse would adopt it)."""
        want = min(self.sources.fingerprint_bytes, tf.pos)
        if want <= len(tf.fingerprint):
            return
        try:
            head = tf.head(want)
        except OSError:
            return
        tf.fingerprint = head
        if self._store is not None:
            self._store.set_fingerprint(tf.dev, tf.ino, head)

    def finalizer(self, tf: TailedFile, end_offset: int, count: int = 1) -> core.Finalizer:
        """What the source hands on with data of ``tf`` up to ``end_offset`` (reserved in
        stream order): when all ``count`` of it are settled, the checkpoint may move there."""
        tracker = tf.tracker
        token = tracker.reserve(end_offset)
        return core.Finalizer(lambda _status: self._acknowledged(tf, tracker, token), count)

    def _acknowledged(self, tf: TailedFile, tracker: core.OffsetTracker, token: list[int]) -> None:
        if tracker is not tf.tracker:
            return  # acknowledgement of data from before a truncation
        if tracker.acknowledge(token) and self._store is not None:
            self._store.commit_offset(tf.dev, tf.ino, tracker.committed, tf.fingerprint)
            if tf.closed and tf.final_offset is not None and tracker.in_flight == 0:
                self._store.mark_done(tf.dev, tf.ino)

    async def _flush_timeouts(self, files: list[TailedFile]) -> None:
        """Timed flushes of what the reader holds for ``files`` (those just read) and for
        the files it held bytes of; remembers which still hold some (their timeouts keep
        the idle loop on ``poll_interval``)."""
        keys = {tf.key for tf in files}
        for key in self._held - keys:
            held = self.files.get(key)
            if held is not None:
                files.append(held)
        for tf in files:
            if tf.key not in self.files:
                self._held.discard(tf.key)
                continue
            await self._reader.flush(tf, force=False)
            if self._reader.holding(tf):
                self._held.add(tf.key)
            else:
                self._held.discard(tf.key)

    # ------------------------------------------------------------------ end of data

    async def _at_eof(self, tf: TailedFile) -> None:
        if tf.compressed:
            await self._finish(tf)
            return
        size = tf.size()
        if size < tf.pos:
            self._truncated(tf, size)
            return
        if not tf.detached:
            try:
                st = os.stat(tf.path)
                moved = (st.st_dev, st.st_ino) != (tf.dev, tf.ino)
            except FileNotFoundError:
                moved = True
            except OSError:
                moved = False
            if not moved:
                return
            tf.detached = True
            tf.detached_at = time.monotonic()
            self.stats["rotations"] += 1
            metrics.ROTATIONS.inc()
            # More rotations than reads (a stalled output): files born and rotated away
            # since the last scan are among the siblings, unknown.
            self._read_unseen_siblings(tf.spec, tf.path, time.time() - _UNSEEN_HORIZON_S)
            # One more read: data written between the last read and the rename.
            return
        await self._finish(tf)

    def _forget(self, tf: TailedFile) -> None:
        self.files.pop(tf.key, None)
        self._active.discard(tf.key)
        self._held.discard(tf.key)

    def _same_head(self, tf: TailedFile) -> bool:
        """Whether the file still starts with its fingerprint (a copytruncate followed by
        more writes than were read leaves it longer, but with other first bytes)."""
        if not tf.fingerprint or tf.compressed:
            return True
        try:
            return tf.head(len(tf.fingerprint)) == tf.fingerprint
        except OSError:
            return True

    def _truncated(self, tf: TailedFile, size: int) -> None:
        """Copytruncate: the copy (a sibling starting with the file's fingerprint) is read
        on from the committed offset under the old identity; the truncated file is read
        from the start as a **new** identity, so no (file_id, offset) repeats."""
        _log.info(
            "file truncated; reading it again from the start",
            extra={"path": tf.path, "offset": tf.pos, "size": size},
        )
        self.stats["truncations"] += 1
        metrics.TRUNCATIONS.inc()
        old = Checkpoint(
            tf.dev, tf.ino, tf.file_id, tf.fingerprint, tf.path, tf.committed, done=False
        )
        if old.fingerprint and not self._continue_copy(tf.spec, old):
            lost = tf.pos - tf.committed
            if lost > 0:
                _log.info(
                    "no copy of the truncated file found; bytes read and not yet "
                    "acknowledged are only in flight",
                    extra={"path": tf.path, "bytes": lost},
                )
        try:
            head = tf.head(self.sources.fingerprint_bytes)
        except OSError:
            head = b""
        tf.rewind(_new_file_id(), head)
        if self._store is not None:
            self._store.put(Checkpoint(tf.dev, tf.ino, tf.file_id, head, tf.path, 0, done=False))
            # More copytruncates than reads (back-pressure held the loop): the copies made
            # in between hold content no row knows; they are read as files of their own.
            self._read_unseen_siblings(tf.spec, tf.path, time.time() - _UNSEEN_HORIZON_S)

    def _continue_copy(self, spec: FileSpec, cp: Checkpoint) -> bool:
        """Vector's way with copytruncate: a sibling (``<path>.*``, plain or gzip) whose
        head is the truncated file's fingerprint holds what it lost; read it from the
        committed offset as the same identity (same ids: what is read again is absorbed)."""
        for sibling in sorted(glob.glob(glob.escape(cp.path) + ".*")):
            if sibling.endswith(".tmp"):
                continue
            try:
                if sibling.endswith(".gz"):
                    handle: Any = gzip.open(sibling, "rb")  # noqa: SIM115 - owned by the TailedFile
                    head = handle.read(len(cp.fingerprint))
                    st = os.fstat(handle.fileno())
                else:
                    handle = open(sibling, "rb")  # noqa: SIM115
                    st = os.fstat(handle.fileno())
                    head = handle.read(len(cp.fingerprint))
                key = (st.st_dev, st.st_ino)
                if (
                    head != cp.fingerprint
                    or key in self.files
                    or (not sibling.endswith(".gz") and st.st_size <= cp.offset)
                ):
                    handle.close()
                    continue
                handle.seek(cp.offset)
            except _READ_ERRORS as exc:
                _log.warning("cannot read rotated file", extra={"path": sibling, "error": str(exc)})
                continue
            _log.info(
                "reading the copy of a truncated file from its checkpoint",
                extra={"path": sibling, "offset": cp.offset},
            )
            copy = Checkpoint(
                st.st_dev, st.st_ino, cp.file_id, cp.fingerprint, sibling, cp.offset, done=False
            )
            compressed = sibling.endswith(".gz")
            if self._store is not None:
                self._store.put(copy)
            tf = self._track(spec, sibling, handle, copy, compressed=compressed)
            tf.detached = True
            tf.detached_at = time.monotonic()
            return True
        return False

    async def _finish(self, tf: TailedFile) -> None:
        """Read to the end after rotation/deletion: flush what the source holds and close."""
        await self._reader.flush(tf, force=True)
        tf.close()
        self._forget(tf)
        if self._store is not None and tf.tracker.in_flight == 0:
            self._store.mark_done(tf.dev, tf.ino)

    # ------------------------------------------------------------------ discovery

    def _scan(self) -> None:
        self._last_scan = time.monotonic()
        first = self._first_scan
        self._first_scan = False
        seen: set[tuple[int, int]] = set()
        paths: dict[str, FileSpec] = {}
        for spec in self.specs:
            for pattern in spec.include:
                for directory, contents, names in _glob_dirs(pattern):
                    self._watcher.watch_dir(directory, contents=contents, names=names)
                for found in glob.glob(pattern):
                    if spec.excluded(found):
                        continue
                    real = os.path.realpath(found)
                    if spec.excluded(real):
                        continue
                    try:
                        st = os.stat(real)
                    except OSError:
                        continue
                    if not _is_regular(st.st_mode):
                        continue
                    key = (st.st_dev, st.st_ino)
                    seen.add(key)
                    paths.setdefault(real, spec)
                    tf = self.files.get(key)
                    if tf is not None:
                        continue
                    if len(self.files) >= self.sources.max_open_files:
                        continue
                    self._open(spec, real, st, first, found)
        if first:
            self._read_unseen_at_start(paths)
        self._close_stale_deleted()
        self._watcher.forget_missing()
        self._expire()

    def _read_unseen_at_start(self, paths: dict[str, FileSpec]) -> None:
        """Files born and rotated away while the agent was down were never opened, so no
        row names them: read them (oldest first) before the kubelet deletes them. The
        first start of all (no state) reads none: rotated files are history then."""
        if self._horizon is None or self._store is None:
            return
        for cp in self._store.all():
            spec = self._discoverable(cp.path)
            if spec is not None:
                paths.setdefault(cp.path, spec)
        for path, spec in sorted(paths.items()):
            self._read_unseen_siblings(spec, path, self._horizon, resume_known=True)

    def _expire(self) -> None:
        now = time.monotonic()
        if self._store is not None and now - self._last_expire >= _EXPIRE_EVERY_S:
            self._last_expire = now
            self._store.touch_alive()
            self._store.expire(_FORGET_DONE_AFTER_S, _still_on_disk)

    def _open(
        self, spec: FileSpec, path: str, st: os.stat_result, first_scan: bool, found: str
    ) -> None:
        assert self._store is not None
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the TailedFile owns and closes it
        except OSError as exc:
            _log.warning("cannot open file", extra={"path": path, "error": str(exc)})
            return
        fp = handle.read(self.sources.fingerprint_bytes)
        cp = self._store.get(st.st_dev, st.st_ino)
        if cp is not None and self._adoptable(cp, fp, st.st_size):
            offset, file_id = cp.offset, cp.file_id
        else:
            if cp is not None:
                _log.info(
                    "inode reused by a new file (or the file was truncated while the agent "
                    "was away); reading it from the start as a new file",
                    extra={"path": path, "was": cp.path},
                )
                if cp.fingerprint and not cp.done and cp.path == path:
                    self._continue_copy(spec, cp)  # copytruncate while the agent was away
            from_tail = spec.read_from == "tail" and first_scan
            offset = st.st_size if from_tail else 0
            file_id = _new_file_id()
        current = Checkpoint(st.st_dev, st.st_ino, file_id, fp, path, offset, done=False)
        if current != cp:
            self._store.put(current)
        handle.seek(offset)
        self._watcher.watch_dir(os.path.dirname(path))
        tf = self._track(spec, path, handle, current, compressed=False)
        tf.discovered_as = found

    def _adoptable(self, cp: Checkpoint, head: bytes, size: int) -> bool:
        """Whether the file at ``cp``'s inode is ``cp``'s file: its head starts with the
        row's fingerprint, which is not empty and covers what the row read (rows written
        before fingerprints grew have a short one), and it is not shorter than the row's
        offset. Anything else is another file that reused the inode: never adopt it."""
        fp = cp.fingerprint
        return (
            bool(fp)
            and len(fp) >= min(self.sources.fingerprint_bytes, cp.offset)
            and head.startswith(fp)
            and size >= cp.offset
        )

    def _track(
        self, spec: FileSpec, path: str, handle: object, cp: Checkpoint, *, compressed: bool
    ) -> TailedFile:
        tf = TailedFile(
            spec,
            path,
            handle,  # type: ignore[arg-type]
            dev=cp.dev,
            ino=cp.ino,
            file_id=cp.file_id,
            fingerprint=cp.fingerprint,
            offset=cp.offset,
            compressed=compressed,
        )
        self.files[(cp.dev, cp.ino)] = tf
        self._active.add(tf.key)  # read on the next pass, whatever inotify says
        metrics.FILES_TAILED.set(len(self.files))
        return tf

    def _close_stale_deleted(self) -> None:
        """Never hold a deleted file open past ``close_deleted_after`` (disks fill up)."""
        limit = self.sources.close_deleted_after
        now = time.monotonic()
        for tf in list(self.files.values()):
            if tf.detached and tf.detached_at is not None and now - tf.detached_at > limit:
                try:
                    exists = os.path.exists(f"/proc/self/fd/{tf.handle.fileno()}")
                except ValueError:
                    exists = False
                unread = max(0, tf.size() - tf.pos) if exists else 0
                if unread:
                    self.stats["deleted_unread_bytes"] += unread
                    metrics.DROPPED.labels("deleted_unread").inc()
                    _log.warning(
                        "closing a rotated or deleted file before its end",
                        extra={"path": tf.path, "unread_bytes": unread},
                    )
                tf.close()
                self._forget(tf)

    def _read_unseen_siblings(
        self, spec: FileSpec, path: str, horizon: float, *, resume_known: bool = False
    ) -> None:
        """Read the rotated names of ``path`` (``<path>.*``, plain or gzip) that no row
        knows — by inode, or by fingerprint for a gzip — as new files, oldest first.

        ``resume_known`` (the first scan of a start): a plain rotated file whose row is not
        done and that nothing tails was renamed between :meth:`_resume_rotated` and this
        scan (the kubelet does not wait for us): it is read on from its row's offset."""
        assert self._store is not None
        rows = self._store.near(path)
        by_key = {(cp.dev, cp.ino): cp for cp in rows}
        prints = [cp.fingerprint for cp in rows if cp.fingerprint]
        prints += self._store.fingerprints_near(path)
        found: list[tuple[float, str, os.stat_result]] = []
        for sibling in glob.glob(glob.escape(path) + ".*"):
            if sibling.endswith(".tmp"):
                continue
            try:
                st = os.stat(sibling)
            except OSError:
                continue
            if _is_regular(st.st_mode) and (st.st_dev, st.st_ino) not in self.files:
                found.append((st.st_mtime, sibling, st))
        for mtime, sibling, st in sorted(found):
            compressed = sibling.endswith(".gz")
            try:
                handle: Any = gzip.open(sibling, "rb") if compressed else open(sibling, "rb")  # noqa: SIM115
                head = handle.read(self.sources.fingerprint_bytes)
            except _READ_ERRORS as exc:
                _log.warning(
                    "cannot read a rotated file; it is skipped",
                    extra={"path": sibling, "error": str(exc)},
                )
                metrics.DROPPED.labels("rotated_unreadable").inc()
                continue
            cp = by_key.get((st.st_dev, st.st_ino))
            if (
                resume_known
                and cp is not None
                and not cp.done
                and not compressed
                and self._adoptable(cp, head, st.st_size)
            ):
                self._resume_at_start(spec, sibling, handle, cp)
                continue
            known = (
                not head
                or (not compressed and cp is not None and self._adoptable(cp, head, st.st_size))
                or any(head.startswith(fp) or fp.startswith(head) for fp in prints)
            )
            if known:
                handle.close()
                continue
            if mtime < horizon:
                handle.close()
                self.stats["unseen_too_old"] += 1
                _log.info(
                    "rotated file older than the checkpoints remember; not read",
                    extra={"path": sibling},
                )
                continue
            handle.seek(0)
            new = Checkpoint(st.st_dev, st.st_ino, _new_file_id(), head, sibling, 0, done=False)
            self._store.put(new)
            self.stats["unseen_rotated"] += 1
            _log.info("reading a rotated file the agent never opened", extra={"path": sibling})
            tf = self._track(spec, sibling, handle, new, compressed=compressed)
            tf.detached = True
            tf.detached_at = time.monotonic()
            prints.append(head)

    def _resume_at_start(self, spec: FileSpec, sibling: str, handle: Any, cp: Checkpoint) -> None:
        handle.seek(cp.offset)
        self.stats["resumed_at_start"] += 1
        _log.info(
            "continuing a file rotated while the agent started",
            extra={"path": sibling, "offset": cp.offset},
        )
        tf = self._track(spec, sibling, handle, cp, compressed=False)
        tf.detached = True
        tf.detached_at = time.monotonic()

    def _discoverable(self, path: str) -> FileSpec | None:
        """The spec whose globs match ``path`` (discovery finds it), else ``None``."""
        for spec in self.specs:
            if any(fnmatch.fnmatchcase(path, pat) for pat in spec.include) and not (
                spec.excluded(path)
            ):
                return spec
        return None

    def _reopen_in_place(self, cp: Checkpoint) -> bool:
        """A row not done at a path discovery never finds (a rotated file or a copy read
        as such when the agent stopped): open it there and read it on."""
        spec = self._spec_for(cp.path)
        if spec is None:
            return False
        compressed = cp.path.endswith(".gz")
        try:
            handle: Any = gzip.open(cp.path, "rb") if compressed else open(cp.path, "rb")  # noqa: SIM115
            head = handle.read(len(cp.fingerprint))
            if not cp.fingerprint or head != cp.fingerprint:
                handle.close()
                return False
            handle.seek(cp.offset)
        except _READ_ERRORS:
            return False
        tf = self._track(spec, cp.path, handle, cp, compressed=compressed)
        tf.detached = True
        tf.detached_at = time.monotonic()
        return True

    def _resume_rotated(self) -> None:
        """After a restart: continue files rotated away (renamed or gzipped) while down."""
        assert self._store is not None
        for cp in self._store.all():
            if cp.done:
                continue
            try:
                st = os.stat(cp.path)
                if (st.st_dev, st.st_ino) == (cp.dev, cp.ino):
                    if self._discoverable(cp.path) is not None:
                        continue  # still in place; discovery resumes it
                    if self._reopen_in_place(cp):
                        continue
            except OSError:
                pass
            spec = self._spec_for(cp.path)
            if spec is None or not self._continue_from_sibling(spec, cp):
                _log.warning(
                    "file rotated away before it was read to its end",
                    extra={"path": cp.path, "offset": cp.offset},
                )
                metrics.DROPPED.labels("rotated_unread").inc()
                self._store.mark_done(cp.dev, cp.ino)

    def _continue_from_sibling(self, spec: FileSpec, cp: Checkpoint) -> bool:
        for sibling in sorted(glob.glob(glob.escape(cp.path) + ".*")):
            try:
                if sibling.endswith(".gz"):
                    gz = gzip.open(sibling, "rb")  # noqa: SIM115 - owned by the TailedFile
                    head = gz.read(len(cp.fingerprint))
                    if not cp.fingerprint or not fingerprint_matches(cp.fingerprint, head):
                        gz.close()
                        continue
                    gz.seek(cp.offset)
                    self.stats["gz_continuations"] += 1
                    metrics.GZ_CONTINUATIONS.inc()
                    _log.info(
                        "continuing a rotated file inside its gzip",
                        extra={"path": sibling, "offset": cp.offset},
                    )
                    self._track(spec, sibling, gz, cp, compressed=True)
                    return True
                st = os.stat(sibling)
                if (st.st_dev, st.st_ino) != (cp.dev, cp.ino):
                    continue
                handle = open(sibling, "rb")  # noqa: SIM115
                if not self._adoptable(cp, handle.read(len(cp.fingerprint)), st.st_size):
                    handle.close()
                    continue
                handle.seek(cp.offset)
                tf = self._track(spec, sibling, handle, cp, compressed=False)
            except _READ_ERRORS as exc:
                _log.warning("cannot read rotated file", extra={"path": sibling, "error": str(exc)})
                continue
            tf.detached = True
            tf.detached_at = time.monotonic()
            return True
        return False

    def _spec_for(self, path: str) -> FileSpec | None:
        for spec in self.specs:
            if any(fnmatch.fnmatchcase(path, pat) for pat in spec.include):
                return spec
        return self.specs[0] if self.specs else None

    async def _gauge_loop(self) -> None:
        """Gauges on their own clock: the read loop may be paused by back-pressure."""
        while True:
            self._update_gauges()
            await asyncio.sleep(_GAUGE_INTERVAL_S)

    def _update_gauges(self) -> None:
        lag = 0
        for tf in self.files.values():
            lag += max(0, tf.size() - tf.committed)
        metrics.LAG_BYTES.set(lag)


def _still_on_disk(cp: Checkpoint) -> bool:
    """Whether ``cp``'s inode is still at its path or one of its rotated names."""
    for name in (cp.path, *glob.glob(glob.escape(cp.path) + ".*")):
        try:
            st = os.stat(name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (cp.dev, cp.ino):
            return True
    return False


def _new_file_id() -> str:
    return uuid.uuid4().hex[:16]


def _glob_dirs(pattern: str) -> list[tuple[str, bool, str]]:
    """Every existing directory on the way to a glob's files, from its static prefix down,
    each with whether it is the files' own directory (True) or one above it, and the glob
    of the names in it that lead to the files.

    Watching each level means a new pod folder, its container folder and the first log
    file in it each wake the loop, which then rescans.
    """
    parts = pattern.split("/")
    found: list[tuple[str, bool, str]] = []
    for depth in range(1, len(parts)):
        joined = "/".join(parts[:depth])
        if not joined:
            continue
        own, names = depth == len(parts) - 1, parts[depth]
        if any(ch in joined for ch in "*?["):
            found.extend((d, own, names) for d in glob.glob(joined) if os.path.isdir(d))
        elif os.path.isdir(joined):
            found.append((joined, own, names))
    return found


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
