"""Collector normalization: events → ECS documents → JSON, events/s on one core.

Usage:
    python bench/normalize_bench.py [--events 1000000] [--json-share 0.35] [--preserve]
                                    [--origin none|node]

Events are what the collector's Forward listener hands over: records in Fluent Bit's
kubernetes layout with kloghub's block, freshly decoded from msgpack (each record has its
own dicts, as on the wire), in runs of 250 from each of 40 containers (20 pods, 6 labels
and 4 annotations each: a Forward chunk carries one tag); messages of ~200 bytes
(log-normal), 35% of them JSON application logs. Decoding (msgpack) is timed apart;
"normalize" is ``Normalizer.__call__``; "serialize" is ``orjson.dumps`` of the bulk action
line and the document, as the sinks do. The GC runs with the daemons' settings
(``runtime.tune_gc``). ``--origin node`` normalizes as received from the authenticated node
``node-1`` (the collector's provenance: ``kloghub.sender``, host from the identity, scoped
ids; the records claim node-0..2, so two thirds take the forged-host path); ``none`` as
records read locally. Phases are timed in process CPU time (the machine is shared), in
one process, so the figures are per core.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time

import msgpack
import orjson

from kloghub import config, core, normalize, runtime

WORDS = [
    *("request", "handled", "user", "session", "cache", "miss", "hit", "upstream", "timeout"),
    *("retry", "connection", "pool", "database", "query", "slow", "commit", "rollback"),
    *("token", "refresh", "order", "payment", "shipped", "queue", "worker", "GET", "POST"),
    *("/api/v1/orders", "/healthz", "status=200", "status=500", "latency_ms=12"),
]
CHUNK = 10_000
RUN = 250
TAG = "kube.team-0.shop-00-7c5ddbdf54-x2x7m.app"


def _message(rng: random.Random) -> str:
    size = max(20, int(math.exp(rng.gauss(math.log(200), 0.6))))
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _pod(rng: random.Random, p: int, c: str) -> dict[str, object]:
    name = f"shop-{p:02d}"
    return {
        "pod_name": f"{name}-7c5ddbdf54-x2x7m",
        "namespace_name": f"team-{p % 5}",
        "pod_id": f"0f0e{p:04d}-aaaa-bbbb-cccc-0123456789ab",
        "labels": {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/version": "v1.2.3",
            "app.kubernetes.io/part-of": "shop",
            "pod-template-hash": "7c5ddbdf54",
            "tier": "backend",
            "team": f"team-{p % 5}",
        },
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9090",
            "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z",
            "checksum/config": f"{rng.getrandbits(256):064x}",
        },
        "host": f"node-{p % 3}",
        "container_name": c,
        "docker_id": f"{rng.getrandbits(256):064x}",
        "container_image": f"registry.local/{name}:{c}-1.2.3",
        "container_hash": f"registry.local/x@sha256:{rng.getrandbits(256):064x}",
    }


def _packed_chunk(rng: random.Random, json_share: float, start: int) -> bytes:
    pods = [_pod(rng, p, c) for p in range(20) for c in ("app", "sidecar")]
    packer = msgpack.Packer(use_bin_type=True)
    out = []
    for i in range(CHUNK):
        n = (i // RUN) % len(pods)
        k8s = pods[n]
        text = _message(rng)
        if rng.random() < json_share:
            text = orjson.dumps(
                {
                    "level": rng.choice(["info", "warn", "error"]),
                    "msg": text,
                    "trace_id": f"{rng.getrandbits(128):032x}",
                    "user": {"id": rng.randrange(10_000)},
                }
            ).decode()
        record = {
            "log": text,
            "stream": "stdout",
            "kubernetes": k8s,
            "kloghub": {
                "file": f"/var/log/pods/x_{k8s['pod_name']}_y/{k8s['container_name']}/0.log",
                "file_id": f"{n:016x}",
                "offset": (start + i) * 220,
            },
        }
        out.append(packer.pack([1_700_000_000_000_000_000 + start + i, record]))
    return b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json-share", type=float, default=0.35)
    parser.add_argument("--preserve", action="store_true", help="normalizer.preserve_original")
    parser.add_argument("--origin", choices=("none", "node"), default="none")
    args = parser.parse_args()
    rng = random.Random(7)
    chunks = [_packed_chunk(rng, args.json_share, n * CHUNK) for n in range(4)]
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=args.preserve))
    origin = None
    if args.origin == "node":
        origin = core.Origin(
            "password", "node-1", "node-1", frozenset({"node"}), claimed_host="node-1"
        )
    dumps = orjson.dumps
    runtime.tune_gc()
    decode_s = normalize_s = serialize_s = 0.0
    done = out_bytes = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    while done < args.events:
        blob = chunks[(done // CHUNK) % len(chunks)]
        t0 = time.process_time()
        gc.disable()  # as the Forward listener decodes
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(blob)
        events = [core.Event(TAG, when, record) for when, record in unpacker]
        gc.enable()
        t1 = time.process_time()
        docs = [normalizer(event, origin) for event in events]
        t2 = time.process_time()
        for doc in docs:
            out_bytes += len(dumps({"create": {"_index": doc.tag, "_id": doc.record["id"]}}))
            out_bytes += len(dumps(doc.record["doc"]))
        t3 = time.process_time()
        decode_s += t1 - t0
        normalize_s += t2 - t1
        serialize_s += t3 - t2
        done += len(events)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    both = normalize_s + serialize_s
    print(
        f"events: {done:,} (JSON share {args.json_share:.0%}, preserve={args.preserve}, "
        f"origin={args.origin})"
    )
    print(f"  decode (msgpack)       {done / decode_s:>12,.0f} events/s")
    print(f"  normalize              {done / normalize_s:>12,.0f} events/s")
    print(f"  serialize (orjson)     {done / serialize_s:>12,.0f} events/s")
    print(f"  normalize + serialize  {done / both:>12,.0f} events/s per core")
    print(f"  all three              {done / (decode_s + both):>12,.0f} events/s")
    print(f"  output {out_bytes / done:,.0f} bytes/event; wall {wall:.1f} s, CPU {cpu:.1f} s")


if __name__ == "__main__":
    main()
