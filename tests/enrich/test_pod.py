"""Pods from API objects: kept fields, container ids, and the owner workload."""

from __future__ import annotations

import time

import pytest

from kloghub import enrich
from tests._kubeapi import make_pod


def _refs(kind: str, name: str, controller: bool = True) -> list[dict]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": controller}]


def test_pod_from_api_keeps_the_fields_records_need():
    """If this failed, records would miss image, image id, IP or the runtime-free id."""
    obj = make_pod("web-1", "shop", uid="u1", labels={"app": "web"}, restarts=2)
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    obj["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...a whole manifest...}",
        "team": "payments",
    }
    pod = enrich.pod_from_api(obj)
    assert pod is not None
    assert (pod.uid, pod.namespace, pod.name, pod.node) == ("u1", "shop", "web-1", "node-1")
    assert pod.labels == {"app": "web"}
    assert pod.annotations == {"team": "payments"}  # the manifest copy is not carried
    assert pod.pod_ip == "10.0.0.7"
    c = pod.container("app")
    assert c is not None
    assert c.image == "registry.example/app:1.0"
    assert c.image_id.startswith("registry.example/app@sha256:")
    assert c.container_id is not None and "://" not in c.container_id
    assert c.previous_id is not None and c.restart_count == 2


@pytest.mark.parametrize(
    "obj",
    [None, [], {"metadata": None}, {"metadata": {"name": "x"}}, {"metadata": {"uid": 5}}],
)
def test_unusable_objects_are_refused_not_raised(obj):
    """If this failed, one odd object from the API would crash the watch thread's updates."""
    assert enrich.pod_from_api(obj) is None


@pytest.mark.parametrize(
    ("refs", "labels", "owner"),
    [
        (
            _refs("ReplicaSet", "web-7d9f8b6c5d"),
            {"pod-template-hash": "7d9f8b6c5d"},
            ("Deployment", "web"),
        ),
        (_refs("ReplicaSet", "web-7d9f8b6c5d"), {}, ("ReplicaSet", "web-7d9f8b6c5d")),
        (_refs("ReplicaSet", "plain-rs"), {"pod-template-hash": "abc"}, ("ReplicaSet", "plain-rs")),
        (_refs("StatefulSet", "db"), {}, ("StatefulSet", "db")),
        (_refs("DaemonSet", "agent"), {}, ("DaemonSet", "agent")),
        (_refs("Job", "migrate"), {}, ("Job", "migrate")),
        (_refs("Job", "backup-20240101"), {}, ("Job", "backup-20240101")),  # a date, not minutes
        (_refs("Job", "nightly-29000000"), {}, ("CronJob", "nightly")),  # minutes since epoch
        (_refs("Job", "old-style-1700000000"), {}, ("CronJob", "old-style")),  # seconds
        (_refs("Job", "far-future-9999999999"), {}, ("Job", "far-future-9999999999")),
        (_refs("Node", "node-1"), {}, ("Node", "node-1")),
        (None, {}, None),
        ([{"kind": "ReplicaSet"}], {}, None),
    ],
)
def test_owner_workload_is_resolved_from_the_controller_reference(refs, labels, owner):
    """If this failed, kloghub.owner would name ReplicaSets and Jobs instead of workloads."""
    assert enrich.workload_owner(refs, labels, now=time.time()) == owner


def test_the_controller_reference_wins_over_other_owners():
    """If this failed, a pod adopted by several owners would be attributed to the wrong one."""
    refs = [*_refs("ConfigMap", "cm", controller=False), *_refs("StatefulSet", "db")]
    assert enrich.workload_owner(refs, {}) == ("StatefulSet", "db")
