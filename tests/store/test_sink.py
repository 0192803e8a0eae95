"""The store sink: acknowledgements after the commit, refusals counted, retries, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from kloghub import config, core, store
from kloghub.runtime import metrics

NS = 1_000_000_000
T0 = 1_795_759_200 * NS
TAG = "logs-kubernetes.container_logs-default"


def _event(i: int, fin: core.Finalizer, record: object = None) -> core.Event:
    if record is None:
        record = {
            "id": f"doc-{i}",
            "doc": {"@timestamp": "t", "message": f"line {i}", "kubernetes": {"namespace": "a"}},
        }
    return core.Event(TAG, T0 + i, record, fin)  # type: ignore[arg-type]


async def test_events_are_acknowledged_only_once_their_batch_is_committed(tmp_path: Path):
    """If this failed, the tailer's checkpoint could move past lines the store does not hold."""
    path = tmp_path / "store.db"
    reader_counts: list[int] = []

    def on_settled(status: core.Delivery) -> None:
        with store.Store.open(path, readonly=True) as reader:
            reader_counts.append(reader.count())
        statuses.append(status)

    statuses: list[core.Delivery] = []
    sink = store.StoreSink(path)
    await sink.start()
    try:
        fin = core.Finalizer(on_settled, count=50)
        await sink.send(core.Batch(_event(i, fin) for i in range(50)))
        for _ in range(200):
            if statuses:
                break
            await asyncio.sleep(0.01)
    finally:
        await sink.stop(5)
    assert statuses == [core.Delivery.DELIVERED]
    assert reader_counts == [50]


async def test_a_resent_batch_is_acknowledged_without_a_second_copy(tmp_path: Path):
    """If this failed, every resend after a lost ack would duplicate documents."""
    path = tmp_path / "store.db"
    sink = store.StoreSink(path)
    await sink.start()
    seen: list[core.Delivery] = []
    for _ in range(2):
        fin = core.Finalizer(seen.append, count=20)
        await sink.send(core.Batch(_event(i, fin) for i in range(20)))
    await sink.stop(5)
    assert seen == [core.Delivery.DELIVERED] * 2
    with store.Store.open(path, readonly=True) as reader:
        assert reader.count() == 20


async def test_events_that_are_not_documents_are_refused_and_counted(tmp_path: Path):
    """If this failed, one malformed event would block its batch forever or vanish silently."""
    before = metrics.DROPPED.labels("not_a_document")._value.get()
    good: list[core.Delivery] = []
    bad: list[core.Delivery] = []
    good_fin = core.Finalizer(good.append, count=3)
    bad_fin = core.Finalizer(bad.append, count=3)
    batch = core.Batch(
        [
            _event(1, good_fin),
            _event(2, bad_fin, {"log": "a raw Fluent Bit record"}),
            _event(3, good_fin),
            _event(4, bad_fin, {"id": "x", "doc": ["not", "an", "object"]}),
            _event(5, bad_fin, "not even a dict"),
            _event(6, good_fin, {"doc": {"message": "no id: hashed"}}),
        ]
    )
    sink = store.StoreSink(tmp_path / "store.db")
    await sink.start()
    await sink.send(batch)
    await sink.stop(5)
    assert good == [core.Delivery.DELIVERED]
    assert bad == [core.Delivery.REJECTED]
    assert metrics.DROPPED.labels("not_a_document")._value.get() - before == 3
    with store.Store.open(tmp_path / "store.db", readonly=True) as reader:
        assert reader.count() == 3


async def test_a_failed_write_is_retried_and_never_acknowledged_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """If this failed, a full disk would acknowledge (and so lose) logs it could not store."""
    failures = [sqlite3.OperationalError("database or disk is full")] * 2
    real_write = store.Store.write
    settled_while_failing: list[core.Delivery] = []
    seen: list[core.Delivery] = []

    def flaky_write(self, rows):
        if failures:
            settled_while_failing.extend(seen)
            raise failures.pop()
        return real_write(self, rows)

    monkeypatch.setattr(store.Store, "write", flaky_write)
    sink = store.StoreSink(tmp_path / "store.db")
    await sink.start()
    fin = core.Finalizer(seen.append, count=5)
    await sink.send(core.Batch(_event(i, fin) for i in range(5)))
    await sink.stop(5)
    assert not failures
    assert settled_while_failing == []
    assert seen == [core.Delivery.DELIVERED]


async def test_the_sink_applies_size_retention_as_it_writes(tmp_path: Path):
    """If this failed, max_store_bytes in the config would not bound the store."""
    limit = 256 * 1024
    sink = store.StoreSink.from_config(
        config.SinkConfig(url=f"store:{tmp_path / 'store.db'}", max_store_bytes=limit)
    )
    assert sink.max_bytes == limit
    await sink.start()
    fin = core.Finalizer(lambda _status: None, count=2000)
    for start in range(0, 2000, 200):
        await sink.send(
            core.Batch(
                _event(i, fin, {"id": f"d{i}", "doc": {"message": "pad " * 100}})
                for i in range(start, start + 200)
            )
        )
    await sink.stop(5)
    with store.Store.open(tmp_path / "store.db", readonly=True) as reader:
        assert reader.used_bytes() <= limit
        assert 0 < reader.count() < 2000


async def test_a_sink_on_an_unusable_path_fails_to_start_with_the_reason(tmp_path: Path):
    """If this failed, a collector pointed at a wrong file would start and then lose data."""
    path = tmp_path / "store.db"
    path.write_bytes(b"garbage" * 1000)
    sink = store.StoreSink(path)
    with pytest.raises(store.StoreError, match="not a kloghub store"):
        await sink.start()
    assert sink.state is core.State.STOPPED


def test_store_urls_name_their_path():
    """If this failed, store:PATH sinks would write somewhere else than configured."""
    assert store.path_from_url("store:/var/lib/kloghub/store.db") == Path(
        "/var/lib/kloghub/store.db"
    )
    with pytest.raises(ValueError, match="store:PATH"):
        store.path_from_url("file:/x")
