"""The Elasticsearch and OpenSearch sinks against the real servers of the test harness.

Each test makes its own composable index template (minimal mappings the harness builds
accept) with a data stream of a unique name: the harness Elasticsearch has no data stream
delete API, so nothing is reused between runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import pytest_asyncio

from kloghub import config, core, sinks
from kloghub.runtime import metrics

from ._fakes import Proxy
from ._support import MemoryDeadLetters, Settled, counter, doc

pytestmark = pytest.mark.integration

MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "n": {"type": "long"},
    }
}


@dataclass
class Cluster:
    product: str
    url: str
    client: Any
    stream: str

    def config(self, url: str | None = None, **settings: Any) -> config.SinkConfig:
        parts = urlsplit(url or self.url)
        if parts.username:
            settings.setdefault("username", parts.username)
            settings.setdefault("password", parts.password or "")
        settings.setdefault("retry", {"initial_backoff": 0.02, "max_backoff": 0.3})
        settings.setdefault("flush_interval", 0.05)
        return config.SinkConfig(
            url=f"{self.product}+{parts.scheme}://{parts.hostname}:{parts.port}", **settings
        )

    async def count(self) -> int:
        await self.client.indices.refresh(index=self.stream)
        answer = await self.client.count(index=self.stream)
        return int(answer["count"])

    async def ids(self) -> list[str]:
        await self.client.indices.refresh(index=self.stream)
        if self.product == "elasticsearch":
            answer = await self.client.search(index=self.stream, size=10_000, source=False)
        else:
            answer = await self.client.search(
                index=self.stream, body={"size": 10_000, "_source": False}
            )
        return [hit["_id"] for hit in answer["hits"]["hits"]]

    async def put_mapping(self, properties: dict[str, Any]) -> None:
        if self.product == "elasticsearch":
            await self.client.indices.put_mapping(index=self.stream, properties=properties)
        else:
            await self.client.indices.put_mapping(
                index=self.stream, body={"properties": properties}
            )


@pytest.fixture(params=["elasticsearch", "opensearch"])
def product_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, request.getfixturevalue(f"{request.param}_url")


def _client(product: str, url: str) -> Any:
    if product == "elasticsearch":
        from elasticsearch import AsyncElasticsearch

        return AsyncElasticsearch(url, request_timeout=30)
    from opensearchpy import AsyncOpenSearch

    return AsyncOpenSearch(hosts=[url], timeout=30)


@pytest_asyncio.fixture
async def cluster(product_url: tuple[str, str]) -> AsyncIterator[Cluster]:
    product, url = product_url
    client = _client(product, url)
    name = f"kloghubtest{uuid.uuid4().hex[:12]}"
    pattern = f"logs-{name}-*"
    template = {"mappings": MAPPINGS, "settings": {"number_of_replicas": 0}}
    if product == "elasticsearch":
        await client.indices.put_index_template(
            name=name, index_patterns=[pattern], data_stream={}, priority=500, template=template
        )
    else:
        await client.indices.put_index_template(
            name=name,
            body={
                "index_patterns": [pattern],
                "data_stream": {},
                "priority": 500,
                "template": template,
            },
        )
    stream = f"logs-{name}-default"
    try:
        yield Cluster(product, url, client, stream)
    finally:
        if product == "opensearch":  # the harness Elasticsearch cannot delete data streams
            await client.transport.perform_request("DELETE", f"/_data_stream/{stream}")
            await client.indices.delete_index_template(name=name)
        await client.close()


def batch(cluster: Cluster, settled: Settled, ids: range, **overrides: Any) -> core.Batch:
    docs = []
    for i in ids:
        body = doc(i)
        body.update(overrides.get(str(i), {}))
        docs.append(settled.event(cluster.stream, f"{cluster.stream}-{i}", body))
    return core.Batch(docs)


async def test_a_mapping_conflict_is_dead_lettered_while_its_batch_mates_are_indexed(
    cluster: Cluster, tmp_path: Path
):
    """If this failed, one document of the wrong shape would block or lose a whole batch."""
    dlq = sinks.DeadLetterQueue(tmp_path / "dlq", 1 << 20)
    await dlq.start()
    settled = Settled()
    sink = sinks.build(cluster.config(), dlq)
    await sink.start()
    try:
        await sink.send(batch(cluster, settled, range(10), **{"3": {"n": "not a number"}}))
        await settled.wait_for(10)
    finally:
        await sink.stop(10)
        await dlq.stop(5)
    assert settled.status[f"{cluster.stream}-3"] is core.Delivery.REJECTED
    assert settled.count(core.Delivery.DELIVERED) == 9
    assert await cluster.count() == 9
    [entry] = list(sinks.read(tmp_path / "dlq"))
    assert entry.id == f"{cluster.stream}-3"
    assert entry.error in ("document_parsing_exception", "mapper_parsing_exception")
    assert "[n]" in entry.reason
    assert entry.status == 400
    assert entry.doc["n"] == "not a number"
    assert entry.sink == sink.name


async def test_the_same_batch_sent_twice_is_indexed_once(cluster: Cluster):
    """If this failed, a resent chunk (after a collector crash) would duplicate documents."""
    for _round in range(2):
        settled = Settled()
        sink = sinks.build(cluster.config(), MemoryDeadLetters())
        await sink.start()
        try:
            await sink.send(batch(cluster, settled, range(50)))
            await settled.wait_for(50)
        finally:
            await sink.stop(10)
        assert settled.count(core.Delivery.DELIVERED) == 50  # 409 on the second round
    assert await cluster.count() == 50


async def test_a_server_cut_off_mid_stream_ends_with_every_event_indexed_once(cluster: Cluster):
    """If this failed, a network outage to the SIEM would lose or duplicate events."""
    target = urlsplit(cluster.url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 9200)
    await proxy.start()
    total = 3000
    settled = Settled()
    kind = cluster.product
    retried_before = counter(metrics.RECORDS_RETRIED, kind)
    sink = sinks.build(
        cluster.config(proxy.url, batch_max_records=100, concurrency=2), MemoryDeadLetters()
    )

    async def outage() -> None:
        while settled.count() < 600:
            await asyncio.sleep(0.005)
        await proxy.cut()
        await asyncio.sleep(0.5)
        await proxy.restore()

    await sink.start()
    cutter = asyncio.ensure_future(outage())
    try:
        for start in range(0, total, 250):
            await sink.send(batch(cluster, settled, range(start, min(start + 250, total))))
        await settled.wait_for(total, timeout=60)
        await cutter
    finally:
        cutter.cancel()
        await sink.stop(10)
        await proxy.stop()
    assert settled.count(core.Delivery.DELIVERED) == total
    assert not settled.twice
    assert counter(metrics.RECORDS_RETRIED, kind) > retried_before  # the outage did bite
    assert await cluster.count() == total
    ids = await cluster.ids()
    assert len(ids) == len(set(ids)) == total


async def test_replay_after_a_mapping_fix_indexes_the_dead_letters(
    cluster: Cluster, tmp_path: Path
):
    """If this failed, `kloghub dlq replay` could not recover documents after a mapping fix."""
    directory = tmp_path / "dlq"
    dlq = sinks.DeadLetterQueue(directory, 1 << 20)
    await dlq.start()
    settled = Settled()
    cfg = cluster.config()
    sink = sinks.build(cfg, dlq)
    await sink.start()
    try:
        await sink.send(batch(cluster, settled, range(4), **{"1": {"n": "x"}, "2": {"n": "y"}}))
        await settled.wait_for(4)
    finally:
        await sink.stop(10)
        await dlq.stop(5)
    assert await cluster.count() == 2
    # Before the fix a replay changes nothing; after it both documents go in.
    report = await sinks.replay(directory, [cfg], timeout=30)
    assert (report.delivered, report.refused) == (0, 2)
    await cluster.put_mapping({"n": {"type": "long", "ignore_malformed": True}})
    report = await sinks.replay(directory, [cfg], timeout=30)
    assert (report.delivered, report.refused, report.unsettled) == (2, 0, 0)
    assert await cluster.count() == 4
    assert list(sinks.read(directory)) == []


async def rollover(cluster: Cluster) -> None:
    if cluster.product == "elasticsearch":
        await cluster.client.indices.rollover(alias=cluster.stream)
    else:
        await cluster.client.transport.perform_request("POST", f"/{cluster.stream}/_rollover")


async def backing_indices(cluster: Cluster) -> list[str]:
    answer = await cluster.client.indices.get_settings(index=cluster.stream)
    return sorted(answer)


async def test_a_resend_after_a_rollover_is_not_a_second_document(cluster: Cluster):
    """If this failed, events resent after their data stream rolled over (a collector
    restart, an agent's resend) would be indexed twice: ``_id`` deduplicates only inside
    one backing index."""
    removed_before = counter(metrics.ROLLOVER_COPIES, cluster.product)
    sink = sinks.build(cluster.config(), MemoryDeadLetters())
    await sink.start()
    try:
        settled = Settled()
        await sink.send(batch(cluster, settled, range(50)))
        await settled.wait_for(50)
        await rollover(cluster)
        assert len(await backing_indices(cluster)) == 2
        # 40-49 are resends across the rollover, 50-59 new; the second round resends all.
        for _round in range(2):
            settled = Settled()
            await sink.send(batch(cluster, settled, range(40, 60)))
            await settled.wait_for(20)
            assert settled.count(core.Delivery.DELIVERED) == 20
    finally:
        await sink.stop(10)
    ids = await cluster.ids()
    assert len(ids) == len(set(ids)) == 60
    assert await cluster.count() == 60
    assert counter(metrics.ROLLOVER_COPIES, cluster.product) - removed_before == 20


async def write_behind_the_sink(cluster: Cluster, ids: range) -> None:
    """Index ``ids`` into the stream's write index with no rollover check (a resend whose
    collector was killed before it removed the copy)."""
    lines = []
    for i in ids:
        lines.append(orjson.dumps({"create": {"_id": f"{cluster.stream}-{i}"}}))
        lines.append(orjson.dumps(doc(i)))
    body = b"\n".join(lines) + b"\n"
    if cluster.product == "elasticsearch":
        await cluster.client.bulk(index=cluster.stream, operations=body, refresh=True)
    else:
        await cluster.client.bulk(index=cluster.stream, body=body, refresh=True)


async def test_a_copy_left_in_the_new_backing_index_by_a_crash_is_removed_on_resend(
    cluster: Cluster,
):
    """If this failed, a collector killed between indexing a resend in the new backing
    index and removing it would leave a duplicate for good (the next resend answers 409)."""
    sink = sinks.build(cluster.config(), MemoryDeadLetters())
    await sink.start()
    try:
        settled = Settled()
        await sink.send(batch(cluster, settled, range(30)))
        await settled.wait_for(30)
        await rollover(cluster)
        # The crash: 20-29 written again into the new write index, nobody removed them.
        await write_behind_the_sink(cluster, range(20, 30))
        assert await cluster.count() == 40
        settled = Settled()
        await sink.send(batch(cluster, settled, range(20, 30)))  # the resend: 409 each
        await settled.wait_for(10)
    finally:
        await sink.stop(10)
    ids = await cluster.ids()
    assert len(ids) == len(set(ids)) == 30


async def test_a_copy_left_by_a_crash_is_removed_when_the_resend_lands_after_another_rollover(
    cluster: Cluster,
):
    """If this failed, a collector killed while it removed resent copies from the new
    backing index, with the stream rolled over again before its restart, would leave them
    for good: the resend lands in a third index, finds the first copy and the one left
    behind, and removed only itself (chaos seed 623672: 296 documents in two indices)."""
    removed_before = counter(metrics.ROLLOVER_COPIES, cluster.product)
    sink = sinks.build(cluster.config(), MemoryDeadLetters())
    await sink.start()
    try:
        settled = Settled()
        await sink.send(batch(cluster, settled, range(30)))
        await settled.wait_for(30)
        await rollover(cluster)
        await write_behind_the_sink(cluster, range(20, 30))  # the resend, not removed
        await rollover(cluster)
        assert len(await backing_indices(cluster)) == 3
        assert await cluster.count() == 40
        settled = Settled()
        await sink.send(batch(cluster, settled, range(20, 30)))  # the resend after restart
        await settled.wait_for(10)
        assert settled.count(core.Delivery.DELIVERED) == 10
    finally:
        await sink.stop(10)
    ids = await cluster.ids()
    assert len(ids) == len(set(ids)) == 30
    # the oldest copy stays: the documents of the first index are still there
    first = (await backing_indices(cluster))[0]
    await cluster.client.indices.refresh(index=first)
    assert (await cluster.client.count(index=first))["count"] == 30
    assert counter(metrics.ROLLOVER_COPIES, cluster.product) - removed_before == 20
