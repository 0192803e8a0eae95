"""Fixtures of the transport tests: a recording ``deliver``, servers, certificates."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloghub import config, core, transport


class Store:
    """A fake durable queue: records the batches it was given; can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[core.Batch] = []
        self.fail = False
        self.delay = 0.0
        self.calls = 0
        self.changed = asyncio.Event()

    async def __call__(self, batch: core.Batch) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError("disk full")
        self.batches.append(batch)
        self.changed.set()

    @property
    def events(self) -> list[core.Event]:
        return [event for batch in self.batches for event in batch]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[core.Event]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.events


StartServer = Callable[..., Awaitable[transport.ForwardServer]]


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def start_server(store: Store) -> AsyncIterator[StartServer]:
    """Starts ForwardServers on a free loopback port; all are stopped at the end."""
    servers: list[transport.ForwardServer] = []

    async def start(
        listen: str = "127.0.0.1:0", deliver: transport.Deliver | None = None, **settings: object
    ) -> transport.ForwardServer:
        server = transport.ForwardServer(
            listen, config.ListenerConfig(**settings), deliver or store
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(5)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_cert: Path
    other_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip


def _make_cert(directory: Path, name: str, ca: str, san: str | None) -> None:
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    extra: list[str] = []
    if san is not None:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra,
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a
    client certificate from another CA (made with the openssl CLI)."""
    directory = tmp_path_factory.mktemp("certs")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _make_cert(directory, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _make_cert(directory, "client", "ca", None)
    _make_cert(directory, "intruder", "other-ca", None)
    return Certs(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.crt",
        other_cert=directory / "intruder.crt",
        other_key=directory / "intruder.key",
    )
