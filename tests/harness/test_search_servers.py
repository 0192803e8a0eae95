"""The test harness's servers do what kloghub's sinks rely on, through the official async clients:
a composable index template that turns ``logs-kloghubtest-*`` into a data stream, bulk
``create`` of documents carrying ``@timestamp``, refresh, search, and clean-up.

Each test uses names unique to it, so runs can share a long-lived server.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch
    from opensearchpy import AsyncOpenSearch

pytestmark = pytest.mark.integration

# Above the built-in `logs` templates of full distributions (priority 100, `logs-*-*`), and
# ES refuses two overlapping templates of equal priority: every test has its own pattern.
TEMPLATE_PRIORITY = 500

MAPPINGS: dict[str, Any] = {
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "log": {"properties": {"level": {"type": "keyword"}}},
        "kubernetes": {
            "properties": {
                "namespace": {"type": "keyword"},
                "pod": {"properties": {"name": {"type": "keyword"}}},
            }
        },
    }
}

DOCS: list[dict[str, Any]] = [
    {
        "@timestamp": "2026-01-01T00:00:00.000Z",
        "message": "starting server",
        "log": {"level": "info"},
        "kubernetes": {"namespace": "shop", "pod": {"name": "api-7d9f-1"}},
    },
    {
        "@timestamp": "2026-01-01T00:00:01.000Z",
        "message": "connection refused by payments",
        "log": {"level": "error"},
        "kubernetes": {"namespace": "shop", "pod": {"name": "api-7d9f-1"}},
    },
    {
        "@timestamp": "2026-01-01T00:00:02.000Z",
        "message": "request served",
        "log": {"level": "info"},
        "kubernetes": {"namespace": "shop", "pod": {"name": "web-5c4b-2"}},
    },
]


def _names() -> tuple[str, str, str]:
    """(template name, index pattern, data stream name), unique to one test."""
    run = uuid.uuid4().hex[:10]
    return f"kloghubtest-{run}", f"logs-kloghubtest-{run}-*", f"logs-kloghubtest-{run}-default"


def _template_body(pattern: str) -> dict[str, Any]:
    return {
        "index_patterns": [pattern],
        "priority": TEMPLATE_PRIORITY,
        "data_stream": {},
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": MAPPINGS,
        },
    }


def _bulk_create(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for doc in docs:
        operations += [{"create": {}}, doc]
    return operations


def _assert_bulk_created_in_data_stream(response: Any, stream: str) -> None:
    assert response["errors"] is False, response
    assert len(response["items"]) == len(DOCS)
    for item in response["items"]:
        assert item["create"]["status"] == 201, item
        assert item["create"]["_index"].startswith(f".ds-{stream}-"), item


def _assert_backed_by_data_stream(indices: Any, stream: str) -> None:
    """`indices` is GET /<stream>: the backing indices, each naming its data stream."""
    assert list(indices), indices
    for name, index in indices.items():
        assert name.startswith(f".ds-{stream}-"), name
        assert index["data_stream"] == stream, index


def _assert_search_results(total: Any, errors: Any, by_time: Any) -> None:
    assert total["count"] == len(DOCS)
    assert errors["hits"]["total"]["value"] == 1
    assert errors["hits"]["hits"][0]["_source"]["message"] == "connection refused by payments"
    assert errors["hits"]["hits"][0]["_source"]["kubernetes"]["pod"]["name"] == "api-7d9f-1"
    assert [hit["_source"]["message"] for hit in by_time["hits"]["hits"]] == [
        doc["message"] for doc in reversed(DOCS)
    ]


ERROR_QUERY = {"term": {"log.level": "error"}}
SORT_NEWEST_FIRST = [{"@timestamp": {"order": "desc"}}]


# --------------------------------------------------------------------------- Elasticsearch


async def test_es_client_is_not_newer_than_the_server(es_client: AsyncElasticsearch) -> None:
    """If this fails, elasticsearch-py is a newer minor than the server and some of its calls
    are rejected by it (9.5 POSTs _resolve/index where 9.2 allows only GET), because Elastic's
    clients are only forward compatible: pin the client to at most the server's minor."""
    from elasticsearch import __versionstr__ as client_version

    nodes = await es_client.nodes.info(node_id="_local", metric="_none")
    server_version = next(iter(nodes["nodes"].values()))["version"]
    client_minor = tuple(int(part) for part in client_version.split(".")[:2])
    server_minor = tuple(int(part) for part in server_version.split(".")[:2])
    assert client_minor[0] == server_minor[0], (client_version, server_version)
    assert client_minor <= server_minor, (
        f"elasticsearch-py {client_version} is newer than Elasticsearch {server_version}: "
        f"require elasticsearch[async]>={server_minor[0]}.{server_minor[1]},"
        f"<{server_minor[0]}.{server_minor[1] + 1}"
    )


async def _es_has_data_stream_api(es: AsyncElasticsearch) -> bool:
    """False on the harness's minimal Elasticsearch, which has no data-streams module."""
    from elasticsearch import ApiError

    try:
        await es.indices.get_data_stream(name="logs-kloghubtest-probe-*")
    except ApiError as exc:
        if "no handler found" in str(exc.body):
            return False
        raise
    return True


