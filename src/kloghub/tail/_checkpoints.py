"""The offset database: one row per file identity, in SQLite (WAL mode).

A row says how far a file was *acknowledged* downstream, never how far it was read.
Commits are small transactions with ``synchronous=NORMAL``: a killed process (SIGKILL)
loses nothing that was committed; a power cut may lose the last few commits, which only
means re-sending (at-least-once), never skipping.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Checkpoint", "CheckpointStore"]

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
)
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


class CheckpointStore:
    """Checkpoints in ``<state_dir>/checkpoints.db``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

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
        self._db.execute(
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
        self._db.execute(
            "UPDATE files SET offset = ?, fingerprint = ?, updated = ? WHERE dev = ? AND ino = ?",
            (offset, fingerprint, time.time(), dev, ino),
        )

    def set_fingerprint(self, dev: int, ino: int, fingerprint: bytes) -> None:
        self._db.execute(
            "UPDATE files SET fingerprint = ?, updated = ? WHERE dev = ? AND ino = ?",
            (fingerprint, time.time(), dev, ino),
        )

    def mark_done(self, dev: int, ino: int) -> None:
        self._db.execute(
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

    def alive(self) -> float | None:
        """When the tailer last said it was running with this state (``None``: never)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'alive'").fetchone()
        if row is not None:
            return float(row[0])
        row = self._db.execute("SELECT max(updated) FROM files").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def touch_alive(self) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('alive', ?)", (time.time(),)
        )

    def forget(self, dev: int, ino: int) -> None:
        self._db.execute("DELETE FROM files WHERE dev = ? AND ino = ?", (dev, ino))

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
                self._db.execute(
                    "UPDATE files SET updated = ? WHERE dev = ? AND ino = ?",
                    (time.time(), cp.dev, cp.ino),
                )
            else:
                self.forget(cp.dev, cp.ino)
                dropped += 1
        return dropped
