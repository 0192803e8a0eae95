"""The layers around a push function: batching, concurrency, retry, split, fatal, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

from kloghub import buffer, config, core, sinks
from kloghub.runtime import metrics

from ._support import FAST_RETRY, MemoryDeadLetters, Settled, counter, doc

Script = Callable[[int, Sequence[sinks.Item]], Awaitable[sinks.Outcome]]


async def deliver_all(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
    return sinks.Outcome()


class ScriptedSink(sinks.Sink):
    """A sink whose push is a test script; records the ids of every push."""

    kind = "scripted"

    def __init__(self, cfg: config.SinkConfig, dead: Any, script: Script, **kw: Any) -> None:
        super().__init__(cfg, dead, **kw)
        self.script = script
        self.pushes: list[list[str]] = []
        self.push_times: list[float] = []

    def encode(self, event: core.Event) -> bytes:
        return orjson.dumps(event.record["doc"])

    async def push(self, items: Sequence[sinks.Item]) -> sinks.Outcome:
        self.pushes.append([_id(item.event) for item in items])
        self.push_times.append(time.monotonic())
        return await self.script(len(self.pushes) - 1, items)


def _id(event: core.Event) -> str:
    record: Any = event.record
    return record.id if isinstance(record, core.Encoded) else record["id"]


def make(script: Script = deliver_all, dead: Any = None, **settings: Any) -> ScriptedSink:
    kw = {
        k: settings.pop(k)
        for k in ("request_timeout", "confirm_timeout", "max_unconfirmed")
        if k in settings
    }
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("flush_interval", 3600)
    cfg = config.SinkConfig(url="elasticsearch+http://127.0.0.1:1", **settings)
    return ScriptedSink(cfg, dead if dead is not None else MemoryDeadLetters(), script, **kw)


def events(settled: Settled, n: int, start: int = 0, **extra: Any) -> core.Batch:
    return core.Batch(
        settled.event("logs-t-default", f"d{i}", doc(i, **extra)) for i in range(start, start + n)
    )


async def test_requests_are_cut_at_batch_max_records_and_the_rest_at_stop():
    """If this failed, a sink would send one request per incoming batch, or hold a tail forever."""
    settled = Settled()
    sink = make(batch_max_records=10)
    await sink.start()
    await sink.send(events(settled, 25))
    await sink.stop(5)
    assert [len(p) for p in sink.pushes] == [10, 10, 5]
    assert settled.count(core.Delivery.DELIVERED) == 25


async def test_batch_max_bytes_bounds_a_request():
    """If this failed, a request could exceed the size the destination accepts."""
    settled = Settled()
    sink = make(batch_max_bytes=1000)
    await sink.start()
    await sink.send(events(settled, 20))  # ~300 bytes each
    await sink.stop(5)
    assert all(1 <= len(p) <= 3 for p in sink.pushes)
    assert sum(len(p) for p in sink.pushes) == 20


async def test_a_partial_request_goes_out_after_flush_interval():
    """If this failed, a trickle of logs would wait for a full batch before reaching the SIEM."""
    settled = Settled()
    sink = make(flush_interval=0.05)
    await sink.start()
    try:
        await sink.send(events(settled, 3))
        await settled.wait_for(3, timeout=5)
        assert sink.pushes == [["d0", "d1", "d2"]]
    finally:
        await sink.stop(5)


async def test_send_waits_while_concurrency_requests_are_in_flight():
    """If this failed, a slow SIEM would not push back and memory would grow without bound."""
    release = asyncio.Event()

    async def slow(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        await release.wait()
        return sinks.Outcome()

    settled = Settled()
    sink = make(slow, batch_max_records=1, concurrency=2)
    await sink.start()
    try:
        await sink.send(events(settled, 1, 0))
        await sink.send(events(settled, 1, 1))
        third = asyncio.ensure_future(sink.send(events(settled, 1, 2)))
        await asyncio.sleep(0.1)
        assert not third.done()
        assert len(sink.pushes) == 2
        release.set()
        await asyncio.wait_for(third, 5)
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 3


async def test_only_the_items_refused_for_now_are_sent_again():
    """If this failed, one throttled item would make a whole batch be indexed again."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        return sinks.Outcome(retry=[1, 3], reason="429") if n == 0 else sinks.Outcome()

    settled = Settled()
    sink = make(script)
    await sink.start()
    await sink.send(events(settled, 5))
    await sink.stop(5)
    assert sink.pushes == [["d0", "d1", "d2", "d3", "d4"], ["d1", "d3"]]
    assert settled.count(core.Delivery.DELIVERED) == 5
    assert not settled.twice


