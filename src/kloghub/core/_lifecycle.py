"""The component lifecycle every running part of kloghub follows.

A component is built from its (already validated) configuration, does its I/O in
:meth:`Service.start`, and stops in :meth:`Service.stop`: first it drains (finishes and
hands on the work it holds) for at most ``timeout`` seconds, then it cancels what is left.
``stop`` is safe before ``start`` and safe twice.

Background loops are started with :meth:`Service.spawn`: they are named, and a loop that
dies with an exception is reported to the :class:`Supervisor`, which the daemon watches to
exit non-zero so that Kubernetes restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Coroutine
from typing import Any, Protocol, runtime_checkable

__all__ = ["Component", "Service", "State", "Supervisor"]

_log = logging.getLogger("kloghub.lifecycle")


@runtime_checkable
class Component(Protocol):
    """What the daemon needs of a component."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Supervisor:
    """Watches named background tasks; the first one to crash is recorded and signalled."""

    def __init__(self) -> None:
        self.crashed = asyncio.Event()
        self.crash: tuple[str, BaseException] | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        _log.error(
            "root task crashed",
            extra={"task": task.get_name(), "error": repr(exc)},
            exc_info=exc,
        )
        if self.crash is None:
            self.crash = (task.get_name(), exc)
        self.crashed.set()


class Service:
    """Base class implementing the lifecycle contract; subclasses fill the hooks.

    - ``_on_start``: open files, sockets, spawn loops.
    - ``_on_drain``: hand on what is held (flush buffers, wait for acks); bounded by the
      caller's timeout.
    - ``_on_close``: release resources; runs after the spawned tasks were cancelled.
    """

    name = "service"

    def __init__(self, supervisor: Supervisor | None = None) -> None:
        self.state = State.NEW
        self._supervisor = supervisor
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    def attach(self, supervisor: Supervisor) -> None:
        """Report crashed background tasks to ``supervisor`` (set before ``start``)."""
        self._supervisor = supervisor

    async def start(self) -> None:
        if self.state is not State.NEW:
            raise RuntimeError(f"{self.name} cannot start from state {self.state.value}")
        self.state = State.RUNNING
        try:
            await self._on_start()
        except BaseException:
            self.state = State.STOPPED
            await self._cancel_tasks()
            await self._on_close()
            raise

    async def stop(self, timeout: float = 30.0) -> None:
        if self.state in (State.STOPPING, State.STOPPED):
            return
        if self.state is State.NEW:
            self.state = State.STOPPED
            return
        self.state = State.STOPPING
        try:
            await asyncio.wait_for(self._on_drain(), timeout)
        except TimeoutError:
            _log.warning(
                "drain did not finish in time; stopping hard",
                extra={"component": self.name, "timeout_s": timeout},
            )
        finally:
            await self._cancel_tasks()
            await self._on_close()
            self.state = State.STOPPED

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a named background task owned by this component."""
        task = asyncio.create_task(coro, name=f"{self.name}/{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._supervisor is not None:
            self._supervisor.watch(task)
        return task

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _on_start(self) -> None:
        """Open resources and spawn loops."""

    async def _on_drain(self) -> None:
        """Finish the work in hand; may be cut short by the stop timeout."""

    async def _on_close(self) -> None:
        """Release resources."""
