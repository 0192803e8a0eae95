"""`kloghub rules export` queries on the real Elasticsearch and OpenSearch of the harness.

The real audit fixture and the positive and negative events of every default rule
(tests/detect/test_pack.py) are normalized into an audit data stream of a namespace unique
to the run, through kloghub's own templates; then each rule's exported query (query DSL
with the Lucene query, as `kloghub rules export --format dsl` prints it) must find exactly
the documents the rule matches in kloghub. Rules reading the request body are blind in
both products until the audit template indexes ``requestObject`` (issue 15, item 7): for
those the test only checks the query runs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from kloghub import config, detect, normalize
from tests.detect import _events as ev
from tests.detect.test_pack import CASES
from tests.normalize import _fixtures as fx

pytestmark = pytest.mark.integration


def _documents(namespace: str) -> dict[str, dict[str, Any]]:
    normalizer = normalize.Normalizer(config.NormalizerConfig(namespace=namespace))
    events = [ev.raw(i) for i in range(len(ev.raw_events()))]
    for positive, negative in CASES.values():
        events += [positive, negative]
    out = {}
    for offset, event in enumerate(events):
        normalized = normalizer(fx.audit_event(json.dumps(event), offset))
        out[normalized.record["id"]] = normalized.record["doc"]
    return out


def _expected(docs: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    ruleset = detect.load([detect.default_pack()])
    return {d.id: {i for i, doc in docs.items() if d.match(doc)} for d in ruleset.detections}


def _reads_the_body(query: Any) -> bool:
    text = json.dumps(query)
    return "requestObject" in text or "responseObject" in text


async def _agree(target: str, search: Any, put: Any, bulk: Any) -> None:
    for path, body in normalize.templates(target, 7, lifecycle=False).items():  # type: ignore[arg-type]
        await put(path, body)
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = _documents(namespace)
    stream = f"logs-kubernetes.audit_logs-{namespace}"
    await bulk(stream, docs)
    expected = _expected(docs)
    exported = detect.export([detect.default_pack()], target, "dsl")
    checked = blind = 0
    for rule, query in exported.queries:
        found = await search(stream, query["query"])
        if _reads_the_body(query):
            blind += 1
            continue
        assert found == expected[rule.id], (rule.title, query)
        checked += 1
    assert checked >= 7 and checked + blind == 14
    assert any(expected[r.id] for r, q in exported.queries if not _reads_the_body(q))


async def test_exported_queries_find_on_elasticsearch_what_the_rules_match(es_client) -> None:
    """If this failed, a team alerting in Elasticsearch with kloghub's exported rules would
    miss attacks kloghub sees (or alert on what it does not)."""
    headers = {"content-type": "application/json", "accept": "application/json"}

    async def put(path: str, body: Any) -> None:
        await es_client.perform_request("PUT", "/" + path, headers=headers, body=body)

    async def bulk(stream: str, docs: dict[str, dict[str, Any]]) -> None:
        ops: list[Any] = []
        for doc_id, doc in docs.items():
            ops += [{"create": {"_index": stream, "_id": doc_id}}, doc]
        answer = await es_client.bulk(operations=ops, refresh="true")
        assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:2]

    async def search(stream: str, query: dict[str, Any]) -> set[str]:
        answer = await es_client.search(index=stream, query=query, size=1000, source=False)
        return {hit["_id"] for hit in answer["hits"]["hits"]}

    await _agree("elasticsearch", search, put, bulk)


async def test_exported_queries_find_on_opensearch_what_the_rules_match(os_client) -> None:
    """If this failed, a team alerting in OpenSearch with kloghub's exported rules would
    miss attacks kloghub sees (or alert on what it does not)."""

    async def put(path: str, body: Any) -> None:
        await os_client.transport.perform_request("PUT", "/" + path, body=body)

    async def bulk(stream: str, docs: dict[str, dict[str, Any]]) -> None:
        ops: list[Any] = []
        for doc_id, doc in docs.items():
            ops += [{"create": {"_index": stream, "_id": doc_id}}, doc]
        answer = await os_client.bulk(body=ops, params={"refresh": "true"})
        assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:2]

    async def search(stream: str, query: dict[str, Any]) -> set[str]:
        body = {"query": query, "size": 1000, "_source": False}
        answer = await os_client.search(index=stream, body=body)
        return {hit["_id"] for hit in answer["hits"]["hits"]}

    await _agree("opensearch", search, put, bulk)