async def test_retry_after_is_honoured():
    """If this failed, a SIEM asking for a pause (429 Retry-After) would be hammered."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if n == 0:
            raise core.RetryableError("busy", retry_after=0.3)
        return sinks.Outcome()

    settled = Settled()
    sink = make(script, retry={"initial_backoff": 0.001, "max_backoff": 5})
    await sink.start()
    await sink.send(events(settled, 2))
    await sink.stop(5)
    assert sink.push_times[1] - sink.push_times[0] >= 0.29


async def test_retry_after_is_capped_by_max_backoff():
    """If this failed, a server answering Retry-After: 3600 would stall the sink for an hour."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if n == 0:
            raise core.RetryableError("busy", retry_after=3600)
        return sinks.Outcome()

    settled = Settled()
    sink = make(script, retry={"initial_backoff": 0.001, "max_backoff": 0.1})
    await sink.start()
    await sink.send(events(settled, 1))
    await sink.stop(5)
    assert sink.push_times[1] - sink.push_times[0] < 1
    assert settled.count(core.Delivery.DELIVERED) == 1


async def test_backoff_doubles_up_to_max_backoff_between_failed_attempts(
    monkeypatch: pytest.MonkeyPatch,
):
    """If this failed, retries of a down server would hammer it (no exponential backoff)."""
    import tenacity

    # Full jitter draws uniformly below the window; take the top of it to see the window.
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda _low, high: high)

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if n < 6:
            raise core.RetryableError("down")
        return sinks.Outcome()

    settled = Settled()
    sink = make(script, retry={"initial_backoff": 0.02, "max_backoff": 0.2})
    await sink.start()
    await sink.send(events(settled, 1))
    await sink.stop(10)
    gaps = [b - a for a, b in zip(sink.push_times, sink.push_times[1:], strict=False)]
    expected = [0.02, 0.04, 0.08, 0.16, 0.2, 0.2]
    assert all(gap >= want * 0.9 for gap, want in zip(gaps, expected, strict=True)), gaps
    assert settled.count(core.Delivery.DELIVERED) == 1


