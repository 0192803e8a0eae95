"""The collector's router with detections: each batch normalized, matched, pushed with its
alerts into every sink queue (real disk queues), and only then handed to the hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloghub import config, core, detect, normalize
from kloghub.collector import _app
from tests.buffer._util import make_queue
from tests.detect import _events as ev
from tests.normalize import _fixtures as fx

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"


def _control_plane() -> core.Origin:
    return core.Origin(method="password", identity="cp-1", node="cp-1", may_send_audit=True)


async def test_alerts_reach_every_queue_before_the_hook_sees_them(tmp_path: Path) -> None:
    """If this failed, a notification could go out for an alert no sink will ever hold, or
    a second sink would miss the alerts."""
    queues = [make_queue(tmp_path / f"q{i}", name=f"q{i}") for i in range(2)]
    for q in queues:
        await q.start()
    normalizer = normalize.Normalizer(config.NormalizerConfig(namespace="prod"))
    stage = detect.Stage.from_config(
        config.DetectionsConfig(enabled=True, rules={EXEC: config.RuleSettings(mode="dry-run")}),
        normalizer.namespace,
        pods=normalizer.pod,
    )
    router = _app._Router(normalizer, queues, stage)
    held: list[int] = []
    seen: list[dict[str, Any]] = []

    def hook(doc: dict[str, Any]) -> None:
        held.append(min(q.disk_bytes for q in queues))
        seen.append(doc)

    stage.on_alert.append(hook)
    lines = ev.raw_events()
    events = [fx.audit_event(line, i) for i, line in enumerate(lines)]
    await router.deliver(core.Batch(events, _control_plane()))
    try:
        for q in queues:
            batch = await q.pop(1000, 1 << 30, 1.0)
            tags = [e.tag for e in batch]
            assert tags.count("logs-kubernetes.audit_logs-prod") == len(lines)
            alerts = [e.record["doc"] for e in batch if e.tag == "logs-kloghub.alerts-prod"]
            assert {a["rule"]["id"] for a in alerts} >= {EXEC}
            batch.settle(core.Delivery.DELIVERED)
    finally:
        for q in queues:
            await q.stop(5)
    assert held and all(size > 0 for size in held)
    # The dry-run exec alerts were stored but never handed to the hook.
    assert seen and EXEC not in {d["rule"]["id"] for d in seen}
    assert {d["kloghub"]["alert"]["mode"] for d in seen} == {"alert"}


def test_the_collector_refuses_to_start_with_a_rule_that_cannot_load(tmp_path: Path) -> None:
    """If this failed, a broken rule file would stop the collector with a traceback (or be
    skipped silently) instead of a configuration error naming it."""
    bad = tmp_path / "rules" / "bad.yml"
    bad.parent.mkdir()
    bad.write_text("title: x\nid: 1\nlevel: high\nlogsource: {product: kubernetes}\n")
    cfg = config.CollectorConfig(
        state_dir=tmp_path / "state",
        sinks=[config.SinkConfig(url=f"store:{tmp_path / 's.db'}")],
        detections=config.DetectionsConfig(enabled=True, rules_dirs=[bad.parent]),
    )
    try:
        _app.build(cfg)
    except core.ConfigError as error:
        assert any("collector.detections" in p and "bad.yml" in p for p in error.problems)
    else:
        raise AssertionError("the collector built with a rule that cannot load")
