"""File identity: a document id (file_id, offset) names one line's bytes, never two.

Issue 16: after copytruncate the file kept its id while offsets restarted, so new lines
reused old ids and the store's deduplication dropped them; a fingerprint taken once at
open (0 bytes for a new, empty file) let another file that reused the inode adopt its
row. Each test reproduces one case deterministically (the agent is paused or stopped at
the point that matters, never raced).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter

from kloghub import tail
from tests._world import (
    Collector,
    World,
    assert_exactly_once,
    make_source,
    run_until,
    running,
)


def ids(sink: Collector) -> Counter[tuple[str, int]]:
    """How often each (file_id, offset) pair, the key of a document id, was emitted."""
    return Counter(
        (e.record["kloghub"]["file_id"], e.record["kloghub"]["offset"]) for e in sink.events
    )


def assert_ids_name_one_line(sink: Collector) -> None:
    """Every (file_id, offset) pair belongs to one line (resends repeat the same line)."""
    seen: dict[tuple[str, int], str] = {}
    for e in sink.events:
        key = (e.record["kloghub"]["file_id"], e.record["kloghub"]["offset"])
        line = e.record["log"]
        assert seen.setdefault(key, line) == line, f"id {key} names {seen[key]!r} and {line!r}"


async def wait_read_to_end(source, path) -> None:
    """Until the tailer has read ``path`` to its current size (it may be blocked after)."""
    size = os.stat(path).st_size
    for _ in range(500):
        if any(tf.pos >= size for tf in source.tailer.files.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("file not read")


async def test_copytruncate_gives_the_file_a_new_identity_so_ids_never_repeat(world: World):
    """If this failed, lines written after a copytruncate would reuse the ids of the lines
    before it, and the store's deduplication would drop them without a trace."""
    log = world.container_dir() / "0.log"
    world.append(log, range(200))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(200)
        shutil.copyfile(log, f"{log}.1")
        os.truncate(log, 0)
        world.append(log, range(200, 260))
        await sink.wait_for(260)
        await asyncio.sleep(0.2)
    assert_exactly_once(sink.numbers(), range(260))
    assert_ids_name_one_line(sink)
    assert len({fid for fid, _ in ids(sink)}) == 2


async def test_copytruncate_found_late_reads_the_copy_and_the_new_content(world: World):
    """If this failed, a copytruncate followed by more writes than were read (the file is
    longer again when looked at) would be read on from the old offset inside new content:
    the lines only the copy holds lost, new lines cut in half."""
    log = world.container_dir() / "0.log"
    world.append(log, range(200))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(200)
        sink.open.clear()  # the output stalls: the agent holds one read, reads no further
        world.append(log, range(200, 300))
        await wait_read_to_end(source, log)
        world.append(log, range(300, 350))  # written, not read, then copied away
        shutil.copyfile(log, f"{log}.1")
        os.truncate(log, 0)
        world.append(log, range(350, 1000))  # longer than the read offset
        sink.open.set()
        await sink.wait_for(1000)
        await asyncio.sleep(0.2)
    assert_exactly_once(sink.numbers(), range(1000))
    assert_ids_name_one_line(sink)
    assert source.tailer.stats["truncations"] == 1


async def test_copytruncate_while_the_agent_was_down_reads_the_copy_from_the_checkpoint(
    world: World,
):
    """If this failed, lines written after the last checkpoint and copied away by a
    copytruncate during an agent restart would be lost (Vector reads the copy)."""
    log = world.container_dir() / "0.log"
    world.append(log, range(200))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 200)
    world.append(log, range(200, 300))
    shutil.copyfile(log, f"{log}.1")
    os.truncate(log, 0)
    world.append(log, range(300, 320))
    await run_until(make_source(world, sink), sink, 320)
    assert_exactly_once(sink.numbers(), range(320))
    assert_ids_name_one_line(sink)


async def test_fingerprint_of_a_file_opened_empty_grows_before_its_lines_are_handed_on(
    world: World,
):
    """If this failed, a file opened while empty would keep a 0-byte fingerprint, which
    every later file matches: a new file reusing its inode would adopt its id and offset."""
    log = world.container_dir() / "0.log"
    log.touch()
    seen: list[bytes] = []

    class Checking(Collector):
        async def __call__(self, chunk):
            store = tail.CheckpointStore(world.state / "checkpoints.db")
            st = os.stat(log)
            cp = store.get(st.st_dev, st.st_ino)
            store.close()
            assert cp is not None
            seen.append(cp.fingerprint)
            await super().__call__(chunk)

    sink = Checking()
    source = make_source(world, sink)
    async with running(source):
        for _ in range(100):
            if source.tailer.files:
                break
            await asyncio.sleep(0.02)
        world.append(log, range(30))
        await sink.wait_for(30)
    head = log.read_bytes()[:1024]
    assert seen and all(fp and head.startswith(fp) for fp in seen)
    st = os.stat(log)
    store = tail.CheckpointStore(world.state / "checkpoints.db")
    assert store.get(st.st_dev, st.st_ino).fingerprint == head  # type: ignore[union-attr]
    store.close()


async def test_row_with_an_empty_fingerprint_is_never_adopted(world: World):
    """If this failed, a new file on a reused inode would take over a row left with an
    empty fingerprint (even a done one): its head skipped up to the old offset, its ids
    those of the old file's lines."""
    log = world.container_dir() / "0.log"
    world.append(log, range(40))
    st = os.stat(log)
    store = tail.CheckpointStore(world.state / "checkpoints.db")
    for done in (True, False):
        store.put(tail.Checkpoint(st.st_dev, st.st_ino, "old-id", b"", str(log), 500, done))
        store.close()
        sink = Collector()
        await run_until(make_source(world, sink), sink, 40)
        assert_exactly_once(sink.numbers(), range(40))
        assert {fid for fid, _ in ids(sink)} != {"old-id"}
        store = tail.CheckpointStore(world.state / "checkpoints.db")
    store.close()


async def test_row_whose_fingerprint_is_a_prefix_but_too_short_for_its_offset_is_not_adopted(
    world: World,
):
    """If this failed, a row that read more than its fingerprint covers (written before
    fingerprints grew) would be matched by any file starting with those few bytes."""
    log = world.container_dir() / "0.log"
    world.append(log, range(40))
    st = os.stat(log)
    store = tail.CheckpointStore(world.state / "checkpoints.db")
    head = log.read_bytes()[:10]
    store.put(tail.Checkpoint(st.st_dev, st.st_ino, "old-id", head, str(log), 900, True))
    store.close()
    sink = Collector()
    await run_until(make_source(world, sink), sink, 40)
    assert_exactly_once(sink.numbers(), range(40))
