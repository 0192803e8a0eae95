"""The log source with pod metadata from the real apiserver: a pod deleted before its lines
are read, an apiserver out of reach at start, a label change on an open file. The pods'
status is written through ``pods/status`` as a kubelet does (there is none here)."""

from __future__ import annotations

import uuid

import pytest

from kloghub import enrich
from tests._world import Collector, World, cri
from tests.enrich._helpers import source, until, watcher
from tests.kube import _objects
from tests.kube._proxy import Relay

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def _namespace(kube) -> str:
    name = f"src-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(name)
    return name


async def test_a_pod_deleted_before_its_lines_are_read_is_still_fully_enriched(
    kube, agent_kubeconfig, node, world: World
) -> None:
    """If this failed, the last lines of short-lived pods (jobs, crashes) would lose their
    metadata on a real cluster."""
    ns, core = _namespace(kube), kube.core()
    from kubernetes import client

    batch = client.BatchV1Api(kube.admin())
    job = batch.create_namespaced_job(ns, _objects.job("job-x"))
    pod = _objects.running(
        core,
        ns,
        _objects.pod(
            "job-x-8kq2z", node, labels={"job-name": "job-x"}, owners=[_objects.owner(job)]
        ),
    )
    uid = pod.metadata.uid
    w = watcher(agent_kubeconfig, node=node, watch_timeout=(60, 60))
    await w.start()
    try:
        assert await w.wait_synced(WAIT_S)
        log = world.container_dir(ns, "job-x-8kq2z", uid) / "0.log"
        log.write_bytes(cri(1) + cri(2))
        core.delete_namespaced_pod("job-x-8kq2z", ns, grace_period_seconds=0)
        await until(
            lambda: getattr(w.cache.get(uid), "deleted_at", None) is not None, WAIT_S, "the delete"
        )
        sink = Collector()
        src = source(world, sink, decider=enrich.Enricher(w.cache, node_name=node))
        await src.start()
        try:
            await sink.wait_for(2)
        finally:
            await src.stop(5)
    finally:
        await w.stop(5)
    k = sink.events[0].record["kubernetes"]
    assert k["labels"] == {"job-name": "job-x"}
    assert k["host"] == node
    assert k["pod_ip"] == "10.0.0.7"
    assert k["container_image"] == _objects.IMAGE
    assert "docker_id" in k and "container_hash" in k
    assert sink.events[1].record["kloghub"]["owner"] == {"kind": "Job", "name": "job-x"}


async def test_apiserver_out_of_reach_at_start_path_fields_at_once_then_full_metadata(
    kube, agent_token, node, world: World, tmp_path
) -> None:
    """If this failed, an apiserver outage would hold lines back, or metadata would never come."""
    ns, core = _namespace(kube), kube.core()
    pod = _objects.running(core, ns, _objects.pod("web-1", node, labels={"app": "web"}))
    uid = pod.metadata.uid
    relay = await Relay(kube.port).start()
    relay.cut()
    w = watcher(
        kube.token_kubeconfig(tmp_path / "kc", agent_token, relay.url),
        node=node,
        initial_sync_timeout=0.2,
    )
    await w.start()
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(w.cache, node_name=node))
    log = world.container_dir(ns, "web-1", uid) / "0.log"
    log.write_bytes(cri(1))
    await src.start()
    try:
        await sink.wait_for(1)  # not held while the apiserver is out of reach
        assert sink.events[0].record["kubernetes"] == {
            "pod_name": "web-1",
            "namespace_name": ns,
            "pod_id": uid,
            "host": node,
            "container_name": "app",
        }
        relay.restore()
        assert await w.wait_synced(WAIT_S)
        World.append(log, [2])
        await sink.wait_for(2)
    finally:
        await src.stop(5)
        await w.stop(5)
        await relay.stop()
    assert sink.events[1].record["kubernetes"]["labels"] == {"app": "web"}


async def test_a_label_change_shows_up_on_the_next_lines_of_an_open_file(
    kube, agent_kubeconfig, node, world: World
) -> None:
    """If this failed, a relabelled pod would keep its old labels until the agent restarts."""
    ns, core = _namespace(kube), kube.core()
    pod = _objects.running(core, ns, _objects.pod("web-1", node, labels={"version": "1"}))
    uid = pod.metadata.uid
    w = watcher(agent_kubeconfig, node=node, watch_timeout=(60, 60))
    await w.start()
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(w.cache))
    log = world.container_dir(ns, "web-1", uid) / "0.log"
    try:
        assert await w.wait_synced(WAIT_S)
        log.write_bytes(cri(1))
        await src.start()
        await sink.wait_for(1)
        core.patch_namespaced_pod("web-1", ns, {"metadata": {"labels": {"version": "2"}}})
        await until(lambda: w.cache.get(uid).labels["version"] == "2", WAIT_S, "the change")
        World.append(log, [2])
        await sink.wait_for(2)
    finally:
        await src.stop(5)
        await w.stop(5)
    labels = [e.record["kubernetes"]["labels"]["version"] for e in sink.events]
    assert labels == ["1", "2"]
