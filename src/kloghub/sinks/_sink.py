"""The layers every SIEM sink shares, around the one thing each sink writes: a push function.

A concrete sink (Elasticsearch, OpenSearch, Splunk HEC) implements only:

- :meth:`Sink.encode` — one event to the bytes it contributes to a request (done once, in
  :meth:`Sink.send`, and kept for resends);
- :meth:`Sink.push` — send those items in one request and classify the answer: return an
  :class:`Outcome` (items not named in it were delivered; some may be retried or refused
  for good), or raise ``core.RetryableError`` (the whole request may be retried, after
  ``retry_after``), :class:`FatalError` (the destination refuses *us*: stop sending, keep
  the data, ``problem()`` fails ``/readyz``) or :class:`SplitError` (one bad item spoils
  the request: split it until the bad item stands alone, then dead-letter it);
- ``_open`` / ``_close`` / ``_check`` — client resources and the start-up health check.

This module wraps it, as OpenTelemetry's exporterhelper does, with:

- **batching** — events are added to a pending request until ``batch_max_records`` or
  ``batch_max_bytes``, or ``flush_interval`` after the first of them;
- **concurrency** — at most ``concurrency`` requests in flight; :meth:`Sink.send` waits
  when they all are (back-pressure into the disk queue, which then fills and blocks or
  drops by its own policy);
- **retry** — exponential backoff with full jitter (tenacity), ``Retry-After`` honoured up
  to ``max_backoff``, only the items that need it resent, forever unless
  ``retry.max_attempts`` (then the rest is dead-lettered as ``retries_exhausted``);
- **timeout** — each push is bounded by ``request_timeout``; a late answer is a retry;
- **confirmation** — a push may answer "accepted, confirmed later" (Splunk indexer
  acknowledgement): the request then frees its send slot and waits for the confirmation;
- **dead letters** — refused items are written to the :class:`DeadLetters` store before
  they are settled ``REJECTED``;
- **metrics** — ``kloghub_records_sent/acked/retried{output=<kind>}``,
  ``kloghub_records_dead_lettered{sink=<kind>}``, ``kloghub_request_seconds{output=<kind>}``.

Every event handed to :meth:`Sink.send` is eventually settled exactly once — ``DELIVERED``
when the destination confirmed it, ``REJECTED`` once it is in the dead-letter store — or,
if the process stops first, not at all: it then stays in the disk queue and is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import orjson
import tenacity

from kloghub import config, core
from kloghub.runtime import metrics
from kloghub.sinks import _dlq

__all__ = ["FatalError", "Item", "Outcome", "Refusal", "Sink", "SplitError"]

_log = logging.getLogger("kloghub.sinks")

REQUEST_TIMEOUT = 60.0
"""Default bound on one request (SinkConfig has no key for it yet)."""
CONFIRM_TIMEOUT = 300.0
"""Default wait for a confirmation (indexer acknowledgement) before the request is resent."""
_DLQ_RETRY_S = (0.1, 5.0)


class Item:
    """One event and the bytes it contributes to a request."""

    __slots__ = ("data", "event")

    def __init__(self, event: core.Event, data: bytes) -> None:
        self.event = event
        self.data = data


class Refusal:
    """Why an item was refused for good."""

    __slots__ = ("error", "reason", "status")

    def __init__(self, error: str, reason: str, status: int | None = None) -> None:
        self.error = error
        """Short, low-cardinality kind (``document_parsing_exception``, ``hec_code_6``)."""
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"Refusal({self.error!r}, {self.reason!r}, {self.status!r})"


class Outcome:
    """A push's per-item answer. Items not named in ``retry`` or ``refused`` were delivered."""

    __slots__ = ("confirm", "reason", "refused", "retry", "retry_after")

    def __init__(
        self,
        retry: Sequence[int] = (),
        refused: Mapping[int, Refusal] | None = None,
        *,
        retry_after: float | None = None,
        reason: str = "",
        confirm: Awaitable[Outcome] | None = None,
    ) -> None:
        self.retry = retry
        """Indexes (into the pushed items) to send again."""
        self.refused = refused or {}
        """Indexes refused for good, with the reason: they go to the dead-letter store."""
        self.retry_after = retry_after
        """Seconds the destination asked us to wait before resending."""
        self.reason = reason
        """Why some items are to be retried (for the log)."""
        self.confirm = confirm
        """Accepted, to be confirmed: awaiting it gives the final outcome (or raises)."""

    @property
    def all_delivered(self) -> bool:
        return not self.retry and not self.refused and self.confirm is None


DELIVERED = Outcome()


