"""The offset database: one row per file identity, in SQLite (WAL mode).

A row says how far a file was *acknowledged* downstream, never how far it was read.
Commits are small transactions with ``synchronous=NORMAL``: a killed process (SIGKILL)
loses nothing that was committed; a power cut may lose the last few commits, which only
means re-sending (at-least-once), never skipping.

A write that fails (``database or disk is full``, an I/O error) raises nothing: it is kept,
in order, with the writes after it, and :attr:`CheckpointStore.problem` says why; the
database keeps its last good rows. :meth:`CheckpointStore.retry` writes them all in one
transaction once the disk takes it. The tailer stops reading while there is a problem, so
what is kept is bounded by what was in flight. A database that cannot be read (damaged by
a crash or a full disk) is set aside next to itself with an error in the log, and a new
one is started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Checkpoint", "CheckpointStore", "StateUnavailableError"]

_log = logging.getLogger("kloghub.tail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (dev, ino)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gone (
    path TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gone_path ON gone (path)
"""


@dataclass
class Checkpoint:
    dev: int
    ino: int
    file_id: str
    """Stable identity of the file's content (survives rotation and gzip), for document ids."""
    fingerprint: bytes
    path: str
    offset: int
    done: bool
    """The file was read to its end after it was rotated or deleted."""


class StateUnavailableError(Exception):
    """The state directory cannot be opened or written now (full, I/O error): try later."""


