"""Generate the CRI bench file: what the kubelet's runtime writes for a busy container.

Usage:
    python bench/gen_cri.py [--out PATH] [--size 200MiB] [--seed 42] [--format cri|docker]

Shape (deterministic for a given seed): message sizes log-normal with a median of ~200
bytes; 35% of the messages are JSON application logs, the rest text; 2.5% of the lines
are parts of ``P`` groups (long messages split by the runtime into ``--part-bytes`` pieces,
2 to 5 parts, the last one ``F``); ~80% stdout / 20% stderr; RFC3339Nano timestamps as
containerd writes them (trailing zeros trimmed), ~10k lines per second. ``--format docker``
writes the same content as docker json-file lines (partials = ``log`` without ``\n``).
"""

from __future__ import annotations

import argparse
import math
import random
import re
import time
from pathlib import Path

import orjson

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6}
_UNITS |= {"mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}

_VOCABULARY = """
request handled user session cache miss hit upstream timeout retry connection pool database
query slow commit rollback token refresh order payment shipped queue worker started stopped
healthy unhealthy ready pod node volume mounted config reloaded tls handshake failed accepted
rejected GET POST PUT DELETE /api/v1/orders /healthz /metrics status=200 status=404
status=500 latency_ms bytes=512 id=7f3a9c tenant=acme
"""
WORDS = tuple(_VOCABULARY.split())
LEVELS = ("debug", "info", "info", "info", "warn", "error")


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def rfc3339nano(ns: int, cache: dict[int, str]) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: the fraction loses its trailing zeros."""
    sec, frac = divmod(ns, 10**9)
    prefix = cache.get(sec)
    if prefix is None:
        cache.clear()
        prefix = cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac == 0:
        return prefix + "Z"
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


def text_message(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def json_message(rng: random.Random, size: int, ts: str) -> str:
    head = {
        "level": rng.choice(LEVELS),
        "ts": ts,
        "logger": "app.handler",
        "msg": "",
        "request_id": f"{rng.getrandbits(64):016x}",
        "duration_ms": rng.randint(0, 5000),
    }
    overhead = len(orjson.dumps(head))
    head["msg"] = text_message(rng, max(8, size - overhead))
    return orjson.dumps(head).decode()


def render(fmt: str, ts: str, stream: str, partial: bool, message: str) -> bytes:
    if fmt == "docker":
        log = message if partial else message + "\n"
        return orjson.dumps({"log": log, "stream": stream, "time": ts}) + b"\n"
    return f"{ts} {stream} {'P' if partial else 'F'} {message}\n".encode()


def generate(out: Path, size: int, seed: int, part_bytes: int, fmt: str) -> tuple[int, int]:
    rng = random.Random(seed)
    now = 1_714_564_800 * 10**9  # 2024-05-01T12:00:00Z
    cache: dict[int, str] = {}
    written = 0
    lines = 0
    # A P group has 2..5 lines (mean 3.5): start one for this share of the messages so
    # that 2.5% of all lines are in groups.
    group_share = 0.025 / (3.5 - 0.025 * 2.5)
    mu = math.log(200)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        buf: list[bytes] = []
        while written < size:
            now += int(rng.expovariate(1 / 100_000)) + 1
            ts = rfc3339nano(now, cache)
            stream = "stdout" if rng.random() < 0.8 else "stderr"
            if rng.random() < group_share:
                parts = rng.randint(2, 5)
                body = text_message(rng, part_bytes * (parts - 1) + rng.randint(1, part_bytes))
                pieces = [body[i : i + part_bytes] for i in range(0, len(body), part_bytes)]
                for index, piece in enumerate(pieces):
                    buf.append(render(fmt, ts, stream, index < len(pieces) - 1, piece))
            else:
                msg_size = max(10, min(8000, int(rng.lognormvariate(mu, 0.6))))
                if rng.random() < 0.35:
                    msg = json_message(rng, msg_size, ts)
                else:
                    msg = text_message(rng, msg_size)
                buf.append(render(fmt, ts, stream, partial=False, message=msg))
            if len(buf) >= 4096:
                data = b"".join(buf)
                fh.write(data)
                written += len(data)
                lines += len(buf)
                buf.clear()
        data = b"".join(buf)
        fh.write(data)
        written += len(data)
        lines += len(buf)
    return written, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/kloghub-bench/cri.log"))
    parser.add_argument("--size", type=parse_size, default=200 * 2**20, help="e.g. 50MiB")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--part-bytes", type=int, default=1024, help="size of a P part")
    parser.add_argument(
        "--format", choices=["cri", "docker"], default="cri", help="docker: json-file lines"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    written, lines = generate(args.out, args.size, args.seed, args.part_bytes, args.format)
    took = time.perf_counter() - started
    print(f"{args.out}: {written / 2**20:.1f} MiB, {lines} lines ({took:.1f} s)")


if __name__ == "__main__":
    main()
