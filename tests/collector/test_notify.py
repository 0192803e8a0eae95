"""Notifications from the real collector: the fixture's audit log tailed by a real agent,
sent over Forward, matched by the default pack, and the alerts notified to a generic
webhook and to an Alertmanager that is down at first (tests/_notify.py's receivers); the
dry-run rule notifies nobody, and the down receiver holds back neither the store nor the
other receiver."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests import _notify as servers
from tests.collector.test_detections import (
    CLUSTER_ADMIN,
    EXEC,
    READER,
    SECRET_ACCESS,
    SENSITIVE_ROLE,
    _pipeline,
    search,
)

pytestmark = pytest.mark.integration


async def test_alerts_of_real_audit_events_reach_the_receivers_and_a_down_one_later(
    tmp_path: Path,
) -> None:
    """If this failed, level run's alerts would reach nobody in real time, a receiver that
    is down would lose them or hold back ingestion, or dry-run rules would page people."""
    hook = servers.WebhookServer()
    am = servers.AlertmanagerServer()
    fast = {"group_wait": "200ms", "rate_limit": None}
    notify = [
        {"type": "webhook", "name": "hook", "url": hook.url, **fast},
        {"type": "alertmanager", "name": "am", "url": am.url, **fast,
         "retry": {"initial_backoff": "100ms", "max_backoff": "500ms"}},
    ]  # fmt: skip
    db = tmp_path / "store.db"
    ns = f"ntf{uuid.uuid4().hex[:8]}"
    await hook.start()
    collector, agent = _pipeline(
        tmp_path, ns, [{"url": f"store:{db}", "flush_interval": "200ms"}], notify=notify
    )
    try:
        async with asyncio.timeout(90):
            while {a["labels"]["rule_id"] for b in hook.accepted for a in b["alerts"]} != {
                EXEC,
                SECRET_ACCESS,
                SENSITIVE_ROLE,
            }:
                await asyncio.sleep(0.2)
        # Alertmanager is still down: the alerts are in the store all the same.
        stored = await asyncio.to_thread(search, "event.kind:alert", f"store:{db}")
        assert len(stored) == 4
        assert am.requests == []
        await am.start()
        async with asyncio.timeout(60):
            while len(am.alerts) < 3:
                await asyncio.sleep(0.2)
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0
        await hook.stop()
        await am.stop()
    notified = [a for b in hook.accepted for a in b["alerts"]]
    assert CLUSTER_ADMIN not in {a["labels"]["rule_id"] for a in notified}  # dry-run
    (exec_alert,) = [a for a in notified if a["labels"]["rule_id"] == EXEC]  # admin excepted
    assert exec_alert["labels"]["user"] == READER
    assert exec_alert["document"]["kloghub"]["alert"]["trigger_ids"]
    assert {dict(k)["rule_id"] for k in am.alerts} == {EXEC, SECRET_ACCESS, SENSITIVE_ROLE}