def _check(db: sqlite3.Connection) -> None:
    check = db.execute("PRAGMA quick_check").fetchone()
    if check is None or check[0] != "ok":
        raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        _check(db)
    except BaseException:
        db.close()
        raise
    return db


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A database that cannot be read, as opposed to one that cannot be written now."""
    if isinstance(exc, sqlite3.OperationalError):
        return "malformed" in str(exc) or "not a database" in str(exc)
    return True


class CheckpointStore:
    """Checkpoints in ``<state_dir>/checkpoints.db``.

    Raises :class:`StateUnavailableError` when the database cannot be opened now (a full
    disk at start-up: the caller waits and tries again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[tuple[str, tuple[object, ...]]] = []
        """Writes that failed (and those after them), in order, for :meth:`retry`."""
        self.problem: str | None = None
        """Why writes fail now (``None``: they do not)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = _connect(path)
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                self._set_aside(exc)
                self._db = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StateUnavailableError(f"{path}: {exc}") from exc

    def _set_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            name = f"{self.path}{suffix}"
            if os.path.exists(name):
                os.replace(name, f"{self.path}.damaged-{stamp}{suffix}")
        _log.error(
            "checkpoint database damaged: set aside, starting with no checkpoints; "
            "files are read again from their start (lines may be shipped twice)",
            extra={
                "path": str(self.path),
                "set_aside": f"{self.path}.damaged-{stamp}",
                "error": str(exc),
            },
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.retry()
        self._db.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        if self.pending:
            self.pending.append((sql, params))
            return
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            self.pending.append((sql, params))
            self.failed(exc)

    def failed(self, exc: Exception) -> None:
        """A write (or a read) failed: keep the last good rows, say why."""
        if self.problem is None:
            _log.warning(
                "checkpoints cannot be written; the last good ones are kept",
                extra={"path": str(self.path), "error": str(exc)},
            )
        self.problem = str(exc)

    def retry(self) -> bool:
        """Write what is pending (and prove a write works); ``True`` when all is written."""
        if self.problem is None and not self.pending:
            return True
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, params in self.pending:
                self._db.execute(sql, params)
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('alive', ?)", (time.time(),)
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self.problem = str(exc)
            return False
        if self.problem is not None:
            _log.info(
                "checkpoints written again",
                extra={"path": str(self.path), "writes": len(self.pending)},
            )
        self.pending.clear()
        self.problem = None
        return True

    def all(self) -> list[Checkpoint]:
        rows = self._db.execute(
            "SELECT dev, ino, file_id, fingerprint, path, offset, done FROM files"
        ).fetchall()
        return [Checkpoint(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], bool(r[6])) for r in rows]

    def get(self, dev: int, ino: int) -> Checkpoint | None:
        row = self._db.execute(
            "SELECT dev, ino, file_id, fingerprint, path, offset, done FROM files "
            "WHERE dev = ? AND ino = ?",
            (dev, ino),
        ).fetchone()
        if row is None:
            return None
        return Checkpoint(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], bool(row[6]))

    def put(self, cp: Checkpoint) -> None:
        """Write ``cp``; a row of another identity at its inode (the inode was reused, or
        the file truncated) leaves its fingerprint in ``gone``: the gzip its file may have
        become is still known (:meth:`fingerprints_near`)."""
        self._write(
            "INSERT INTO gone (path, fingerprint, updated) SELECT path, fingerprint, ? "
            "FROM files WHERE dev = ? AND ino = ? AND file_id != ? AND length(fingerprint) > 0",
            (time.time(), cp.dev, cp.ino, cp.file_id),
        )
        self._write(
            "INSERT OR REPLACE INTO files (dev, ino, file_id, fingerprint, path, offset, done, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cp.dev,
                cp.ino,
                cp.file_id,
                cp.fingerprint,
                cp.path,
                cp.offset,
                int(cp.done),
                time.time(),
            ),
        )

    def commit_offset(self, dev: int, ino: int, offset: int, fingerprint: bytes) -> None:
        self._write(
            "UPDATE files SET offset = ?, fingerprint = ?, updated = ? WHERE dev = ? AND ino = ?",
            (offset, fingerprint, time.time(), dev, ino),
        )

    def set_fingerprint(self, dev: int, ino: int, fingerprint: bytes) -> None:
        self._write(
            "UPDATE files SET fingerprint = ?, updated = ? WHERE dev = ? AND ino = ?",
            (fingerprint, time.time(), dev, ino),
        )

    def mark_done(self, dev: int, ino: int) -> None:
        self._write(
            "UPDATE files SET done = 1, updated = ? WHERE dev = ? AND ino = ?",
            (time.time(), dev, ino),
        )

    def near(self, path: str) -> list[Checkpoint]:
        """Rows of files that lived at ``path`` or at one of its rotated names."""
        rows = self._db.execute(
            "SELECT dev, ino, file_id, fingerprint, path, offset, done FROM files "
            "WHERE path = ? OR substr(path, 1, ?) = ?",
            (path, len(path) + 1, path + "."),
        ).fetchall()
        return [Checkpoint(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], bool(r[6])) for r in rows]

    def fingerprints_near(self, path: str) -> list[bytes]:
        """Fingerprints of the files that lived at ``path`` (or a rotated name of it) and
        whose rows were replaced when their inode was reused."""
        rows = self._db.execute(
            "SELECT fingerprint FROM gone WHERE path = ? OR substr(path, 1, ?) = ?",
            (path, len(path) + 1, path + "."),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def alive(self) -> float | None:
        """When the tailer last said it was running with this state (``None``: never)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'alive'").fetchone()
        if row is not None:
            return float(row[0])
        row = self._db.execute("SELECT max(updated) FROM files").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def touch_alive(self) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES ('alive', ?)", (time.time(),))

    def forget(self, dev: int, ino: int) -> None:
        self._write("DELETE FROM files WHERE dev = ? AND ino = ?", (dev, ino))

    def expire(self, older_than_s: float, exists: Callable[[Checkpoint], bool]) -> int:
        """Drop rows of finished files not touched for ``older_than_s`` seconds whose file
        is gone (``exists``: still on disk, e.g. a rotated file not yet compressed; those
        are touched instead, so a row outlives its file by ``older_than_s``: the gzip the
        file becomes is still told from an unknown one)."""
        rows = self._db.execute(
            "SELECT dev, ino, file_id, fingerprint, path, offset, done FROM files "
            "WHERE done = 1 AND updated < ?",
            (time.time() - older_than_s,),
        ).fetchall()
        dropped = 0
        for r in rows:
            cp = Checkpoint(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], bool(r[6]))
            if exists(cp):
                self._write(
                    "UPDATE files SET updated = ? WHERE dev = ? AND ino = ?",
                    (time.time(), cp.dev, cp.ino),
                )
            else:
                self.forget(cp.dev, cp.ino)
                dropped += 1
        self._write("DELETE FROM gone WHERE updated < ?", (time.time() - older_than_s,))
        return dropped
