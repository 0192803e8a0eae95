"""The templates on the real servers of the test harness, and normalized documents in them.

Installed twice on Elasticsearch 9 and OpenSearch 2, the templates must take every
document made from the fixtures (``create`` into data streams the first event creates)
and the documents must be found again through their ECS fields.

The lifecycle policies are rendered and validated as JSON by ``test_templates.py`` but
not installed here: the harness's Elasticsearch 9.2.8 integ-test build has no ILM module
(``_ilm`` has no handler, the ``index.lifecycle.name`` setting is unknown) and its
OpenSearch 2.19.6 has no ISM plugin. The templates are installed with
``lifecycle=False``; their ``ignore_missing_component_templates`` is what lets the
Elasticsearch ones work without the lifecycle component.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kloghub import config, core, normalize
from tests.normalize import _audit_fields as af
from tests.normalize import _fixtures as fx

pytestmark = pytest.mark.integration

Call = Callable[..., Awaitable[Any]]


def _documents(namespace: str) -> list[core.Event]:
    """Every fixture input, normalized into data streams of a namespace unique to the run
    (Elasticsearch's minimal build cannot delete data streams)."""
    normalizer = normalize.Normalizer(
        config.NormalizerConfig(namespace=namespace, preserve_original=True),
        cluster_name="harness",
    )
    inputs = [*fx.nginx_events(), fx.container_sample()[0]]
    for event in inputs[:4]:  # the nginx pod routes itself; keep it in this run's namespace
        k8s = dict(event.record["kubernetes"])
        k8s["annotations"] = {**k8s["annotations"], "elastic.co/namespace": namespace}
        event.record["kubernetes"] = k8s
    offset = 0
    for name in ("test-audit.log", "test-kube-audit.log", "test-audit.log.0b97ab02"):
        for line in fx.audit_lines(name):
            inputs.append(fx.audit_event(line, offset))
            offset += 1
    inputs.append(fx.audit_event(fx.audit_sample_line(), offset))
    inputs += fx.fluent_bit_events() + fx.synthetic_events()
    return [normalizer(event) for event in inputs]


async def _install(put: Call, kind: str) -> None:
    for _ in range(2):
        for path, body in normalize.templates(kind, 7, lifecycle=False).items():  # type: ignore[arg-type]
            await put(path, body)


def _bulk_body(docs: list[core.Event]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = []
    for event in docs:
        body.append({"create": {"_index": event.tag, "_id": event.record["id"]}})
        body.append(event.record["doc"])
    return body


async def _check(
    search: Call, mapping: Call, docs: list[core.Event], namespace: str, flat: str
) -> None:
    streams = sorted({event.tag for event in docs})
    assert len(streams) == 4, streams  # container, rerouted nginx, audit, node
    # Every document comes back as it was sent.
    for stream in streams:
        mine = {e.record["id"]: e.record["doc"] for e in docs if e.tag == stream}
        found = await search(stream, {"ids": {"values": list(mine)}}, size=100)
        got = {hit["_id"]: hit["_source"] for hit in found["hits"]["hits"]}
        assert got == mine, stream
    every = f"logs-kubernetes.*-{namespace}"
    leaves = [dict(fx.flatten(event.record["doc"])) for event in docs]

    def count(field: str, test: Callable[[Any], bool]) -> int:
        return sum(1 for doc in leaves if field in doc and test(doc[field]))

    def has(value: Any) -> Callable[[Any], bool]:
        return lambda got: got == value or (isinstance(got, list) and value in got)

    queries = {
        # keyword, ip (CIDR), date_nanos, text, flattened: each answers as its type should
        "keyword": ({"term": {"event.action": "get"}}, count("event.action", has("get"))),
        "ip": (
            {"term": {"source.ip": "67.43.156.0/24"}},
            count("source.ip", lambda ips: any(ip.startswith("67.43.156.") for ip in ips)),
        ),
        "date_nanos": (
            {"range": {"@timestamp": {"gt": "2025-07-16T10:12:56.563176999Z"}}},
            count("@timestamp", lambda ts: ts > "2025-07-16T10:12:56.563176999Z"),
        ),
        "label": (
            {"term": {"kubernetes.labels.app_kubernetes_io/name": "myservice"}},
            count("kubernetes.labels.app_kubernetes_io/name", has("myservice")),
        ),
        "text": ({"match_phrase": {"message": "payment failed"}}, 1),
        "log.level": ({"term": {"log.level": "error"}}, count("log.level", has("error"))),
        "flattened": ({"term": {"json.ctx.user": "ann"}}, 1),
        "audit annotation": (
            {"term": {"kubernetes.audit.annotations.authorization_k8s_io/decision": "allow"}},
            count("kubernetes.audit.annotations.authorization_k8s_io/decision", has("allow")),
        ),
        "multi-field": (
            {"match": {"user.name.text": "aksService"}},
            count("user.name", has("aksService")),
        ),
        "requestObject": (
            {"exists": {"field": "kubernetes.audit.requestObject.spec.containers.image"}},
            1,
        ),
    }
    for name, (query, wanted) in queries.items():
        found = await search(every, query, size=0)
        total = found["hits"]["total"]["value"]
        assert wanted > 0 and total == wanted, (name, total, wanted)
    props = await mapping(f"logs-kubernetes.audit_logs-{namespace}")
    assert props["@timestamp"]["type"] == "date_nanos"
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    audit = props["kubernetes"]["properties"]["audit"]["properties"]
    assert audit["requestObject"]["dynamic"] in (False, "false")
    container = await mapping(f"logs-kubernetes.container_logs-{namespace}")
    assert container["json"]["type"] == flat
    labels = container["kubernetes"]["properties"]["labels"]["properties"]
    assert all(field["type"] == "keyword" for field in labels.values())


def _first_mapping(answer: Any) -> dict[str, Any]:
    """The mapping of the (only) backing index of a new data stream."""
    index = next(iter(answer.values()))
    props: dict[str, Any] = index["mappings"]["properties"]
    return props


async def test_elasticsearch_takes_the_templates_twice_and_the_documents(es_client: Any) -> None:
    """On Elasticsearch 9 the templates install twice, the first create makes each data
    stream, every document is accepted (and refused as a duplicate when resent), and the
    ECS fields query with their types; broken, the collector's output would not index."""
    headers = {"content-type": "application/json", "accept": "application/json"}

    async def put(path: str, body: Any) -> None:
        await es_client.perform_request("PUT", "/" + path, headers=headers, body=body)

    await _install(put, "elasticsearch")
    template = await es_client.indices.get_index_template(name="kloghub-kubernetes.container_logs")
    assert template["index_templates"][0]["index_template"]["priority"] > 200
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = _documents(namespace)
    answer = await es_client.bulk(operations=_bulk_body(docs), refresh="true")
    assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:3]
    again = await es_client.bulk(operations=_bulk_body(docs), refresh="true")
    assert {item["create"]["status"] for item in again["items"]} == {409}

    async def search(index: str, query: dict[str, Any], size: int) -> Any:
        return (
            await es_client.search(index=index, query=query, size=size, track_total_hits=True)
        ).body

    async def mapping(index: str) -> dict[str, Any]:
        return _first_mapping((await es_client.indices.get_mapping(index=index)).body)

    await _check(search, mapping, docs, namespace, "flattened")


async def test_opensearch_takes_the_templates_twice_and_the_documents(os_client: Any) -> None:
    """On OpenSearch 2 (flat_object, no x-pack types) the same holds; broken, the
    OpenSearch sink would write into data streams that refuse or mis-type its documents."""

    async def put(path: str, body: Any) -> None:
        await os_client.transport.perform_request("PUT", "/" + path, body=body)

    await _install(put, "opensearch")
    template = await os_client.indices.get_index_template(name="kloghub-kubernetes.container_logs")
    assert template["index_templates"][0]["index_template"]["priority"] > 200
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = _documents(namespace)
    answer = await os_client.bulk(body=_bulk_body(docs), params={"refresh": "true"})
    assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:3]
    again = await os_client.bulk(body=_bulk_body(docs), params={"refresh": "true"})
    assert {item["create"]["status"] for item in again["items"]} == {409}

    async def search(index: str, query: dict[str, Any], size: int) -> Any:
        body = {"query": query, "size": size, "track_total_hits": True}
        return await os_client.search(index=index, body=body)

    async def mapping(index: str) -> dict[str, Any]:
        return _first_mapping(await os_client.indices.get_mapping(index=index))

    await _check(search, mapping, docs, namespace, "flat_object")
    # Clean-up only (Elasticsearch's minimal build cannot; the servers' stop wipes both).
    with contextlib.suppress(Exception):
        await os_client.indices.delete_data_stream(name=f"logs-kubernetes.*-{namespace}")


async def test_detection_fields_of_real_audit_events_query_on_elasticsearch(es_client: Any) -> None:
    """The recorded risky activity (tests/kube/_risky.py) in Elasticsearch: the pod with
    hostNetwork, the added capabilities, the binding to cluster-admin and the wildcard Role
    (and every other field the rules read) are each found by a field query, and each field
    has its type; broken, Elastic's prebuilt Kubernetes rules would be blind on our data."""
    docs = af.documents(af.risky_lines(), "t" + uuid.uuid4().hex[:12])
    await af.check_on_server(af.elasticsearch(es_client), docs)


async def test_detection_fields_of_real_audit_events_query_on_opensearch(os_client: Any) -> None:
    """The same on OpenSearch; broken, its security analytics and alerting queries on
    request bodies would find nothing."""
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = af.documents(af.risky_lines(), namespace)
    await af.check_on_server(af.opensearch(os_client), docs)
    with contextlib.suppress(Exception):
        await os_client.indices.delete_data_stream(name=f"logs-kubernetes.audit_logs-{namespace}")
