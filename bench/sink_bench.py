"""Documents/s from the sink into a real OpenSearch (or Elasticsearch) data stream.

Usage: python bench/sink_bench.py [--product opensearch|elasticsearch] [--url URL]
                                  [--docs N] [--batch N] [--concurrency N] [--no-compress]

The URL defaults to ``KLOGHUB_TEST_OPENSEARCH_URL`` / ``KLOGHUB_TEST_ELASTICSEARCH_URL``
(``python3 scripts/search_servers.py start``). A fresh index template and data stream with
a unique name are created (priority 500, minimal ECS-like mappings, 0 replicas); the
events (~600 bytes of ECS-like JSON each) are built before the clock starts and handed to
the sink in batches of ``--batch`` (as the collector's pump does), one finalizer each. The
clock stops when every event is settled DELIVERED; then the data stream is refreshed and
counted. Printed: docs/s (wall), the sink process's CPU seconds per 100k docs (encode,
gzip, HTTP, classification; the server runs on the same 2 cores, so the wall figure is
what this machine does end to end, not what the sink alone could do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from typing import Any

from kloghub import config, core, sinks


def make_doc(n: int) -> dict[str, Any]:
    return {
        "@timestamp": f"2024-05-01T10:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}."
        f"{n % 1000:03d}Z",
        "message": f"GET /api/v1/items/{n} 200 {n % 997}ms user=alice req={n:012d}",
        "stream": "stdout",
        "log": {
            "file": {"path": "/var/log/pods/shop_web-7d9f8c6b5-x2x9k_uid/web/0.log"},
            "offset": n * 160,
        },
        "container": {
            "id": "c0ffee" * 10,
            "image": {"name": "registry/shop/web:1.4.2"},
            "runtime": "containerd",
        },
        "kubernetes": {
            "namespace": "shop",
            "pod": {"name": "web-7d9f8c6b5-x2x9k", "uid": "3f1c8a6e-6a43-4a1e-9a51-8f2b9b1b7c11"},
            "container": {"name": "web"},
            "node": {"name": "node-1"},
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
        },
        "host": {"name": "node-1"},
        "orchestrator": {"type": "kubernetes", "cluster": {"name": "bench"}},
        "data_stream": {
            "type": "logs",
            "dataset": "kubernetes.container_logs",
            "namespace": "default",
        },
        "ecs": {"version": "9.0.0"},
        "event": {"ingested": "2024-05-01T10:00:01Z"},
    }


MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "stream": {"type": "keyword"},
        "log": {
            "properties": {
                "file": {"properties": {"path": {"type": "keyword"}}},
                "offset": {"type": "long"},
            }
        },
        "kubernetes": {
            "properties": {
                "namespace": {"type": "keyword"},
                "pod": {"properties": {"name": {"type": "keyword"}}},
            }
        },
        "host": {"properties": {"name": {"type": "keyword"}}},
    }
}


async def setup(product: str, url: str, name: str) -> Any:
    body = {
        "index_patterns": [f"logs-{name}-*"],
        "data_stream": {},
        "priority": 500,
        "template": {"mappings": MAPPINGS, "settings": {"number_of_replicas": 0}},
    }
    if product == "elasticsearch":
        from elasticsearch import AsyncElasticsearch

        client: Any = AsyncElasticsearch(url, request_timeout=60)
        await client.indices.put_index_template(name=name, **body)
    else:
        from opensearchpy import AsyncOpenSearch

        client = AsyncOpenSearch(hosts=[url], timeout=60)
        await client.indices.put_index_template(name=name, body=body)
    return client


class Null:
    async def put(self, sink: str, rejections: Any) -> None:
        raise AssertionError(f"{len(rejections)} documents refused: {rejections[0].reason}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", choices=["opensearch", "elasticsearch"], default="opensearch")
    parser.add_argument("--url")
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--no-compress", action="store_true")
    args = parser.parse_args()
    url = args.url or os.environ.get(f"KLOGHUB_TEST_{args.product.upper()}_URL")
    if not url:
        raise SystemExit("no URL: pass --url or start scripts/search_servers.py and source its env")
    name = f"kloghubbench{uuid.uuid4().hex[:8]}"
    stream = f"logs-{name}-default"
    client = await setup(args.product, url, name)

    done = asyncio.Event()
    settled = 0

    def on_settled(status: core.Delivery) -> None:
        nonlocal settled
        assert status is core.Delivery.DELIVERED, status
        settled += 1
        if settled == len(batches):
            done.set()

    batches = []
    for start in range(0, args.docs, args.batch):
        count = min(args.batch, args.docs - start)
        fin = core.Finalizer(on_settled, count=count)
        batches.append(
            core.Batch(
                core.Event(
                    stream,
                    1_700_000_000_000_000_000 + n,
                    {"id": f"{name}-{n}", "doc": make_doc(n)},
                    fin,
                )
                for n in range(start, start + count)
            )
        )
    scheme = url.split("://", 1)[0]
    cfg = config.SinkConfig(
        url=f"{args.product}+{scheme}://{url.split('://', 1)[1]}",
        batch_max_records=args.batch,
        batch_max_bytes=64 * 1024 * 1024,
        concurrency=args.concurrency,
        compress=not args.no_compress,
    )
    sink = sinks.build(cfg, Null())
    await sink.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for batch in batches:
        await sink.send(batch)
    await done.wait()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    await sink.stop(30)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    await client.indices.refresh(index=stream)
    count = (await client.count(index=stream))["count"]
    await client.close()
    print(
        f"{args.product}: {args.docs} docs in {wall:.2f} s = {args.docs / wall:,.0f} docs/s "
        f"(batch {args.batch}, concurrency {args.concurrency}, "
        f"gzip {'off' if args.no_compress else 'on'}); sink CPU {cpu:.2f} s "
        f"= {cpu / args.docs * 100_000:.2f} s per 100k docs; indexed: {count}"
    )


if __name__ == "__main__":
    asyncio.run(main())
