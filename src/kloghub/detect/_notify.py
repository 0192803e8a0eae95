"""Alert notifications: grouped, rate-limited, retried, and never in ingestion's way.

:meth:`Notifier.submit` is a plain synchronous call that only files the alert document
in each receiver's groups (constant time, no I/O, never waits); a background loop per
receiver decides when a group is due and sends it. Dry-run alerts are never filed.

Grouping, per receiver, with Alertmanager's timing (``collector.detections.notify[]``):

- an alert's **labels** (:mod:`kloghub.detect._receivers`) are its identity: the same
  labels again is the same alert seen again (its count grows), not a new one; ``group_by``
  labels (rule + identity by default) make a **group**;
- a new group is sent ``group_wait`` after its first alert, with every alert that joined
  it meanwhile;
- alerts new to a group that was already notified are sent together ``group_interval``
  after the group's previous notification;
- an alert that keeps recurring (seen again within ``resolve_timeout`` each time) is
  notified again once ``repeat_interval`` has passed since it was last notified;
- an alert not seen for ``resolve_timeout`` is resolved and forgotten (seen again later,
  it is new); that is also its ``endsAt``. Alerts are events: no "resolved" notification
  is sent (Alertmanager resolves what it was given at ``endsAt`` by itself);
- Alertmanager receivers are also re-posted, at ``group_interval``, the alerts whose count
  changed, so the ``endsAt`` Alertmanager holds moves on while the alert recurs (it
  dedups, people are not notified twice).

**Rate limit**: at most ``rate_limit`` requests per receiver in any 60 s (a sliding
window); a due group waits for its turn and keeps collecting alerts meanwhile.

**Delivery** is at-least-once for what the receiver accepted: a notification is retried
(exponential backoff with full jitter, tenacity; ``Retry-After`` honoured up to
``retry.max_backoff``) on connection errors, time-outs, 408, 429 and 5xx, forever unless
``retry.max_attempts``; other 4xx answers are permanent. Either way of giving up counts
``kloghub_notifications_failed``. At most :data:`CONCURRENCY` requests per receiver are
alive at once (a group has at most one): a receiver that hangs holds its own slots until
``timeout``, never the caller.

**Durability** (with a ``state_dir``, as the collector and the agent run it): each
receiver keeps the alerts it was given in a disk queue (``kloghub.buffer.DiskQueue``,
``<state_dir>/<receiver>``) and acknowledges an entry only once the notification that
carries it was accepted (or given up), or once it merged into an alert already notified.
A collector that stops or crashes with alerts not yet notified notifies them after the
restart (at-least-once: after a crash, a notification in flight may be sent twice).
``submit`` itself never waits for the disk: it appends to an in-memory inbox that a
background task writes to the queue (a crash within those milliseconds loses the alerts'
notification, not their documents, which are in the sinks by then).

**Bounds**: a receiver holds at most ``max_pending`` alerts in memory (waiting, in flight,
or remembered until resolved, for de-duplication); beyond that, alerts wait in the disk
queue, which keeps at most ``queue_max_bytes`` (then its oldest entries are dropped,
``kloghub_records_dropped{reason="buffer_full"}``). Without a ``state_dir``, or when the
inbox itself reaches ``max_pending`` (the disk does not keep up), a new alert is dropped
for this receiver, counted in ``kloghub_notifications_dropped{reason="queue_full"}``,
logged (once per burst) and announced in the receiver's next notification
(``droppedAlerts``).

A chunk an agent sends again is detected again: its alerts carry the same labels and merge
into the alert already held (not notified twice) while it is remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import math
import re
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tenacity

from kloghub import buffer, config, core
from kloghub.detect import _receivers

__all__ = ["CONCURRENCY", "Grouper", "Notifier"]

_log = logging.getLogger("kloghub.detect.notify")

CONCURRENCY = 4
"""Requests alive at once per receiver (each group has at most one)."""

_WINDOW = 60.0
_FULL_POLL = 0.2
"""How often a durable receiver whose memory bound is reached looks again."""


class _Retry(Exception):  # noqa: N818 - a signal to tenacity, not an error to report
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _event_seconds(doc: dict[str, Any], key: str, default: float) -> float:
    event = doc.get("event")
    value = event.get(key) if isinstance(event, dict) else None
    if not isinstance(value, str):
        return default
    head, dot, frac = value.rstrip("Z").partition(".")
    try:
        stamp = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        return default
    fraction = float("0." + frac) if dot and frac.isdigit() else 0.0
    return stamp.timestamp() + fraction


def _count(doc: dict[str, Any]) -> int:
    details = doc.get("kloghub")
    alert = details.get("alert") if isinstance(details, dict) else None
    count = alert.get("count") if isinstance(alert, dict) else None
    return count if isinstance(count, int) and count > 0 else 1


def _mode(doc: dict[str, Any]) -> str:
    details = doc.get("kloghub")
    alert = details.get("alert") if isinstance(details, dict) else None
    mode = alert.get("mode") if isinstance(alert, dict) else None
    return mode if isinstance(mode, str) else "alert"


@dataclasses.dataclass
class _Alert:
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    doc: dict[str, Any]
    starts_at: float
    last_seen: float
    """Monotonic time the alert was last submitted."""
    last_seen_wall: float
    count: int
    notified_at: float | None = None
    notified_count: int = 0
    tokens: list[core.Finalizer] = dataclasses.field(default_factory=list)
    """Queue acknowledgements of the submissions this alert stands for, not yet notified."""


@dataclasses.dataclass
class _Group:
    key: str
    labels: dict[str, str]
    opened: float
    alerts: dict[str, _Alert] = dataclasses.field(default_factory=dict)
    last_sent: float | None = None
    in_flight: bool = False
    riders: list[core.Finalizer] = dataclasses.field(default_factory=list)
    """Acknowledgements of repeats that merged into alerts of the notification in flight:
    settled with its outcome."""


def _settle(
    tokens: Iterable[core.Finalizer], status: core.Delivery = core.Delivery.DELIVERED
) -> None:
    for token in tokens:
        token.settle(status)


class Grouper:
    """The grouping, timing, rate limit and bound of one receiver (pure: times are passed
    in, monotonic seconds for scheduling and wall-clock seconds for ``startsAt``/``endsAt``)."""

    def __init__(self, cfg: config.NotifyConfig, receiver: str) -> None:
        self.receiver = receiver
        self._cfg = cfg
        self._by_all = "..." in cfg.group_by
        self._refresh = cfg.type == "alertmanager"
        self._groups: dict[str, _Group] = {}
        self._sent: deque[float] = deque()
        self.held = 0
        """Alerts held (waiting, in flight or remembered)."""
        self.dropped = 0
        """Alerts dropped (bound reached) and not announced in a notification yet."""
        self.dropped_total = 0

    def _group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if self._by_all:
            return dict(labels)
        return {k: labels[k] for k in self._cfg.group_by if k in labels}

    def add(
        self, doc: dict[str, Any], now: float, wall: float, token: core.Finalizer | None = None
    ) -> float | None:
        """File ``doc``; the time its group is due, or None when it was dropped (full: the
        caller settles ``token``). ``token`` (a durable queue entry's acknowledgement) is
        settled once the alert it joined is notified, or at once when it joined an alert
        already notified that is not to be sent again."""
        labels = _receivers.labels_of(doc)
        glabels = self._group_labels(labels)
        key = _receivers.fingerprint(glabels)
        fp = _receivers.fingerprint(labels)
        group = self._groups.get(key)
        alert = group.alerts.get(fp) if group is not None else None
        count = _count(doc)
        if alert is not None and (alert.notified_at is None or not self._resolved(alert, now)):
            alert.count += count
            alert.doc = doc
            alert.annotations = _receivers.annotations_of(doc)
            alert.last_seen = now
            alert.last_seen_wall = wall
            if token is not None:
                if alert.notified_at is None or self._wanted(alert, now):
                    alert.tokens.append(token)
                elif group is not None and group.in_flight:
                    group.riders.append(token)
                else:
                    token.settle(core.Delivery.DELIVERED)
            assert group is not None
            return self._due(group, now)
        if alert is None and self.held >= self._cfg.max_pending:
            self.dropped += 1
            self.dropped_total += 1
            return None
        if group is None:
            group = self._groups[key] = _Group(key, glabels, now)
        if alert is None:
            self.held += 1
        else:
            _settle(alert.tokens)
        # New, or resolved and seen again (new again).
        group.alerts[fp] = _Alert(
            fp,
            labels,
            _receivers.annotations_of(doc),
            doc,
            _event_seconds(doc, "start", wall),
            now,
            wall,
            count,
            tokens=[token] if token is not None else [],
        )
        return self._due(group, now)

    # ------------------------------------------------------------------ timing

    def _resolved(self, alert: _Alert, now: float) -> bool:
        return alert.last_seen + self._cfg.resolve_timeout <= now

    def _wanted(self, alert: _Alert, now: float) -> bool:
        """The alert is to be in the group's next notification (once the group is due)."""
        if alert.notified_at is None:
            return True
        if self._resolved(alert, now):
            return False
        if self._refresh and alert.count != alert.notified_count:
            return True
        return alert.notified_at + self._cfg.repeat_interval <= now

    def _due(self, group: _Group, now: float) -> float:
        """When the group may be sent next (``inf``: nothing to send as things stand)."""
        cfg = self._cfg
        if group.last_sent is None:
            return group.opened + cfg.group_wait
        earliest = group.last_sent + cfg.group_interval
        best = math.inf
        for alert in group.alerts.values():
            if alert.notified_at is None or (self._refresh and alert.count != alert.notified_count):
                return earliest
            if not self._resolved(alert, now):
                best = min(best, alert.notified_at + cfg.repeat_interval)
        return max(earliest, best)

    def _forget_resolved(self, group: _Group, now: float) -> float:
        """Drop resolved, notified alerts; the next time another one resolves."""
        nxt = math.inf
        for fp in list(group.alerts):
            alert = group.alerts[fp]
            if alert.notified_at is None:
                continue
            if self._resolved(alert, now):
                del group.alerts[fp]
                self.held -= 1
                _settle(alert.tokens)
            else:
                nxt = min(nxt, alert.last_seen + self._cfg.resolve_timeout)
        return nxt

    def _rate_free(self, now: float) -> float:
        """When the next request may go (``now`` or later) under the rate limit."""
        limit = self._cfg.rate_limit
        sent = self._sent
        while sent and sent[0] <= now - _WINDOW:
            sent.popleft()
        if limit is None or len(sent) < limit:
            return now
        return sent[-limit] + _WINDOW

    def next_due(self, now: float) -> float | None:
        """When :meth:`take` has something to do next (None: nothing held)."""
        best = math.inf
        for group in list(self._groups.values()):
            if group.in_flight:
                continue
            best = min(best, self._due(group, now), self._forget_resolved(group, now))
            if not group.alerts:
                del self._groups[group.key]
        if best == math.inf:
            return None
        return max(best, self._rate_free(now))

    def unsent(self) -> bool:
        """Some alert was never notified (a drain waits for these)."""
        return any(a.notified_at is None for g in self._groups.values() for a in g.alerts.values())

    def take(self, now: float, limit: int, force: bool = False) -> list[_receivers.Message]:
        """The notifications due at ``now`` (at most ``limit``); their groups are in flight
        until :meth:`done`. ``force`` (a drain): every group with unsent alerts, now."""
        out: list[_receivers.Message] = []
        for group in sorted(self._groups.values(), key=lambda g: g.opened):
            if len(out) >= limit:
                break
            if group.in_flight:
                continue
            self._forget_resolved(group, now)
            if not group.alerts:
                del self._groups[group.key]
                continue
            if force:
                if not any(a.notified_at is None for a in group.alerts.values()):
                    continue
            elif self._due(group, now) > now or self._rate_free(now) > now:
                continue
            out.append(self._message(group, now))
        return out

    def _message(self, group: _Group, now: float) -> _receivers.Message:
        cfg = self._cfg
        wanted = sorted(
            (a for a in group.alerts.values() if self._wanted(a, now)),
            key=lambda a: a.starts_at,
        )
        listed = wanted[: cfg.max_alerts]
        items = tuple(
            _receivers.Item(
                a.fingerprint,
                a.labels,
                a.annotations,
                a.starts_at,
                max(a.starts_at, a.last_seen_wall + cfg.resolve_timeout),
                a.count,
                a.doc,
            )
            for a in listed
        )
        tokens: list[core.Finalizer] = []
        for alert in wanted:
            alert.notified_at = now
            alert.notified_count = alert.count
            tokens += alert.tokens
            alert.tokens = []
        group.last_sent = now
        group.in_flight = True
        self._sent.append(now)
        dropped, self.dropped = self.dropped, 0
        return _receivers.Message(
            receiver=self.receiver,
            group_key=group.key,
            group_labels=group.labels,
            items=items,
            truncated=len(wanted) - len(listed),
            dropped=dropped,
            generator_url=cfg.generator_url,
            tokens=tuple(tokens),
        )

    def done(self, group_key: str, status: core.Delivery | None = core.Delivery.DELIVERED) -> None:
        """The notification of ``group_key`` is settled with ``status`` (None: cut short by a
        stop; what rode on it stays unacknowledged, to be sent after the restart)."""
        group = self._groups.get(group_key)
        if group is not None:
            group.in_flight = False
            riders, group.riders = group.riders, []
            if status is not None:
                _settle(riders, status)


class _Receiver:
    def __init__(self, cfg: config.NotifyConfig, index: int) -> None:
        from kloghub.runtime import metrics

        self.cfg = cfg
        self.name = cfg.name or f"{cfg.type}-{index}"
        assert cfg.url is not None
        url = cfg.url.get_secret_value().rstrip("/")
        if cfg.type == "alertmanager" and not url.endswith("/api/v2/alerts"):
            url += "/api/v2/alerts"
        self.url = url
        self.grouper = Grouper(cfg, self.name)
        self.wake = asyncio.Event()
        self.planned = -math.inf
        self.in_flight: set[asyncio.Task[None]] = set()
        self.draining = False
        self.drained = asyncio.Event()
        self.session: Any = None
        self.headers = {"Content-Type": "application/json", "User-Agent": "kloghub"}
        if cfg.token is not None:
            self.headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        elif cfg.username is not None and cfg.password is not None:
            import aiohttp

            auth = aiohttp.BasicAuth(cfg.username, cfg.password.get_secret_value())
            self.headers["Authorization"] = auth.encode()
        self.sent = metrics.NOTIFICATIONS_SENT.labels(self.name)
        self.failed = metrics.NOTIFICATIONS_FAILED.labels(self.name)
        self.retried = metrics.NOTIFICATIONS_RETRIED.labels(self.name)
        self.dropped = metrics.NOTIFICATIONS_DROPPED.labels(self.name, "queue_full")
        self.pending = metrics.NOTIFICATIONS_PENDING.labels(self.name)
        self.warned = False
        self.queue: buffer.DiskQueue | None = None
        """Alerts not notified yet, durable (with a ``state_dir``)."""
        self.inbox: list[dict[str, Any]] = []
        """Submitted alerts on their way into ``queue``."""
        self.inbox_wake = asyncio.Event()
        self.jitter = tenacity.wait_random_exponential(
            multiplier=cfg.retry.initial_backoff, max=cfg.retry.max_backoff
        )


class Notifier(core.Service):
    """Sends alert documents to the configured receivers (module docstring)."""

    name = "notifier"

    def __init__(
        self, receivers: Iterable[config.NotifyConfig], state_dir: Path | None = None
    ) -> None:
        super().__init__()
        self.receivers = [_Receiver(cfg, i) for i, cfg in enumerate(receivers)]
        self.skipped_dry_run = 0
        if state_dir is not None:
            for r in self.receivers:
                size = int(r.cfg.queue_max_bytes)
                queue = config.QueueConfig(
                    max_bytes=r.cfg.queue_max_bytes,
                    segment_bytes=config.Size(max(4096, min(4 * 1024 * 1024, size // 4))),
                    when_full="drop_oldest",
                )
                folder = state_dir / re.sub(r"[^A-Za-z0-9._-]", "_", r.name)
                r.queue = buffer.DiskQueue(folder, queue, f"notify-{r.name}")

    @classmethod
    def from_config(cls, cfg: config.DetectionsConfig, state_dir: Path | None = None) -> Notifier:
        """The notifier of ``cfg.notify``; durable under ``state_dir`` when given."""
        return cls(cfg.notify, state_dir)

    # ------------------------------------------------------------------ the hot path

    def submit(self, alert_doc: dict[str, Any]) -> None:
        """File ``alert_doc`` (an ECS alert document) for every receiver; never waits."""
        if _mode(alert_doc) == "dry-run":
            self.skipped_dry_run += 1
            return
        if not self.receivers:
            return
        now, wall = time.monotonic(), time.time()
        for r in self.receivers:
            if r.queue is not None:
                if len(r.inbox) >= r.cfg.max_pending:
                    r.grouper.dropped += 1  # announced in the next notification
                    r.grouper.dropped_total += 1
                    self._dropped(r)
                    continue
                r.inbox.append(alert_doc)
                r.inbox_wake.set()
                continue
            due = r.grouper.add(alert_doc, now, wall)
            r.pending.set(r.grouper.held)
            if due is None:
                self._dropped(r)
                continue
            r.warned = False
            if due < r.planned:
                r.wake.set()

    @staticmethod
    def _dropped(r: _Receiver) -> None:
        r.dropped.inc()
        if not r.warned:
            r.warned = True
            _log.warning(
                "notification queue full; alerts are dropped for this receiver",
                extra={"receiver": r.name, "max_pending": r.cfg.max_pending},
            )

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self, timeout: float = 10.0) -> None:
        """Send what waits, give requests in flight ``timeout`` seconds, stop."""
        await self.stop(timeout)

    async def _on_start(self) -> None:
        import aiohttp

        from kloghub import runtime

        for r in self.receivers:
            ssl_context: Any = True
            if r.url.startswith("https://"):
                ssl_context = runtime.client_ssl_context(r.cfg.tls, f"receiver {r.name}")
            r.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONCURRENCY, ssl=ssl_context),
                timeout=aiohttp.ClientTimeout(total=r.cfg.timeout),
            )
            self.spawn(f"receiver-{r.name}", self._run(r))
            if r.queue is not None:
                await r.queue.start()
                self.spawn(f"queue-in-{r.name}", self._write(r))
                self.spawn(f"queue-out-{r.name}", self._read(r))

    async def _on_drain(self) -> None:
        for r in self.receivers:
            if r.queue is not None and r.inbox:  # durable first; the reader may not get to it
                docs, r.inbox = r.inbox, []
                await r.queue.push(core.Batch(_event(doc) for doc in docs))
            r.draining = True
            r.wake.set()
        await asyncio.gather(*(r.drained.wait() for r in self.receivers))

    async def _on_close(self) -> None:
        for r in self.receivers:
            tasks = list(r.in_flight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if r.session is not None:
                await r.session.close()
                r.session = None
            if r.queue is not None:
                await r.queue.stop(5.0)  # what was not notified is sent after the restart

    # ------------------------------------------------------------------ the disk queue

    async def _write(self, r: _Receiver) -> None:
        assert r.queue is not None
        while True:
            await r.inbox_wake.wait()
            r.inbox_wake.clear()
            while r.inbox:
                docs, r.inbox = r.inbox, []
                try:
                    await r.queue.push(core.Batch(_event(doc) for doc in docs))
                except Exception:  # noqa: BLE001 - notifications must never stop ingestion
                    r.dropped.inc(len(docs))
                    _log.exception(
                        "alerts could not be queued for notification; dropped",
                        extra={"receiver": r.name, "alerts": len(docs)},
                    )
                    await asyncio.sleep(_FULL_POLL)

    async def _read(self, r: _Receiver) -> None:
        while True:
            try:
                await self._read_some(r)
            except Exception:  # noqa: BLE001 - notifications must never stop ingestion
                _log.exception("reading the notification queue failed", extra={"receiver": r.name})
                await asyncio.sleep(1.0)

    async def _read_some(self, r: _Receiver) -> None:
        assert r.queue is not None
        while True:
            # The memory bound is reached: the rest waits on disk. (held shrinks in the
            # grouper's own scans; a poll is simpler than an event there.)
            while r.grouper.held >= r.cfg.max_pending:  # noqa: ASYNC110
                await asyncio.sleep(_FULL_POLL)
            batch = await r.queue.pop(256, 4 * 1024 * 1024, timeout=1.0)
            now, wall = time.monotonic(), time.time()
            for event in batch.events:
                token = event.finalizer
                due = r.grouper.add(event.record, now, wall, token)
                if due is None:
                    self._dropped(r)
                    if token is not None:
                        token.settle(core.Delivery.DROPPED)
                    continue
                r.warned = False
                if due < r.planned:
                    r.wake.set()
            r.pending.set(r.grouper.held)

    # ------------------------------------------------------------------ the loop

    async def _run(self, r: _Receiver) -> None:
        while True:
            try:
                await self._schedule(r)
            except Exception:  # noqa: BLE001 - notifications must never stop ingestion
                _log.exception("the notification loop failed", extra={"receiver": r.name})
                await asyncio.sleep(1.0)

    async def _schedule(self, r: _Receiver) -> None:
        while True:
            r.wake.clear()
            now = time.monotonic()
            free = CONCURRENCY - len(r.in_flight)
            if free > 0:
                for msg in r.grouper.take(now, free, force=r.draining):
                    task = asyncio.create_task(self._send(r, msg))
                    r.in_flight.add(task)
                    task.add_done_callback(functools.partial(self._settled, r))
            r.pending.set(r.grouper.held)
            if r.draining and not r.in_flight and not r.grouper.unsent():
                r.drained.set()
            timeout: float | None = None
            if len(r.in_flight) >= CONCURRENCY:
                r.planned = -math.inf  # only a settled request frees a slot
            else:
                nxt = r.grouper.next_due(now)
                r.planned = math.inf if nxt is None else nxt
                if nxt is not None:
                    timeout = max(0.0, nxt - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(r.wake.wait(), timeout)

    def _settled(self, r: _Receiver, task: asyncio.Task[None]) -> None:
        r.in_flight.discard(task)
        r.wake.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error(
                "notification failed unexpectedly",
                extra={"receiver": r.name, "error": repr(error)},
            )

    async def _send(self, r: _Receiver, msg: _receivers.Message) -> None:
        import orjson

        data = orjson.dumps(_receivers.body(r.cfg.type, msg))
        attempts = 0
        max_attempts = r.cfg.retry.max_attempts

        def stop(_state: tenacity.RetryCallState) -> bool:
            return max_attempts is not None and attempts >= max_attempts

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            delay = float(r.jitter(state))
            if isinstance(exc, _Retry) and exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            return min(delay, r.cfg.retry.max_backoff)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            _log.warning(
                "notification not delivered; retrying",
                extra={
                    "receiver": r.name,
                    "attempt": attempts,
                    "retry_in_s": round(state.next_action.sleep, 3) if state.next_action else 0,
                    "error": str(exc) if exc is not None else "",
                },
            )

        retrying = tenacity.AsyncRetrying(
            wait=wait,
            stop=stop,
            retry=tenacity.retry_if_exception_type(_Retry),
            before_sleep=before_sleep,
            reraise=True,
        )
        status: core.Delivery | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    if attempts:
                        r.retried.inc()
                    attempts += 1
                    await self._post(r, data)
        except (_Retry, core.PermanentError) as exc:
            r.failed.inc()
            status = core.Delivery.DROPPED
            _settle(msg.tokens, status)
            _log.error(
                "notification given up",
                extra={
                    "receiver": r.name,
                    "alerts": len(msg.items),
                    "attempts": attempts,
                    "error": str(exc),
                },
            )
        else:
            r.sent.inc()
            status = core.Delivery.DELIVERED
            _settle(msg.tokens, status)
        finally:
            r.grouper.done(msg.group_key, status)

    async def _post(self, r: _Receiver, data: bytes) -> None:
        import aiohttp

        try:
            async with r.session.post(r.url, data=data, headers=r.headers) as response:
                status = response.status
                text = await response.text(errors="replace")
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        reason = f"HTTP {status}: {text[:200]}"
        if status in (408, 429) or status >= 500:
            raise _Retry(reason, retry_after)
        raise core.PermanentError(reason)


def _event(doc: dict[str, Any]) -> core.Event:
    return core.Event("alert", time.time_ns(), doc)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
