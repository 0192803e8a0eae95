"""The embedded store: idempotent writes, clear errors, retention, concurrent use."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kloghub import store

NS = 1_000_000_000
T0 = 1_795_759_200 * NS


def _doc(i: int, message: str | None = None, **extra) -> dict:
    doc = {
        "@timestamp": f"t{i}",
        "message": message if message is not None else f"request {i} served",
        "kubernetes": {"namespace": "shop", "pod": {"name": f"web-{i % 3}"}},
    }
    doc.update(extra)
    return doc


def _text_hits(db: store.Store, phrase: str) -> list[str]:
    rows = db.select(
        "seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)", [f'"{phrase}"']
    )
    return [row.id for row in rows]


def test_writing_a_document_again_does_not_add_a_row(tmp_path: Path):
    """If this failed, a batch resent after a lost acknowledgement would duplicate logs."""
    with store.Store.open(tmp_path / "s.db") as db:
        docs = [(f"id-{i}", T0 + i, _doc(i)) for i in range(10)]
        assert db.add(docs) == 10
        assert db.add(docs) == 0
        assert db.add([("id-3", T0, _doc(99, "a different body"))]) == 0
        assert db.count() == 10
        assert _text_hits(db, "different") == []
        assert db.add([(None, T0, _doc(1)), (None, T0, _doc(1))]) == 1  # content-hash id
        assert db.count() == 11


def test_columns_hold_the_ecs_fields_and_the_whole_document(tmp_path: Path):
    """If this failed, searches on indexed fields or the document shown would be wrong."""
    doc = {
        "message": "hello",
        "kubernetes": {
            "namespace": "shop",
            "pod": {"name": "web-1"},
            "container": {"name": "nginx"},
            "node": {"name": "node-1"},
        },
        "host": {"name": "host-1"},
        "log": {"level": "error"},
        "stream": "stderr",
        "data_stream": {"dataset": "kubernetes.container_logs"},
        "user": {"name": "alice"},
    }
    values = {
        "message": "hello",
        "namespace": "shop",
        "pod": "web-1",
        "container": "nginx",
        "node": "node-1",
        "host": "host-1",
        "level": "error",
        "stream": "stderr",
        "dataset": "kubernetes.container_logs",
        "user_name": "alice",
    }
    assert set(values) == set(store.FIELD_COLUMNS.values())
    with store.Store.open(tmp_path / "s.db") as db:
        db.add([("x", T0, doc), ("y", T0 + 1, {"message": "bare"})])
        for column, value in values.items():
            assert [row.id for row in db.select(f"{column} = ?", [value])] == ["x"], column
            assert [row.id for row in db.select(f"{column} IS NULL")] == (
                [] if column == "message" else ["y"]
            )
        (row,) = db.select("id = ?", ["x"])
        assert row.doc == doc
        assert row.time_ns == T0


def test_pages_continue_after_ties_in_time(tmp_path: Path):
    """If this failed, paging would lose or repeat documents that share a timestamp."""
    with store.Store.open(tmp_path / "s.db") as db:
        db.add([(f"id-{i}", T0 + i // 4, _doc(i)) for i in range(12)])
        for newest_first in (True, False):
            seen: list[str] = []
            after = None
            while page := db.select(newest_first=newest_first, limit=5, after=after):
                seen += [row.id for row in page]
                after = (page[-1].time_ns, page[-1].seq)
            assert sorted(seen) == sorted(f"id-{i}" for i in range(12))
            assert len(seen) == 12
            times = [int(i.split("-")[1]) // 4 for i in seen]
            assert times == sorted(times, reverse=newest_first)


# --------------------------------------------------------------------------- errors


def test_a_missing_store_is_an_error_for_a_reader_and_created_for_a_writer(tmp_path: Path):
    """If this failed, a search with a typo in --store would print "no matches" (or create
    an empty store) instead of saying the path is wrong."""
    path = tmp_path / "nope" / "store.db"
    with pytest.raises(store.StoreError, match="does not exist") as info:
        store.Store.open(path, readonly=True)
    assert str(path) in str(info.value)
    assert not path.exists()
    store.Store.open(path).close()
    store.Store.open(path, readonly=True).close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, it is a log file\n" * 200)


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


def _newer(path: Path) -> None:
    store.Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (_garbage, "is not a kloghub store"),
        (_foreign, "of another program"),
        (_newer, "newer kloghub"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
@pytest.mark.parametrize("readonly", [True, False])
def test_a_file_that_is_not_a_usable_store_is_refused_with_the_reason(
    tmp_path: Path, spoil, words, readonly
):
    """If this failed, the sink or a search would crash with an SQLite message, or write
    into another program's database."""
    path = tmp_path / "store.db"
    spoil(path)
    with pytest.raises(store.StoreError, match=words) as info:
        store.Store.open(path, readonly=readonly)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_an_empty_file_is_refused_for_reading(tmp_path: Path):
    """If this failed, searching a freshly touched file would look like "no matches"."""
    path = tmp_path / "store.db"
    path.touch()
    with pytest.raises(store.StoreError, match="is empty"):
        store.Store.open(path, readonly=True)


