"""Every case of a file's life (see src/kloghub/tail/DESIGN.md): no line lost, none twice."""

from __future__ import annotations

import asyncio
import os

from kloghub import tail
from tests._world import (
    Collector,
    World,
    assert_exactly_once,
    make_source,
    run_until,
    running,
    settings,
)


async def test_kubelet_rename_rotation_reads_old_file_to_its_end_then_the_new_one(world: World):
    """If this failed, lines written just before a kubelet rotation would be lost."""
    log = world.container_dir() / "0.log"
    world.append(log, range(500))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(500)
        world.append(log, range(500, 700))  # written, maybe not yet read, when rotated
        world.rotate(log, "20261127-062043")
        world.append(log, range(700, 900))
        await sink.wait_for(900)
        await asyncio.sleep(0.3)
    assert_exactly_once(sink.numbers(), range(900))
    assert source.tailer.stats["rotations"] >= 1


async def test_rotated_file_gzipped_while_agent_was_down_continues_inside_the_gz(world: World):
    """If this failed, lines the kubelet compressed before the agent read them would be lost."""
    log = world.container_dir() / "0.log"
    world.append(log, range(300))
    sink = Collector()
    source = await run_until(make_source(world, sink), sink, 300)

    world.append(log, range(300, 450))  # never read by the first agent
    world.rotate(log, "20261127-070000", gzip_it=True)
    world.append(log, range(450, 500))

    source = await run_until(make_source(world, sink), sink, 500)
    assert_exactly_once(sink.numbers(), range(500))
    assert source.tailer.stats["gz_continuations"] == 1


async def test_rotated_file_renamed_while_agent_was_down_is_finished_after_restart(world: World):
    """If this failed, the tail of a file renamed during an agent restart would be lost."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 100)
    world.append(log, range(100, 150))
    world.rotate(log, "20261127-080000")
    world.append(log, range(150, 160))
    await run_until(make_source(world, sink), sink, 160)
    assert_exactly_once(sink.numbers(), range(160))


async def test_copytruncate_is_detected_and_the_file_is_read_again_from_the_start(world: World):
    """If this failed, logrotate's copytruncate would silently stop a node log's shipping."""
    log = world.container_dir() / "0.log"
    world.append(log, range(200))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(200)
        os.truncate(log, 0)
        await asyncio.sleep(0.2)
        world.append(log, range(200, 230))
        await sink.wait_for(230)
        await asyncio.sleep(0.2)
    assert_exactly_once(sink.numbers(), range(230))
    assert source.tailer.stats["truncations"] == 1


async def test_file_deleted_while_open_is_read_to_its_end_then_closed(world: World):
    """If this failed, a deleted file's last lines would be lost or its descriptor leak."""
    log = world.container_dir() / "0.log"
    world.append(log, range(50))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(50)
        sink.open.clear()  # back-pressure: the agent stops reading
        world.append(log, range(50, 3000))
        await asyncio.sleep(0.2)
        os.unlink(log)
        sink.open.set()
        await sink.wait_for(3000)
        for _ in range(100):
            if not source.tailer.files:
                break
            await asyncio.sleep(0.05)
        assert source.tailer.files == {}
        fds = [
            os.readlink(f"/proc/self/fd/{fd}")
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        ]
        assert not any(str(log) in target for target in fds)
    assert_exactly_once(sink.numbers(), range(3000))


