"""Embedded-store search: field queries on the documents' JSON, ms per query.

Usage:
    python bench/store_search_bench.py [--docs 50000] [--audit-share 0.1] [--store PATH]

A store of ``--docs`` documents, as the normalizer writes them: container logs (message,
``kubernetes.*``, labels) and, ``--audit-share`` of them, Kubernetes audit events of pod
creations (``requestObject.spec.containers`` a list of two, ``user.extra`` with the
apiserver's dotted keys). Each query runs 5 times (best kept) through
``search.to_sql`` + ``Store.select`` with no limit on what it returns, on one core: a
column, a JSON field at its plain path (``kubernetes.audit.verb``), one through a list
(``...spec.containers.image``), a dotted ``user.extra`` key, a field no document has, and
the ``NOT`` of one. The store is made once at ``--store`` (default in /tmp) and reused.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from kloghub import search, store

QUERIES = (
    "level:error",
    "kubernetes.audit.verb:create",
    "kubernetes.audit.requestObject.spec.containers.image:registry.example/sidecar*",
    "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name:pod-7",
    "kubernetes.audit.requestObject.spec.hostNetwork:true",
    "kubernetes.nothing.here:x",
    "NOT kubernetes.audit.requestObject.spec.containers.image:*",
)


def _container(i: int, rng: random.Random) -> dict:
    return {
        "@timestamp": "2026-12-03T10:00:00.000000000Z",
        "message": f"request {i} handled in {rng.randint(1, 900)} ms",
        "log": {"level": rng.choice(["info", "info", "info", "warn", "error"])},
        "data_stream": {"dataset": "kubernetes.container_logs", "namespace": "default"},
        "kubernetes": {
            "namespace": f"team-{i % 7}",
            "pod": {"name": f"web-{i % 40}"},
            "container": {"name": "app"},
            "labels": {"app": "web", "app_kubernetes_io/name": "web"},
        },
    }


def _audit(i: int, rng: random.Random) -> dict:
    return {
        "@timestamp": "2026-12-03T10:00:00.000000000Z",
        "message": f"admin create /api/v1/namespaces/shop/pods -> 201 ({i})",
        "data_stream": {"dataset": "kubernetes.audit_logs", "namespace": "default"},
        "event": {"action": "create", "kind": "event"},
        "kubernetes": {
            "audit": {
                "verb": "create",
                "objectRef": {"resource": "pods", "namespace": "shop", "name": f"p-{i}"},
                "user": {
                    "username": "system:serviceaccount:shop:deployer",
                    "extra": {
                        "authentication.kubernetes.io/pod-name": [f"pod-{i % 50}"],
                        "authentication.kubernetes.io/credential-id": [f"JTI={i}"],
                    },
                },
                "requestObject": {
                    "kind": "Pod",
                    "spec": {
                        "hostNetwork": rng.random() < 0.01,
                        "containers": [
                            {"name": "app", "image": "registry.example/app:1.0"},
                            {"name": "proxy", "image": f"registry.example/sidecar:{i % 3}"},
                        ],
                    },
                },
            }
        },
    }


def _fill(path: Path, docs: int, audit_share: float) -> None:
    rng = random.Random(7)
    batch = []
    for i in range(docs):
        doc = _audit(i, rng) if rng.random() < audit_share else _container(i, rng)
        batch.append((f"d{i}", 1_796_292_000_000_000_000 + i, doc))
    with store.Store.open(path) as db:
        db.add(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--audit-share", type=float, default=0.1)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    path = args.store or Path(f"/tmp/kloghub-search-bench-{args.docs}-{args.audit_share}.db")
    if not path.exists():
        _fill(path, args.docs, args.audit_share)
    with store.Store.open(path) as db:
        print(f"{db.count()} documents in {path}")
        for query in QUERIES:
            sql, params = search.to_sql(search.parse(query), 0)
            best, hits = float("inf"), 0
            for _ in range(5):
                start = time.process_time()
                hits = len(db.select(sql, params, limit=10**9))
                best = min(best, time.process_time() - start)
            print(f"{best * 1000:8.0f} ms  {hits:7d} hits  {query}")


if __name__ == "__main__":
    main()