def test_a_damaged_store_gives_a_store_error_when_searched(tmp_path: Path):
    """If this failed, a store damaged by a disk fault would give a traceback, not advice."""
    path = tmp_path / "store.db"
    with store.Store.open(path) as db:
        db.add([(f"id-{i}", T0 + i, _doc(i, "x" * 500 + f" w{i}")) for i in range(2000)])
    size = path.stat().st_size
    with path.open("r+b") as f:
        for offset in range(size // 4, size, 8192):
            f.seek(offset)
            f.write(b"\xff" * 512)
    with (
        pytest.raises(store.StoreError, match=r"damaged|not a kloghub store") as info,
        store.Store.open(path, readonly=True) as db,
    ):
        db.select(limit=5000)
        db.select("seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)", ['"w5"'])
    assert str(path) in str(info.value)


def test_a_store_whose_folder_cannot_be_made_says_so(tmp_path: Path):
    """If this failed, a misconfigured store path would crash the collector at start-up
    with an unexplained OSError."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(store.StoreError, match="cannot create its folder"):
        store.Store.open(tmp_path / "file" / "store.db")


# --------------------------------------------------------------------------- retention


def test_retention_by_age_deletes_older_documents_and_their_words(tmp_path: Path):
    """If this failed, the store would keep logs past the configured retention (or leave
    deleted documents findable by their words)."""
    now = T0 + 10 * 3600 * NS
    with store.Store.open(tmp_path / "s.db") as db:
        db.add(
            [
                ("old-1", now - 3 * 3600 * NS, _doc(1, "ancient alpha")),
                ("old-2", now - 2 * 3600 * NS, _doc(2, "ancient beta")),
                ("new-1", now - 1800 * NS, _doc(3, "recent gamma")),
            ]
        )
        deleted = db.enforce_retention(max_age=3600, now_ns=now)
        assert deleted == store.Retained(by_age=2, by_size=0)
        assert [row.id for row in db.select()] == ["new-1"]
        assert _text_hits(db, "ancient") == []
        assert _text_hits(db, "gamma") == ["new-1"]
        assert db.enforce_retention(max_age=3600, now_ns=now) == store.Retained(0, 0)


def test_retention_by_size_keeps_the_newest_documents_under_the_limit(tmp_path: Path):
    """If this failed, the embedded store would fill the node's or collector's disk."""
    path = tmp_path / "s.db"
    limit = 512 * 1024
    with store.Store.open(path) as db:
        for start in range(0, 3000, 500):
            db.add(
                [
                    (f"id-{i:05d}", T0 + i, _doc(i, f"word{i} " + "payload " * 60))
                    for i in range(start, start + 500)
                ]
            )
        assert db.used_bytes() > 3 * limit
        deleted = db.enforce_retention(max_bytes=limit)
        assert deleted.by_size > 0
        assert db.used_bytes() <= limit
        assert path.stat().st_size <= limit * 1.1  # free pages went back to the file system
        kept = [row.id for row in db.select(limit=5000)]
        assert kept[0] == "id-02999"  # the newest stays
        assert len(kept) == 3000 - deleted.by_size
        assert kept == sorted(kept, reverse=True)  # exactly the oldest went
        assert _text_hits(db, "word2999") == ["id-02999"]
        assert _text_hits(db, "word0") == []
        assert db.enforce_retention(max_bytes=limit) == store.Retained(0, 0)


# --------------------------------------------------------------------------- concurrency


def test_searches_run_while_two_writers_write_and_see_only_whole_batches(tmp_path: Path):
    """If this failed, `kloghub search` would fail or see half a batch while the pipeline
    writes, or two writers (agent and collector on one node) would break each other."""
    path = tmp_path / "s.db"
    store.Store.open(path).close()
    batch, batches = 100, 15
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            with store.Store.open(path) as db:
                for b in range(batches):
                    db.add(
                        (f"{prefix}-{b}-{i}", T0 + b * batch + i, _doc(i, f"{prefix} line {i}"))
                        for i in range(batch)
                    )
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(p,)) for p in ("a", "b")]
    for w in writers:
        w.start()
    counts: list[int] = []
    with store.Store.open(path, readonly=True) as reader:
        while any(w.is_alive() for w in writers):
            counts.append(reader.count())
            reader.select(
                "seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?) AND pod = ?",
                ['"line"', "web-1"],
                limit=50,
            )
        for w in writers:
            w.join()
        counts.append(reader.count())
    assert not errors
    assert counts == sorted(counts)
    assert all(c % batch == 0 for c in counts)
    assert counts[-1] == 2 * batch * batches
