"""``null:``: bulk lines encoded and batched like any sink, then discarded as delivered."""

from __future__ import annotations

import pytest

from kloghub import collector, config, core, sinks
from kloghub.sinks import _bulk

from ._support import FAST_RETRY, MemoryDeadLetters, Settled, doc


async def test_null_sink_encodes_bulk_lines_and_settles_every_event_delivered():
    """If this failed, the collector benchmark's null: sink would measure less work than the
    Elasticsearch sink does, or leave the collector's queue never acknowledged."""
    cfg = config.SinkConfig(url="null:", batch_max_records=10, retry=FAST_RETRY)
    sink = sinks.build(cfg, MemoryDeadLetters())
    assert isinstance(sink, sinks.NullSink)
    settled = Settled()
    batch = core.Batch(settled.event("logs-t-default", f"d{i}", doc(i)) for i in range(25))
    expected = sum(len(_bulk.encode(e)) for e in batch)
    await sink.start()
    await sink.send(batch)
    await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 25
    assert not settled.twice
    assert sink.bytes_discarded == expected


def test_collector_config_accepts_a_null_sink(tmp_path):
    """If this failed, the null: sink the README documents could not be configured."""
    cfg = config.CollectorConfig(state_dir=tmp_path, sinks=[config.SinkConfig(url="null:")])
    daemon = collector.build(cfg)
    assert daemon is not None


def test_unknown_sink_scheme_is_still_refused():
    """If this failed, a typo in a sink URL would be accepted silently."""
    with pytest.raises(ValueError, match="unknown scheme"):
        config.SinkConfig(url="nul:")
