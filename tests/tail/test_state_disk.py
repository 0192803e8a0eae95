"""A full or damaged state disk pauses the tailer, never stops it (issue 16).

The agent's checkpoint database raised ``database or disk is full`` in the acknowledgement
callback, which crashed the read loop; every restart on the full disk failed again. Now the
last good checkpoints are kept, reading pauses (the lines stay in the files), /readyz says
why, and reading resumes by itself when space returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from kloghub import sources, tail
from kloghub.tail import _tailer
from tests._world import (
    Collector,
    World,
    assert_exactly_once,
    make_source,
    run_until,
    running,
    settings,
)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tailer, "STATE_RETRY_S", 0.02)


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.01)


async def retries_pass(source: sources.LogSource, n: int = 3) -> None:
    """Until the tailer tried the state disk ``n`` more times (it read nothing meanwhile)."""
    start = source.tailer.stats["state_retries"]
    await until(lambda: source.tailer.stats["state_retries"] >= start + n, "retries")


class FullDisk:
    """The sqlite connection of a store, failing every write as a full disk does."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if self.full and not sql.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, params)

    def close(self) -> None:
        self.db.close()


async def test_checkpoint_write_failure_pauses_reading_and_resumes_without_loss(world: World):
    """If this failed, a full state disk would crash the tailer in the acknowledgement
    callback (or skip or repeat lines once space returned)."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(100)
        store = source.tailer._store
        assert store is not None
        disk = FullDisk(store._db)
        store._db = disk  # type: ignore[assignment]
        disk.full = True
        world.append(log, range(100, 200))
        await until(lambda: source.tailer.problem() is not None, "the tailer says so")
        assert "reading paused" in (source.tailer.problem() or "")
        await retries_pass(source)
        read = {tf.path: tf.pos for tf in source.tailer.files.values()}
        world.append(log, range(200, 300))
        await retries_pass(source)
        assert {tf.path: tf.pos for tf in source.tailer.files.values()} == read
        assert not source.tailer._read_task.done()  # type: ignore[union-attr]
        disk.full = False
        await sink.wait_for(300)
        assert source.tailer.problem() is None
    assert_exactly_once(sink.numbers(), range(300))
    # The checkpoints kept while the disk was full were written when it came back.
    await run_until(make_source(world, sink), sink, 300)
    assert_exactly_once(sink.numbers(), range(300))


async def test_state_dir_that_cannot_be_opened_is_waited_for(world: World, tmp_path: Path):
    """If this failed, an agent started on a state disk it cannot write would exit (and
    crash-loop) instead of waiting for it."""
    log = world.container_dir() / "0.log"
    world.append(log, range(20))
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the state directory's parent should be")
    state = blocker / "state"
    src, parsers = settings(world)
    sink = Collector()
    source = sources.LogSource(src, parsers, state, sink)
    async with running(source):
        await until(lambda: source.tailer.stats["state_retries"] >= 3, "retries")
        assert "cannot open the checkpoint database" in (source.tailer.problem() or "")
        assert not sink.events
        blocker.unlink()
        await sink.wait_for(20)
        assert source.tailer.problem() is None
    assert_exactly_once(sink.numbers(), range(20))


async def test_damaged_checkpoint_database_is_set_aside_with_a_loud_log_line(
    world: World, caplog: pytest.LogCaptureFixture
):
    """If this failed, a checkpoint file damaged by a crash would stop the agent for good."""
    log = world.container_dir() / "0.log"
    world.append(log, range(10))
    world.state.mkdir(parents=True)
    (world.state / "checkpoints.db").write_bytes(b"this is no sqlite database" * 100)
    sink = Collector()
    with caplog.at_level(logging.ERROR, "kloghub.tail"):
        await run_until(make_source(world, sink), sink, 10)
    assert_exactly_once(sink.numbers(), range(10))
    assert list(world.state.glob("checkpoints.db.damaged-*"))
    assert "checkpoint database damaged" in caplog.text


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m"):
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-error test covers the logic")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        with pytest.raises(OSError) as full:
            os.write(fd, b"\0")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_full_state_tmpfs_pauses_reading_and_start_up_waits_for_space(world: World):
    """If this failed, the agent on a real full state disk would crash, or fail to start
    while it stays full, and lose the lines kubelet rotates meanwhile."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    with small_tmpfs(world.root / "statefs") as disk:
        world.state = disk / "state"
        sink = Collector()
        source = make_source(world, sink)
        async with running(source):
            await sink.wait_for(100)
            filler = fill(disk)
            written = 100
            while source.tailer.problem() is None and written < 400:
                world.append(log, range(written, written + 10))  # acks: the WAL must grow
                written += 10
                await sink.wait_for(written)
            assert source.tailer.problem() is not None
            assert not source.tailer._read_task.done()  # type: ignore[union-attr]
            await retries_pass(source)
            read = {tf.path: tf.pos for tf in source.tailer.files.values()}
            world.append(log, range(written, 500))
            await retries_pass(source)
            assert {tf.path: tf.pos for tf in source.tailer.files.values()} == read
            filler.unlink()
            await sink.wait_for(500)
        assert_exactly_once(sink.numbers(), range(500))

        # Start-up on the full disk waits; then everything is read exactly once.
        filler = fill(disk)
        world.append(log, range(500, 600))
        source = make_source(world, sink)
        async with running(source):
            await retries_pass(source)
            filler.unlink()
            await sink.wait_for(600)
            await asyncio.sleep(0.3)
        assert_exactly_once(sink.numbers(), range(600))
        assert tail.CheckpointStore(world.state / "checkpoints.db").problem is None


async def test_no_data_is_handed_on_under_a_file_id_whose_row_is_not_on_disk(world: World):
    """If this failed, lines read while the state disk was full would be shipped under a
    fingerprint (or row) that never reached the disk; after a crash the file looks like
    another one (inode reuse), is read again under a new file_id, and every such line is a
    duplicate that no id absorbs (likely the 865 in OpenSearch of one chaos run)."""
    log = world.container_dir() / "0.log"
    log.touch()  # opened empty: its row has no fingerprint yet
    sink = Collector()
    source = make_source(world, sink)
    await source.start()
    try:
        await until(lambda: source.tailer.files, "the empty file is tailed")
        store = source.tailer._store
        assert store is not None
        disk = FullDisk(store._db)
        store._db = disk  # type: ignore[assignment]
        disk.full = True
        world.append(log, range(100))
        await until(lambda: source.tailer.problem() is not None, "the tailer says so")
        await retries_pass(source)
    finally:
        store.pending.clear()  # the crash: what was kept in memory is gone
        await source.stop(0.2)
    source = await run_until(make_source(world, sink), sink, 100)
    assert_exactly_once(sink.numbers(), range(100))
