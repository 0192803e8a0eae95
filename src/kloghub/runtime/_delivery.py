"""The delivery engine: concurrency, retry and timeout layers around a push function.

The OpenTelemetry exporterhelper shape: a forwarder writes only ``push(request)`` — send
the request, return when the destination has it, or raise to classify the failure:

- ``core.RetryableError`` (``retry_after`` honoured up to ``max_backoff``), ``OSError``,
  ``TimeoutError`` or any other exception: try again later, with exponential backoff and
  full jitter (tenacity, ``retry.initial_backoff`` .. ``retry.max_backoff``);
- ``core.PermanentError``: give up on this request at once.

:class:`Delivery` wraps it with:

- **concurrency** — at most ``concurrency`` requests alive (on the wire or backing off);
  :meth:`Delivery.submit` waits for a slot: the back-pressure into whoever submits;
- **timeout** — each push is bounded by ``timeout`` (``None``: the push bounds itself);
  a late answer is a retry;
- **retry** — forever, unless ``retry.max_attempts``: then the request is given up;
- **settling** — ``on_done(request, Delivery.DELIVERED)`` once pushed; given up:
  ``on_done(request, Delivery.DROPPED)`` and ``kloghub_records_dropped{reason=
  "retries_exhausted"}`` counted (or ``"refused"`` for a permanent error);
- **metrics** — ``kloghub_records_sent/acked/retried{output=<kind>}`` and
  ``kloghub_request_seconds{output=<kind>}``, counted in records (``size(request)``).

A request still in flight when the engine is closed is never settled: its records stay
wherever they came from (the disk buffer, the file) and are sent again after a restart.
The collector's SIEM sinks (``kloghub.sinks``) have these layers plus per-item outcomes,
splitting and dead letters; they are to move onto this module (not done yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import tenacity

from kloghub import config, core
from kloghub.runtime import _metrics as metrics

__all__ = ["Delivery"]

_log = logging.getLogger("kloghub.delivery")

R = TypeVar("R")


class _Retry(Exception):  # noqa: N818 - a signal to tenacity, not an error to report
    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Delivery(Generic[R]):
    """Delivers requests through ``push`` (module docstring)."""

    def __init__(
        self,
        name: str,
        kind: str,
        push: Callable[[R], Awaitable[None]],
        on_done: Callable[[R, core.Delivery], None],
        *,
        retry: config.RetryConfig,
        concurrency: int,
        timeout: float | None,
        size: Callable[[R], int] = lambda _request: 1,
    ) -> None:
        self.name = name
        self._push = push
        self._on_done = on_done
        self._retry = retry
        self._timeout = timeout
        self._size = size
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._jitter = tenacity.wait_random_exponential(
            multiplier=retry.initial_backoff, max=retry.max_backoff
        )
        self._sent = metrics.RECORDS_SENT.labels(kind)
        self._acked = metrics.RECORDS_ACKED.labels(kind)
        self._retried = metrics.RECORDS_RETRIED.labels(kind)
        self._seconds = metrics.REQUEST_SECONDS.labels(kind)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not settled yet."""
        return len(self._tasks)

    async def submit(self, request: R) -> None:
        """Take ``request`` over; waits while ``concurrency`` requests are alive."""
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._deliver(request))
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._forget)

    async def drain(self) -> None:
        """Wait until every submitted request is settled."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel what is in flight (left unsettled: it will be sent again)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error(
                "delivery failed unexpectedly; the request stays unsettled",
                extra={"output": self.name, "error": repr(error)},
            )

    async def _deliver(self, request: R) -> None:
        attempts = 0
        max_attempts = self._retry.max_attempts
        records = self._size(request)

        def stop(_state: tenacity.RetryCallState) -> bool:
            return max_attempts is not None and attempts >= max_attempts

        retrying = tenacity.AsyncRetrying(
            wait=self._wait,
            stop=stop,
            retry=tenacity.retry_if_exception_type(_Retry),
            before_sleep=lambda state: self._log_retry(records, attempts, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    (self._retried if attempts else self._sent).inc(records)
                    attempts += 1
                    await self._attempt(request)
        except _Retry as exc:
            metrics.DROPPED.labels("retries_exhausted").inc(records)
            _log.error(
                "request dropped after retry.max_attempts failed attempts",
                extra={
                    "output": self.name,
                    "records": records,
                    "attempts": attempts,
                    "error": str(exc),
                },
            )
            self._on_done(request, core.Delivery.DROPPED)
            return
        except core.PermanentError as exc:
            metrics.DROPPED.labels("refused").inc(records)
            _log.error(
                "request refused for good by the destination; dropped",
                extra={"output": self.name, "records": records, "error": str(exc)},
            )
            self._on_done(request, core.Delivery.DROPPED)
            return
        self._acked.inc(records)
        self._on_done(request, core.Delivery.DELIVERED)

    async def _attempt(self, request: R) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._push(request)
        except core.PermanentError:
            raise
        except core.RetryableError as exc:
            raise _Retry(str(exc) or type(exc).__name__, exc.retry_after) from exc
        except TimeoutError as exc:
            raise _Retry(f"no answer within {self._timeout:g}s", None) from exc
        except Exception as exc:
            raise _Retry(str(exc) or type(exc).__name__, None) from exc
        finally:
            self._seconds.observe(time.perf_counter() - started)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = float(self._jitter(state))
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return min(wait, self._retry.max_backoff)

    def _log_retry(self, records: int, attempts: int, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        _log.warning(
            "request not delivered; retrying",
            extra={
                "output": self.name,
                "records": records,
                "attempt": attempts,
                "retry_in_s": round(wait, 3),
                "error": str(exc) if exc is not None else "",
            },
        )
