"""Window edges of the default pack's correlation rules, and of a temporal rule.

Windows are ``(newest - timespan, newest]`` per group, in the events' own time: these
tests feed real fixture events (tests/fixtures/kube-audit/audit.log, varied only in user
and namespace) at chosen times and check the first and last instant a burst fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloghub import config, detect
from tests.detect import _events as ev
from tests.detect._rules_helper import write

BURST = "444367c7-f29f-4371-b55f-83031751c5ac"  # 20 refused requests by one identity in 1m
MANY_NS = "359208f2-bea4-4b4c-9d80-2f192f296cc5"  # secrets in >= 5 namespaces in 10m
S = 1_000_000_000
T0 = 1_764_000_000 * S


def _forbidden(user: str = "system:serviceaccount:shop:reader") -> dict[str, Any]:
    return ev.as_user(ev.SECRETS_LIST_FORBIDDEN, user)


def _secret_read(namespace: str) -> dict[str, Any]:
    def change(event: dict[str, Any]) -> None:
        event["objectRef"]["namespace"] = namespace

    return ev.variant(ev.SECRET_GET_READER, change)


class Feed:
    """One detector, fed documents at given times; remembers which correlations fired."""

    def __init__(self, detector: detect.Detector | None = None) -> None:
        self.detector = detector or detect.Detector(detect.load([detect.default_pack()]))
        self.n = 0

    def __call__(self, event: dict[str, Any], at_ns: int, rule: str) -> bool:
        _, doc, _ = ev.document(event, self.n)
        self.n += 1
        alerts = self.detector(f"doc-{self.n}", doc, at_ns)
        return any(a.rule.id == rule for a in alerts)


def _burst(
    feed: Feed, times: list[int], user: str = "system:serviceaccount:shop:reader"
) -> list[bool]:
    return [feed(_forbidden(user), t, BURST) for t in times]


def test_twenty_refusals_within_a_minute_fire_on_the_twentieth() -> None:
    fired = _burst(Feed(), [T0 + i * S for i in range(20)])
    assert fired == [False] * 19 + [True]


def test_nineteen_refusals_do_not_fire() -> None:
    assert not any(_burst(Feed(), [T0 + i * S for i in range(19)]))


def test_a_refusal_exactly_one_minute_older_than_the_newest_is_outside_the_window() -> None:
    # 19 at T0 .. T0+18s, the 20th at T0 + 60 s: the one at T0 is exactly 60 s older -> out.
    times = [T0 + i * S for i in range(19)] + [T0 + 60 * S]
    assert not any(_burst(Feed(), times))


def test_a_refusal_a_nanosecond_inside_the_minute_still_counts() -> None:
    times = [T0 + i * S for i in range(19)] + [T0 + 60 * S - 1]
    assert _burst(Feed(), times)[-1]


def test_after_firing_the_group_starts_over() -> None:
    feed = Feed()
    first = _burst(feed, [T0 + i * S // 10 for i in range(20)])
    again = _burst(feed, [T0 + 3 * S + i * S // 10 for i in range(20)])
    assert first.count(True) == 1 and again == [False] * 19 + [True]


def test_refusals_of_different_identities_are_counted_apart() -> None:
    feed = Feed()
    fired = []
    for i in range(20):
        user = "system:serviceaccount:shop:a" if i % 2 else "system:serviceaccount:shop:b"
        fired += _burst(feed, [T0 + i * S], user)
    assert not any(fired)


def test_the_same_event_delivered_twice_counts_once() -> None:
    feed = Feed()
    _, doc, _ = ev.document(_forbidden())
    alerts = [feed.detector("same-id", doc, T0 + i) for i in range(25)]
    assert not any(a.rule.id == BURST for batch in alerts for a in batch)


def test_a_late_event_behind_its_groups_window_is_ignored() -> None:
    feed = Feed()
    _burst(feed, [T0 + 120 * S])
    late = _burst(feed, [T0 + i * S for i in range(19)])  # all > 1 min before the newest
    assert not any(late)
    corr = next(c for c in feed.detector.correlators if c.rule.id == BURST)
    assert corr.late == 19


def test_beyond_max_groups_the_least_recently_seen_group_is_evicted() -> None:
    cfg = config.DetectionsConfig(max_groups=3)
    feed = Feed(detect.Detector(detect.load([detect.default_pack()]), cfg))
    for i in range(5):
        _burst(feed, [T0 + i * S], f"system:serviceaccount:shop:u{i}")
    corr = next(c for c in feed.detector.correlators if c.rule.id == BURST)
    assert corr.groups == 3 and corr.evicted == 2


def test_secrets_in_five_namespaces_within_ten_minutes_fire_on_the_fifth() -> None:
    feed = Feed()
    fired = [feed(_secret_read(f"ns-{i}"), T0 + i * 60 * S, MANY_NS) for i in range(5)]
    assert fired == [False] * 4 + [True]


def test_the_same_namespace_again_is_not_a_new_value() -> None:
    feed = Feed()
    fired = [feed(_secret_read(f"ns-{i % 4}"), T0 + i * S, MANY_NS) for i in range(12)]
    assert not any(fired)


def test_a_namespace_read_ten_minutes_before_the_newest_has_left_the_window() -> None:
    feed = Feed()
    first = feed(_secret_read("ns-0"), T0, MANY_NS)
    rest = [feed(_secret_read(f"ns-{i}"), T0 + 590 * S + i * S, MANY_NS) for i in range(1, 4)]
    edge = feed(_secret_read("ns-4"), T0 + 600 * S, MANY_NS)  # ns-0 is exactly 10 min older
    assert not first and not any(rest) and not edge
    assert feed(_secret_read("ns-5"), T0 + 600 * S + 1, MANY_NS)  # ns-1..ns-5 within


TEMPORAL = """
title: Secret read then exec by one identity
id: 5b0f54a2-8f0e-4a7e-9a55-6f1d3d1c0a01
name: secret_then_exec
correlation:
  type: temporal
  rules:
    - kloghub_k8s_secret_access
    - faa4761f-d604-4387-84c2-e2ed3d5931b1  # the pack's exec/attach rule, by id
  group-by:
    - user.username
  timespan: 5m
level: high
"""


def _temporal_feed(tmp_path: Path) -> tuple[Feed, str]:
    path = write(tmp_path, TEMPORAL)
    ruleset = detect.load([detect.default_pack(), path])
    return Feed(detect.Detector(ruleset)), "5b0f54a2-8f0e-4a7e-9a55-6f1d3d1c0a01"


def test_temporal_fires_when_every_rule_matched_within_the_window(tmp_path: Path) -> None:
    feed, rule = _temporal_feed(tmp_path)
    assert not feed(ev.raw(ev.SECRET_GET_READER), T0, rule)
    assert feed(ev.raw(ev.EXEC_READER_STARTED), T0 + 300 * S - 1, rule)


def test_temporal_does_not_fire_when_the_first_match_left_the_window(tmp_path: Path) -> None:
    feed, rule = _temporal_feed(tmp_path)
    assert not feed(ev.raw(ev.SECRET_GET_READER), T0, rule)
    assert not feed(ev.raw(ev.EXEC_READER_STARTED), T0 + 300 * S, rule)
