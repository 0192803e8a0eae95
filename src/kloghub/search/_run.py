"""One search, from the request a responder typed to lines on the screen.

Order and ``--limit``:

- default: the **newest** ``limit`` matches, printed oldest first (like ``tail``; the most
  recent line ends up next to the prompt, and ``--follow`` carries on from there);
- ``--sort asc``: the **oldest** ``limit`` matches of the window, oldest first;
- ``--sort desc``: the newest ``limit`` matches, newest first.

The time window is ``--since`` / ``--until`` (``--until`` excluded) plus any ``@timestamp``
range in the query; when neither gives one, the default window (``search.since``, 1h)
applies.

``--follow`` polls for new matches every ``poll_interval`` seconds. It asks again for the
last ``lookback`` seconds each time and skips what it already printed (by id), so documents
that reach the store a little late (agent buffers, batch flushes) are still shown; a
document older than that when it arrives is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

from kloghub.search import _query, _times
from kloghub.search._backends import Backend, Hit
from kloghub.search._format import Formatter

__all__ = ["Plan", "Request", "fetch", "plan", "run", "stream"]

_PAGE = 1000
_FOLLOW_MAX_PER_POLL = 10_000
_PROGRESS_AFTER_S = 0.5

Sort = Literal["asc", "desc"]


@dataclass(slots=True)
class Request:
    """What to search, as typed (validated by :func:`plan`)."""

    query: str = ""
    since: str | None = None
    until: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    limit: int = 100
    sort: Sort | None = None
    follow: bool = False
    default_since: str | None = "1h"
    """The window when neither ``since``/``until`` nor the query has one."""


@dataclass(frozen=True, slots=True)
class Plan:
    where: _query.Node
    newest_first: bool
    """Which end of the window ``limit`` keeps (and the order asked of the backend)."""
    reverse: bool
    """Print in the opposite order from the backend's (the default "tail" order)."""
    limit: int
    follow: bool


def _option_instant(option: str, value: str) -> _times.Instant:
    try:
        return _times.parse_instant(value, bare_duration_is_ago=True)
    except ValueError as exc:
        raise _query.QueryError(str(exc), 0, value, option) from None


def _shortcut(option: str, field: str, value: str) -> _query.Node:
    if not value:
        raise _query.QueryError("needs a value", 0, value, option)
    chars: list[tuple[str, bool]] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            chars.append((value[i + 1], True))
            i += 2
        else:
            chars.append((value[i], False))
            i += 1
    pattern = _query.pattern_of(chars)
    if all(isinstance(part, str) for part in pattern):
        return _query.Term(field, "".join(part for part in pattern if isinstance(part, str)))
    return _query.Wildcard(field, pattern)


def plan(request: Request) -> Plan:
    """Parse and check ``request``; :class:`QueryError` says what is wrong and where."""
    if request.limit < 1:
        raise _query.QueryError("must be at least 1", 0, str(request.limit), "--limit")
    if request.follow and request.until is not None:
        raise _query.QueryError(
            "--follow shows new matches as they come; it does not stop at --until",
            0,
            request.until,
            "--until",
        )
    if request.follow and request.sort is not None:
        raise _query.QueryError(
            "--follow prints matches in the order they happen; leave --sort out",
            0,
            request.sort,
            "--sort",
        )
    items: list[_query.Node] = []
    parsed = _query.parse(request.query)
    if not isinstance(parsed, _query.All):
        items.append(parsed)
    for option, field, value in (
        ("--namespace", "kubernetes.namespace", request.namespace),
        ("--pod", "kubernetes.pod.name", request.pod),
        ("--container", "kubernetes.container.name", request.container),
    ):
        if value is not None:
            items.append(_shortcut(option, field, value))
    since = _option_instant("--since", request.since) if request.since is not None else None
    until = _option_instant("--until", request.until) if request.until is not None else None
    if (
        since is None
        and until is None
        and request.default_since is not None
        and not _query.has_time_range(parsed)
    ):
        since = _option_instant("search.since", request.default_since)
    if since is not None or until is not None:
        items.append(_query.TimeRange(since, until))
    where: _query.Node
    if not items:
        where = _query.All()
    elif len(items) == 1:
        where = items[0]
    else:
        where = _query.And(tuple(items))
    return Plan(
        where=where,
        newest_first=request.sort != "asc",
        reverse=request.sort is None,
        limit=request.limit,
        follow=request.follow,
    )