async def test_container_restart_files_and_removed_pod_folder_are_all_read(world: World):
    """If this failed, logs of a restarted container or a deleted pod would be lost."""
    import shutil

    app = world.container_dir()
    world.append(app / "0.log", range(100))
    world.append(app / "1.log", range(100, 200))
    gone = world.container_dir(pod="job-x", uid="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    world.append(gone / "0.log", range(200, 300))
    sink = Collector()
    source = make_source(world, sink)
    async with running(source):
        await sink.wait_for(300)
        shutil.rmtree(gone.parent)
        await asyncio.sleep(0.5)
    assert_exactly_once(sink.numbers(), range(300))
    pods = {e.record["kubernetes"]["pod_name"] for e in sink.events}
    assert pods == {"web-1", "job-x"}


async def test_inode_reuse_with_a_different_fingerprint_is_read_as_a_new_file(world: World):
    """If this failed, a new file that reused an old inode would be read from a stale offset."""
    log = world.container_dir() / "0.log"
    world.append(log, range(10))
    st = os.stat(log)
    store = tail.CheckpointStore(world.state / "checkpoints.db")
    store.put(
        tail.Checkpoint(
            st.st_dev,
            st.st_ino,
            "old",
            b"something else entirely",
            "/x",
            offset=st.st_size - 5,
            done=True,
        )
    )
    store.close()
    sink = Collector()
    await run_until(make_source(world, sink), sink, 10)
    assert_exactly_once(sink.numbers(), range(10))


async def test_symlink_and_target_are_tailed_once(world: World):
    """If this failed, /var/log/containers symlinks would double every line."""
    log = world.container_dir() / "0.log"
    world.append(log, range(20))
    links = world.root / "containers"
    links.mkdir()
    (links / f"web-1_default_app-{'a' * 64}.log").symlink_to(log)
    sink = Collector()
    src, parsers = settings(world)
    src.containers.paths = [str(world.pods / "*/*/*.log"), str(links / "*.log")]
    from kloghub import sources

    await run_until(sources.LogSource(src, parsers, world.state, sink), sink, 20)
    assert_exactly_once(sink.numbers(), range(20))


async def test_gz_and_tmp_files_are_never_discovered(world: World):
    """If this failed, rotated archives would be shipped a second time as new files."""
    d = world.container_dir()
    world.append(d / "0.log", range(5))
    world.append(d / "0.log.20261127-000000.gz", range(100, 105))
    world.append(d / "0.log.tmp", range(200, 205))
    sink = Collector()
    src, parsers = settings(world)
    src.containers.paths = [str(world.pods / "*/*/*")]
    from kloghub import sources

    await run_until(sources.LogSource(src, parsers, world.state, sink), sink, 5)
    assert_exactly_once(sink.numbers(), range(5))


async def test_file_shorter_than_the_fingerprint_is_read(world: World):
    """If this failed, small files would wait forever (Filebeat's 1024-byte complaint)."""
    log = world.container_dir() / "0.log"
    world.append(log, [7])
    assert log.stat().st_size < 1024
    sink = Collector()
    await run_until(make_source(world, sink), sink, 1)
    assert_exactly_once(sink.numbers(), [7])


async def test_checkpoint_resumes_exactly_after_a_clean_restart(world: World):
    """If this failed, every agent restart would re-ship or skip lines."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 100)
    world.append(log, range(100, 120))
    await run_until(make_source(world, sink), sink, 120)
    assert_exactly_once(sink.numbers(), range(120))


async def test_unacknowledged_lines_are_read_again_after_restart(world: World):
    """If this failed, lines an output never confirmed would be skipped after a crash."""
    log = world.container_dir() / "0.log"
    world.append(log, range(50))

    class Holding(Collector):
        async def __call__(self, chunk):
            self.record(chunk)  # never acknowledged

    holder = Holding()
    source = make_source(world, holder)
    await source.start()
    await holder.wait_for(50)
    await source.stop(0.2)
    sink = Collector()
    await run_until(make_source(world, sink), sink, 50)
    assert_exactly_once(sink.numbers(), range(50))


async def test_back_pressure_pauses_reading_and_resumes(world: World):
    """If this failed, a slow output would make the agent buffer the whole file in memory."""
    log = world.container_dir() / "0.log"
    world.append(log, range(20000), text="x" * 150)
    sink = Collector()
    sink.open.clear()
    source = make_source(world, sink)
    async with running(source):
        await asyncio.sleep(0.3)
        assert len(sink.events) == 0
        read = sum(tf.pos for tf in source.tailer.files.values())
        assert read <= 1024 * 1024 + 4096  # one chunk in hand, not the whole file
        sink.open.set()
        await sink.wait_for(20000)
    assert_exactly_once(sink.numbers(), range(20000))
    assert source.tailer.paused_seconds > 0.1


async def test_rotation_between_resuming_checkpoints_and_the_first_scan_loses_nothing(
    world: World, monkeypatch
):
    """If this failed, a file the kubelet rotated while the restarted agent was starting
    (after it looked for rotated checkpoints, before its first scan) would never be read
    to its end: its row looked "known", so no one opened it."""
    log = world.container_dir() / "0.log"
    world.append(log, range(100))
    sink = Collector()
    await run_until(make_source(world, sink), sink, 100)
    world.append(log, range(100, 200))
    resume = tail.Tailer._resume_rotated

    def resume_then_rotate(self: tail.Tailer) -> None:
        resume(self)
        world.rotate(log, "20261127-110000")  # the kubelet, at the worst moment
        world.append(log, range(200, 210))

    monkeypatch.setattr(tail.Tailer, "_resume_rotated", resume_then_rotate)
    source = await run_until(make_source(world, sink), sink, 210)
    assert_exactly_once(sink.numbers(), range(210))
    assert source.tailer.stats["resumed_at_start"] == 1
