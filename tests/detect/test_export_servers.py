"""`kloghub rules export` queries and `kloghub rules test` backtests on the real
Elasticsearch and OpenSearch of the harness.

The real audit fixture and the positive and negative events of every default rule
(tests/detect/test_pack.py) are normalized into an audit data stream of a namespace unique
to the run, through kloghub's own templates; then each rule's exported query (query DSL
with the Lucene query, as `kloghub rules export --format dsl` prints it) must find exactly
the documents the rule matches in kloghub, including the rules that read the request body
(``requestObject``, indexed by the audit templates: issue 15, item 7). The backtest reads
the same data stream back in time order and must raise what the detector raises on the
documents themselves.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from kloghub import config, detect, normalize
from kloghub import search as search_times
from tests._procs import run_kloghub
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


class _Cluster:
    """The three calls the tests make, on either product's official async client."""

    def __init__(self, product: str, client: Any) -> None:
        self.product = product
        self.client = client

    async def put(self, path: str, body: Any) -> None:
        if self.product == "elasticsearch":
            headers = {"content-type": "application/json", "accept": "application/json"}
            await self.client.perform_request("PUT", "/" + path, headers=headers, body=body)
        else:
            await self.client.transport.perform_request("PUT", "/" + path, body=body)

    async def bulk(self, stream: str, docs: dict[str, dict[str, Any]]) -> None:
        ops: list[Any] = []
        for doc_id, doc in docs.items():
            ops += [{"create": {"_index": stream, "_id": doc_id}}, doc]
        if self.product == "elasticsearch":
            answer = await self.client.bulk(operations=ops, refresh="true")
        else:
            answer = await self.client.bulk(body=ops, params={"refresh": "true"})
        assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:2]

    async def search(self, stream: str, query: dict[str, Any]) -> set[str]:
        body = {"query": query, "size": 1000, "_source": False}
        if self.product == "elasticsearch":
            answer = await self.client.search(index=stream, **body)
        else:
            answer = await self.client.search(index=stream, body=body)
        return {hit["_id"] for hit in answer["hits"]["hits"]}


async def _indexed(cluster: _Cluster) -> tuple[str, dict[str, dict[str, Any]]]:
    """(data stream, documents): the test documents indexed through kloghub's templates."""
    kind = cluster.product
    for path, body in normalize.templates(kind, 7, lifecycle=False).items():  # type: ignore[arg-type]
        await cluster.put(path, body)
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = _documents(namespace)
    stream = f"logs-kubernetes.audit_logs-{namespace}"
    await cluster.bulk(stream, docs)
    return stream, docs


def _backtest(target: str, url: str, stream: str) -> dict[str, Any]:
    """``kloghub rules test --<target> URL`` over ``stream``, as JSON."""
    result = run_kloghub(
        *("rules", "test", f"--{target}", url, "--index", stream),
        *("--since", "2000-01-01T00:00:00Z", "--format", "json"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _fired(docs: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Alerts per rule id when the detector sees ``docs`` in time order."""
    detector = detect.Detector.from_config(config.DetectionsConfig())
    ordered = sorted(docs.items(), key=lambda kv: (kv[1]["@timestamp"], kv[0]))
    counts: dict[str, int] = {}
    for doc_id, doc in ordered:
        time_ns = search_times.parse_instant(doc["@timestamp"]).resolve(0)
        for alert in detector(doc_id, doc, time_ns):
            counts[alert.rule.id] = counts.get(alert.rule.id, 0) + 1
    return counts


async def _agree(cluster: _Cluster) -> None:
    stream, docs = await _indexed(cluster)
    expected = _expected(docs)
    exported = detect.export([detect.default_pack()], cluster.product, "dsl")
    reads_body = 0
    for rule, query in exported.queries:
        found = await cluster.search(stream, query["query"])
        assert found == expected[rule.id], (rule.title, query)
        reads_body += _reads_the_body(query)
    assert len(exported.queries) == 14
    assert reads_body >= 6  # the request-body rules are searchable too (issue 15, item 7)
    assert all(expected[r.id] for r, _q in exported.queries)  # each finds something


async def _backtest_agrees(cluster: _Cluster, url: str) -> None:
    stream, docs = await _indexed(cluster)
    report = _backtest(cluster.product, url, stream)
    assert report["documents"] == len(docs)
    assert {r["id"]: r["alerts"] for r in report["rules"]} == _fired(docs)


async def test_exported_queries_find_on_elasticsearch_what_the_rules_match(es_client) -> None:
    """If this failed, a team alerting in Elasticsearch with kloghub's exported rules would
    miss attacks kloghub sees (or alert on what it does not)."""
    await _agree(_Cluster("elasticsearch", es_client))


async def test_exported_queries_find_on_opensearch_what_the_rules_match(os_client) -> None:
    """If this failed, a team alerting in OpenSearch with kloghub's exported rules would
    miss attacks kloghub sees (or alert on what it does not)."""
    await _agree(_Cluster("opensearch", os_client))


async def test_rules_test_backtests_what_elasticsearch_holds(es_client, elasticsearch_url) -> None:
    """If this failed, `kloghub rules test --elasticsearch` would not show what the rules
    would have raised on the audit events a team already keeps in Elasticsearch."""
    await _backtest_agrees(_Cluster("elasticsearch", es_client), elasticsearch_url)


async def test_rules_test_backtests_what_opensearch_holds(os_client, opensearch_url) -> None:
    """If this failed, `kloghub rules test --opensearch` would not show what the rules
    would have raised on the audit events a team already keeps in OpenSearch."""
    await _backtest_agrees(_Cluster("opensearch", os_client), opensearch_url)