async def _es_cleanup_quietly(es: AsyncElasticsearch, template: str, stream: str) -> None:
    """Best-effort: delete the data stream, then its template. Without the data-streams module
    neither can go (a template in use cannot be deleted); the names are unique to the test and
    `search_servers.py stop` wipes the data dir. Deletion itself is proven by its own test."""
    from elasticsearch import ApiError

    with contextlib.suppress(ApiError):
        if await _es_has_data_stream_api(es):
            await es.indices.delete_data_stream(name=stream)
            await es.indices.delete_index_template(name=template)


async def test_es_template_turns_bulk_creates_into_a_searchable_data_stream(
    es_client: AsyncElasticsearch,
) -> None:
    """If this fails, kloghub's Elasticsearch sink cannot write logs into data streams through
    a composable template and read them back (or the harness's Elasticsearch is broken)."""
    template, pattern, stream = _names()
    await es_client.indices.put_index_template(name=template, **_template_body(pattern))
    try:
        created = await es_client.bulk(operations=_bulk_create(DOCS), index=stream)
        _assert_bulk_created_in_data_stream(created, stream)
        await es_client.indices.refresh(index=stream)

        _assert_backed_by_data_stream(await es_client.indices.get(index=stream), stream)
        total = await es_client.count(index=stream)
        errors = await es_client.search(index=stream, query=ERROR_QUERY)
        by_time = await es_client.search(index=stream, sort=SORT_NEWEST_FIRST, size=10)
        _assert_search_results(total, errors, by_time)
    finally:
        await _es_cleanup_quietly(es_client, template, stream)


async def test_es_data_stream_deletion_works_or_its_absence_is_the_documented_gap(
    es_client: AsyncElasticsearch,
) -> None:
    """If this fails, kloghub cannot remove the data streams and templates it created on
    Elasticsearch, or the harness's ES changed and scripts/README-search-servers.md is wrong.

    The integ-test-zip lacks the data-streams module (not published to Maven Central), so
    on the harness's server the `_data_stream` API must answer "no handler"; on a full
    Elasticsearch (KLOGHUB_TEST_ELASTICSEARCH_URL) the deletion itself is proved."""
    from elasticsearch import ApiError, NotFoundError

    template, pattern, stream = _names()
    if not await _es_has_data_stream_api(es_client):
        with pytest.raises(ApiError) as info:
            await es_client.indices.delete_data_stream(name=stream)
        assert info.value.meta.status in (400, 404, 405)
        return

    await es_client.indices.put_index_template(name=template, **_template_body(pattern))
    await es_client.indices.create_data_stream(name=stream)
    await es_client.indices.delete_data_stream(name=stream)
    await es_client.indices.delete_index_template(name=template)

    with pytest.raises(NotFoundError):
        await es_client.indices.get_data_stream(name=stream)
    assert not await es_client.indices.exists_index_template(name=template)


# --------------------------------------------------------------------------- OpenSearch


async def _os_cleanup_quietly(os_: AsyncOpenSearch, template: str, stream: str) -> None:
    """Best-effort clean-up after a failure, so the original error is the one reported."""
    from opensearchpy import OpenSearchException

    for delete in (
        lambda: os_.indices.delete_data_stream(name=stream),
        lambda: os_.indices.delete_index_template(name=template),
    ):
        with contextlib.suppress(OpenSearchException):
            await delete()


async def test_os_template_turns_bulk_creates_into_a_searchable_data_stream_that_can_be_deleted(
    os_client: AsyncOpenSearch,
) -> None:
    """If this fails, kloghub's OpenSearch sink cannot write logs into data streams through a
    composable template, read them back, or remove the stream and template afterwards."""
    from opensearchpy import NotFoundError

    template, pattern, stream = _names()
    await os_client.indices.put_index_template(name=template, body=_template_body(pattern))
    try:
        created = await os_client.bulk(body=_bulk_create(DOCS), index=stream)
        _assert_bulk_created_in_data_stream(created, stream)
        await os_client.indices.refresh(index=stream)

        data_streams = await os_client.indices.get_data_stream(name=stream)
        assert [ds["name"] for ds in data_streams["data_streams"]] == [stream]
        assert data_streams["data_streams"][0]["template"] == template
        total = await os_client.count(index=stream)
        errors = await os_client.search(index=stream, body={"query": ERROR_QUERY})
        by_time = await os_client.search(index=stream, body={"sort": SORT_NEWEST_FIRST, "size": 10})
        _assert_search_results(total, errors, by_time)
    except BaseException:
        await _os_cleanup_quietly(os_client, template, stream)
        raise

    await os_client.indices.delete_data_stream(name=stream)
    await os_client.indices.delete_index_template(name=template)
    with pytest.raises(NotFoundError):
        await os_client.indices.get_data_stream(name=stream)
    assert not await os_client.indices.exists_index_template(name=template)
