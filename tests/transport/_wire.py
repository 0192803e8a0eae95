"""A hand-driven Forward protocol client for tests: raw bytes in, raw answers out."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import msgpack

from kloghub import transport

protocol = transport.protocol


class RawClient:
    """One connection to a server; sends bytes exactly as given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def connect(
        cls, server: transport.ForwardServer, context: ssl.SSLContext | None = None
    ) -> RawClient:
        host, port = server.address
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = 5.0) -> Any:
        """The next msgpack value from the server; EOFError if it closed the connection."""
        async with asyncio.timeout(timeout):
            while True:
                for value in self.unpacker:
                    return value
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.unpacker.feed(data)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (answers are discarded)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except (ConnectionError, OSError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    async def handshake(self, shared_key: str, hostname: str = "agent-1", **auth: str) -> Any:
        """Run the client side of HELO/PING/PONG; returns the PONG message."""
        helo = protocol.parse_helo(await self.answer())
        salt = "0123456789abcdef"
        digest = protocol.shared_key_digest(salt, hostname, helo.nonce, shared_key)
        username = auth.get("username", "")
        password = ""
        if helo.auth_salt:
            password = protocol.password_digest(helo.auth_salt, username, auth.get("password", ""))
        await self.send(protocol.encode_ping(hostname, salt, digest, username, password))
        pong = protocol.parse_pong(await self.answer())
        if pong.ok:
            expected = protocol.shared_key_digest(salt, pong.hostname, helo.nonce, shared_key)
            assert pong.digest == expected, "server digest does not prove the shared key"
        return pong

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def chunk_request(tag: str, count: int, chunk: str, start_ns: int = 0) -> bytes:
    """A PackedForward request with ``count`` events and the ``chunk`` option."""
    packer = protocol.new_packer()
    entries = b"".join(
        protocol.pack_entry(packer, start_ns + i, {"log": f"{chunk}-{i}"}) for i in range(count)
    )
    return protocol.encode_packed_forward(tag, entries, count, chunk)


async def request_is_acked(client: RawClient, chunk: str = "good", count: int = 1) -> bool:
    await client.send(chunk_request("ok.tag", count, chunk))
    return await client.answer() == {"ack": chunk}
