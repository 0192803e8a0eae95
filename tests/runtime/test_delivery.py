"""The delivery engine: retries a push until it succeeds, gives up by policy, bounds it."""

from __future__ import annotations

import asyncio

from kloghub import config, core, runtime

FAST = config.RetryConfig(initial_backoff=0.001, max_backoff=0.01)


def dropped(reason: str) -> float:
    value = runtime.metrics.REGISTRY.get_sample_value(
        "kloghub_records_dropped_total", {"reason": reason}
    )
    return value or 0.0


def engine(push, done, retry=FAST, concurrency=4, timeout=None):
    return runtime.Delivery(
        "test",
        "test",
        push,
        done,
        retry=retry,
        concurrency=concurrency,
        timeout=timeout,
        size=len,
    )


async def test_a_failing_push_is_retried_until_it_succeeds_then_settled_once():
    """If this failed, a collector restart would lose the request or settle it twice."""
    calls: list[str] = []
    settled: list[tuple[str, core.Delivery]] = []

    async def push(request: str) -> None:
        calls.append(request)
        if len(calls) < 3:
            raise ConnectionError("lost")

    delivery = engine(push, lambda r, s: settled.append((r, s)))
    await delivery.submit("abc")
    await delivery.drain()
    assert calls == ["abc"] * 3
    assert settled == [("abc", core.Delivery.DELIVERED)]


async def test_max_attempts_drops_and_counts_the_records_of_the_request():
    """If this failed, retry.max_attempts would be ignored and a poison request block forever."""
    settled: list[core.Delivery] = []
    before = dropped("retries_exhausted")

    async def push(_request: str) -> None:
        raise core.RetryableError("busy")

    retry = config.RetryConfig(initial_backoff=0.001, max_backoff=0.01, max_attempts=2)
    delivery = engine(push, lambda r, s: settled.append(s), retry=retry)
    await delivery.submit("abcd")
    await delivery.drain()
    assert settled == [core.Delivery.DROPPED]
    assert dropped("retries_exhausted") == before + 4


async def test_a_permanent_error_is_not_retried():
    """If this failed, a request the destination can never take would be resent forever."""
    calls: list[str] = []
    settled: list[core.Delivery] = []

    async def push(request: str) -> None:
        calls.append(request)
        raise core.PermanentError("never")

    delivery = engine(push, lambda r, s: settled.append(s))
    await delivery.submit("x")
    await delivery.drain()
    assert calls == ["x"] and settled == [core.Delivery.DROPPED]


async def test_a_push_past_its_timeout_is_retried():
    """If this failed, a destination that never answers would hold a request forever."""
    calls: list[str] = []
    settled: list[core.Delivery] = []

    async def push(request: str) -> None:
        calls.append(request)
        if len(calls) == 1:
            await asyncio.sleep(3600)

    delivery = engine(push, lambda r, s: settled.append(s), timeout=0.05)
    await delivery.submit("x")
    await delivery.drain()
    assert len(calls) == 2 and settled == [core.Delivery.DELIVERED]


async def test_submit_waits_while_the_window_is_full_and_close_leaves_requests_unsettled():
    """If this failed, a slow destination would pile requests up without bound, or a stop
    would report undelivered requests as settled."""
    gate = asyncio.Event()
    settled: list[str] = []

    async def push(_request: str) -> None:
        await gate.wait()

    delivery = engine(push, lambda r, s: settled.append(r), concurrency=2)
    await delivery.submit("a")
    await delivery.submit("b")
    third = asyncio.create_task(delivery.submit("c"))
    done, _ = await asyncio.wait({third}, timeout=0.1)
    assert not done
    assert delivery.in_flight == 2
    await delivery.close()
    await asyncio.wait_for(third, 1)
    await delivery.close()
    assert settled == []
