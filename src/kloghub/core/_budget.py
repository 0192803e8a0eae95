"""A bound on bytes in flight, shared by the producers that hold them.

The collector's listener waits for room before it reads from a connection, counts what
it read, and gives it back once the requests made of it are stored; while the bound is
reached no connection reads (TCP passes that back to the senders) until something is
given back.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["Budget"]


class Budget:
    """At most about ``limit`` bytes held at once; :meth:`room` waits while they are.

    Holders count what they hold with :meth:`take` (which never waits: the bytes are
    already here) and give it back with :meth:`give`; they call :meth:`room` before they
    fetch more. One holder at a time may go on past the bound to *finish* what it started
    (a request half read, whose bytes it holds): ``room(finishing=owner)`` then returns
    at once, and the owner keeps that overdraft until :meth:`finished`. Without it,
    holders of half-read requests could together hold the whole budget and wait for each
    other forever.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.used = 0
        """Bytes taken and not given back."""
        self.waits = 0
        """Calls to :meth:`room` that had to wait (back-pressure events)."""
        self._waiters: collections.deque[tuple[object | None, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._overdraft: object | None = None

    def _overdraft_for(self, owner: object | None) -> bool:
        if owner is None or self._overdraft not in (None, owner):
            return False
        self._overdraft = owner
        return True

    async def room(self, *, finishing: object | None = None) -> None:
        """Return once there is room (or, for ``finishing``, the overdraft is free)."""
        if (not self._waiters and self.used < self.limit) or self._overdraft_for(finishing):
            return
        self.waits += 1
        future = asyncio.get_running_loop().create_future()
        entry = (finishing, future)
        self._waiters.append(entry)
        try:
            await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def take(self, nbytes: int) -> None:
        """Count ``nbytes`` more as held."""
        self.used += max(0, nbytes)

    def give(self, nbytes: int) -> None:
        """Give back ``nbytes`` taken earlier."""
        if nbytes <= 0:
            return
        self.used = max(0, self.used - nbytes)
        self._wake()

    def finished(self, owner: object) -> None:
        """``owner`` no longer needs the overdraft (its started request is complete)."""
        if self._overdraft is owner:
            self._overdraft = None
            self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        if self.used < self.limit:
            while waiters:
                _, future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
            return
        # Full: a finisher may still use the overdraft, whatever its place in the line.
        for entry in list(waiters):
            owner, future = entry
            if not future.done() and self._overdraft_for(owner):
                waiters.remove(entry)
                future.set_result(None)
                return
