"""File → pod → fields and per-file decisions, from the cache alone."""

from __future__ import annotations

import pytest

from kloghub import enrich, sources
from tests._kubeapi import make_pod

UID = "0b3c5a4e-1111-2222-3333-444455556666"


def cache_with(*objs) -> enrich.PodCache:
    cache = enrich.PodCache()
    for obj in objs:
        cache.upsert(enrich.pod_from_api(obj))
    return cache


def decide(enricher: enrich.Enricher, path: str) -> enrich.FileDecision:
    return enricher.decide(sources.from_path(path), path)


def test_path_fields_are_set_without_the_api():
    """If this failed, level crawl (or an API outage) would ship lines without their pod."""
    d = decide(
        enrich.Enricher(None, node_name="node-1"), f"/var/log/pods/shop_web-1_{UID}/app/0.log"
    )
    assert d.kubernetes == {
        "pod_name": "web-1",
        "namespace_name": "shop",
        "pod_id": UID,
        "host": "node-1",
        "container_name": "app",
    }
    assert d.labels is None  # unknown, not "no labels"
    assert d.owner is None and d.exclude is None


def test_pods_path_resolves_by_uid_with_the_container_of_that_restart():
    """If this failed, records would carry another pod's metadata or the wrong container id."""
    obj = make_pod(
        "web-1", "shop", uid=UID, labels={"app": "web"}, owner=("StatefulSet", "web"), restarts=3
    )
    cache = cache_with(obj, make_pod("web-1", "shop", uid="other-uid", labels={"app": "old"}))
    e = enrich.Enricher(cache, node_name="node-1")
    current = obj["status"]["containerStatuses"][0]
    now = decide(e, f"/var/log/pods/shop_web-1_{UID}/app/3.log")
    before = decide(e, f"/var/log/pods/shop_web-1_{UID}/app/2.log")
    k = now.kubernetes
    assert k["labels"] == {"app": "web"}
    assert k["docker_id"] == current["containerID"].split("://")[1]
    assert (
        before.kubernetes["docker_id"]
        == current["lastState"]["terminated"]["containerID"].split("://")[1]
    )
    assert k["container_image"] == "registry.example/app:1.0"
    assert k["container_hash"] == current["imageID"]
    assert k["host"] == "node-1" and k["pod_ip"] == "10.0.0.7"
    assert k["container_runtime"] == "containerd"
    assert now.owner == {"kind": "StatefulSet", "name": "web"}
    assert list(k)[:3] == ["pod_name", "namespace_name", "pod_id"]


