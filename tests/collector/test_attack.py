"""The collector played against by an authenticated node that lies, and by a stranger:
forged id pre-emption, a forged audit tag, a forged host, a client that skips the handshake;
against the embedded store and a real OpenSearch (the harness's)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kloghub import collector, config, search
from tests.transport._wire import RawClient, chunk_request, protocol

KEY = "attack-test-key"
USERS = {
    "worker-1": ("pw-1", ["node"]),
    "worker-2": ("pw-2", ["node"]),
    "cp-1": ("pw-cp", ["node", "control-plane"]),
}
NS = 1_764_000_000_000_000_000
AUDIT = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "stage": "ResponseComplete",
    "verb": "delete",
    "requestURI": "/api/v1/namespaces/prod/secrets/db",
    "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db"},
    "stageTimestamp": "2026-11-27T06:20:43.000001Z",
    "requestReceivedTimestamp": "2026-11-27T06:20:43.000001Z",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Address:
    """What RawClient.connect needs of a server."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)


class Collector:
    def __init__(self, port: int, backend: search.Backend) -> None:
        self.port = port
        self.backend = backend

    async def node(self, name: str) -> RawClient:
        """A connection that completed the handshake as user ``name`` (claiming ``name``)."""
        client = await RawClient.connect(_Address(self.port))  # type: ignore[arg-type]
        pong = await client.handshake(KEY, name, username=name, password=USERS[name][0])
        assert pong.ok, pong.reason
        return client

    async def docs(self, query: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Waits until ``query`` matches at least ``count`` documents; returns them all."""
        where = search.plan(search.Request(query=query, default_since=None, limit=100)).where
        deadline = time.monotonic() + timeout
        while True:
            hits = await search.fetch(
                self.backend, where, now_ns=time.time_ns(), newest_first=False, limit=100
            )
            if len(hits) >= count or time.monotonic() > deadline:
                return [hit.doc for hit in hits]
            await asyncio.sleep(0.2)


@pytest.fixture(params=["store", "opensearch"])
async def target(request, tmp_path: Path) -> AsyncIterator[Collector]:
    """A collector at level run with three node users, writing to the embedded store or to
    the harness's OpenSearch (its own data stream namespace)."""
    namespace = f"attack{os.getpid()}{time.monotonic_ns() % 10**8}"
    if request.param == "store":
        sink = f"store:{tmp_path / 'store.db'}"
    else:
        sink = "opensearch+" + request.getfixturevalue("opensearch_url")
    port = _free_port()
    users = [
        {"username": name, "password": password, "roles": roles}
        for name, (password, roles) in USERS.items()
    ]
    settings = config.load(
        None,
        {
            "level": "run",
            "collector": {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(tmp_path / "collector"),
                "metrics_addr": "127.0.0.1:0",
                "normalizer": {"namespace": namespace},
                "listener": {"shared_key": KEY, "users": users},
                "sinks": [{"url": sink, "flush_interval": "100ms"}],
            },
        },
    )
    daemon = collector.build(settings.collector)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(30):
        while not daemon.readiness.started:
            assert not task.done(), "the collector stopped while starting"
            await asyncio.sleep(0.05)
    backend = search.open_backend(sink)
    try:
        yield Collector(port, backend)
    finally:
        daemon.request_stop("test done")
        await task
        await backend.close()


def _container_request(chunk: str, file_id: str, offset: int, log: str, host: str) -> bytes:
    record = {
        "log": log,
        "stream": "stdout",
        "kubernetes": {
            "pod_name": "payments-0",
            "namespace_name": "prod",
            "container_name": "api",
            "host": host,
        },
        "kloghub": {"file": "/var/log/pods/prod_payments-0/api/0.log", "file_id": file_id,
                    "offset": offset, "host": host},
    }  # fmt: skip
    entry = protocol.pack_entry(protocol.new_packer(), NS, record)
    return protocol.encode_packed_forward("kube.prod.payments-0.api", entry, 1, chunk)


def _audit_request(chunk: str, file_id: str, user: str, host: str) -> bytes:
    line = orjson.dumps({**AUDIT, "auditID": chunk, "user": {"username": user}}).decode()
    record = {"log": line, "kloghub": {"file_id": file_id, "offset": 1000, "host": host}}
    entry = protocol.pack_entry(protocol.new_packer(), NS, record)
    return protocol.encode_packed_forward("audit", entry, 1, chunk)


async def _send(client: RawClient, request: bytes, chunk: str) -> None:
    await client.send(request)
    assert await client.answer() == {"ack": chunk}


async def test_a_forged_line_with_another_nodes_next_id_does_not_suppress_the_real_one(target):
    """If this failed, one node could erase another node's evidence by writing its next
    document id first (the real line would be a silent 409 or an ignored insert)."""
    file_id = f"victim-{time.monotonic_ns()}"
    attacker = await target.node("worker-2")
    victim = await target.node("worker-1")
    await _send(
        attacker, _container_request("x1", file_id, 4096, "nothing happened", "worker-1"), "x1"
    )
    await _send(
        victim, _container_request("v1", file_id, 4096, "db dump by mallory", "worker-1"), "v1"
    )
    docs = await target.docs(f"kloghub.file_id:{file_id}", 2)
    by_message = {d["message"]: d for d in docs}
    assert set(by_message) == {"nothing happened", "db dump by mallory"}
    real, forged = by_message["db dump by mallory"], by_message["nothing happened"]
    assert real["host"]["name"] == "worker-1" and "claimed_host" not in real["kloghub"]
    assert forged["host"]["name"] == "worker-2"
    assert forged["kloghub"]["claimed_host"] == "worker-1"
    assert forged["kloghub"]["sender"] == {"method": "password", "identity": "worker-2"}
    await attacker.close()
    await victim.close()


async def test_a_forged_audit_event_from_a_worker_is_no_audit_document(target):
    """If this failed, any node could invent Kubernetes audit events (or blame a user)."""
    mark = f"m{time.monotonic_ns()}"
    worker = await target.node("worker-2")
    control_plane = await target.node("cp-1")
    await _send(
        worker,
        _audit_request(f"{mark}-forged", f"a-{mark}", f"framed-{mark}", "cp-1"),
        f"{mark}-forged",
    )
    await _send(
        control_plane,
        _audit_request(f"{mark}-real", f"b-{mark}", f"real-{mark}", "cp-1"),
        f"{mark}-real",
    )
    audit = await target.docs(f"dataset:kubernetes.audit_logs user:real-{mark}", 1)
    assert len(audit) == 1 and audit[0]["host"]["name"] == "cp-1"
    flagged = await target.docs(f'kloghub.flags:policy_violation "framed-{mark}"', 1)
    assert len(flagged) == 1
    assert flagged[0]["data_stream"]["dataset"] == "kubernetes.node_logs"
    assert flagged[0]["host"]["name"] == "worker-2"
    assert await target.docs(f"user:framed-{mark}", 1, timeout=1.0) == []
    await worker.close()
    await control_plane.close()


async def test_a_client_that_skips_the_handshake_stores_nothing(target):
    """If this failed, a stranger on the network could write into the record at level run."""
    mark = f"s{time.monotonic_ns()}"
    stranger = await RawClient.connect(_Address(target.port))  # type: ignore[arg-type]
    await stranger.send(chunk_request("kube.prod.x.y", 1, mark))
    assert await stranger.closed_by_server()
    await stranger.close()
    honest = await target.node("worker-1")
    await _send(honest, chunk_request("kube.prod.x.y", 1, f"{mark}ok"), f"{mark}ok")
    assert len(await target.docs(f"{mark}ok-0", 1)) == 1
    assert await target.docs(f"{mark}-0", 1, timeout=1.0) == []
    await honest.close()
