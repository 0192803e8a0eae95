"""Fixtures of the sink tests."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ._fakes import BulkServer


@pytest_asyncio.fixture
async def server() -> AsyncIterator[BulkServer]:
    """A scripted ``_bulk`` server, stopped afterwards."""
    fake = BulkServer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and its key (openssl CLI)."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return directory / "server.crt", directory / "server.key"