def test_containers_link_resolves_by_name_and_container_id():
    """If this failed, a recreated pod's old container file would get the new pod's labels."""
    old = make_pod(
        "db-0", "data", uid="aaaaaaaa-1111-2222-3333-444455556666", labels={"gen": "old"}
    )
    new = make_pod(
        "db-0", "data", uid="bbbbbbbb-1111-2222-3333-444455556666", labels={"gen": "new"}
    )
    cache = cache_with(old, new)
    cache.delete(cache.get(old["metadata"]["uid"]))
    old_id = old["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    new_id = new["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    e = enrich.Enricher(cache)
    assert decide(e, f"/var/log/containers/db-0_data_app-{old_id}.log").kubernetes["labels"] == {
        "gen": "old"
    }
    assert decide(e, f"/var/log/containers/db-0_data_app-{new_id}.log").kubernetes["labels"] == {
        "gen": "new"
    }


def test_a_link_name_cut_by_the_kubelet_is_matched_on_the_cache():
    """If this failed, pods with long names would ship without any metadata."""
    name = "a-very-long-pod-name-" + "x" * 120
    ns = "a-long-namespace-" + "n" * 40
    container = "sidecar-with-a-long-name-" + "c" * 20
    obj = make_pod(name, ns, uid="u-long", containers=(container,), labels={"long": "yes"})
    cid = obj["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    stem = enrich.kubelet_link_stem(name, ns, container, cid)
    assert len(stem) == enrich.KUBELET_LINK_MAX  # the id was cut
    path = f"/var/log/containers/{stem}.log"
    assert sources.from_path(path).pod is None  # the path alone does not parse

    d = decide(enrich.Enricher(cache_with(obj)), path)
    assert d.kubernetes["pod_name"] == name
    assert d.kubernetes["container_name"] == container
    assert d.kubernetes["docker_id"] == cid
    assert d.kubernetes["labels"] == {"long": "yes"}

    unknown = decide(enrich.Enricher(enrich.PodCache()), path)
    assert unknown.kubernetes == {"pod_name": name, "namespace_name": ns}


@pytest.mark.parametrize(
    ("annotations", "container", "exclude", "parser", "rules", "pattern"),
    [
        ({"kloghub.io/exclude": "true"}, "app", "annotation", None, None, None),
        ({"kloghub.io/exclude": "True "}, "app", "annotation", None, None, None),
        ({"kloghub.io/exclude": "false"}, "app", None, None, None, None),
        ({"fluentbit.io/exclude": "true"}, "app", "annotation", None, None, None),
        (
            {"kloghub.io/exclude-containers": "istio-proxy, app"},
            "app",
            "annotation",
            None,
            None,
            None,
        ),
        ({"kloghub.io/exclude-containers": "istio-proxy"}, "app", None, None, None, None),
        ({"kloghub.io/parser": "json"}, "app", None, "json", None, None),
        ({"kloghub.io/parser": "TEXT"}, "app", None, "text", None, None),
        ({"kloghub.io/parser": "yaml"}, "app", None, None, None, None),
        ({"kloghub.io/multiline": "java"}, "app", None, None, ["java"], None),
        ({"kloghub.io/multiline": "python,go"}, "app", None, None, ["python", "go"], None),
        ({"kloghub.io/multiline": r"^\d{4}-"}, "app", None, None, [], r"^\d{4}-"),
        ({"kloghub.io/multiline": "(unclosed"}, "app", None, None, None, None),
    ],
)
def test_pod_annotations_decide_per_file(annotations, container, exclude, parser, rules, pattern):
    """If this failed, users could not exclude noisy pods or set a pod's parser/multiline."""
    obj = make_pod(
        "web-1", "shop", uid=UID, annotations=annotations, containers=("app", "istio-proxy")
    )
    d = decide(
        enrich.Enricher(cache_with(obj)), f"/var/log/pods/shop_web-1_{UID}/{container}/0.log"
    )
    assert d.exclude == exclude
    assert d.parser == parser
    if rules is None:
        assert d.multiline is None
    else:
        assert d.multiline is not None and d.multiline.enabled
        assert d.multiline.rules == rules
        assert d.multiline.start_pattern == pattern


def test_namespace_and_node_labels_are_added_when_known():
    """If this failed, the opt-in namespace and node metadata would never reach records."""
    cache = cache_with(make_pod("web-1", "shop", uid=UID))
    cache.set_namespace("shop", {"team": "payments"}, {"owner": "alice"})
    cache.set_node({"topology.kubernetes.io/zone": "a"})
    k = decide(enrich.Enricher(cache), f"/var/log/pods/shop_web-1_{UID}/app/0.log").kubernetes
    assert k["namespace_labels"] == {"team": "payments"}
    assert k["namespace_annotations"] == {"owner": "alice"}
    assert k["node_labels"] == {"topology.kubernetes.io/zone": "a"}


def test_signature_changes_with_the_pod_and_not_with_other_pods():
    """If this failed, a label change would not show up, or every file would rebuild."""
    cache = cache_with(make_pod("web-1", "shop", uid=UID), make_pod("other", uid="u2"))
    e = enrich.Enricher(cache)
    path = f"/var/log/pods/shop_web-1_{UID}/app/0.log"
    first = decide(e, path).signature
    cache.upsert(enrich.pod_from_api(make_pod("other", uid="u2", labels={"x": "1"})))
    assert decide(e, path).signature == first
    cache.upsert(enrich.pod_from_api(make_pod("web-1", "shop", uid=UID, labels={"x": "1"})))
    assert decide(e, path).signature != first
