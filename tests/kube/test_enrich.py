"""The agent's pod watcher against the real kube-apiserver, with the agent's own
ServiceAccount token (TokenRequest API): what tests/enrich proves against the fake
(tests/_kubeapi.py), here against the server the fake was written from."""

from __future__ import annotations

import logging
import uuid

import pytest

from kloghub import enrich
from tests.enrich._helpers import until, watcher
from tests.kube import _objects
from tests.kube._proxy import Relay
from tests.kube.conftest import AGENT_NAMESPACE, AGENT_USER, bind_agent_role, service_account

pytestmark = pytest.mark.integration

WAIT_S = 30.0
"""Bound of every wait on the real server (two shared cores): a hang fails, nothing is timed."""


def _namespace(kube, **meta) -> str:
    name = f"enrich-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(name, **meta)
    return name


def _apis(kube):
    from kubernetes import client

    return kube.core(), client.AppsV1Api(kube.admin()), client.BatchV1Api(kube.admin())


async def test_lists_and_watches_the_pods_of_its_node_only_with_metadata_and_owners(
    kube, agent_kubeconfig, node
) -> None:
    """If this failed, the agent would miss or mislabel its pods on a real cluster, or cache
    other nodes' pods."""
    ns = _namespace(kube)
    core, apps, batch = _apis(kube)
    labels = {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop", "tier": "1"}
    annotations = {"example.com/owner": "team.payments", "prometheus.io/scrape": "true"}
    deploy = apps.create_namespaced_deployment(ns, _objects.deployment("web"))
    rs = apps.create_namespaced_replica_set(
        ns, _objects.replicaset("web-5d4f8b7c9", "5d4f8b7c9", _objects.owner(deploy))
    )
    web = core.create_namespaced_pod(
        ns,
        _objects.pod(
            "web-5d4f8b7c9-x2x7m",
            node,
            labels={**labels, "pod-template-hash": "5d4f8b7c9"},
            annotations=annotations,
            owners=[_objects.owner(rs)],
        ),
    )
    cron = batch.create_namespaced_cron_job(ns, _objects.cronjob("report"))
    run = batch.create_namespaced_job(ns, _objects.job("report-29000000", _objects.owner(cron)))
    report = core.create_namespaced_pod(
        ns, _objects.pod("report-29000000-q8z4k", node, owners=[_objects.owner(run)])
    )
    elsewhere = core.create_namespaced_pod(ns, _objects.pod("elsewhere", f"{node}-other"))

    w = watcher(agent_kubeconfig, node=node, watch_timeout=(60, 60))
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        got = w.cache.get(web.metadata.uid)
        assert got is not None
        assert got.labels == {**labels, "pod-template-hash": "5d4f8b7c9"}
        assert got.annotations == annotations
        assert got.owner == ("Deployment", "web")
        assert got.node == node
        assert w.cache.get(report.metadata.uid).owner == ("CronJob", "report")
        assert w.cache.get(elsewhere.metadata.uid) is None
        # After the list: the watch brings new pods of this node, and only those.
        late = core.create_namespaced_pod(ns, _objects.pod("late", node, labels={"v": "1"}))
        other = core.create_namespaced_pod(ns, _objects.pod("late-other", f"{node}-other"))
        core.patch_namespaced_pod("late", ns, {"metadata": {"labels": {"v": "2"}}})
        await until(
            lambda: getattr(w.cache.get(late.metadata.uid), "labels", {}).get("v") == "2",
            WAIT_S,
            "the watched pod's label change",
        )
        assert w.cache.get(other.metadata.uid) is None
    finally:
        await w.stop(5)

    # The apiserver's own record of the agent's requests: list and watch, node-scoped, no GET.
    mine = [
        e
        for e in kube.audit_events()
        if e["user"].get("username") == AGENT_USER
        and e.get("objectRef", {}).get("resource") == "pods"
        and f"spec.nodeName%3D{node}" in e["requestURI"]
    ]
    verbs = {e["verb"] for e in mine}
    assert verbs == {"list", "watch"}
    assert all(e["responseStatus"]["code"] == 200 for e in mine)


async def test_namespace_and_node_labels_come_from_the_real_objects(
    kube, agent_kubeconfig, node
) -> None:
    """If this failed, enrichment.namespace_metadata and node_labels would be empty on a real
    cluster (wrong resource, selector or permission)."""
    ns_labels = {"team.example.com/owner": "payments", "env": "prod"}
    ns = _namespace(kube, labels=ns_labels, annotations={"example.com/contact": "sec@example.com"})
    core, _, _ = _apis(kube)
    core.create_node(
        {
            "metadata": {
                "name": node,
                "labels": {"topology.kubernetes.io/zone": "zone-a", "node.example.com/pool": "gp"},
            }
        }
    )
    w = watcher(
        agent_kubeconfig,
        node=node,
        namespace_metadata=True,
        node_labels=True,
        watch_timeout=(60, 60),
    )
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        await until(lambda: ns in w.cache.namespaces, WAIT_S, "the namespace list")
        assert dict(w.cache.namespaces[ns].labels) == {
            **ns_labels,
            "kubernetes.io/metadata.name": ns,  # set by the apiserver on every namespace
        }
        assert dict(w.cache.namespaces[ns].annotations) == {
            "example.com/contact": "sec@example.com"
        }
        await until(lambda: w.cache.node is not None, WAIT_S, "the node")
        assert w.cache.node.labels["topology.kubernetes.io/zone"] == "zone-a"
        core.patch_node(node, {"metadata": {"labels": {"node.example.com/pool": "gpu"}}})
        await until(
            lambda: w.cache.node.labels.get("node.example.com/pool") == "gpu",
            WAIT_S,
            "the node's label change",
        )
    finally:
        await w.stop(5)
        core.delete_node(node)
    node_requests = [
        e
        for e in kube.audit_events()
        if e["user"].get("username") == AGENT_USER
        and e.get("objectRef", {}).get("resource") == "nodes"
        and e.get("objectRef", {}).get("name", node) == node
        and node in e["requestURI"]
    ]
    assert node_requests
    assert all(f"fieldSelector=metadata.name%3D{node}" in e["requestURI"] for e in node_requests)


async def test_a_deleted_pod_keeps_its_metadata_as_a_tombstone(
    kube, agent_kubeconfig, node
) -> None:
    """If this failed, the last lines of a pod deleted on a real cluster would lose its labels
    (or tombstones would pile up forever)."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    doomed = core.create_namespaced_pod(
        ns, _objects.pod("doomed", node, labels={"app.kubernetes.io/name": "batch"})
    )
    w = watcher(agent_kubeconfig, node=node, tombstone_ttl=3.0, watch_timeout=(60, 60))
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        core.delete_namespaced_pod("doomed", ns, grace_period_seconds=0)
        uid = doomed.metadata.uid
        await until(
            lambda: getattr(w.cache.get(uid), "deleted_at", None) is not None, WAIT_S, "the delete"
        )
        tomb = w.cache.get(uid)
        assert tomb.labels == {"app.kubernetes.io/name": "batch"}
        assert tomb.name == "doomed"
        assert tomb.namespace == ns
        await until(lambda: w.cache.get(uid) is None, WAIT_S, "the tombstone's expiry")
    finally:
        await w.stop(5)


async def test_bookmarks_carry_the_progress_other_nodes_make(kube, agent_kubeconfig, node) -> None:
    """If this failed, a quiet node's watch would resume from an ever older resourceVersion
    and expire (a relist of its pods) at every compaction."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    core.create_namespaced_pod(ns, _objects.pod("quiet", node))
    # The apiserver sends a bookmark shortly (2 s) before a watch's timeoutSeconds.
    w = watcher(agent_kubeconfig, node=node, watch_timeout=(4, 4))
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        pods = w.watches[0]
        # The list's handler runs on the loop before the thread records the list's RV.
        await until(lambda: pods.resource_version is not None, WAIT_S, "the list's RV")
        listed_at = int(pods.resource_version)
        churn = [
            core.create_namespaced_pod(ns, _objects.pod(f"busy-{n}", f"{node}-busy"))
            for n in range(3)
        ]
        progress = max(int(p.metadata.resource_version) for p in churn)
        assert progress > listed_at
        # No event of this node's pods came; only a bookmark can move the watch this far.
        await until(
            lambda: int(pods.resource_version or 0) >= progress, WAIT_S, "a bookmark's progress"
        )
        assert len(w.cache) == 1
        assert pods.lists == 1
    finally:
        await w.stop(5)


async def test_a_watch_expired_by_compaction_relists_without_a_gap(
    kube, agent_token, node, tmp_path
) -> None:
    """If this failed, changes made while the agent's watch was away (a network cut, an
    apiserver restart) would never reach its cache, or the 410 would stall the watch."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    web = core.create_namespaced_pod(ns, _objects.pod("web", node, labels={"version": "1"}))
    gone = core.create_namespaced_pod(ns, _objects.pod("gone", node))
    relay = await Relay(kube.port).start()
    w = watcher(
        kube.token_kubeconfig(tmp_path / "agent.kubeconfig", agent_token, relay.url),
        node=node,
        watch_timeout=(60, 60),
    )
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        pods = w.watches[0]
        await until(
            lambda: pods.connected and pods.resource_version is not None, WAIT_S, "the watch"
        )
        away_at = pods.resource_version
        relay.cut()  # the agent loses the apiserver; meanwhile...
        # (once it noticed: a change sent before the cut took effect would reach it over
        # the old watch, and there would be nothing to relist)
        await until(lambda: not pods.connected, WAIT_S, "the cut")
        core.patch_namespaced_pod("web", ns, {"metadata": {"labels": {"version": "2"}}})
        core.delete_namespaced_pod("gone", ns, grace_period_seconds=0)
        compacted = kube.compact_etcd()  # ...etcd forgets the history of those changes,
        kube.restart_apiserver()  # and the watch cache starts again from etcd's revision
        assert int(away_at) < compacted
        relay.restore()
        await until(
            lambda: w.cache.get(web.metadata.uid).labels.get("version") == "2",
            WAIT_S,
            "the relist after 410",
        )
        assert w.cache.get(gone.metadata.uid).deleted_at is not None  # deleted meanwhile
        assert pods.lists == 2  # the first list, and one relist after 410 Gone
    finally:
        await w.stop(5)
        await relay.stop()
    expired = [
        e
        for e in kube.audit_events()
        if e["user"].get("username") == AGENT_USER
        and f"spec.nodeName%3D{node}" in e["requestURI"]
        and f"resourceVersion={away_at}" in e["requestURI"]
    ]
    assert expired, "the watch from the old resourceVersion did not reach the restarted apiserver"


def _requests_of(kube, username: str) -> list[dict]:
    """The audit log's events of one user (one event per request: the last stage)."""
    last = {}
    for e in kube.audit_events():
        if e["user"].get("username") == username:
            last[e["auditID"]] = e
    return list(last.values())


async def test_a_hundred_pods_cost_one_list_and_one_watch_and_no_gets(
    kube, agent_token, node, tmp_path
) -> None:
    """If this failed, a busy node would load the apiserver with a request per pod."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    for n in range(100):
        core.create_namespaced_pod(ns, _objects.pod(f"p{n}", node, labels={"n": str(n)}))
    name = f"count-{node}"
    token = service_account(kube, name, bound=True)
    w = watcher(kube.token_kubeconfig(tmp_path / "kc", token), node=node, watch_timeout=(60, 60))
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        core.patch_namespaced_pod("p7", ns, {"metadata": {"labels": {"tier": "gold"}}})
        await until(
            lambda: any(p.labels.get("tier") == "gold" for p in w.cache.pods()),
            WAIT_S,
            "an update",
        )
        assert len(w.cache) == 100
    finally:
        await w.stop(5)
    requests = _requests_of(kube, f"system:serviceaccount:{AGENT_NAMESPACE}:{name}")
    verbs = sorted(e["verb"] for e in requests)
    assert verbs == ["list", "watch"], [e["requestURI"] for e in requests]


async def test_api_unreachable_at_start_then_synced_once_it_is_back(
    kube, agent_token, node, tmp_path
) -> None:
    """If this failed, an agent started before the apiserver answers would never get metadata."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    web = core.create_namespaced_pod(ns, _objects.pod("web", node))
    relay = await Relay(kube.port).start()
    relay.cut()
    w = watcher(
        kube.token_kubeconfig(tmp_path / "kc", agent_token, relay.url),
        node=node,
        initial_sync_timeout=0.3,
    )
    await w.start()
    try:
        assert not w.synced  # start waited a bounded time, not forever
        relay.restore()
        assert await w.wait_synced(WAIT_S)
        assert w.cache.get(web.metadata.uid) is not None
    finally:
        await w.stop(5)
        await relay.stop()


async def test_forbidden_is_logged_with_the_missing_permission_then_retried(
    kube, agent_token, node, tmp_path, caplog
) -> None:
    """If this failed, an agent whose RBAC is missing would look like a silent agent without
    metadata, or would not recover once the binding is made."""
    name = f"late-{node}"
    token = service_account(kube, name, bound=False)
    w = watcher(kube.token_kubeconfig(tmp_path / "kc", token), node=node, initial_sync_timeout=0.2)
    with caplog.at_level(logging.ERROR, logger="kloghub.enrich"):
        await w.start()
        try:
            await until(lambda: w.watches[0].failures >= 1, WAIT_S, "a refused list")
            refused = [r for r in caplog.records if "RBAC" in r.getMessage()]
            assert refused and "list and watch on pods" in refused[0].getMessage()
            assert "403" in str(getattr(refused[0], "error", ""))
            assert not w.synced
            bind_agent_role(kube, name)  # the permission is granted
            assert await w.wait_synced(WAIT_S)
        finally:
            await w.stop(5)


async def test_a_wrong_token_is_refused_and_retried(kube, node, tmp_path) -> None:
    """If this failed, the client would not send the kubeconfig's credentials at all, or
    would give up on a 401."""
    kubeconfig = kube.token_kubeconfig(tmp_path / "kc", "not-a-token")
    w = watcher(kubeconfig, node=node, initial_sync_timeout=0.2)
    await w.start()
    try:
        await until(lambda: w.watches[0].failures >= 2, WAIT_S, "two refused attempts")
        assert not w.synced
    finally:
        await w.stop(5)


async def test_a_persisted_cache_enriches_at_once_after_a_restart(
    kube, agent_token, node, tmp_path
) -> None:
    """If this failed, a restarted agent would ship unenriched lines until its first list,
    or keep a pod deleted while it was down as alive."""
    ns = _namespace(kube)
    core, _, _ = _apis(kube)
    web = core.create_namespaced_pod(ns, _objects.pod("web", node, labels={"app": "web"}))
    doomed = core.create_namespaced_pod(ns, _objects.pod("doomed", node))
    state = tmp_path / "state"
    relay = await Relay(kube.port).start()
    kubeconfig = kube.token_kubeconfig(tmp_path / "kc", agent_token, relay.url)
    first = watcher(kubeconfig, node=node, state_dir=state, persist_cache=True)
    await first.start()
    assert await first.wait_synced(WAIT_S)
    await first.stop(5)
    assert (state / enrich.CACHE_FILE).exists()

    relay.cut()  # the restarted agent cannot reach the apiserver at first
    core.delete_namespaced_pod("doomed", ns, grace_period_seconds=0)
    second = watcher(
        kubeconfig, node=node, state_dir=state, persist_cache=True, initial_sync_timeout=3
    )
    await second.start()
    try:
        assert not second.synced  # what it has came from the disk
        assert second.cache.get(web.metadata.uid).labels == {"app": "web"}
        relay.restore()
        await until(
            lambda: getattr(second.cache.get(doomed.metadata.uid), "deleted_at", None) is not None,
            WAIT_S,
            "the pod deleted while the agent was down to become a tombstone",
        )
    finally:
        await second.stop(5)
        await relay.stop()


async def test_namespace_and_node_watches_happen_only_when_configured(
    kube, agent_token, node, tmp_path
) -> None:
    """If this failed, the opt-in namespace and node metadata would cost every agent two more
    watches (and the RBAC for them) even when off."""
    name = f"plain-{node}"
    token = service_account(kube, name, bound=True)
    plain = watcher(kube.token_kubeconfig(tmp_path / "kc", token), node=node)
    await plain.start()
    assert await plain.wait_synced(WAIT_S)
    await plain.stop(5)
    requests = _requests_of(kube, f"system:serviceaccount:{AGENT_NAMESPACE}:{name}")
    assert {e["objectRef"]["resource"] for e in requests} == {"pods"}


async def test_stop_interrupts_an_open_watch(kube, agent_kubeconfig, node) -> None:
    """If this failed, SIGTERM would wait for a watch to time out (minutes)."""
    w = watcher(agent_kubeconfig, node=node, watch_timeout=(600, 600))
    await w.start()
    assert await w.wait_synced(WAIT_S)
    await until(lambda: w.watches[0].connected, WAIT_S, "the watch")
    await w.stop(5)
    assert not any(x.alive for x in w.watches)  # stop() waits at most 2 s for its threads
