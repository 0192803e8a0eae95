"""The daemon: start order, drain on SIGTERM, hard stop, crash → exit 1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import aiohttp

from kloghub import core, runtime


class Recorder(core.Service):
    """A component that records its lifecycle and drains slowly."""

    def __init__(
        self, name: str, log: list[str], drain_s: float = 0.0, crash_after: float | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.drain_s = drain_s
        self.crash_after = crash_after
        self.drained = False

    async def _on_start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.crash_after is not None:
            self.spawn("worker", self._crash())

    async def _crash(self) -> None:
        await asyncio.sleep(self.crash_after or 0)
        raise RuntimeError("boom")

    async def _on_drain(self) -> None:
        await asyncio.sleep(self.drain_s)
        self.drained = True

    async def _on_close(self) -> None:
        self.log.append(f"close {self.name}")


async def test_daemon_stops_components_in_reverse_order_after_draining():
    """If this failed, outputs could stop before the sources feeding them had drained."""
    log: list[str] = []
    a, b = Recorder("a", log, drain_s=0.05), Recorder("b", log, drain_s=0.05)
    daemon = runtime.Daemon("test", [a, b], "127.0.0.1:0", drain_timeout=5)
    task = asyncio.create_task(daemon.run())
    while not daemon.readiness.started:
        await asyncio.sleep(0.01)
    daemon.request_stop("test")
    assert await task == runtime.EXIT_OK
    assert log == ["start a", "start b", "close b", "close a"]
    assert a.drained and b.drained


async def test_daemon_cuts_the_drain_at_its_grace_period():
    """If this failed, a stuck output would keep a pod alive past terminationGracePeriod."""
    log: list[str] = []
    slow = Recorder("slow", log, drain_s=3600)
    daemon = runtime.Daemon("test", [slow], "127.0.0.1:0", drain_timeout=0.2)
    task = asyncio.create_task(daemon.run())
    while not daemon.readiness.started:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    daemon.request_stop("test")
    assert await asyncio.wait_for(task, 10) == runtime.EXIT_OK
    assert time.monotonic() - started < 3
    assert not slow.drained
    assert "close slow" in log


async def test_second_stop_request_stops_hard():
    """If this failed, a second Ctrl-C would not end a long drain."""
    log: list[str] = []
    slow = Recorder("slow", log, drain_s=3600)
    daemon = runtime.Daemon("test", [slow], "127.0.0.1:0", drain_timeout=3600)
    task = asyncio.create_task(daemon.run())
    while not daemon.readiness.started:
        await asyncio.sleep(0.01)
    daemon.request_stop("first")
    await asyncio.sleep(0.1)
    daemon.request_stop("second")
    assert await asyncio.wait_for(task, 10) == runtime.EXIT_OK
    assert "close slow" in log


async def test_crashed_background_task_stops_the_daemon_with_exit_1():
    """If this failed, a dead pipeline loop would leave a live-looking pod shipping nothing."""
    log: list[str] = []
    daemon = runtime.Daemon(
        "test", [Recorder("ok", log), Recorder("bad", log, crash_after=0.05)], "127.0.0.1:0"
    )
    assert await asyncio.wait_for(daemon.run(), 10) == runtime.EXIT_CRASH
    assert log[-2:] == ["close bad", "close ok"]


async def test_failed_start_exits_1_and_closes_what_started():
    """If this failed, a port already in use would leave half-started components open."""

    class Broken(core.Service):
        name = "broken"

        async def _on_start(self) -> None:
            raise OSError("address in use")

    log: list[str] = []
    daemon = runtime.Daemon("test", [Recorder("first", log), Broken()], "127.0.0.1:0")
    assert await asyncio.wait_for(daemon.run(), 10) == runtime.EXIT_CRASH
    assert log == ["start first", "close first"]


async def test_readyz_turns_ready_after_start_and_reports_failing_checks():
    """If this failed, Kubernetes would route to, or keep, a pod that cannot ship."""
    problem: list[str | None] = [None]
    readiness = runtime.Readiness()
    readiness.add("sink", lambda: problem[0])
    daemon = runtime.Daemon("test", [], "127.0.0.1:0", readiness=readiness)
    task = asyncio.create_task(daemon.run())
    while not daemon.readiness.started:
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{daemon.http.bound_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        problem[0] = "HEC token refused"
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["problems"] == {"sink": "HEC token refused"}
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert "kloghub_ready 0.0" in await resp.text()
    daemon.request_stop("test")
    await task


_SIGNAL_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from kloghub import core, runtime

    class Slow(core.Service):
        name = "slow"
        async def _on_drain(self):
            await asyncio.sleep(0.3)
            print("drained", flush=True)

    async def main():
        runtime.setup_logging("info")
        daemon = runtime.Daemon("sig", [Slow()], "127.0.0.1:0", drain_timeout=10)
        async def announce():
            while not daemon.readiness.started:
                await asyncio.sleep(0.01)
            print("ready", flush=True)
        asyncio.ensure_future(announce())
        return await daemon.run()

    sys.exit(asyncio.run(main()))
    """
)


def test_sigterm_drains_then_exits_0_and_logs_json_lines():
    """If this failed, a pod deletion would cut in-flight data or log unparseable lines."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "drained" in out
    import orjson

    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert "stopping: draining in-flight data" in messages
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    stop = next(r for r in records if r["message"].startswith("stopping"))
    assert stop["reason"] == "SIGTERM"