async def test_max_attempts_dead_letters_what_never_got_through():
    """If this failed, an attempt limit would hold events forever or drop them silently."""

    async def never(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        raise core.RetryableError("HTTP 503: unavailable")

    dead = MemoryDeadLetters()
    settled = Settled()
    sink = make(never, dead, retry={**FAST_RETRY, "max_attempts": 3})
    before = counter(metrics.DEAD_LETTERED, "scripted")
    await sink.start()
    await sink.send(events(settled, 2))
    await sink.stop(5)
    assert len(sink.pushes) == 3
    assert settled.count(core.Delivery.REJECTED) == 2
    assert {r.error for _s, r in dead.entries} == {"retries_exhausted"}
    assert "HTTP 503" in dead.entries[0][1].reason
    assert counter(metrics.DEAD_LETTERED, "scripted") - before == 2


@pytest.mark.parametrize("with_hint", [False, True], ids=["bisect", "hint"])
async def test_a_split_isolates_the_bad_item_and_delivers_the_rest_once(with_hint: bool):
    """If this failed, one malformed event would block its batch or send its mates twice."""
    delivered: list[str] = []

    async def script(_n: int, items: Sequence[sinks.Item]) -> sinks.Outcome:
        ids = [item.event.record["id"] for item in items]
        if "d5" in ids:
            hint = ids.index("d5") if with_hint else None
            raise sinks.SplitError("hec_code_6", "Invalid data format", 400, hint)
        delivered.extend(ids)
        return sinks.Outcome()

    dead = MemoryDeadLetters()
    settled = Settled()
    sink = make(script, dead)
    await sink.start()
    await sink.send(events(settled, 8))
    await sink.stop(5)
    assert sorted(delivered) == [f"d{i}" for i in range(8) if i != 5]
    assert dead.ids() == ["d5"]
    assert settled.status["d5"] is core.Delivery.REJECTED
    assert settled.count(core.Delivery.DELIVERED) == 7
    if with_hint:
        assert sink.pushes[1] == ["d0", "d1", "d2", "d3", "d4"]
        assert sink.pushes[2] == ["d5"]


async def test_a_fatal_answer_pauses_sending_and_fails_readiness_until_accepted():
    """If this failed, a revoked token would either lose data or keep /readyz green."""
    accept = asyncio.Event()

    async def script(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if not accept.is_set():
            raise sinks.FatalError("HEC code 4: Invalid token")
        return sinks.Outcome()

    settled = Settled()
    sink = make(script, batch_max_records=2, retry={"initial_backoff": 0.01, "max_backoff": 0.3})
    await sink.start()
    try:
        await sink.send(events(settled, 2))
        await asyncio.sleep(0.1)
        assert sink.problem() == "HEC code 4: Invalid token"
        assert len(sink.pushes) == 1  # paused: no hammering at initial_backoff
        assert not settled.status
        accept.set()
        await settled.wait_for(2, timeout=5)
        assert sink.problem() is None
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 2


async def test_fatal_answers_do_not_use_up_max_attempts():
    """If this failed, an hour of bad credentials would dead-letter everything once fixed."""
    accept = asyncio.Event()

    async def script(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if not accept.is_set():
            raise sinks.FatalError("HTTP 401")
        return sinks.Outcome()

    settled = Settled()
    sink = make(
        script,
        batch_max_records=1,
        retry={"initial_backoff": 0.01, "max_backoff": 0.02, "max_attempts": 2},
    )
    await sink.start()
    try:
        await sink.send(events(settled, 1))
        await asyncio.sleep(0.2)
        assert len(sink.pushes) >= 3
        accept.set()
        await settled.wait_for(1, timeout=5)
    finally:
        await sink.stop(5)
    assert settled.status["d0"] is core.Delivery.DELIVERED


async def test_stop_finishes_the_requests_in_flight():
    """If this failed, SIGTERM would throw away requests the SIEM was about to confirm."""

    async def slow(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        await asyncio.sleep(0.2)
        return sinks.Outcome()

    settled = Settled()
    sink = make(slow, batch_max_records=5)
    await sink.start()
    await sink.send(events(settled, 12))
    await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 12


async def test_stop_timeout_leaves_unconfirmed_events_unsettled():
    """If this failed, a stuck SIEM would make events look delivered (lost) or hang shutdown."""

    async def stuck(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        await asyncio.sleep(3600)
        return sinks.Outcome()

    settled = Settled()
    sink = make(stuck)
    await sink.start()
    await sink.send(events(settled, 3))
    started = time.monotonic()
    await sink.stop(0.1)
    assert time.monotonic() - started < 2
    assert not settled.status
    assert sink.state is core.State.STOPPED


async def test_a_request_without_answer_in_time_is_sent_again():
    """If this failed, a hung connection would hold its events until the process restarts."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if n == 0:
            await asyncio.sleep(3600)
        return sinks.Outcome()

    settled = Settled()
    sink = make(script, request_timeout=0.05)
    await sink.start()
    await sink.send(events(settled, 2))
    await sink.stop(5)
    assert len(sink.pushes) == 2
    assert settled.count(core.Delivery.DELIVERED) == 2


async def test_an_unexpected_push_error_is_retried_not_fatal_to_the_daemon():
    """If this failed, a client library bug would crash the collector or lose the batch."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        if n == 0:
            raise ValueError("surprise")
        return sinks.Outcome()

    settled = Settled()
    sink = make(script)
    await sink.start()
    await sink.send(events(settled, 2))
    await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 2


async def test_an_unencodable_event_is_dead_lettered_and_its_mates_delivered():
    """If this failed, one event the encoder chokes on would crash or block the sink."""
    dead = MemoryDeadLetters()
    settled = Settled()
    sink = make(dead=dead)
    await sink.start()
    batch = events(settled, 3)
    batch.events[1].record["doc"] = {"bad": object()}
    await sink.send(batch)
    await sink.stop(5)
    assert dead.ids() == ["d1"]
    assert dead.entries[0][1].error == "unencodable"
    assert settled.count(core.Delivery.DELIVERED) == 2


async def test_events_stay_unsettled_until_the_dead_letter_store_takes_them():
    """If this failed, a refused event would be acknowledged while the DLQ write failed (lost)."""

    async def refuse(_n: int, items: Sequence[sinks.Item]) -> sinks.Outcome:
        return sinks.Outcome(refused={0: sinks.Refusal("mapper_parsing_exception", "bad", 400)})

    dead = MemoryDeadLetters()
    dead.failures = 2
    settled = Settled()
    sink = make(refuse, dead, batch_max_records=1)
    await sink.start()
    await sink.send(events(settled, 1))
    await asyncio.sleep(0.05)
    assert not settled.status  # the store is failing: nothing settled yet
    await settled.wait_for(1, timeout=5)
    await sink.stop(5)
    assert settled.status["d0"] is core.Delivery.REJECTED
    assert dead.ids() == ["d0"]


async def test_a_confirmation_settles_later_and_frees_the_send_slot():
    """If this failed, indexer acks would settle early, or cap throughput at one request per ack."""
    confirmations: list[asyncio.Future[sinks.Outcome]] = []

    async def script(_n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        future: asyncio.Future[sinks.Outcome] = asyncio.get_running_loop().create_future()
        confirmations.append(future)
        return sinks.Outcome(confirm=future)

    settled = Settled()
    sink = make(script, batch_max_records=1, concurrency=1, max_unconfirmed=4)
    await sink.start()
    try:
        await sink.send(events(settled, 3))
        await asyncio.sleep(0.05)
        assert len(sink.pushes) == 3  # each waits for its ack without holding the slot
        assert not settled.status
        for future in confirmations:
            future.set_result(sinks.Outcome())
        await settled.wait_for(3, timeout=5)
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 3


async def test_metrics_count_sent_acked_and_retried_records():
    """If this failed, dashboards would not show a SIEM that throttles the collector."""

    async def script(n: int, _items: Sequence[sinks.Item]) -> sinks.Outcome:
        return sinks.Outcome(retry=[0]) if n == 0 else sinks.Outcome()

    before = [
        counter(m, "scripted")
        for m in (metrics.RECORDS_SENT, metrics.RECORDS_ACKED, metrics.RECORDS_RETRIED)
    ]
    settled = Settled()
    sink = make(script)
    await sink.start()
    await sink.send(events(settled, 4))
    await sink.stop(5)
    after = [
        counter(m, "scripted")
        for m in (metrics.RECORDS_SENT, metrics.RECORDS_ACKED, metrics.RECORDS_RETRIED)
    ]
    assert [a - b for a, b in zip(after, before, strict=True)] == [4, 4, 1]


async def test_send_refuses_work_when_not_running():
    """If this failed, a pump racing shutdown would hand events to a sink that never sends them."""
    sink = make()
    with pytest.raises(RuntimeError):
        await sink.send(core.Batch())


async def test_an_event_encoded_before_the_queue_is_dead_lettered_with_its_document(tmp_path):
    """If this failed, events the sink's queue stored as bytes would reach the dead-letter
    queue without their document (nothing to inspect or replay), or never leave the queue."""

    async def refuse_first(_n: int, items: Sequence[sinks.Item]) -> sinks.Outcome:
        return sinks.Outcome(refused={0: sinks.Refusal("mapper_parsing_exception", "bad", 400)})

    dead = MemoryDeadLetters()
    sink = make(refuse_first, dead, batch_max_records=2)
    queue = buffer.DiskQueue(
        tmp_path, config.QueueConfig(), "sink-0", encode=sink.encode, codec="test/1"
    )
    await queue.start()
    await sink.start()
    try:
        await queue.push(
            core.Batch(
                core.Event("logs-t-default", i, {"id": f"d{i}", "doc": doc(i)}) for i in range(2)
            )
        )
        popped = await queue.pop(10, 1 << 20, 1.0)
        assert all(isinstance(e.record, core.Encoded) for e in popped)
        await sink.send(popped)
        await sink.stop(5)
        assert sink.pushes == [["d0", "d1"]]
        [(_url, rejection)] = dead.entries
        assert rejection.event.record == {"id": "d0", "doc": doc(0)}
        assert (rejection.event.tag, rejection.event.time_ns) == ("logs-t-default", 0)
    finally:
        await sink.stop(5)
        await queue.stop(5)
    again = buffer.DiskQueue(
        tmp_path, config.QueueConfig(), "sink-0", encode=sink.encode, codec="test/1"
    )
    await again.start()
    try:  # both settled (one delivered, one dead-lettered): acknowledged, not handed out again
        assert not (await again.pop(10, 1 << 20, 0.1)).events
    finally:
        await again.stop(5)
