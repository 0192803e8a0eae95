"""A Forward sender that bursts: ``python -m tests.collector._burst PORT RECORDS MESSAGE_BYTES``.

Builds ``RECORDS`` distinct records (``log`` = ``seq=<n> `` padded to ``MESSAGE_BYTES``,
the pod's ``kubernetes`` map, ``kloghub`` provenance: the agent's layout) in
``PackedForward`` requests of 500 entries with a ``chunk`` id, and sends them over four
connections keeping up to 16 requests unacknowledged on each: as fast as the collector
reads. Exits 0 once every chunk was acknowledged, 1 if a connection was lost first (it
does not resend: a test that sees 1 knows the collector refused or dropped it).
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time

import msgpack

PER_CHUNK = 500
CONNECTIONS = 4
IN_FLIGHT = 16


def chunks(records: int, size: int) -> list[bytes]:
    packer = msgpack.Packer(use_bin_type=True)
    k8s = {
        "pod_name": "burst-0",
        "namespace_name": "load",
        "pod_id": "0b3c5a4e-1111-2222-3333-444455556666",
        "labels": {"app": "burst"},
        "annotations": {},
        "host": "node-1",
        "container_name": "app",
        "docker_id": "ab" * 32,
        "container_image": "registry.example/burst:1",
    }
    path = "/var/log/pods/load_burst-0_0b3c5a4e-1111-2222-3333-444455556666/app/0.log"
    now = time.time_ns()
    frames = []
    for first in range(0, records, PER_CHUNK):
        entries = []
        for n in range(first, min(first + PER_CHUNK, records)):
            ns = now + n
            when = msgpack.ExtType(0, struct.pack(">II", ns // 10**9, ns % 10**9))
            text = f"seq={n} ".ljust(size, "x")
            record = {
                "log": text,
                "stream": "stdout",
                "kubernetes": k8s,
                "kloghub": {"file": path, "file_id": "1:1", "offset": (n + 1) * (size + 40)},
            }
            entries.append(packer.pack([when, record]))
        option = {"chunk": f"burst-{first}", "size": len(entries)}
        frames.append(packer.pack(["kube.load.burst-0.app", b"".join(entries), option]))
    return frames


async def send(port: int, frames: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    slots = asyncio.Semaphore(IN_FLIGHT)
    left = len(frames)

    async def acks() -> None:
        nonlocal left
        unpacker = msgpack.Unpacker(raw=False)
        while left:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the collector closed the connection")
            unpacker.feed(data)
            for _ in unpacker:
                left -= 1
                slots.release()

    task = asyncio.create_task(acks())
    for frame in frames:
        await slots.acquire()
        writer.write(frame)
        await writer.drain()
    await task
    writer.close()


async def main(port: int, records: int, size: int) -> None:
    frames = chunks(records, size)
    print(sum(len(f) for f in frames), flush=True)  # bytes on the wire, for the test
    await asyncio.gather(*(send(port, frames[i::CONNECTIONS]) for i in range(CONNECTIONS)))


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
    except (ConnectionError, OSError) as exc:
        print(f"burst failed: {exc}", file=sys.stderr)
        sys.exit(1)
