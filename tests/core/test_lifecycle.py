"""The lifecycle contract, proved for every component that exists.

Each entry of COMPONENTS builds a component and, where it holds work, a way to hand it
work and to check that the work was handed on. Add every new component here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloghub import core, outputs, runtime


@dataclass
class Harness:
    component: core.Service
    give_work: Callable[[], Awaitable[list[core.Delivery]]] | None = None
    """Hands the running component work; returns a list that fills as the work is settled."""


def _file_output(tmp_path: Path) -> Harness:
    out = outputs.FileOutput(tmp_path / "out.ndjson")

    async def give_work() -> list[core.Delivery]:
        seen: list[core.Delivery] = []
        fin = core.Finalizer(seen.append, count=100)
        for start in range(0, 100, 10):
            batch = core.Batch(
                core.Event("kube.ns.pod.c", i, {"log": f"line {i}"}, fin)
                for i in range(start, start + 10)
            )
            await out.send(batch)
        return seen

    return Harness(out, give_work)


def _stdout_output(_tmp_path: Path) -> Harness:
    return Harness(outputs.FileOutput(None))


def _http_server(_tmp_path: Path) -> Harness:
    return Harness(runtime.ObservabilityServer("127.0.0.1:0", runtime.Readiness()))


COMPONENTS: dict[str, Callable[[Path], Harness]] = {
    "file-output": _file_output,
    "stdout-output": _stdout_output,
    "observability-server": _http_server,
}


HOLDING_WORK = ["file-output"]
"""The components that accept work, for the drain test."""


@pytest.fixture(params=sorted(COMPONENTS))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return COMPONENTS[request.param](tmp_path)


@pytest.fixture(params=HOLDING_WORK)
def working_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    built = COMPONENTS[request.param](tmp_path)
    assert built.give_work is not None
    return built


async def test_component_starts_then_stops(harness: Harness):
    """If this failed, a daemon could not shut this component down cleanly."""
    await harness.component.start()
    assert harness.component.state is core.State.RUNNING
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_stop_before_start_is_harmless(harness: Harness):
    """If this failed, a daemon whose start failed half-way would crash while stopping."""
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_stop_twice_is_harmless(harness: Harness):
    """If this failed, a second SIGTERM during shutdown would raise."""
    await harness.component.start()
    await harness.component.stop(5)
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_cannot_start_twice(harness: Harness):
    """If this failed, a component could open its resources twice and leak the first set."""
    await harness.component.start()
    try:
        with pytest.raises(RuntimeError):
            await harness.component.start()
    finally:
        await harness.component.stop(5)


async def test_component_stop_drains_work_in_hand(working_harness: Harness):
    """If this failed, SIGTERM would lose data that the component had accepted."""
    harness = working_harness
    assert harness.give_work is not None
    await harness.component.start()
    settled = await harness.give_work()
    await harness.component.stop(10)
    assert settled == [core.Delivery.DELIVERED]


async def test_service_stop_cuts_a_drain_that_outlives_its_timeout():
    """If this failed, a stuck sink would keep a pod in Terminating past its grace period."""

    class Stuck(core.Service):
        name = "stuck"
        closed = False

        async def _on_drain(self) -> None:
            await asyncio.sleep(3600)

        async def _on_close(self) -> None:
            self.closed = True

    stuck = Stuck()
    await stuck.start()
    await asyncio.wait_for(stuck.stop(0.05), 5)
    assert stuck.closed
    assert stuck.state is core.State.STOPPED
