"""Backtests: stored events through a :class:`~kloghub.detect.Detector`, in time order,
summarized as "what would have fired" (``kloghub rules test``).

The detector runs exactly as in the collector (settings, exceptions, correlations over
the events' own time), so a backtest over last week shows the alerts last week would have
raised with today's rules and tuning: dry-run rules included (marked), disabled rules not.
The summary groups each rule's alerts by identity (``user.name``) and namespace, with
counts and the first and last time, so false positives stand out before a rule is
enforced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from kloghub.detect import _engine, _receivers

__all__ = ["Backtest", "RuleSummary", "as_json", "render"]


def _namespace(doc: dict[str, Any]) -> str:
    get = _receivers.get
    ns = get(doc, "kubernetes.audit.objectRef.namespace") or get(doc, "kubernetes.namespace")
    return str(ns) if ns else "-"


@dataclasses.dataclass
class RuleSummary:
    """One rule's alerts in a backtest."""

    rule_id: str
    title: str
    level: str
    mode: str
    alerts: int = 0
    events: int = 0
    first_ns: int = 0
    last_ns: int = 0
    groups: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)
    """(user, namespace) → [alerts, first_ns, last_ns]."""
    examples: list[str] = dataclasses.field(default_factory=list)
    """Trigger ids of the first alerts (at most 3)."""

    def add(self, alert: _engine.Alert) -> None:
        self.alerts += 1
        self.events += alert.count
        self.first_ns = min(self.first_ns or alert.first_ns, alert.first_ns)
        self.last_ns = max(self.last_ns, alert.last_ns)
        user = _receivers.get(alert.doc, "user.name")
        key = (str(user) if user else "-", _namespace(alert.doc))
        slot = self.groups.setdefault(key, [0, alert.first_ns, alert.last_ns])
        slot[0] += 1
        slot[1] = min(slot[1], alert.first_ns)
        slot[2] = max(slot[2], alert.last_ns)
        if len(self.examples) < 3:
            self.examples.append(alert.ids[-1])


class Backtest:
    """Feeds documents to ``detector``; keeps only the alerts of ``rules`` (ids; all when
    empty)."""

    def __init__(self, detector: _engine.Detector, rules: Iterable[str] = ()) -> None:
        self.detector = detector
        self.only = frozenset(rules)
        self.documents = 0
        self.first_ns = 0
        self.last_ns = 0
        self.summaries: dict[str, RuleSummary] = {}

    def feed(self, doc_id: str, doc: dict[str, Any], time_ns: int) -> list[_engine.Alert]:
        self.documents += 1
        self.first_ns = min(self.first_ns or time_ns, time_ns)
        self.last_ns = max(self.last_ns, time_ns)
        kept = []
        for alert in self.detector(doc_id, doc, time_ns):
            rule = alert.rule
            if self.only and rule.id not in self.only:
                continue
            kept.append(alert)
            summary = self.summaries.get(rule.id)
            if summary is None:
                summary = self.summaries[rule.id] = RuleSummary(
                    rule.id, rule.title, alert.severity, alert.mode
                )
            summary.add(alert)
        return kept

    def ranked(self) -> list[RuleSummary]:
        """Rules that fired, most alerts first."""
        return sorted(self.summaries.values(), key=lambda s: (-s.alerts, s.title))


def _when(time_ns: int) -> str:
    import datetime as dt

    if not time_ns:
        return "-"
    stamp = dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(test: Backtest, where: str, groups: int = 5) -> str:
    """The backtest as text: per rule (most alerts first) its counts and its top groups."""
    lines = [
        f"{test.documents} events from {where} "
        f"({_when(test.first_ns)} .. {_when(test.last_ns)}), "
        f"{len(test.detector.ruleset.all())} rules"
    ]
    ranked = test.ranked()
    if not ranked:
        lines.append("no rule would have fired")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append(f"{'ALERTS':>6} {'EVENTS':>6}  {'LEVEL':<8} {'MODE':<7} RULE")
    for s in ranked:
        head = f"{s.alerts:>6} {s.events:>6}  {s.level:<8} {s.mode:<7}"
        lines.append(f"{head} {s.title}  [{s.rule_id}]")
        top = sorted(s.groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
        for (user, namespace), (count, first, last) in top[:groups]:
            lines.append(
                f"{'':>15}{count:>6} x  user {user}  namespace {namespace}  "
                f"{_when(first)} .. {_when(last)}"
            )
        if len(top) > groups:
            lines.append(f"{'':>15}... {len(top) - groups} more groups")
    alerts = sum(s.alerts for s in ranked)
    lines.append("")
    lines.append(f"{len(ranked)} rules would have fired {alerts} alerts")
    return "\n".join(lines) + "\n"


def as_json(test: Backtest) -> dict[str, Any]:
    """The backtest as a JSON-ready object (``kloghub rules test --format json``)."""
    return {
        "documents": test.documents,
        "first": _when(test.first_ns),
        "last": _when(test.last_ns),
        "rules": [
            {
                "id": s.rule_id,
                "title": s.title,
                "level": s.level,
                "mode": s.mode,
                "alerts": s.alerts,
                "events": s.events,
                "first": _when(s.first_ns),
                "last": _when(s.last_ns),
                "groups": [
                    {"user": u, "namespace": ns, "alerts": c, "first": _when(f), "last": _when(la)}
                    for (u, ns), (c, f, la) in sorted(s.groups.items(), key=lambda kv: -kv[1][0])
                ],
                "examples": s.examples,
            }
            for s in test.ranked()
        ],
    }
