"""core.Budget: the bound on bytes in flight that the collector's listener reads under."""

from __future__ import annotations

import asyncio

import pytest

from kloghub import core


async def _returns(awaitable, timeout: float = 0.05) -> bool:
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return bool(done)


async def test_room_waits_while_the_bound_is_held_and_returns_once_bytes_are_given_back():
    """If this failed, the listener would read on past its budget, or never resume."""
    budget = core.Budget(100)
    budget.take(100)
    waiting = asyncio.ensure_future(budget.room())
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.give(1)
    await asyncio.wait_for(waiting, 1)
    assert budget.waits == 1
    assert budget.used == 99


async def test_one_finisher_may_pass_the_bound_so_half_read_requests_cannot_deadlock():
    """If this failed, connections each holding half a request could wait for each other
    forever once together they hold the whole budget."""
    budget = core.Budget(100)
    first, second = object(), object()
    budget.take(100)  # both hold half a request
    assert await _returns(budget.room(finishing=first))
    assert not await _returns(budget.room(finishing=second))  # the overdraft is taken
    assert not await _returns(budget.room())
    waiting = asyncio.ensure_future(budget.room(finishing=second))
    await asyncio.sleep(0)
    budget.finished(first)
    await asyncio.wait_for(waiting, 1)


async def test_a_cancelled_wait_leaves_nothing_behind():
    """If this failed, a connection closed while paused would block the others."""
    budget = core.Budget(10)
    budget.take(10)
    assert not await _returns(budget.room())
    budget.give(10)
    assert await _returns(budget.room())
    assert budget.used == 0
