"""Acknowledgements: finalizers and the offset tracker that moves checkpoints."""

import pytest

from kloghub import core


def test_finalizer_fires_once_when_every_event_is_settled():
    """If this failed, a checkpoint could move before all of its events were delivered."""
    seen = []
    fin = core.Finalizer(seen.append, count=3)
    fin.settle(core.Delivery.DELIVERED, 2)
    assert seen == []
    fin.settle(core.Delivery.DELIVERED, 1)
    assert seen == [core.Delivery.DELIVERED]
    fin.settle(core.Delivery.DELIVERED, 0)
    assert seen == [core.Delivery.DELIVERED]


def test_finalizer_reports_the_worst_status_of_its_events():
    """If this failed, a dead-lettered event would be counted as delivered."""
    seen = []
    fin = core.Finalizer(seen.append, count=2)
    fin.settle(core.Delivery.REJECTED)
    fin.settle(core.Delivery.DELIVERED)
    assert seen == [core.Delivery.REJECTED]


def test_open_finalizer_waits_for_seal_before_firing():
    """If this failed, a read still handing out events could be acknowledged early."""
    seen = []
    fin = core.Finalizer(seen.append)
    fin.add(1)
    fin.settle()
    assert seen == []
    fin.add(1)
    fin.seal()
    assert seen == []
    fin.settle()
    assert seen == [core.Delivery.DELIVERED]


def test_settling_more_events_than_were_handed_out_is_refused():
    """If this failed, a double acknowledgement could fire a finalizer early."""
    fin = core.Finalizer(lambda _s: None, count=1)
    fin.add(1)
    with pytest.raises(RuntimeError):
        fin.settle(count=3)


def test_batch_settles_each_shared_finalizer_with_its_event_count():
    """If this failed, one batch holding many lines of one read would not release it."""
    seen = []
    fin_a = core.Finalizer(lambda s: seen.append(("a", s)), count=2)
    fin_b = core.Finalizer(lambda s: seen.append(("b", s)), count=1)
    batch = core.Batch(
        [
            core.Event("t", 1, {}, fin_a, size=10),
            core.Event("t", 2, {}, fin_b, size=5),
            core.Event("t", 3, {}, fin_a, size=10),
            core.Event("t", 4, {}, None, size=1),
        ]
    )
    assert batch.size == 26
    batch.settle()
    assert sorted(seen) == [("a", core.Delivery.DELIVERED), ("b", core.Delivery.DELIVERED)]


def test_offset_tracker_commits_only_the_acknowledged_prefix():
    """If this failed, an agent killed now would skip lines that were never delivered."""
    tracker = core.OffsetTracker(committed=100)
    first = tracker.reserve(200)
    second = tracker.reserve(300)
    third = tracker.reserve(400)
    assert tracker.acknowledge(second) is False
    assert tracker.committed == 100
    assert tracker.acknowledge(first) is True
    assert tracker.committed == 300
    assert tracker.in_flight == 1
    tracker.acknowledge(third)
    assert tracker.committed == 400
    assert tracker.in_flight == 0


def test_offset_tracker_refuses_ranges_out_of_stream_order():
    """If this failed, a bug in a source could commit an offset past unread data."""
    tracker = core.OffsetTracker()
    tracker.reserve(50)
    with pytest.raises(ValueError, match="stream order"):
        tracker.reserve(10)
