"""The lifecycle contract, proved for every component that exists.

Each entry of COMPONENTS builds a component and, where it holds work, a way to hand it
work and to check that the work was handed on. Add every new component here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloghub import (
    buffer,
    config,
    core,
    kernels,
    outputs,
    runtime,
    sinks,
    sources,
    store,
    transport,
)
from tests import _hec
from tests.sinks import _fakes
from tests.sinks._support import MemoryDeadLetters


@dataclass
class Harness:
    component: core.Service
    give_work: Callable[[], Awaitable[list[core.Delivery]]] | None = None
    """Hands the running component work; returns a list that fills as the work is settled."""


def _file_output(tmp_path: Path) -> Harness:
    out = outputs.FileOutput(tmp_path / "out.ndjson")

    async def give_work() -> list[core.Delivery]:
        seen: list[core.Delivery] = []
        fin = core.Finalizer(seen.append, count=100)
        for start in range(0, 100, 10):
            batch = core.Batch(
                core.Event("kube.ns.pod.c", i, {"log": f"line {i}"}, fin)
                for i in range(start, start + 10)
            )
            await out.send(batch)
        return seen

    return Harness(out, give_work)


def _stdout_output(_tmp_path: Path) -> Harness:
    return Harness(outputs.FileOutput(None))


def _http_server(_tmp_path: Path) -> Harness:
    return Harness(runtime.ObservabilityServer("127.0.0.1:0", runtime.Readiness()))


def _disk_queue(tmp_path: Path) -> Harness:
    queue = buffer.DiskQueue(tmp_path / "queue", config.QueueConfig(), "lifecycle")
    pushes: list[asyncio.Task[None]] = []

    async def give_work() -> list[core.Delivery]:
        # Pushes still in flight when stop begins: the drain must make them durable.
        seen: list[core.Delivery] = []
        fin = core.Finalizer(seen.append, count=100)
        for start in range(0, 100, 10):
            batch = core.Batch(
                core.Event("kube.ns.pod.c", i, {"log": f"line {i}"}, fin)
                for i in range(start, start + 10)
            )
            pushes.append(asyncio.get_running_loop().create_task(queue.push(batch)))
        await asyncio.sleep(0)
        return seen

    return Harness(queue, give_work)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _forward_output(_tmp_path: Path) -> Harness:
    port = _free_port()
    out = transport.ForwardOutput(
        config.OutputConfig(
            url=f"forward://127.0.0.1:{port}",
            flush_interval=3600,  # only the drain sends: the work really is in hand
            retry=config.RetryConfig(initial_backoff=0.05, max_backoff=0.2),
        )
    )

    async def give_work() -> list[core.Delivery]:
        # A minimal Forward peer that acks every chunk; it stops listening once all is
        # settled (its connection ends when the output closes it).
        seen: list[core.Delivery] = []

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = transport.protocol.StreamDecoder(1 << 20)
            try:
                while data := await reader.read(65536):
                    decoder.feed(data)
                    for value, size in decoder.frames():
                        request = transport.protocol.decode_request(value, size, 1 << 20)
                        if request is not None and request.chunk is not None:
                            writer.write(transport.protocol.encode_ack(request.chunk))
            finally:
                writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", port)

        def settled(status: core.Delivery) -> None:
            seen.append(status)
            server.close()

        fin = core.Finalizer(settled, count=100)
        for start in range(0, 100, 10):
            await out.send(
                core.Batch(
                    core.Event(f"kube.ns.pod.c{i % 3}", i, {"log": f"line {i}"}, fin)
                    for i in range(start, start + 10)
                )
            )
        return seen

    return Harness(out, give_work)


def _forward_server(_tmp_path: Path) -> Harness:
    seen: list[core.Delivery] = []
    fin = core.Finalizer(seen.append, count=1)
    storing = asyncio.Event()

    async def deliver(batch: core.Batch) -> None:
        storing.set()
        await asyncio.sleep(0.2)  # still storing when stop begins
        for event in batch:
            event.finalizer = fin
        batch.settle(core.Delivery.DELIVERED)

    server = transport.ForwardServer("127.0.0.1:0", config.ListenerConfig(), deliver)

    async def give_work() -> list[core.Delivery]:
        # A request whose storage is under way when stop begins: the drain must finish it.
        host, port = server.address
        entry = transport.protocol.pack_entry(transport.protocol.new_packer(), 1, {"log": "x"})
        request = transport.protocol.encode_packed_forward("t", entry, 1, "lifecycle")

        async def client() -> None:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                while await reader.read(65536):
                    pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        asyncio.get_running_loop().create_task(client())
        await storing.wait()
        return seen

    return Harness(server, give_work)


def _log_source(tmp_path: Path) -> Harness:
    """Its work in hand: a CRI ``P`` part waiting for its ``F``, flushed by the drain."""
    pods = tmp_path / "pods" / "ns_pod_0b3c5a4e-1111-2222-3333-444455556666" / "c"
    pods.mkdir(parents=True)
    seen: list[core.Delivery] = []

    async def sink(chunk: core.Chunk) -> None:
        chunk.settle(core.Delivery.DELIVERED)
        if any(r["log"] == "held part" for _, r in kernels.decode_entries(chunk.entries)):
            seen.append(core.Delivery.DELIVERED)

    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(tmp_path / "pods/*/*/*.log")]),
        poll_interval=0.02,
    )
    source = sources.LogSource(src, config.ParsersConfig(), tmp_path / "state", sink)

    async def give_work() -> list[core.Delivery]:
        (pods / "0.log").write_bytes(b"2026-11-27T06:20:43.1Z stdout P held part\n")
        for _ in range(200):
            if source.tailer.files and next(iter(source.tailer.files.values())).pos:
                break
            await asyncio.sleep(0.02)
        return seen

    return Harness(source, give_work)


def _store_sink(tmp_path: Path) -> Harness:
    sink = store.StoreSink(tmp_path / "store.db")

    async def give_work() -> list[core.Delivery]:
        seen: list[core.Delivery] = []
        fin = core.Finalizer(seen.append, count=100)
        for start in range(0, 100, 10):
            batch = core.Batch(
                core.Event(
                    "logs-kubernetes.container_logs-default",
                    i,
                    {"id": f"doc-{i}", "doc": {"@timestamp": "t", "message": f"line {i}"}},
                    fin,
                )
                for i in range(start, start + 10)
            )
            await sink.send(batch)
        return seen

    return Harness(sink, give_work)


def _pump(tmp_path: Path) -> Harness:
    queue = buffer.DiskQueue(tmp_path / "q", config.QueueConfig(), "pump-test")
    return Harness(buffer.Pump(queue, _discard, name="test"))


async def _discard(batch: core.Batch) -> None:
    batch.settle(core.Delivery.DELIVERED)


def _sink_work(
    sink: sinks.Sink, server_start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]
) -> Callable[[], Awaitable[list[core.Delivery]]]:
    """Work for a SIEM sink: its server starts only now (start must not need it), and
    stops once everything was settled."""

    async def give_work() -> list[core.Delivery]:
        stop_server = await server_start()
        seen: list[core.Delivery] = []

        def settled(status: core.Delivery) -> None:
            seen.append(status)
            asyncio.get_running_loop().create_task(stop_server())

        fin = core.Finalizer(settled, count=100)
        for start in range(0, 100, 10):
            await sink.send(
                core.Batch(
                    core.Event(
                        "logs-kubernetes.container_logs-default",
                        i,
                        {"id": f"d{i}", "doc": {"message": f"line {i}"}},
                        fin,
                    )
                    for i in range(start, start + 10)
                )
            )
        return seen

    return give_work


def _bulk_sink(product: str) -> Callable[[Path], Harness]:
    def build(_tmp_path: Path) -> Harness:
        port = _free_port()
        sink = sinks.build(
            config.SinkConfig(
                url=f"{product}+http://127.0.0.1:{port}",
                flush_interval=3600,  # only the drain sends: the work really is in hand
                retry=config.RetryConfig(initial_backoff=0.05, max_backoff=0.2),
            ),
            MemoryDeadLetters(),
        )

        async def serve() -> Callable[[], Awaitable[None]]:
            server = _fakes.BulkServer()
            await server.start(port)
            return server.stop

        return Harness(sink, _sink_work(sink, serve))

    return build


def _splunk_hec_sink(_tmp_path: Path) -> Harness:
    port = _free_port()
    sink = sinks.SplunkHecSink(
        config.SinkConfig(
            url=f"splunk-hec+http://127.0.0.1:{port}",
            token="good-token",
            indexer_ack=True,
            flush_interval=3600,
            retry=config.RetryConfig(initial_backoff=0.05, max_backoff=0.2),
        ),
        MemoryDeadLetters(),
        ack_interval=0.05,
    )

    async def serve() -> Callable[[], Awaitable[None]]:
        server = _hec.HecServer({"good-token": _hec.Token(ack=True)}, ack_delay=0.1)
        await server.start(port)
        return server.stop

    return Harness(sink, _sink_work(sink, serve))


def _dead_letter_queue(tmp_path: Path) -> Harness:
    return Harness(sinks.DeadLetterQueue(tmp_path / "dlq", 1 << 20))


def _pod_watcher(tmp_path: Path) -> Harness:
    from kloghub import enrich
    from tests._kubeapi import KubeAPI, free_port

    # No API server listens there: start must not need it, stop must not wait for it.
    kubeconfig = KubeAPI().kubeconfig(tmp_path / "kubeconfig", port=free_port())
    watcher = enrich.PodWatcher(
        config.EnrichmentConfig(kubeconfig=kubeconfig),
        "node-1",
        enrich.PodCache(),
        state_dir=tmp_path,
        initial_sync_timeout=0,
        retry=config.RetryConfig(initial_backoff=0.05, max_backoff=0.2),
    )
    return Harness(watcher)


COMPONENTS: dict[str, Callable[[Path], Harness]] = {
    "pod-watcher": _pod_watcher,
    "log-source": _log_source,
    "pump": _pump,
    "forward-output": _forward_output,
    "forward-server": _forward_server,
    "disk-queue": _disk_queue,
    "file-output": _file_output,
    "stdout-output": _stdout_output,
    "observability-server": _http_server,
    "elasticsearch-sink": _bulk_sink("elasticsearch"),
    "opensearch-sink": _bulk_sink("opensearch"),
    "splunk-hec-sink": _splunk_hec_sink,
    "dead-letter-queue": _dead_letter_queue,
    "store-sink": _store_sink,
}


HOLDING_WORK = [
    "disk-queue",
    "file-output",
    "forward-output",
    "forward-server",
    "log-source",
    "elasticsearch-sink",
    "opensearch-sink",
    "splunk-hec-sink",
    "store-sink",
]
"""The components that accept work, for the drain test."""


@pytest.fixture(params=sorted(COMPONENTS))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return COMPONENTS[request.param](tmp_path)


@pytest.fixture(params=HOLDING_WORK)
def working_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    built = COMPONENTS[request.param](tmp_path)
    assert built.give_work is not None
    return built


async def test_component_starts_then_stops(harness: Harness):
    """If this failed, a daemon could not shut this component down cleanly."""
    await harness.component.start()
    assert harness.component.state is core.State.RUNNING
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_stop_before_start_is_harmless(harness: Harness):
    """If this failed, a daemon whose start failed half-way would crash while stopping."""
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_stop_twice_is_harmless(harness: Harness):
    """If this failed, a second SIGTERM during shutdown would raise."""
    await harness.component.start()
    await harness.component.stop(5)
    await harness.component.stop(5)
    assert harness.component.state is core.State.STOPPED


async def test_component_cannot_start_twice(harness: Harness):
    """If this failed, a component could open its resources twice and leak the first set."""
    await harness.component.start()
    try:
        with pytest.raises(RuntimeError):
            await harness.component.start()
    finally:
        await harness.component.stop(5)


async def test_component_stop_drains_work_in_hand(working_harness: Harness):
    """If this failed, SIGTERM would lose data that the component had accepted."""
    harness = working_harness
    assert harness.give_work is not None
    await harness.component.start()
    settled = await harness.give_work()
    await harness.component.stop(10)
    assert settled == [core.Delivery.DELIVERED]


async def test_service_stop_cuts_a_drain_that_outlives_its_timeout():
    """If this failed, a stuck sink would keep a pod in Terminating past its grace period."""

    class Stuck(core.Service):
        name = "stuck"
        closed = False

        async def _on_drain(self) -> None:
            await asyncio.sleep(3600)

        async def _on_close(self) -> None:
            self.closed = True

    stuck = Stuck()
    await stuck.start()
    await asyncio.wait_for(stuck.stop(0.05), 5)
    assert stuck.closed
    assert stuck.state is core.State.STOPPED
