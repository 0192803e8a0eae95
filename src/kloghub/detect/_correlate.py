"""Correlation rules over sliding windows, grouped by fields, in bounded memory.

Time is the events' own (``@timestamp``), so a backtest over stored events fires as the
live stream did. A group's window is ``(newest - timespan, newest]``: an event exactly
``timespan`` older than the newest one is out. When a group's condition holds, the rule
fires once and that group starts over (one alert per burst, as SIEM backends do with a
window per group).

Memory: a group keeps at most ``count`` entries (the condition fires when it reaches
``count``; ``gt`` keeps ``count + 1``), and a rule keeps at most ``max_groups`` groups; the
least recently seen group is evicted beyond that (counted in ``evicted``). Events that
arrive later than the window of their group are ignored (counted in ``late``), and so is an
event counted already (the same document id: a chunk delivered again).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from typing import Any

from kloghub.detect import _compile, _rules

__all__ = ["Correlator", "Fired"]


@dataclasses.dataclass(frozen=True)
class Fired:
    """A correlation that fired: its group, how many events and which ones."""

    rule: _rules.Correlation
    group: dict[str, Any]
    count: int
    ids: tuple[str, ...]
    first_ns: int
    last_ns: int
    doc: dict[str, Any]
    """The last triggering document (the alert's context)."""


@dataclasses.dataclass
class _Group:
    newest: int = 0
    events: deque[tuple[int, str]] = dataclasses.field(default_factory=deque)
    values: dict[Any, tuple[int, str]] = dataclasses.field(default_factory=dict)
    seen: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)


def _key_value(doc: dict[str, Any], field: str) -> Any:
    found = list(_compile.values(_compile.lookup(doc, field)))
    if not found:
        return None
    value = found[0]
    return value if isinstance(value, str | int | float | bool) else str(value)


class Correlator:
    """The state of one correlation rule."""

    def __init__(self, rule: _rules.Correlation, max_groups: int = 10_000) -> None:
        self.rule = rule
        self._span = int(rule.timespan * 1e9)
        self._need = rule.count + 1 if rule.op == "gt" else rule.count
        self._groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self._max_groups = max_groups
        self.evicted = 0
        self.late = 0

    @property
    def groups(self) -> int:
        return len(self._groups)

    def feed(  # noqa: PLR0911, PLR0912 - one branch per correlation type, read top to bottom
        self, source: str, doc_id: str, doc: dict[str, Any], time_ns: int
    ) -> Fired | None:
        """Account one event that matched the referenced rule ``source``."""
        rule = self.rule
        key = tuple(_key_value(doc, f) for f in rule.group_by)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(newest=time_ns)
            if len(self._groups) > self._max_groups:
                self._groups.popitem(last=False)
                self.evicted += 1
        else:
            self._groups.move_to_end(key)
        group.newest = max(group.newest, time_ns)
        cutoff = group.newest - self._span
        if time_ns <= cutoff:
            self.late += 1
            return None
        entry = (time_ns, doc_id)
        if rule.type == "event_count":
            events = group.events
            while events and events[0][0] <= cutoff:
                events.popleft()
            if any(e[1] == doc_id for e in events):  # the same event delivered again
                return None
            events.append(entry)
            if len(events) < self._need:
                return None
            entries = list(events)
        elif rule.type == "value_count":
            assert rule.field is not None
            value = _key_value(doc, rule.field)
            if value is None:
                return None
            group.values = {v: e for v, e in group.values.items() if e[0] > cutoff}
            group.values[value] = entry
            if len(group.values) < self._need:
                return None
            entries = sorted(group.values.values())
        else:  # temporal: every referenced rule matched in the window
            group.seen = {r: e for r, e in group.seen.items() if e[0] > cutoff}
            group.seen[source] = entry
            if len(group.seen) < len(rule.rules):
                return None
            entries = sorted(group.seen.values())
        del self._groups[key]
        return Fired(
            rule=rule,
            group=dict(zip(rule.group_by, key, strict=True)),
            count=len(entries),
            ids=tuple(e[1] for e in entries),
            first_ns=min(e[0] for e in entries),
            last_ns=max(e[0] for e in entries),
            doc=doc,
        )
