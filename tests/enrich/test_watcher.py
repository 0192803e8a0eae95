"""The pod watcher against the protocol-faithful API server of tests/_kubeapi.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from kloghub import enrich
from tests._kubeapi import KubeAPI, free_port, make_pod
from tests.enrich._helpers import until, watcher


@pytest.fixture
async def api():
    server = KubeAPI(bookmark_interval=0.1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def kubeconfig(api, tmp_path):
    return api.kubeconfig(tmp_path / "kubeconfig")


async def test_lists_then_watches_only_the_pods_of_its_node(api, kubeconfig):
    """If this failed, every agent would cache the whole cluster's pods, or miss its own."""
    api.put("pods", make_pod("mine", uid="u-mine"))
    api.put("pods", make_pod("theirs", node="node-2", uid="u-theirs"))
    w = watcher(kubeconfig)
    await w.start()
    try:
        assert w.synced
        assert w.cache.get("u-mine") is not None
        assert w.cache.get("u-theirs") is None
        api.put("pods", make_pod("new", uid="u-new", labels={"app": "web"}))
        api.put("pods", make_pod("other-new", node="node-2", uid="u-other"))
        await until(lambda: w.cache.get("u-new") is not None, what="the watched pod")
        assert w.cache.get("u-new").labels == {"app": "web"}
        assert w.cache.get("u-other") is None
    finally:
        await w.stop(5)
    selectors = {q.get("fieldSelector") for _, path, q in api.requests if path == "/api/v1/pods"}
    assert selectors == {"spec.nodeName=node-1"}
    watches = [q for _, _, q in api.requests if q.get("watch") == "true"]
    assert watches and all(q.get("allowWatchBookmarks") == "true" for q in watches)
    assert all(q.get("resourceVersion") for q in watches)


async def test_a_hundred_pods_cost_one_list_and_one_watch_and_no_gets(api, kubeconfig):
    """If this failed, a busy node would load the API server with a request per pod."""
    for n in range(100):
        api.put("pods", make_pod(f"p{n}", uid=f"u{n}", labels={"n": str(n)}))
    for n in range(30):
        api.put("pods", make_pod(f"q{n}", node="node-2"))
    w = watcher(kubeconfig)
    await w.start()
    try:
        api.update("pods", "default", "p7", labels={"tier": "gold"})
        await until(lambda: w.cache.get("u7").labels.get("tier") == "gold", what="an update")
    finally:
        await w.stop(5)
    assert len(w.cache) == 100
    # Reported in the issue note: the number of API requests for 100 pods.
    assert api.count(watch=False) == 1
    assert api.count(watch=True) == 1
    assert len(api.requests) == 2
    assert not [p for _, p, _ in api.requests if p.count("/") > 3 and "pods/" in p]


async def test_a_label_change_made_while_the_watch_was_away_shows_up_after_410(api, kubeconfig):
    """If this failed, metadata changed during a watch outage would stay stale forever."""
    api.put("pods", make_pod("web", uid="u-web", labels={"version": "1"}))
    api.put("pods", make_pod("gone", uid="u-gone"))
    w = watcher(kubeconfig)
    await w.start()
    try:
        await until(lambda: api.open_watches == 1, what="the watch")
        await api.stop()  # the API server goes away...
        api.update("pods", "default", "web", labels={"version": "2"})  # ...changes meanwhile
        api.delete("pods", "default", "gone")
        api.compact()  # ...and its history of them is compacted
        await api.start()
        await until(lambda: w.cache.get("u-web").labels["version"] == "2", what="the relist")
        assert w.cache.get("u-gone").deleted_at is not None  # deleted meanwhile: a tombstone
    finally:
        await w.stop(5)
    errors_then_lists = api.count(watch=False)
    assert errors_then_lists == 2  # the first list, and the relist after 410 Gone


