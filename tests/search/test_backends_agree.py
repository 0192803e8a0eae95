"""THE contract of `kloghub search`: the same query on the same documents gives the same
results from the embedded store, a real Elasticsearch and a real OpenSearch.

The fixture documents go into the store and, through a composable template of this test's
own (keyword for exact fields, text for the message, date_nanos for the time), into a data
stream of each server; then every query runs on all three, some again with three-document
pages so that paging (and a pair of documents sharing a timestamp, split across two pages) is
exercised too.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kloghub import search
from kloghub.search import _run
from tests.search import _docs

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch
    from opensearchpy import AsyncOpenSearch

pytestmark = pytest.mark.integration

TEMPLATE_PRIORITY = 500
MAPPINGS: dict[str, Any] = {
    "dynamic_templates": [
        {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
    ],
    "properties": {
        "@timestamp": {"type": "date_nanos"},
        "message": {"type": "text"},
    },
}

QUERIES = [
    "",
    "refused",
    '"connection refused"',
    "Timeout",
    "time*",
    "kube-probe*",
    "HTTP",
    '"GET /healthz"',
    "10.0.3.41",
    "upstream AND timed",
    "health check",
    "level:error",
    "level:error OR level:warn",
    "pod:web-*",
    "pod:web-7d9f4c-?2xkq",
    "ns:payments AND NOT level:debug",
    'namespace:"kube-system"',
    "NOT level:*",
    "user:system:serviceaccount:*",
    'user:"system:anonymous"',
    "verb:(get OR list) resource:secrets",
    "code:403",
    "related.user:system:anonymous",
    "source.ip:203.0.113.*",
    "image:shop/api:2.4.1",
    "@timestamp:[2026-11-27T06:03:00Z TO 2026-11-27T06:12:00Z}",
    "@timestamp:>2026-11-27T06:00:12.000000005Z",
    "-stream:stdout",
    "kubernetes.audit.objectRef.subresource:exec",
    "host:node-2 AND dataset:kubernetes.node_logs",
    "(ns:shop OR ns:payments) AND (refused OR boom)",
    "container:work* NOT finished",
    "message:*",
    "NOT message:*",
    "event.outcome:failure",
    "dataset:kubernetes.*_logs",
]

PAGED_REQUESTS = [
    search.Request(limit=100),
    search.Request(query="NOT level:info", limit=100, sort="desc"),
]
"""Also run with three-document pages: paging, and a tie in time split across two pages."""

REQUESTS = [
    *(search.Request(query=q, limit=100) for q in QUERIES),
    search.Request(namespace="shop", pod="web-*", limit=100),
    search.Request(container="app", query="health", limit=100),
    search.Request(limit=3),
    search.Request(limit=3, sort="asc"),
    search.Request(limit=3, sort="desc"),
    search.Request(query="level:error", limit=2, sort="asc"),
]


def _comparable(hits: list[search.Hit]) -> list[tuple[int, list[str]]]:
    """Results as (time, ids at that time): the order among equal times is each backend's own."""
    return [
        (time_ns, sorted(hit.id for hit in group))
        for time_ns, group in itertools.groupby(hits, key=lambda hit: hit.time_ns)
    ]


async def _results(backend: search.Backend, request: search.Request) -> list[tuple[int, list[str]]]:
    request.since, request.until = _docs.SINCE, _docs.UNTIL
    out: list[search.Hit] = []

    class Keep:
        def start(self) -> None: ...

        def write(self, hits) -> None:
            out.extend(hits)

        def finish(self) -> None: ...

    await search.run(request, backend, Keep())
    return _comparable(out)


def _names() -> tuple[str, str, str]:
    run = uuid.uuid4().hex[:10]
    return (
        f"kloghubsearch-{run}",
        f"logs-kloghubsearch-{run}-*",
        f"logs-kloghubsearch-{run}-default",
    )


def _template(pattern: str) -> dict[str, Any]:
    return {
        "index_patterns": [pattern],
        "priority": TEMPLATE_PRIORITY,
        "data_stream": {},
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": MAPPINGS,
        },
    }


def _operations() -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for doc_id, _time_ns, doc in _docs.load():
        operations += [{"create": {"_id": doc_id}}, doc]
    return operations


def _assert_created(response: Any) -> None:
    assert response["errors"] is False, response
    assert len(response["items"]) == len(_docs.load())


async def _compare(
    backend: search.Backend, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = search.StoreBackend.open(store_path)
    mismatches = []
    runs = [(request, None) for request in REQUESTS] + [(r, 3) for r in PAGED_REQUESTS]
    try:
        for request, page in runs:
            monkeypatch.setattr(_run, "_PAGE", page or 1000)
            expected = await _results(local, request)
            assert expected, f"{request} finds nothing in the store: the comparison is vacuous"
            got = await _results(backend, request)
            if got != expected:
                mismatches.append((request, expected, got))
    finally:
        await local.close()
    assert not mismatches, "\n".join(
        f"{request}:\n  store:  {expected}\n  server: {got}"
        for request, expected, got in mismatches
    )


async def test_elasticsearch_gives_the_same_results_as_the_store(
    es_client: AsyncElasticsearch, incident_store: Path, monkeypatch: pytest.MonkeyPatch
):
    """If this failed, a query would find different logs in Elasticsearch than in the
    embedded store: the responder's answer would depend on the level kloghub runs at."""
    template, pattern, stream = _names()
    await es_client.indices.put_index_template(name=template, **_template(pattern))
    _assert_created(await es_client.bulk(operations=_operations(), index=stream, refresh=True))
    # The harness's Elasticsearch has no data-stream delete API: the names are unique to
    # this run, and `search_servers.py stop` wipes them.
    backend = search.ElasticsearchBackend(es_client, index=pattern)
    await _compare(backend, incident_store, monkeypatch)


async def test_opensearch_gives_the_same_results_as_the_store(
    os_client: AsyncOpenSearch, incident_store: Path, monkeypatch: pytest.MonkeyPatch
):
    """If this failed, a query would find different logs in OpenSearch than in the
    embedded store: the responder's answer would depend on the level kloghub runs at."""
    from opensearchpy import OpenSearchException

    template, pattern, stream = _names()
    await os_client.indices.put_index_template(name=template, body=_template(pattern))
    try:
        _assert_created(await os_client.bulk(body=_operations(), index=stream, refresh=True))
        backend = search.OpenSearchBackend(os_client, index=pattern)
        await _compare(backend, incident_store, monkeypatch)
    finally:
        with contextlib.suppress(OpenSearchException):
            await os_client.indices.delete_data_stream(name=stream)
        with contextlib.suppress(OpenSearchException):
            await os_client.indices.delete_index_template(name=template)


async def test_a_backend_error_names_the_server_and_the_reason(es_client: AsyncElasticsearch):
    """If this failed, a refused search would surface as a client library traceback."""
    backend = search.ElasticsearchBackend(es_client, index="bad,,index*[")
    with pytest.raises(search.BackendError) as info:
        await backend.page(search.All(), now_ns=0, newest_first=True, size=1)
    assert "Elasticsearch" in str(info.value)
