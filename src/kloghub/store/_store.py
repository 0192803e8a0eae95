"""The embedded store: ECS documents in one SQLite file (WAL mode, FTS5 over the message).

One writer and any number of readers work at the same time (WAL): readers see the last
committed batch and never block the writer. A batch is one transaction, committed with
``synchronous=FULL``, so a committed batch survives a crash of the machine — which is what
lets the sink acknowledge it. The document id is unique: writing a document again (a resent
batch) leaves the store unchanged.

Every call blocks; callers on an event loop run them in a thread (one call at a time per
:class:`Store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from kloghub.store import _schema
from kloghub.store._errors import StoreError

__all__ = ["Prepared", "Retained", "Store", "Stored", "prepare"]

_log = logging.getLogger("kloghub.store")

_NS = 1_000_000_000
_BUSY_TIMEOUT_MS = 10_000
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
_DELETE_CHUNK = 5000
_SIZE_LOW_WATER = 0.9
"""Size retention deletes down to this fraction of the limit, so it does not run per batch."""
_SHRINK_PASSES = 8

_PATHS = tuple(tuple(field.split(".")) for field in _schema.FIELD_COLUMNS)
_INSERT = (
    "INSERT OR IGNORE INTO events (id, time_ns, message, namespace, pod, container, node, host,"
    " level, stream, dataset, user_name, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LAST_SEQ = "SELECT max(seq) FROM events"
_INDEX_TEXT = (
    "INSERT INTO events_fts (rowid, message) "
    "SELECT seq, message FROM events WHERE seq > ? AND message IS NOT NULL"
)
_UNINDEX_TEXT = (
    "INSERT INTO events_fts (events_fts, rowid, message) SELECT 'delete', seq, message "
    "FROM events WHERE seq IN (SELECT value FROM json_each(?)) AND message IS NOT NULL"
)
_DELETE = "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))"
_OLDEST = "SELECT seq FROM events ORDER BY time_ns, seq LIMIT ?"
_OLDEST_BEFORE = "SELECT seq FROM events WHERE time_ns < ? ORDER BY time_ns, seq LIMIT ?"
_MERGE_TEXT_INDEX = "INSERT INTO events_fts (events_fts, rank) VALUES ('merge', 500)"
_SELECT = "SELECT seq, id, time_ns, doc FROM events WHERE "
_COUNT = "SELECT count(*) FROM events WHERE "


class Prepared(NamedTuple):
    """A document ready to be inserted: the values of one row, in column order."""

    values: tuple[Any, ...]


class Stored(NamedTuple):
    """A document read back."""

    seq: int
    """Insertion order (unique, grows)."""
    id: str
    time_ns: int
    doc: dict[str, Any]


class Retained(NamedTuple):
    """What one retention pass deleted."""

    by_age: int
    by_size: int


def _lookup(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
        if value is None:
            return doc.get(".".join(path))  # a flat, dotted key
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in (int, float):
        return str(value)
    return None  # lists and objects are reached through the document's JSON


def prepare(doc: Mapping[str, Any], time_ns: int, doc_id: str | None = None) -> Prepared:
    """Turn an ECS document into a row; ``ValueError`` when it cannot be stored.

    Without ``doc_id`` the id is a hash of the document, so that writing the same document
    twice still stores it once.
    """
    if not isinstance(doc, Mapping):
        raise ValueError(f"a document is a JSON object, not {type(doc).__name__}")
    if type(time_ns) is not int:
        raise ValueError("the document has no integer time")
    try:
        text = orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS, default=str)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError(f"the document cannot be encoded as JSON: {exc}") from None
    if doc_id is None or type(doc_id) is not str or not doc_id:
        doc_id = "h" + hashlib.blake2b(text, digest_size=15).hexdigest()
    plain = doc if type(doc) is dict else dict(doc)
    fields = tuple(_text(_lookup(plain, path)) for path in _PATHS)
    return Prepared((doc_id, time_ns, *fields, text.decode()))


class Store:
    """One store file, opened for writing (creating it if needed) or for reading only."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._conn = conn

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> Store:
        """Open the store at ``path``; :class:`StoreError` says what is wrong if it cannot be.

        ``readonly`` (for searches) never creates anything: a missing file is an error.
        """
        path = Path(path)
        if path.is_dir():
            raise StoreError(path, "is a directory; a store is a file (e.g. store.db)")
        if readonly and not path.exists():
            raise StoreError(
                path,
                "does not exist: nothing was stored there yet, or the store is elsewhere "
                "(--store store:PATH)",
            )
        if not readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(path, f"cannot create its folder: {exc.strerror}") from None
        # mode=rw|rwc: a reader never creates the file, even if it vanished since the check.
        uri = f"{path.absolute().as_uri()}?mode={'rw' if readonly else 'rwc'}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise StoreError(path, f"cannot be opened: {exc}") from None
        try:
            _check_or_create(conn, path, readonly)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, readonly)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def write(self, rows: Sequence[Prepared]) -> int:
        """Insert ``rows`` in one transaction; returns how many were new (others were
        already there). Raises ``sqlite3.Error`` (disk full, locked too long)."""
        if not rows:
            return 0
        with _transaction(self._conn) as conn:
            last = conn.execute(_LAST_SEQ).fetchone()[0] or 0
            inserted = conn.executemany(_INSERT, [row.values for row in rows]).rowcount
            if inserted:
                conn.execute(_INDEX_TEXT, (last,))
        return max(inserted, 0)

    def add(self, docs: Iterable[tuple[str | None, int, Mapping[str, Any]]]) -> int:
        """Prepare and write ``(id, time_ns, doc)`` triples (tests, the demo, imports)."""
        return self.write([prepare(doc, time_ns, doc_id) for doc_id, time_ns, doc in docs])

    # ------------------------------------------------------------------ reading

    def select(
        self,
        where: str = "1",
        params: Sequence[Any] = (),
        *,
        newest_first: bool = True,
        limit: int = 1000,
        after: tuple[int, int] | None = None,
    ) -> list[Stored]:
        """Documents matching ``where``, in time order (ties in insertion order).

        ``where`` is an SQL expression over the columns of :data:`TABLE` with ``?``
        placeholders for every value (never values pasted into the text); ``after`` is the
        ``(time_ns, seq)`` of the last document of the previous page.
        """
        order = "DESC" if newest_first else "ASC"
        # The caller's expression holds placeholders only; values travel as parameters.
        sql = f"{_SELECT}({where})"
        args = list(params)
        if after is not None:
            sql += f" AND (time_ns, seq) {'<' if newest_first else '>'} (?, ?)"
            args += after
        sql += f" ORDER BY time_ns {order}, seq {order} LIMIT ?"
        args.append(limit)
        rows = self._read(sql, args)
        return [Stored(seq, doc_id, t, orjson.loads(doc)) for seq, doc_id, t, doc in rows]

    def count(self, where: str = "1", params: Sequence[Any] = ()) -> int:
        rows = self._read(f"{_COUNT}({where})", params)
        return int(rows[0][0])

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages minus free pages; the WAL not counted)."""
        page_count, free, page_size = self._read(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()", ()
        )[0]
        return int((page_count - free) * page_size)

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _read_error(self.path, exc) from None

    # ------------------------------------------------------------------ retention

    def enforce_retention(
        self,
        *,
        max_age: float | None = None,
        max_bytes: int | None = None,
        now_ns: int | None = None,
    ) -> Retained:
        """Delete documents older than ``max_age`` seconds (by ``@timestamp``), then the
        oldest ones while the store uses more than ``max_bytes`` (down to 90 % of it), and
        give the freed pages back to the file system."""
        by_age = by_size = 0
        if max_age is not None:
            now_ns = time.time_ns() if now_ns is None else now_ns
            cutoff = now_ns - int(max_age * _NS)
            while deleted := self._delete_oldest(_DELETE_CHUNK, cutoff):
                by_age += deleted
        if max_age is not None and by_age:
            self._reclaim()
        if max_bytes is not None and self.used_bytes() > max_bytes:
            by_size = self._shrink(max_bytes)
        return Retained(by_age, by_size)

    def _shrink(self, max_bytes: int) -> int:
        """Delete the oldest documents, sized by the mean row, until under ``max_bytes``."""
        target = int(max_bytes * _SIZE_LOW_WATER)
        deleted = 0
        for _ in range(_SHRINK_PASSES):
            used = self.used_bytes()
            if deleted and used <= max_bytes:
                break
            rows = self.count()
            if rows == 0:
                break
            want = max(1, math.ceil(rows * (used - target) / used))
            while want > 0 and (step := self._delete_oldest(min(_DELETE_CHUNK, want))):
                want -= step
                deleted += step
            self._reclaim()
        return deleted

    def _delete_oldest(self, limit: int, before_ns: int | None = None) -> int:
        select, args = (
            (_OLDEST, (limit,)) if before_ns is None else (_OLDEST_BEFORE, (before_ns, limit))
        )
        with _transaction(self._conn) as conn:
            seqs = orjson.dumps([seq for (seq,) in conn.execute(select, args)]).decode()
            conn.execute(_UNINDEX_TEXT, (seqs,))
            deleted = conn.execute(_DELETE, (seqs,)).rowcount
        return max(deleted, 0)

    def _reclaim(self) -> None:
        """Merge the full-text index's deletion markers and return free pages to the OS."""
        conn = self._conn
        conn.execute(_MERGE_TEXT_INDEX)
        conn.executescript("PRAGMA incremental_vacuum;")  # steps to the end: every free page
        # PASSIVE: never waits for searches in progress; the file shrinks at this checkpoint
        # or, while a search holds an old snapshot, at a later one.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock up front, no upgrade
    deadlock with another writer), rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_or_create(conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        app_id, version, objects = conn.execute(
            "SELECT * FROM pragma_application_id(), pragma_user_version(), "
            "(SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if app_id == 0 and objects == 0:
            if readonly:
                raise StoreError(path, "is empty: no kloghub store was ever written there")
            _create(conn, path)
        elif app_id != _schema.APPLICATION_ID:
            raise StoreError(path, "is an SQLite database of another program, not a kloghub store")
        elif version > _schema.SCHEMA_VERSION:
            raise StoreError(
                path,
                f"was written by a newer kloghub (schema {version}; this one reads up to "
                f"{_schema.SCHEMA_VERSION})",
            )
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        else:
            _tune_writer(conn, path)
        conn.execute("SELECT seq, id, time_ns, doc FROM events LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise _read_error(path, exc) from None


def _create(conn: sqlite3.Connection, path: Path) -> None:
    # auto_vacuum must be chosen before the first table; WAL before the first write.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    with _transaction(conn):
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            for statement in _schema.SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {_schema.APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_schema.SCHEMA_VERSION}")
    _log.info("created a new store", extra={"path": str(path)})


def _tune_writer(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        _log.warning(
            "the file system does not support WAL; searches will wait for writes",
            extra={"path": str(path), "journal_mode": mode},
        )
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")


def _read_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    message = str(exc)
    if "not a database" in message:
        return StoreError(path, f"is not a kloghub store (SQLite says: {message})")
    if "malformed" in message or "corrupt" in message:
        return StoreError(
            path,
            f"is damaged (SQLite says: {message}); move it aside and let the sink create a "
            "new one, or try `sqlite3 FILE .recover`",
        )
    if "locked" in message or "busy" in message:
        return StoreError(path, f"is locked by another process for too long ({message})")
    if "readonly" in message or "unable to open" in message:
        return StoreError(path, f"cannot be opened ({message}); check its permissions")
    return StoreError(path, f"cannot be used (SQLite says: {message})")