async def test_a_watch_expired_with_an_error_event_relists(api, kubeconfig):
    """If this failed, a 410 ERROR event (the real server's way) would loop or stall."""
    api.put("pods", make_pod("web", uid="u-web", labels={"v": "1"}))
    w = watcher(kubeconfig)
    await w.start()
    try:
        await until(lambda: api.open_watches == 1, what="the watch")
        # Compaction alone ends nothing; a broken connection makes the watcher resume from
        # an RV the server no longer has: the answer is the ERROR event with a 410 Status.
        api.bookmark_interval = 3600  # no bookmark moves the client's RV past the gap
        api.break_watches()
        api.update("pods", "default", "web", labels={"v": "2"})
        api.compact()
        await until(lambda: w.cache.get("u-web").labels["v"] == "2", what="the relist")
    finally:
        await w.stop(5)
    assert api.count(watch=False) == 2


async def test_bookmarks_keep_a_quiet_watch_resumable_across_compaction(api, kubeconfig):
    """If this failed, every compaction would force a full relist on every node."""
    api.put("pods", make_pod("web", uid="u-web"))
    w = watcher(kubeconfig)
    await w.start()
    try:
        await until(lambda: api.open_watches == 1, what="the watch")
        for n in range(5):  # churn on another node moves the global RV
            api.put("pods", make_pod(f"other{n}", node="node-2"))
        sent = api.bookmarks_sent
        await until(lambda: api.bookmarks_sent >= sent + 2, what="bookmarks with the new RV")
        api.compact()
        api.break_watches()
        api.put("pods", make_pod("after", uid="u-after"))
        await until(lambda: w.cache.get("u-after") is not None, what="the resumed watch")
    finally:
        await w.stop(5)
    assert api.count(watch=False) == 1  # resumed, not relisted


async def test_api_unreachable_at_start_then_synced_once_it_is_back(tmp_path):
    """If this failed, an agent started before the API server would never get metadata."""
    port = free_port()
    late = KubeAPI(port, bookmark_interval=0.1)
    late.put("pods", make_pod("web", uid="u-web"))
    kubeconfig = late.kubeconfig(tmp_path / "kubeconfig", port=port)
    w = watcher(kubeconfig, initial_sync_timeout=0.3)
    started = time.monotonic()
    await w.start()
    try:
        assert time.monotonic() - started < 2  # start waited a bounded time, not forever
        assert not w.synced
        await asyncio.sleep(0.3)
        await late.start()
        assert await w.wait_synced(5)
        assert w.cache.get("u-web") is not None
    finally:
        await w.stop(5)
        await late.stop()


async def test_forbidden_is_logged_with_the_missing_permission_and_retried(api, kubeconfig, caplog):
    """If this failed, missing RBAC would look like a silent agent without metadata."""
    api.forbidden.add("pods")
    api.put("pods", make_pod("web", uid="u-web"))
    w = watcher(kubeconfig, initial_sync_timeout=0.2)
    with caplog.at_level(logging.ERROR, logger="kloghub.enrich"):
        await w.start()
        try:
            await until(lambda: api.count() >= 2, what="a retry")
            assert any(
                "RBAC" in r.getMessage() and "list and watch on pods" in r.getMessage()
                for r in caplog.records
            )
            assert any("403" in str(getattr(r, "error", "")) for r in caplog.records)
            api.forbidden.clear()  # the permission is granted
            assert await w.wait_synced(5)
        finally:
            await w.stop(5)


async def test_a_wrong_token_is_refused_and_retried(api, tmp_path):
    """If this failed, the client would not send the kubeconfig's credentials at all."""
    kubeconfig = api.kubeconfig(tmp_path / "kc", token="wrong")
    w = watcher(kubeconfig, initial_sync_timeout=0.2)
    await w.start()
    try:
        await until(lambda: api.count() >= 2, what="two refused attempts")
        assert not w.synced
    finally:
        await w.stop(5)


async def test_a_continue_token_that_expired_between_pages_restarts_the_list(api, kubeconfig):
    """If this failed, a large node's first list would fail forever on a busy cluster."""
    for n in range(7):
        api.put("pods", make_pod(f"p{n}", uid=f"u{n}"))
    pages = []

    def compact_once() -> None:
        pages.append(1)
        if len(pages) == 1:
            api.put("pods", make_pod("late", uid="u-late"))
            api.compact()

    api.after_page = compact_once
    w = watcher(kubeconfig, page_size=3)
    await w.start()
    try:
        assert w.synced
        assert len(w.cache) == 8
    finally:
        await w.stop(5)
    conts = [q for _, _, q in api.requests if q.get("continue")]
    assert conts  # pages were followed
    assert api.count(watch=False) >= 4  # the restarted list took its pages again


