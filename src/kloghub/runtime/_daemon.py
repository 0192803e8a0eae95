"""Running a daemon (agent or collector) until a signal or a crash.

- Components start in order, the observability server first so that /healthz answers
  while the rest comes up; /readyz turns ready when all of them started.
- SIGTERM or SIGINT sets the stop flag. Components stop in reverse order (sources before
  the outputs they feed) and share one drain budget (``drain_timeout``, 30 s by default to
  fit Kubernetes' terminationGracePeriodSeconds). A second signal, or the end of the budget,
  stops the rest hard. A backstop bounds the whole shutdown.
- A background task that dies with an exception is logged and stops the daemon with exit
  code 1, so that Kubernetes restarts the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Sequence

from kloghub.core import Component, Service, Supervisor
from kloghub.runtime._http import ObservabilityServer, Readiness

__all__ = ["EXIT_CRASH", "EXIT_OK", "Daemon", "tune_gc"]

_log = logging.getLogger("kloghub.daemon")

GC_THRESHOLD = (100_000, 50, 100)
"""A pipeline allocates millions of short-lived containers per second (events, records);
with CPython's default first threshold (2000) the collector runs every few hundred
events and costs more than the work itself (bench/tail_bench.py: about half the CPU)."""


def tune_gc() -> None:
    """Fewer generational collections for a high-allocation daemon; freeze startup objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


EXIT_OK = 0
EXIT_CRASH = 1
_BACKSTOP_S = 5.0


class Daemon:
    """Owns the components of one process and their shared lifecycle."""

    def __init__(
        self,
        name: str,
        components: Sequence[Component],
        metrics_addr: str,
        drain_timeout: float = 30.0,
        readiness: Readiness | None = None,
    ) -> None:
        self.name = name
        self.readiness = readiness or Readiness()
        self.supervisor = Supervisor()
        self.http = ObservabilityServer(metrics_addr, self.readiness, self.supervisor)
        self.components: list[Component] = [self.http, *components]
        self.drain_timeout = drain_timeout
        self._stop = asyncio.Event()
        self._hard = asyncio.Event()
        self._signals = 0
        self._started: list[Component] = []

    def request_stop(self, reason: str = "requested") -> None:
        """Set the stop flag (what SIGTERM does); a second request stops hard."""
        self._signals += 1
        if self._signals == 1:
            _log.info(
                "stopping: draining in-flight data",
                extra={"reason": reason, "drain_timeout_s": self.drain_timeout},
            )
        else:
            _log.warning("second stop request: stopping hard", extra={"reason": reason})
            self._hard.set()
        self._stop.set()

    async def run(self) -> int:
        """Start everything, wait for a stop or a crash, drain, stop. Returns the exit code."""
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.request_stop, signum.name)
                installed.append(signum)
        try:
            return await self._run()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _run(self) -> int:
        for component in self.components:
            if isinstance(component, Service):
                component.attach(self.supervisor)
        try:
            for component in self.components:
                await component.start()
                self._started.append(component)
                if self._stop.is_set() or self.supervisor.crashed.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - any start failure ends in a clean exit 1
            _log.exception("start failed", extra={"daemon": self.name, "error": repr(exc)})
            await self._shutdown()
            return EXIT_CRASH
        self.readiness.started = True
        tune_gc()
        _log.info("started", extra={"daemon": self.name, "port": self.http.bound_port})

        stop_wait = asyncio.ensure_future(self._stop.wait())
        crash_wait = asyncio.ensure_future(self.supervisor.crashed.wait())
        await asyncio.wait({stop_wait, crash_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        crash_wait.cancel()

        self.readiness.started = False
        await self._shutdown()
        if self.supervisor.crash is not None:
            task, error = self.supervisor.crash
            _log.error(
                "stopped after a crash",
                extra={"daemon": self.name, "task": task, "error": repr(error)},
            )
            return EXIT_CRASH
        _log.info("stopped", extra={"daemon": self.name})
        return EXIT_OK

    async def _shutdown(self) -> None:
        try:
            await asyncio.wait_for(self._stop_all(), self.drain_timeout + _BACKSTOP_S)
        except TimeoutError:
            _log.error(
                "shutdown backstop reached; abandoning components", extra={"daemon": self.name}
            )

    async def _stop_all(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        # Sources stop before the outputs they feed; the HTTP server goes last.
        for component in reversed(self._started):
            hard = self._hard.is_set() or self.supervisor.crashed.is_set()
            budget = 0.0 if hard else max(0.0, deadline - time.monotonic())
            stopping = asyncio.ensure_future(component.stop(budget))
            hard_wait = asyncio.ensure_future(self._hard.wait())
            await asyncio.wait({stopping, hard_wait}, return_when=asyncio.FIRST_COMPLETED)
            hard_wait.cancel()
            cut_short = not stopping.done()
            if cut_short:
                stopping.cancel()
            try:
                await stopping
            except asyncio.CancelledError:
                if not cut_short:
                    raise
                _log.warning("stopped hard", extra={"component": component.name})
            except Exception as exc:  # noqa: BLE001 - one failing stop must not skip the rest
                _log.exception(
                    "stop failed", extra={"component": component.name, "error": repr(exc)}
                )
        self._started.clear()
