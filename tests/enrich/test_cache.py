"""The pod cache: indexes, tombstones, generations, persistence and the size gauge."""

from __future__ import annotations

from kloghub import enrich
from kloghub.runtime import metrics
from tests._kubeapi import make_pod


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, uid: str, **kw) -> enrich.PodInfo:
    info = enrich.pod_from_api(make_pod(name, uid=uid, **kw))
    assert info is not None
    return info


def test_deleted_pods_stay_as_tombstones_until_the_ttl():
    """If this failed, the last lines of a short-lived pod would lose their metadata."""
    clock = Clock()
    cache = enrich.PodCache(60, clock=clock)
    cache.upsert(pod("job", "u1", labels={"a": "1"}))
    cache.delete(pod("job", "u1", labels={"a": "1"}))
    assert cache.get("u1").deleted_at == clock.now
    assert cache.by_name("default", "job")[0].labels == {"a": "1"}
    clock.now += 59
    assert cache.expire() == 0
    clock.now += 2
    assert cache.expire() == 1
    assert cache.get("u1") is None
    assert cache.by_name("default", "job") == []


def test_a_full_list_turns_pods_missing_from_it_into_tombstones():
    """If this failed, pods deleted during a watch outage would look alive forever."""
    cache = enrich.PodCache(60, clock=Clock())
    cache.upsert(pod("a", "ua"))
    cache.upsert(pod("b", "ub"))
    cache.replace([pod("a", "ua", labels={"new": "yes"})])
    assert cache.get("ua").deleted_at is None
    assert cache.get("ua").labels == {"new": "yes"}
    assert cache.get("ub").deleted_at is not None


def test_generation_moves_only_when_a_record_would_change():
    """If this failed, every file would rebuild its metadata on every watch event."""
    cache = enrich.PodCache()
    cache.upsert(pod("a", "ua"))
    gen = cache.generation
    same = make_pod("a", uid="ua")
    same["metadata"]["resourceVersion"] = "999"
    cache.upsert(enrich.pod_from_api(same))
    assert cache.generation == gen
    cache.upsert(pod("a", "ua", labels={"x": "1"}))
    assert cache.generation == gen + 1
    assert cache.revision("ua") == cache.generation


def test_by_name_prefers_the_live_pod_over_tombstones_of_the_same_name():
    """If this failed, a recreated StatefulSet pod's lines would get the dead pod's labels."""
    cache = enrich.PodCache(clock=Clock())
    cache.upsert(pod("db-0", "old", labels={"gen": "old"}))
    cache.delete(cache.get("old"))
    cache.upsert(pod("db-0", "new", labels={"gen": "new"}))
    assert [p.uid for p in cache.by_name("default", "db-0")] == ["new", "old"]


def test_cache_round_trips_through_its_file(tmp_path):
    """If this failed, a restarted agent could not enrich from its persisted cache."""
    cache = enrich.PodCache(clock=Clock())
    cache.upsert(pod("web", "u1", labels={"app": "web"}, owner=("StatefulSet", "web")))
    cache.delete(pod("gone", "u2"))
    cache.set_namespace("default", {"team": "a"}, {})
    cache.set_node({"zone": "z1"})
    path = tmp_path / "pod-cache.json"
    cache.save(path)
    back = enrich.PodCache(clock=Clock())
    assert back.load(path) == 2
    assert back.get("u1") == cache.get("u1")
    assert back.get("u2").deleted_at is not None
    assert back.namespaces["default"].labels == {"team": "a"}
    assert back.node.labels == {"zone": "z1"}


def test_a_corrupt_cache_file_is_ignored(tmp_path):
    """If this failed, a torn write of the cache file would keep the agent from starting."""
    path = tmp_path / "pod-cache.json"
    path.write_bytes(b'{"format": 1, "pods": [{"uid": ')
    assert enrich.PodCache().load(path) == 0
    path.write_bytes(b'{"format": 1, "pods": [{"nope": 1}], "namespaces": 5}')
    assert enrich.PodCache().load(path) == 0
    assert enrich.PodCache().load(tmp_path / "missing.json") == 0


def test_cache_size_is_a_metric():
    """If this failed, operators could not see the cache grow (or a watch that is empty)."""
    cache = enrich.PodCache()
    cache.upsert(pod("a", "ua"))
    cache.upsert(pod("b", "ub"))
    assert metrics.POD_CACHE_SIZE._value.get() == 2
