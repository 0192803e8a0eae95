"""Rotated files the agent never opened are read, and what it cannot read is counted.

Issue 16: files born and rotated away while the agent was down (or while a stalled output
kept it from scanning) were never opened: no row named them, so nothing looked for them.
"""

from __future__ import annotations

import asyncio
import os
import shutil

from kloghub.runtime import metrics
from tests._world import (
    Collector,
    World,
    assert_exactly_once,
    make_source,
    run_until,
    running,
)
from tests.tail.test_identity import assert_ids_name_one_line, wait_read_to_end


async def test_files_born_and_rotated_away_while_the_agent_was_down_are_read(world: World):
    """If this failed, whole rotated files (plain or gzipped) written during an agent
    restart would never be read, and nothing would say so."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 100)

    world.append(log, range(100, 150))
    world.rotate(log, "20261127-090000", gzip_it=True)  # known: continued inside the gz
    world.append(log, range(150, 200))
    world.rotate(log, "20261127-090100")  # born and rotated while down: plain
    world.append(log, range(200, 250))
    world.rotate(log, "20261127-090200", gzip_it=True)  # born and rotated while down: gz
    world.append(log, range(250, 260))

    source = await run_until(make_source(world, sink), sink, 260)
    assert_exactly_once(sink.numbers(), range(260))
    assert source.tailer.stats["unseen_rotated"] == 2
    # A third start reads none of them again.
    source = await run_until(make_source(world, sink), sink, 260)
    assert_exactly_once(sink.numbers(), range(260))
    assert source.tailer.stats["unseen_rotated"] == 0
    assert_ids_name_one_line(sink)


async def test_more_rotations_than_reads_while_the_output_stalls_lose_nothing(world: World):
    """If this failed, files created and rotated away while a stalled output kept the
    agent from scanning (more rotations than discovery passes) would be lost."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(100)
        sink.open.clear()
        world.append(log, range(100, 200))
        await wait_read_to_end(source, log)  # the agent now waits on the output
        world.rotate(log, "20261127-100000")
        world.append(log, range(200, 300))
        world.rotate(log, "20261127-100010", gzip_it=True)
        world.append(log, range(300, 400))
        world.rotate(log, "20261127-100020")
        world.append(log, range(400, 410))
        sink.open.set()
        await sink.wait_for(410)
        await asyncio.sleep(0.3)
    assert_exactly_once(sink.numbers(), range(410))
    assert source.tailer.stats["unseen_rotated"] == 2


async def test_first_start_of_all_does_not_ship_old_rotated_files(world: World):
    """If this failed, installing the agent would ship every node's rotated history
    (kubelet keeps up to five files per container) as new logs."""
    d = world.container_dir()
    world.append(d / "0.log.20261127-000000", range(100, 110))
    world.append(d / "0.log", range(5))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 5)
    assert_exactly_once(sink.numbers(), range(5))


async def test_rotated_file_that_cannot_be_read_is_counted_and_logged(world: World, caplog):
    """If this failed, a damaged rotated file would be skipped without a trace."""
    log = world.container_dir() / "0.log"
    world.append(log, range(10))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 10)
    (log.parent / "0.log.20261127-110000.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    world.append(log, range(10, 20))
    before = metrics.DROPPED.labels("rotated_unreadable")._value.get()
    await run_until(make_source(world, sink), sink, 20)
    assert metrics.DROPPED.labels("rotated_unreadable")._value.get() == before + 1
    assert "cannot read a rotated file" in caplog.text
    assert_exactly_once(sink.numbers(), range(20))


async def test_gzip_of_a_file_whose_inode_was_reused_is_not_read_again(world: World):
    """If this failed, a rotated file compressed after another file took its inode (the
    row replaced, its fingerprint forgotten) would be read again at the next start: a
    whole rotated file shipped twice (seen in the torture run as 400k duplicates)."""
    import gzip
    import os
    import shutil

    from kloghub import tail

    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(100)
        st = os.stat(log)
        rotated = world.rotate(log, "20261127-120000")
        world.append(log, range(100, 110))
        await sink.wait_for(110)
        await asyncio.sleep(0.3)
    with rotated.open("rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    other = world.container_dir(pod="web-2", uid="99999999-1111-2222-3333-444455556666")
    store = tail.CheckpointStore(world.state / "checkpoints.db")
    # What the tailer writes when another pod's new file is found on the freed inode.
    store.put(tail.Checkpoint(st.st_dev, st.st_ino, "reused", b"x", str(other / "0.log"), 0, True))
    store.close()
    source = await run_until(make_source(world, sink), sink, 110)
    assert_exactly_once(sink.numbers(), range(110))
    assert source.tailer.stats["unseen_rotated"] == 0


async def test_more_copytruncates_than_reads_while_the_output_stalls_lose_nothing(world: World):
    """If this failed, a copytruncate file rotated twice while back-pressure kept the agent
    from reading would lose the whole middle copy (seen in the soak: 54,735 lines of the
    copytruncate file, in runs of whole copies)."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(100)
        sink.open.clear()
        world.append(log, range(100, 200))
        await wait_read_to_end(source, log)  # the agent now waits on the output
        for k, stamp in enumerate(("20261127-120000", "20261127-120010", "20261127-120020")):
            world.append(log, range(200 + 100 * k, 250 + 100 * k))  # after the last read
            shutil.copyfile(log, f"{log}.{stamp}")
            os.truncate(log, 0)
            world.append(log, range(250 + 100 * k, 300 + 100 * k))
        sink.open.set()
        await sink.wait_for(500)
        await asyncio.sleep(0.3)
    assert_exactly_once(sink.numbers(), range(500))
    assert_ids_name_one_line(sink)