class _Progress:
    """``N matches…`` on stderr while a long search runs, only when stderr is a terminal."""

    def __init__(self, err: TextIO | None) -> None:
        self.err = err if err is not None and _isatty(err) else None
        self.started = time.monotonic()
        self.shown = False

    def update(self, count: int) -> None:
        if self.err is None or time.monotonic() - self.started < _PROGRESS_AFTER_S:
            return
        self.err.write(f"\r\x1b[Ksearching… {count} matches so far")
        self.err.flush()
        self.shown = True

    def done(self) -> None:
        if self.err is not None and self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def fetch(
    backend: Backend,
    where: _query.Node,
    *,
    now_ns: int,
    newest_first: bool,
    limit: int,
    progress: Callable[[int], None] | None = None,
) -> list[Hit]:
    """Up to ``limit`` matches in the backend's order, page by page."""
    hits: list[Hit] = []
    tail: list[Hit] = []
    while len(hits) < limit:
        size = min(_PAGE, limit - len(hits))
        page = await backend.page(
            where, now_ns=now_ns, newest_first=newest_first, size=size, after=tail
        )
        if not page:
            break
        hits += page
        last = page[-1].time_ns
        tail = [hit for hit in tail if hit.time_ns == last] + [
            hit for hit in page if hit.time_ns == last
        ]
        if progress is not None:
            progress(len(hits))
        if len(page) < size:
            break
    return hits


async def stream(
    backend: Backend, where: _query.Node, *, now_ns: int, page: int = _PAGE
) -> AsyncIterator[Hit]:
    """Every match, oldest first, page by page (memory: one page), e.g. for a backtest."""
    tail: list[Hit] = []
    while True:
        hits = await backend.page(where, now_ns=now_ns, newest_first=False, size=page, after=tail)
        for hit in hits:
            yield hit
        if len(hits) < page:
            return
        last = hits[-1].time_ns
        tail = [h for h in tail if h.time_ns == last] + [h for h in hits if h.time_ns == last]


async def run(
    request: Request,
    backend: Backend,
    formatter: Formatter,
    *,
    err: TextIO | None = None,
    poll_interval: float = 1.0,
    lookback: float = 30.0,
    clock: Callable[[], int] = time.time_ns,
    stop: asyncio.Event | None = None,
) -> int:
    """Search and write the matches; with ``follow`` keep writing new ones until ``stop`` is
    set or the task is cancelled. Returns how many documents were written."""
    search_plan = plan(request)
    progress = _Progress(err)
    now_ns = clock()
    formatter.start()
    written = 0
    try:
        try:
            hits = await fetch(
                backend,
                search_plan.where,
                now_ns=now_ns,
                newest_first=search_plan.newest_first,
                limit=search_plan.limit,
                progress=progress.update,
            )
        finally:
            progress.done()
        if search_plan.reverse:
            hits.reverse()
        formatter.write(hits)
        written = len(hits)
        if search_plan.follow:
            written += await _follow(
                search_plan,
                backend=backend,
                formatter=formatter,
                printed=hits,
                now_ns=now_ns,
                poll_interval=poll_interval,
                lookback=lookback,
                clock=clock,
                stop=stop,
            )
    finally:
        formatter.finish()
    return written


async def _follow(
    search_plan: Plan,
    *,
    backend: Backend,
    formatter: Formatter,
    printed: Sequence[Hit],
    now_ns: int,
    poll_interval: float,
    lookback: float,
    clock: Callable[[], int],
    stop: asyncio.Event | None,
) -> int:
    window = int(lookback * _times.NS)
    cursor = max((hit.time_ns for hit in printed), default=now_ns)
    # Everything already in the look-back window counts as shown: older matches that the
    # limit left out must not pour out on the first poll.
    known = await fetch(
        backend,
        _since(search_plan.where, cursor - window),
        now_ns=now_ns,
        newest_first=False,
        limit=_FOLLOW_MAX_PER_POLL,
    )
    # Only what the first search could have shown (up to now_ns): a match newer than that,
    # stored between the first search and this one, is new and is printed below.
    seen = {hit.id: hit.time_ns for hit in (*known, *printed) if hit.time_ns <= now_ns}
    written = 0
    while True:
        if stop is None:
            await asyncio.sleep(poll_interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)
            if stop.is_set():
                return written
        hits = await fetch(
            backend,
            _since(search_plan.where, cursor - window),
            now_ns=clock(),
            newest_first=False,
            limit=_FOLLOW_MAX_PER_POLL,
        )
        fresh = [hit for hit in hits if hit.id not in seen]
        if not fresh:
            continue
        formatter.write(fresh)
        written += len(fresh)
        for hit in fresh:
            seen[hit.id] = hit.time_ns
        cursor = max(cursor, *(hit.time_ns for hit in fresh))
        horizon = cursor - window
        seen = {key: t for key, t in seen.items() if t >= horizon}


def _since(where: _query.Node, lower_ns: int) -> _query.Node:
    bound = _query.TimeRange(lower=_times.Instant(ns=lower_ns))
    return _query.And((where, bound))
