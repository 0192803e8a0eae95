"""The pod watcher against the fake API server of tests/_kubeapi.py, for the two faults the
real apiserver cannot be made to produce on demand (see its docstring). Everything else the
watcher does is proven against the real kube-apiserver in tests/kube/test_enrich.py."""

from __future__ import annotations

import pytest

from kloghub import enrich
from tests._kubeapi import KubeAPI, make_pod
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


def test_a_watcher_without_a_node_name_is_a_config_error(tmp_path):
    """If this failed, an agent without NODE_NAME would watch every pod of the cluster."""
    from kloghub import config, core

    with pytest.raises(core.ConfigError, match="node_name"):
        enrich.PodWatcher(config.EnrichmentConfig(), None, enrich.PodCache())