async def test_deleted_pod_is_kept_as_a_tombstone_until_the_ttl(api, kubeconfig):
    """If this failed, lines read after a short-lived pod died would lose its metadata."""
    api.put("pods", make_pod("job-x", uid="u-job"))
    w = watcher(kubeconfig, tombstone_ttl=0.5)
    await w.start()
    try:
        api.delete("pods", "default", "job-x")
        await until(lambda: w.cache.get("u-job").deleted_at is not None, what="the tombstone")
        await until(lambda: w.cache.get("u-job") is None, 3, what="the expiry")
    finally:
        await w.stop(5)


async def test_persisted_cache_enriches_at_once_after_a_restart(api, kubeconfig, tmp_path):
    """If this failed, a restarted agent would ship unenriched lines until its first list."""
    state = tmp_path / "state"
    api.put("pods", make_pod("web", uid="u-web", labels={"app": "web"}))
    api.put("pods", make_pod("doomed", uid="u-doomed"))
    first = watcher(kubeconfig, state_dir=state, persist_cache=True)
    await first.start()
    await first.stop(5)
    assert (state / enrich.CACHE_FILE).exists()

    await api.stop()  # the restarted agent cannot reach the API server at first
    api.delete("pods", "default", "doomed")
    second = watcher(kubeconfig, state_dir=state, persist_cache=True, initial_sync_timeout=3)
    started = time.monotonic()
    await second.start()
    try:
        assert time.monotonic() - started < 1  # no wait: the cache was read from disk
        assert second.cache.get("u-web").labels == {"app": "web"}
        await api.start()
        await until(
            lambda: second.cache.get("u-doomed").deleted_at is not None,
            what="the pod deleted while the agent was down to become a tombstone",
        )
    finally:
        await second.stop(5)


async def test_namespace_and_node_metadata_watches_are_optional(api, kubeconfig):
    """If this failed, the opt-in namespace/node metadata would be missing or always on."""
    api.put("namespaces", {"metadata": {"name": "shop", "labels": {"team": "payments"}}})
    api.put("nodes", {"metadata": {"name": "node-1", "labels": {"zone": "a"}}})
    api.put("nodes", {"metadata": {"name": "node-2", "labels": {"zone": "b"}}})
    plain = watcher(kubeconfig)
    await plain.start()
    await plain.stop(5)
    assert not [p for _, p, _ in api.requests if p != "/api/v1/pods"]

    w = watcher(kubeconfig, namespace_metadata=True, node_labels=True)
    await w.start()
    try:
        await until(lambda: "shop" in w.cache.namespaces and w.cache.node is not None)
        assert w.cache.namespaces["shop"].labels == {"team": "payments"}
        assert w.cache.node.labels == {"zone": "a"}
        api.update("namespaces", "", "shop", labels={"tier": "1"})
        await until(lambda: w.cache.namespaces["shop"].labels.get("tier") == "1")
    finally:
        await w.stop(5)
    node_queries = {q.get("fieldSelector") for _, p, q in api.requests if p == "/api/v1/nodes"}
    assert node_queries == {"metadata.name=node-1"}


async def test_stop_interrupts_an_open_watch_promptly(api, kubeconfig):
    """If this failed, SIGTERM would wait for a watch to time out (minutes)."""
    w = watcher(kubeconfig, watch_timeout=(600, 600))
    await w.start()
    await until(lambda: api.open_watches == 1, what="the watch")
    started = time.monotonic()
    await w.stop(5)
    assert time.monotonic() - started < 1.5
    assert not any(x.alive for x in w.watches)


def test_a_watcher_without_a_node_name_is_a_config_error(tmp_path):
    """If this failed, an agent without NODE_NAME would watch every pod of the cluster."""
    from kloghub import config, core

    with pytest.raises(core.ConfigError, match="node_name"):
        enrich.PodWatcher(config.EnrichmentConfig(), None, enrich.PodCache())
