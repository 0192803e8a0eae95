"""The detection stage as the collector and the crawl agent run it: normalized document
events in, alert document events out, the notification hook fed after the push."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kloghub import config, core, detect, normalize
from tests.detect import _events as ev
from tests.normalize import _fixtures as fx

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
REFUSED = "dd365c1d-0a0c-4923-832f-1a138b019498"
BURST = "444367c7-f29f-4371-b55f-83031751c5ac"


def stage(normalizer: normalize.Normalizer | None = None, **settings: Any) -> detect.Stage:
    cfg = config.DetectionsConfig(enabled=True, **settings)
    pods = normalizer.pod if normalizer is not None else None
    return detect.Stage.from_config(cfg, "prod", pods=pods)


def docs(*indexes: int, normalizer: normalize.Normalizer | None = None) -> list[core.Event]:
    """Document events of the fixture's audit lines, as the normalizer makes them."""
    normalizer = normalizer or normalize.Normalizer(config.NormalizerConfig())
    return [normalizer(fx.audit_event(ev.raw_events()[i], i)) for i in indexes]


def test_an_audit_event_raises_an_alert_document_in_the_alerts_data_stream() -> None:
    """If this failed, the collector would write no alert (or one no SIEM query finds)."""
    (alert,) = stage()(docs(ev.EXEC_ADMIN_STARTED))
    assert alert.tag == "logs-kloghub.alerts-prod"
    doc = alert.record["doc"]
    assert doc["event"]["kind"] == "alert"
    assert doc["data_stream"] == {"type": "logs", "dataset": "kloghub.alerts", "namespace": "prod"}
    assert doc["rule"]["id"] == EXEC
    assert doc["kloghub"]["alert"]["mode"] == "alert"
    assert doc["kloghub"]["alert"]["id"] == alert.record["id"]
    (trigger,) = docs(ev.EXEC_ADMIN_STARTED)
    assert doc["kloghub"]["alert"]["trigger_ids"] == [trigger.record["id"]]
    assert doc["user"]["name"] == "kloghub-admin"
    assert doc["kubernetes"]["namespace"] == "shop"  # the object's namespace
    assert "T1609" in doc["threat"]["technique"]["id"]
    assert alert.time_ns == trigger.time_ns and alert.finalizer is None


def test_the_same_events_delivered_again_give_the_same_alert_ids() -> None:
    """If this failed, a chunk resent after a collector restart would duplicate alerts."""
    first = stage()(docs(*range(len(ev.raw_events()))))
    again = stage()(docs(*range(len(ev.raw_events()))))
    assert first and [a.record["id"] for a in first] == [a.record["id"] for a in again]


def test_container_and_node_logs_raise_nothing_with_audit_rules_only() -> None:
    """If this failed, an audit rule could fire on a container line that looks like an
    audit event (forged evidence), and every log line would pay for the audit rules."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    line = ev.raw_events()[ev.EXEC_ADMIN_STARTED]
    container = normalizer(core.Event("kube.shop.web.app", 1, {"log": line, "stream": "stdout"}))
    node = normalizer(core.Event("node.syslog", 1, {"log": line}))
    assert stage().detector.audit_only
    assert stage()([container, node]) == []


def test_dry_run_alerts_are_written_marked_and_never_reach_the_hook() -> None:
    """If this failed, tuning a rule in dry-run would page people, or write nothing to
    tune with."""
    tuned = stage(rules={EXEC: config.RuleSettings(mode="dry-run")})
    seen: list[dict[str, Any]] = []
    tuned.on_alert.append(seen.append)
    alerts = tuned(docs(ev.EXEC_ADMIN_STARTED, ev.CLUSTER_ADMIN_BINDING))
    modes = {
        a.record["doc"]["rule"]["id"]: a.record["doc"]["kloghub"]["alert"]["mode"] for a in alerts
    }
    assert modes[EXEC] == "dry-run"
    assert set(modes.values()) == {"dry-run", "alert"}
    tuned.notify(alerts)
    assert seen and all(d["kloghub"]["alert"]["mode"] == "alert" for d in seen)
    assert EXEC not in {d["rule"]["id"] for d in seen}


def test_an_exception_suppresses_the_alert() -> None:
    """If this failed, an allow-listed operator's kubectl exec would still alert."""
    tuned = stage(
        rules={EXEC: config.RuleSettings(exceptions=[{"user.username": "kloghub-admin"}])}
    )
    assert tuned(docs(ev.EXEC_ADMIN_STARTED)) == []
    assert tuned.detector.suppressed == 1