class FatalError(core.PermanentError):
    """The destination refuses this sink (credentials, token, configuration).

    Nothing is settled: sending pauses for ``max_backoff`` at a time, ``problem()`` reports
    the reason (``/readyz`` fails) until a request succeeds again.
    """


class SplitError(core.PermanentError):
    """The destination refused the request because of one (or some) of its items.

    ``hint``: the index of the first bad item, when the destination said which.
    """

    def __init__(
        self, error: str, reason: str, status: int | None = None, hint: int | None = None
    ) -> None:
        super().__init__(reason)
        self.refusal = Refusal(error, reason, status)
        self.hint = hint


class _Again(Exception):  # noqa: N818 - a signal to tenacity, not an error to report
    """Some items of the request are to be sent again."""

    def __init__(self, reason: str, retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.fatal = fatal


class _Request:
    """The items of one request still to be delivered, and its failed attempts."""

    __slots__ = ("attempts", "failures", "items")

    def __init__(self, items: list[Item], attempts: int = 0) -> None:
        self.items = items
        self.attempts = attempts
        """Pushes so far; a part split off a refused request starts at 1 (a resend)."""
        self.failures = 0
        """Attempts that failed for a reason other than a fatal one (for max_attempts)."""


class Sink(core.Service):
    """Base of the SIEM sinks: batching, concurrency, retry, timeout, dead letters, metrics."""

    kind = "sink"
    """Metric label: ``elasticsearch``, ``opensearch``, ``splunk_hec``."""
    codec = ""
    """The name of what :meth:`encode` makes (``bulk-ndjson/1``, ``hec-event/1``): the
    sink's disk queue stores those bytes (``core.Encoded`` records, encoded before the
    queue) and keeps the name beside them, so that another encoding never reads them."""

    def __init__(
        self,
        cfg: config.SinkConfig,
        dead_letters: _dlq.DeadLetters,
        *,
        supervisor: core.Supervisor | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        max_unconfirmed: int = 0,
    ) -> None:
        super().__init__(supervisor)
        self.cfg = cfg
        self.name = cfg.url
        """The sink's URL: names it in logs and in dead-letter entries (never credentials)."""
        self._dead_letters = dead_letters
        self._max_records = cfg.batch_max_records
        self._max_bytes = int(cfg.batch_max_bytes)
        self._flush_interval = cfg.flush_interval
        self._retry = cfg.retry
        self._request_timeout = request_timeout
        self._confirm_timeout = confirm_timeout
        self._send_slots = asyncio.Semaphore(cfg.concurrency)
        """Requests on the wire at once."""
        self._budget = asyncio.Semaphore(cfg.concurrency + max_unconfirmed)
        """Requests alive at once (on the wire, backing off, or waiting for confirmation)."""
        self._pending: list[Item] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._has_pending = asyncio.Event()
        self._requests: set[asyncio.Task[None]] = set()
        self._problem: str | None = None
        self._paused_until = 0.0
        self._jitter = tenacity.wait_random_exponential(
            multiplier=self._retry.initial_backoff, max=self._retry.max_backoff
        )
        self._sent = metrics.RECORDS_SENT.labels(self.kind)
        self._acked = metrics.RECORDS_ACKED.labels(self.kind)
        self._retried = metrics.RECORDS_RETRIED.labels(self.kind)
        self._dead = metrics.DEAD_LETTERED.labels(self.kind)
        self._seconds = metrics.REQUEST_SECONDS.labels(self.kind)

    # ------------------------------------------------------------------ for concrete sinks

    def encode(self, event: core.Event) -> bytes:
        """The bytes ``event`` contributes to a request. Raising dead-letters the event."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """The document in ``data`` (what :meth:`encode` made), for the dead-letter queue."""
        return orjson.loads(data)

    async def push(self, items: Sequence[Item]) -> Outcome:
        """Send ``items`` in one request and classify the answer (see the module doc)."""
        raise NotImplementedError

    async def _open(self) -> None:
        """Create clients (no network I/O that could block start)."""

    async def _close(self) -> None:
        """Release clients."""

    async def _check(self) -> None:
        """Start-up health check, run in the background; raise to have it logged."""

    # ------------------------------------------------------------------ public API

    def problem(self) -> str | None:
        """Why this sink cannot deliver (for ``/readyz``), or None."""
        return self._problem

    async def send(self, batch: core.Batch) -> None:
        """Take ``batch`` over; waits only while ``concurrency`` requests are in flight."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"{self.name} is not running")
        unencodable: list[tuple[Item, Refusal]] = []
        encoded = core.Encoded
        for event in batch.events:
            record = event.record
            if isinstance(record, encoded):
                data = record.data  # encoded before the disk queue
            else:
                try:
                    data = self.encode(event)
                except Exception as exc:  # noqa: BLE001 - bad input is dead-lettered, never fatal
                    unencodable.append((Item(event, b""), Refusal("unencodable", repr(exc))))
                    continue
            size = len(data)
            if self._pending and self._pending_bytes + size > self._max_bytes:
                await self._cut()
            self._pending.append(Item(event, data))
            self._pending_bytes += size
            if len(self._pending) == 1:
                self._pending_since = asyncio.get_running_loop().time()
                self._has_pending.set()
            if len(self._pending) >= self._max_records:
                await self._cut()
        if unencodable:
            await self._dead_letter(unencodable)

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        await self._open()
        self.spawn("flush", self._flush_loop())
        self.spawn("check", self._run_check())

    async def _on_drain(self) -> None:
        while self._pending or self._requests:
            if self._pending:
                await self._cut()
            else:
                await asyncio.wait(set(self._requests))

    async def _on_close(self) -> None:
        self._pending = []
        self._pending_bytes = 0
        await self._close()

    async def _run_check(self) -> None:
        try:
            await self._check()
        except Exception as exc:  # noqa: BLE001 - a failed check is logged; data waits
            _log.warning(
                "sink health check failed; events wait in the queue until it answers",
                extra={"sink": self.name, "error": describe_error(exc)},
            )

    # ------------------------------------------------------------------ batching

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_pending.wait()
            delay = self._pending_since + self._flush_interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if self._pending:
                await self._cut()
            else:
                self._has_pending.clear()

    async def _cut(self) -> None:
        """Once the budget allows another request, seal the pending items into it."""
        await self._budget.acquire()
        items = self._pending
        self._pending = []
        self._pending_bytes = 0
        self._has_pending.clear()
        if not items:  # another cut took them while this one waited
            self._budget.release()
            return
        task = self.spawn("request", self._deliver(items))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, items: list[Item]) -> None:
        """Deliver ``items`` (splitting when asked), then free the budget slot."""
        try:
            work: list[list[Item]] = []
            await self._deliver_part(_Request(items), work)
            while work:
                await self._deliver_part(_Request(work.pop(), attempts=1), work)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - see below
            # A bug here must not crash the daemon: the items stay unsettled, so they stay
            # in the disk queue and are sent again after a restart.
            _log.exception("sink request failed unexpectedly", extra={"sink": self.name})
        finally:
            self._budget.release()

    async def _deliver_part(self, request: _Request, work: list[list[Item]]) -> None:
        max_attempts = self._retry.max_attempts

        def stop(_state: tenacity.RetryCallState) -> bool:
            return max_attempts is not None and request.failures >= max_attempts

        retrying = tenacity.AsyncRetrying(
            wait=self._wait,
            stop=stop,
            retry=tenacity.retry_if_exception_type(_Again),
            before_sleep=lambda state: self._log_retry(request, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt(request, work)
        except _Again as again:
            refusal = Refusal(
                "retries_exhausted",
                f"gave up after {request.attempts} attempts: {again}",
            )
            await self._dead_letter([(item, refusal) for item in request.items])

    async def _attempt(self, request: _Request, work: list[list[Item]]) -> None:
        """One push of the request's remaining items; raises _Again if some remain."""
        await self._wait_unpaused()
        items = request.items
        (self._retried if request.attempts else self._sent).inc(len(items))
        request.attempts += 1
        answer: Outcome | SplitError
        async with self._send_slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._request_timeout):
                    answer = await self.push(items)
            except SplitError as split:
                answer = split
            except Exception as exc:
                raise self._again(request, exc) from exc
            finally:
                self._seconds.observe(time.perf_counter() - started)
        self._recovered()
        if isinstance(answer, SplitError):
            request.items = []
            await self._split(items, answer, work)
            return
        outcome = answer
        if outcome.confirm is not None:
            try:
                outcome = await asyncio.wait_for(outcome.confirm, self._confirm_timeout)
            except TimeoutError as exc:
                raise self._again(
                    request, core.RetryableError("no confirmation in time; sending again")
                ) from exc
            except Exception as exc:
                raise self._again(request, exc) from exc
        await self._settle(request, outcome)

    def _again(self, request: _Request, exc: BaseException) -> _Again:
        """Turn a failed push into a retry signal (fatal ones pause the whole sink)."""
        if isinstance(exc, FatalError):
            self._fatal(str(exc))
            return _Again(str(exc), fatal=True)
        request.failures += 1
        if isinstance(exc, core.RetryableError):
            return _Again(str(exc), exc.retry_after)
        if isinstance(exc, TimeoutError):
            return _Again(f"no answer within {self._request_timeout:g}s")
        return _Again(describe_error(exc))

    async def _settle(self, request: _Request, outcome: Outcome) -> None:
        items = request.items
        if outcome.all_delivered:
            request.items = []
            self._delivered([item.event for item in items])
            return
        retry = set(outcome.retry)
        refused = outcome.refused
        delivered = [
            item.event for i, item in enumerate(items) if i not in retry and i not in refused
        ]
        if delivered:
            self._delivered(delivered)
        if refused:
            await self._dead_letter([(items[i], refusal) for i, refusal in refused.items()])
        request.items = [items[i] for i in sorted(retry) if 0 <= i < len(items)]
        if request.items:
            request.failures += 1
            reason = outcome.reason or "some items were refused for now"
            raise _Again(reason, outcome.retry_after)

    def _delivered(self, events: list[core.Event]) -> None:
        core.Batch(events).settle(core.Delivery.DELIVERED)
        self._acked.inc(len(events))

    async def _split(self, items: list[Item], split: SplitError, work: list[list[Item]]) -> None:
        """Queue the parts of a refused request; a lone item is the culprit."""
        if len(items) == 1:
            await self._dead_letter([(items[0], split.refusal)])
            return
        hint = split.hint
        if hint is not None and 0 <= hint < len(items):
            parts = [items[:hint], items[hint : hint + 1], items[hint + 1 :]]
        else:
            half = len(items) // 2
            parts = [items[:half], items[half:]]
        _log.info(
            "request refused because of one of its items; splitting it to find which",
            extra={"sink": self.name, "items": len(items), "error": split.refusal.reason},
        )
        # `work` is a stack: push in reverse so that the parts go out in order.
        work.extend(part for part in reversed(parts) if part)

    async def _dead_letter(self, refused: list[tuple[Item, Refusal]]) -> None:
        """Write to the dead-letter store (retrying until it works), then settle REJECTED."""
        rejections = [
            _dlq.Rejection(
                self._document(item.event), refusal.error, refusal.reason, refusal.status
            )
            for item, refusal in refused
        ]
        backoff, most = _DLQ_RETRY_S
        while True:
            try:
                await self._dead_letters.put(self.name, rejections)
                break
            except Exception as exc:  # noqa: BLE001 - keep the events until the store works
                _log.error(
                    "cannot write to the dead-letter queue; retrying",
                    extra={"sink": self.name, "error": describe_error(exc), "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, most)
        core.Batch(r.event for r in rejections).settle(core.Delivery.REJECTED)
        self._dead.inc(len(rejections))
        first = rejections[0]
        _log.warning(
            "events refused by the destination; kept in the dead-letter queue",
            extra={
                "sink": self.name,
                "events": len(rejections),
                "error": first.error,
                "reason": first.reason[:500],
                "status": first.status,
            },
        )

    def _document(self, event: core.Event) -> core.Event:
        """``event`` with its document (decoded from its bytes when it was encoded before
        the queue): dead-letter entries keep the document, whatever the sink's encoding."""
        record = event.record
        if not isinstance(record, core.Encoded):
            return event
        try:
            doc = self.decode(record.data)
        except Exception:  # noqa: BLE001 - keep the bytes as text rather than lose them
            doc = record.data.decode("utf-8", "replace")
        return core.Event(
            event.tag, event.time_ns, {"id": record.id, "doc": doc}, event.finalizer, event.size
        )

    # ------------------------------------------------------------------ retry policy

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        most = self._retry.max_backoff
        if isinstance(exc, _Again) and exc.fatal:
            return most
        wait = self._jitter(state)
        if isinstance(exc, _Again) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return float(min(wait, most))

    def _log_retry(self, request: _Request, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        _log.warning(
            "request not delivered; retrying",
            extra={
                "sink": self.name,
                "items": len(request.items),
                "attempt": request.attempts,
                "retry_in_s": round(wait, 3),
                "error": str(exc) if exc is not None else "",
            },
        )

    def _fatal(self, reason: str) -> None:
        if self._problem != reason:
            _log.error(
                "the destination refuses this sink; sending is paused until it accepts again",
                extra={"sink": self.name, "error": reason, "retry_in_s": self._retry.max_backoff},
            )
        self._problem = reason
        self._paused_until = asyncio.get_running_loop().time() + self._retry.max_backoff

    def _recovered(self) -> None:
        if self._problem is not None:
            _log.info("the destination accepts this sink again", extra={"sink": self.name})
        self._problem = None
        self._paused_until = 0.0

    async def _wait_unpaused(self) -> None:
        loop = asyncio.get_running_loop()
        # The pause deadline moves while waiting (another fatal answer): re-read it.
        while (delay := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for logs and dead-letter reasons."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
