"""Notifications: grouping, repeat, rate limit and bound (pure, with explicit times), and
delivery to protocol-faithful receivers (tests/_notify.py) that fail, hang and go down."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kloghub import config, core
from kloghub.detect import _alert, _engine, _notify, _receivers
from kloghub.runtime import metrics
from tests import _notify as servers
from tests._kube import Certificates
from tests.detect import _events as ev

NOW = 1_000.0
WALL = 1_800_000_000.0


@cache
def _fixture_alerts() -> tuple[dict[str, Any], ...]:
    detector = _engine.Detector.from_config(config.DetectionsConfig(enabled=True))
    out = []
    for doc_id, doc, time_ns in ev.fixture_documents():
        out.extend(
            _alert.alert_document(a, "default", time_ns)[1] for a in detector(doc_id, doc, time_ns)
        )
    return tuple(out)


def alerts() -> list[dict[str, Any]]:
    """The real fixture's alert documents: exec by admin, the secret-reader Role, the
    secret read, exec by reader, the cluster-admin binding (fresh copies)."""
    return copy.deepcopy(list(_fixture_alerts()))


def variant(doc: dict[str, Any], *, user: str | None = None, name: str | None = None) -> dict:
    """``doc`` as if another user did it, or on another object."""
    doc = copy.deepcopy(doc)
    if user is not None:
        doc["user"]["name"] = user
    if name is not None:
        doc["kubernetes"]["audit"]["objectRef"]["name"] = name
    return doc


def receiver(url: str = "http://127.0.0.1:9/hook", **kw: Any) -> config.NotifyConfig:
    values: dict[str, Any] = {"type": "webhook", "url": url, "rate_limit": None}
    values.update(kw)
    return config.NotifyConfig(**values)


def exec_alert() -> dict[str, Any]:
    return alerts()[0]


# --------------------------------------------------------------------------- labels


def test_alert_labels_are_rule_identity_and_object_of_the_real_event() -> None:
    """If this failed, alerts would be grouped and de-duplicated on the wrong identity."""
    labels = _receivers.labels_of(exec_alert())
    assert labels["rule_id"] == exec_alert()["rule"]["id"]
    assert labels["alertname"] == exec_alert()["rule"]["name"]
    assert labels["user"] == exec_alert()["user"]["name"]
    assert labels["resource"] == "pods/exec"
    assert labels["namespace"] and labels["name"]
    assert all(v for v in labels.values())


# --------------------------------------------------------------------------- grouping (pure)


def test_a_new_group_waits_group_wait_and_sends_its_burst_in_one_notification() -> None:
    """If this failed, a burst would page people once per alert, or not wait for the rest."""
    g = _notify.Grouper(receiver(group_wait=5), "r")
    first = exec_alert()
    assert g.add(first, NOW, WALL) == NOW + 5
    g.add(variant(first, name="other-pod"), NOW + 1, WALL + 1)
    assert g.take(NOW + 4.9, 10) == []
    (msg,) = g.take(NOW + 5, 10)
    assert len(msg.items) == 2
    assert msg.group_labels == {"rule_id": first["rule"]["id"], "user": first["user"]["name"]}


def test_another_identity_is_another_group() -> None:
    """If this failed, one user's alerts would hide in another user's notification."""
    g = _notify.Grouper(receiver(group_wait=0), "r")
    g.add(exec_alert(), NOW, WALL)
    g.add(variant(exec_alert(), user="mallory"), NOW, WALL)
    assert len(g.take(NOW, 10)) == 2


def test_the_same_alert_again_counts_up_and_is_not_new() -> None:
    """If this failed, an agent resending a chunk (or a repeated action) would notify twice."""
    g = _notify.Grouper(receiver(group_wait=0, group_interval=10), "r")
    g.add(exec_alert(), NOW, WALL)
    (msg,) = g.take(NOW, 10)
    g.done(msg.group_key)
    g.add(exec_alert(), NOW + 1, WALL + 1)
    assert g.held == 1
    assert g.take(NOW + 60, 10) == []


def test_new_alerts_of_a_notified_group_wait_group_interval() -> None:
    """If this failed, a group would notify at every new alert instead of every interval."""
    g = _notify.Grouper(receiver(group_wait=0, group_interval=30), "r")
    g.add(exec_alert(), NOW, WALL)
    (msg,) = g.take(NOW, 10)
    g.done(msg.group_key)
    assert g.add(variant(exec_alert(), name="b"), NOW + 1, WALL + 1) == NOW + 30
    g.add(variant(exec_alert(), name="c"), NOW + 2, WALL + 2)
    assert g.take(NOW + 29, 10) == []
    (second,) = g.take(NOW + 30, 10)
    assert sorted(i.labels["name"] for i in second.items) == ["b", "c"]


def test_a_group_in_flight_is_not_sent_again_until_settled() -> None:
    """If this failed, a receiver that is slow would get the same group twice at once."""
    g = _notify.Grouper(receiver(group_wait=0, group_interval=0), "r")
    g.add(exec_alert(), NOW, WALL)
    (msg,) = g.take(NOW, 10)
    g.add(variant(exec_alert(), name="b"), NOW + 1, WALL + 1)
    assert g.take(NOW + 1, 10) == []
    g.done(msg.group_key)
    assert len(g.take(NOW + 1, 10)) == 1


def test_a_recurring_alert_is_repeated_after_repeat_interval_only() -> None:
    """If this failed, an ongoing attack would be notified once and never again (or spam)."""
    cfg = receiver(group_wait=0, group_interval=10, repeat_interval=100, resolve_timeout=60)
    g = _notify.Grouper(cfg, "r")
    g.add(exec_alert(), NOW, WALL)
    g.done(g.take(NOW, 10)[0].group_key)
    for t in range(30, 100, 30):  # recurs every 30 s: stays firing
        g.add(exec_alert(), NOW + t, WALL + t)
        assert g.take(NOW + t, 10) == []
    g.add(exec_alert(), NOW + 99, WALL + 99)
    (repeat,) = g.take(NOW + 100, 10)
    assert repeat.items[0].count == 5


def test_an_alert_not_seen_for_resolve_timeout_is_forgotten_and_new_again() -> None:
    """If this failed, an attack that stops and starts again an hour later would be silent."""
    g = _notify.Grouper(receiver(group_wait=0, group_interval=10, resolve_timeout=60), "r")
    g.add(exec_alert(), NOW, WALL)
    (msg,) = g.take(NOW, 10)
    g.done(msg.group_key)
    assert msg.items[0].ends_at == WALL + 60
    assert g.next_due(NOW + 1) == NOW + 60
    g.next_due(NOW + 60)
    assert g.held == 0
    g.add(exec_alert(), NOW + 3600, WALL + 3600)
    assert len(g.take(NOW + 3600, 10)) == 1


def test_rate_limit_holds_due_groups_for_their_turn_and_they_keep_collecting() -> None:
    """If this failed, a storm of groups would flood the receiver past its rate limit."""
    g = _notify.Grouper(receiver(group_wait=0, rate_limit=2), "r")
    for user in ("a", "b", "c"):
        g.add(variant(exec_alert(), user=user), NOW, WALL)
    assert len(g.take(NOW, 10)) == 2
    assert g.take(NOW + 59, 10) == []
    assert g.next_due(NOW + 1) == NOW + 60
    g.add(variant(exec_alert(), user="c", name="later"), NOW + 30, WALL + 30)
    (third,) = g.take(NOW + 60, 10)
    assert len(third.items) == 2


def test_beyond_max_pending_alerts_are_dropped_counted_and_announced() -> None:
    """If this failed, a receiver that is down would grow memory without bound, or drop
    alerts without anyone knowing."""
    g = _notify.Grouper(receiver(group_wait=0, max_pending=2), "r")
    assert g.add(variant(exec_alert(), name="a"), NOW, WALL) is not None
    assert g.add(variant(exec_alert(), name="b"), NOW, WALL) is not None
    assert g.add(variant(exec_alert(), name="c"), NOW, WALL) is None
    assert g.add(variant(exec_alert(), name="a"), NOW, WALL) is not None  # merges: no growth
    assert (g.held, g.dropped_total) == (2, 1)
    (msg,) = g.take(NOW, 10)
    assert msg.dropped == 1
    assert "droppedAlerts" in _receivers.body("webhook", msg)


def test_group_by_every_label_makes_one_group_per_alert() -> None:
    """If this failed, ``group_by: [...]`` (Alertmanager's "no grouping") would not work."""
    g = _notify.Grouper(receiver(group_wait=0, group_by=["..."]), "r")
    g.add(variant(exec_alert(), name="a"), NOW, WALL)
    g.add(variant(exec_alert(), name="b"), NOW, WALL)
    assert len(g.take(NOW, 10)) == 2


def test_alertmanager_is_sent_a_recurring_alert_again_so_its_endsat_moves_on() -> None:
    """If this failed, Alertmanager would resolve an alert that is still recurring."""
    cfg = receiver(type="alertmanager", group_wait=0, group_interval=10, resolve_timeout=60)
    g = _notify.Grouper(cfg, "am")
    g.add(exec_alert(), NOW, WALL)
    g.done(g.take(NOW, 10)[0].group_key)
    g.add(exec_alert(), NOW + 40, WALL + 40)
    (again,) = g.take(NOW + 40, 10)
    assert again.items[0].ends_at == WALL + 100


def test_max_alerts_lists_the_first_and_counts_the_rest_as_truncated() -> None:
    """If this failed, one notification could grow without bound."""
    g = _notify.Grouper(receiver(group_wait=0, max_alerts=2), "r")
    for name in "abcd":
        g.add(variant(exec_alert(), name=name), NOW, WALL)
    (msg,) = g.take(NOW, 10)
    assert (len(msg.items), msg.truncated) == (2, 2)


# --------------------------------------------------------------------------- config


def test_receiver_url_and_token_come_from_files(tmp_path: Path) -> None:
    """If this failed, a Slack URL or a token could only be given in the config itself."""
    (tmp_path / "url").write_text("https://hooks.example/services/T/B/secret\n")
    (tmp_path / "token").write_text("s3cret\n")
    cfg = config.NotifyConfig(
        type="slack", url_file=tmp_path / "url", token_file=tmp_path / "token"
    )
    assert cfg.url is not None and cfg.token is not None
    assert cfg.url.get_secret_value() == "https://hooks.example/services/T/B/secret"
    assert "secret" not in repr(cfg)


def test_receiver_config_refuses_what_cannot_work() -> None:
    """If this failed, a receiver without URL or with an unknown group label would load."""
    with pytest.raises(ValueError, match="url"):
        config.NotifyConfig(type="webhook")
    with pytest.raises(ValueError, match="group_by"):
        config.NotifyConfig(type="webhook", url="http://x/", group_by=["pod"])
    with pytest.raises(ValueError, match="unique"):
        config.DetectionsConfig(
            notify=[{"type": "webhook", "url": "http://x/", "name": "a"}] * 2,  # type: ignore[list-item]
        )


# --------------------------------------------------------------------------- delivery


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _value(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def test_webhook_receives_the_group_with_its_ecs_alert_documents() -> None:
    """If this failed, a generic webhook would not get alerts, or not their context."""
    async with servers.WebhookServer() as hook:
        notifier = _notify.Notifier([receiver(hook.url, name="hook-ok", group_wait=0.05)])
        await notifier.start()
        try:
            for doc in alerts():
                notifier.submit(doc)
            await hook.wait_for(1)
        finally:
            await notifier.aclose()
    bodies = hook.accepted
    got = sorted(a["labels"]["alertname"] for b in bodies for a in b["alerts"])
    assert got == sorted(d["rule"]["name"] for d in alerts())
    first = bodies[0]
    assert first["status"] == "firing" and first["receiver"] == "hook-ok"
    assert first["alerts"][0]["document"]["event"]["kind"] == "alert"
    assert _value(metrics.NOTIFICATIONS_SENT, "hook-ok") == len(bodies)


async def test_slack_incoming_webhook_accepts_the_text_message() -> None:
    """If this failed, Slack would answer invalid_payload/no_text and nobody would be told."""
    async with servers.SlackServer() as slack:
        notifier = _notify.Notifier([receiver(slack.url, type="slack", group_wait=0)])
        await notifier.start()
        try:
            notifier.submit(exec_alert())
            await slack.wait_for(1)
        finally:
            await notifier.aclose()
    text = slack.accepted[0]["text"]
    assert exec_alert()["rule"]["name"] in text
    assert exec_alert()["user"]["name"] in text


async def test_alertmanager_stores_the_alerts_posted_to_api_v2() -> None:
    """If this failed, Alertmanager would refuse kloghub's alerts (400/422) or lose labels."""
    async with servers.AlertmanagerServer() as am:
        cfg = receiver(
            am.url, type="alertmanager", group_wait=0, generator_url="https://kibana.example/"
        )
        notifier = _notify.Notifier([cfg])
        await notifier.start()
        try:
            for doc in alerts():
                notifier.submit(doc)
            await _until(lambda: len(am.alerts) == len(alerts()))
        finally:
            await notifier.aclose()
    assert all(r["status"] == 200 for r in am.requests)
    stored = list(am.alerts.values())
    assert {a["labels"]["rule_id"] for a in stored} == {d["rule"]["id"] for d in alerts()}
    assert all(a["generatorURL"] == "https://kibana.example/" for a in stored)


async def test_dry_run_alerts_are_never_notified() -> None:
    """If this failed, a rule being tuned in dry-run would page people."""
    async with servers.WebhookServer() as hook:
        notifier = _notify.Notifier([receiver(hook.url, group_wait=0)])
        await notifier.start()
        doc = exec_alert()
        doc["kloghub"]["alert"]["mode"] = "dry-run"
        notifier.submit(doc)
        await notifier.aclose()
    assert hook.requests == []
    assert notifier.skipped_dry_run == 1


async def test_a_down_receiver_is_retried_and_gets_the_alert_once_it_is_up() -> None:
    """If this failed, an alert raised while the receiver restarts would be lost."""
    hook = servers.WebhookServer()
    cfg = receiver(
        hook.url,
        name="hook-down",
        group_wait=0,
        retry={"initial_backoff": 0.05, "max_backoff": 0.2},
    )
    notifier = _notify.Notifier([cfg])
    await notifier.start()
    try:
        notifier.submit(exec_alert())
        await _until(lambda: _value(metrics.NOTIFICATIONS_RETRIED, "hook-down") >= 2)
        await hook.start()
        await hook.wait_for(1)
    finally:
        await notifier.aclose()
        await hook.stop()
    assert len(hook.accepted) == 1
    assert _value(metrics.NOTIFICATIONS_SENT, "hook-down") == 1


async def test_a_hanging_receiver_blocks_neither_submit_nor_the_other_receivers() -> None:
    """If this failed, one stuck receiver would hold back ingestion or everyone's alerts."""
    async with servers.WebhookServer() as stuck, servers.WebhookServer() as fine:
        stuck.hang = 2.0  # far beyond the receiver timeout of 0.3 s
        notifier = _notify.Notifier(
            [
                receiver(stuck.url, name="stuck", group_wait=0, timeout=0.3,
                         retry={"initial_backoff": 0.05, "max_backoff": 0.1}),
                receiver(fine.url, name="fine", group_wait=0),
            ]
        )  # fmt: skip
        await notifier.start()
        try:
            for i in range(2000):
                notifier.submit(variant(exec_alert(), name=f"pod-{i}"))
            await fine.wait_for(1)
            await _until(lambda: _value(metrics.NOTIFICATIONS_RETRIED, "stuck") >= 1)
        finally:
            await notifier.stop(0.5)
    assert sum(len(b["alerts"]) for b in fine.accepted) >= 1
    assert _value(metrics.NOTIFICATIONS_SENT, "stuck") == 0


async def test_429_with_retry_after_is_retried_and_a_400_is_given_up() -> None:
    """If this failed, a rate-limited receiver would lose the alert, or a refused payload
    would be retried forever."""
    async with servers.SlackServer() as slack:
        slack.fail_next(1, 429, retry_after="0")
        cfg = receiver(slack.url, type="slack", name="slack-429", group_wait=0,
                       retry={"initial_backoff": 0.01, "max_backoff": 0.05})  # fmt: skip
        notifier = _notify.Notifier([cfg])
        await notifier.start()
        try:
            notifier.submit(exec_alert())
            await slack.wait_for(1)
            slack.fail_next(1, 400)
            notifier.submit(variant(exec_alert(), user="mallory"))
            await _until(lambda: _value(metrics.NOTIFICATIONS_FAILED, "slack-429") == 1)
        finally:
            await notifier.aclose()
    assert [r["status"] for r in slack.requests] == [429, 200, 400]
    assert _value(metrics.NOTIFICATIONS_RETRIED, "slack-429") == 1


async def test_close_sends_what_waits_in_groups() -> None:
    """If this failed, alerts raised just before a collector stops would not be notified."""
    async with servers.WebhookServer() as hook:
        notifier = _notify.Notifier([receiver(hook.url, group_wait=3600)])
        await notifier.start()
        notifier.submit(exec_alert())
        await notifier.aclose(timeout=5)
    assert len(hook.accepted) == 1


async def test_lifecycle_stop_before_start_and_twice() -> None:
    """If this failed, the collector could not stop a notifier it never started."""
    notifier = _notify.Notifier([receiver()])
    await notifier.aclose()
    await notifier.aclose()
    started = _notify.Notifier([receiver()])
    await started.start()
    await started.stop(1)
    await started.stop(1)


async def test_https_receiver_with_ca_file_and_bearer_token_from_files(tmp_path: Path) -> None:
    """If this failed, receivers behind TLS with a private CA or a token would not work."""
    certs = Certificates(tmp_path / "pki")
    crt, key = certs.issue(
        "hook", "/CN=localhost", usage="serverAuth", sans="IP:127.0.0.1,DNS:localhost"
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    (tmp_path / "token").write_text("t0ken\n")
    hook = servers.WebhookServer(ssl_context=server_ctx, authorization="Bearer t0ken")
    (tmp_path / "url").write_text(hook.url)
    async with hook:
        cfg = receiver(
            None,
            url_file=tmp_path / "url",
            token_file=tmp_path / "token",
            tls={"ca_file": certs.ca_crt},
            group_wait=0,
        )
        notifier = _notify.Notifier([cfg])
        await notifier.start()
        try:
            notifier.submit(exec_alert())
            await hook.wait_for(1)
        finally:
            await notifier.aclose()
    assert json.loads(hook.requests[0]["body"])["alerts"]


def test_submit_needs_no_event_loop_and_only_files_the_alert() -> None:
    """If this failed, submit would do I/O or wait on something: it must work (and return)
    with no event loop running at all."""
    notifier = _notify.Notifier([receiver()])
    notifier.submit(exec_alert())
    assert notifier.receivers[0].grouper.held == 1


# --------------------------------------------------------------------------- durability


def test_a_repeat_of_an_alert_already_notified_is_acknowledged_at_once() -> None:
    """If this failed, the disk queue would keep (and resend after a restart) submissions
    that merged into an alert people were already told about."""
    g = _notify.Grouper(receiver(group_wait=0, group_interval=10), "r")
    fired: list[core.Delivery] = []
    first = core.Finalizer(fired.append, 1)
    g.add(exec_alert(), NOW, WALL, first)
    (msg,) = g.take(NOW, 10)
    assert msg.tokens == (first,) and fired == []  # settled by the sender, after delivery
    riding = core.Finalizer(fired.append, 1)
    g.add(exec_alert(), NOW + 0.5, WALL + 0.5, riding)  # while the notification is in flight
    assert fired == []
    g.done(msg.group_key, core.Delivery.DELIVERED)
    assert fired == [core.Delivery.DELIVERED]  # settled with the notification it rode on
    again = core.Finalizer(fired.append, 1)
    g.add(exec_alert(), NOW + 1, WALL + 1, again)
    assert fired == [core.Delivery.DELIVERED] * 2


async def test_alerts_not_delivered_before_a_stop_are_sent_after_the_restart(tmp_path) -> None:
    """If this failed, an alert raised while the receiver was down and the collector then
    restarted would never reach anyone (at-least-once would not hold)."""
    hook = servers.WebhookServer()
    cfg = receiver(
        hook.url,
        name="durable",
        group_wait=0,
        retry={"initial_backoff": 0.05, "max_backoff": 0.1},
    )
    first = _notify.Notifier([cfg], tmp_path)
    await first.start()
    first.submit(exec_alert())
    first.submit(variant(exec_alert(), user="mallory"))
    await _until(lambda: _value(metrics.NOTIFICATIONS_RETRIED, "durable") >= 1)
    await first.stop(0.5)  # the receiver is down: nothing delivered
    async with hook:
        second = _notify.Notifier([cfg], tmp_path)
        await second.start()
        try:
            await hook.wait_for(2)
        finally:
            await second.aclose()
        third = _notify.Notifier([cfg], tmp_path)  # delivered: acknowledged, not resent
        await third.start()
        await asyncio.sleep(0.5)
        await third.aclose()
    users = sorted(a["labels"]["user"] for b in hook.accepted for a in b["alerts"])
    assert users == sorted([exec_alert()["user"]["name"], "mallory"])