def test_a_failing_hook_is_counted_and_the_others_still_get_the_alert() -> None:
    """If this failed, one broken receiver would silence the others (or stop ingestion)."""
    s = stage()
    seen: list[dict[str, Any]] = []

    def broken(_doc: dict[str, Any]) -> None:
        raise RuntimeError("receiver down")

    s.on_alert.extend([broken, seen.append])
    s.notify(s(docs(ev.EXEC_ADMIN_STARTED)))
    assert [d["rule"]["id"] for d in seen] == [EXEC]


def test_an_alert_about_a_pod_carries_its_current_metadata_and_owner() -> None:
    """If this failed, the responder would not see which workload the exec went into."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    normalizer(
        core.Event(
            "kube.shop.web.app",
            1,
            {
                "log": "listening on :8080",
                "stream": "stdout",
                "kubernetes": {
                    "pod_name": "web",
                    "namespace_name": "shop",
                    "host": "shop-node",
                    "container_name": "app",
                    "labels": {"app": "web", "pod-template-hash": "5d4f8"},
                },
                "kloghub": {"owner": {"kind": "ReplicaSet", "name": "web-5d4f8"}},
            },
        )
    )
    (alert,) = stage(normalizer)(docs(ev.EXEC_ADMIN_STARTED, normalizer=normalizer))
    kube = alert.record["doc"]["kubernetes"]
    assert kube["pod"]["name"] == "web"
    assert kube["labels"]["app"] == "web"
    assert kube["deployment"] == {"name": "web"}
    assert kube["node"] == {"name": "shop-node"}
    assert kube["audit"]["objectRef"]["subresource"] == "exec"


def _refused(n: int) -> list[core.Event]:
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    out = []
    for i in range(n):
        event = ev.raw(ev.SECRETS_LIST_FORBIDDEN)
        event["auditID"] = f"refused-{i}"
        event["stageTimestamp"] = f"2026-12-03T09:22:{10 + i:02d}.000000Z"
        out.append(normalizer(fx.audit_event(json.dumps(event), 100 + i)))
    return out


def test_a_correlation_counts_a_resent_event_once() -> None:
    """If this failed, an agent resending a chunk could make ten refusals look like the
    twenty of a credential-guessing burst."""
    s = stage()
    events = _refused(10)
    alerts = s(events) + s(events)
    assert BURST not in {a.record["doc"]["rule"]["id"] for a in alerts}
    burst = [a for a in s(_refused(20)) if a.record["doc"]["rule"]["id"] == BURST]
    assert len(burst) == 1 and burst[0].record["doc"]["kloghub"]["alert"]["count"] == 20


def test_bad_settings_name_the_section_they_are_in() -> None:
    """If this failed, a typo in agent.detections would be reported as collector's."""
    cfg = config.DetectionsConfig(enabled=True, rules={"no-such-rule": config.RuleSettings()})
    with pytest.raises(core.ConfigError, match=r"agent\.detections\.rules\.no-such-rule"):
        detect.Stage.from_config(cfg, "default", where="agent.detections")


def test_a_refused_rule_file_is_a_config_error_with_its_file_and_line(tmp_path) -> None:
    """If this failed, a broken rules_dirs file would crash the collector at start with a
    traceback instead of the config error that names it."""
    bad = tmp_path / "bad.yml"
    bad.write_text("title: no id\nlevel: high\nlogsource: {product: kubernetes}\n")
    cfg = config.DetectionsConfig(enabled=True, default_pack=False, rules_dirs=[tmp_path])
    with pytest.raises(core.ConfigError, match=r"collector\.detections: .*bad\.yml:1"):
        detect.Stage.from_config(cfg, "default")
