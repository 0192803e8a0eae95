"""Test doubles for the sinks: a scripted ``_bulk`` server and a TCP proxy that can be cut.

``BulkServer`` speaks just enough of the Elasticsearch/OpenSearch bulk API (and accepts
template PUTs) for the lifecycle test and for answers the real servers cannot be made to
give on demand (429 with ``Retry-After``, 401): ``create`` with ``_id`` answers 201 or
409, like the real thing, and ``script`` can replace the answer to a whole request or the
status of single items.

``Proxy`` forwards TCP connections to a real server; ``cut()`` refuses new connections and
drops the open ones (the server is unreachable), ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests._hec import serve_app

_PRODUCT = {"X-Elastic-Product": "Elasticsearch"}

RequestScript = Callable[[int, list[tuple[dict[str, Any], Any]]], web.Response | None]
"""(request number from 0, [(action target, doc)]) → a whole-request answer, or None."""
ItemScript = Callable[[dict[str, Any], Any], tuple[int, dict[str, Any]] | None]
"""(action target, doc) → (status, error object) for that item, or None to index it."""


class BulkServer:
    """A minimal ``_bulk`` endpoint with an in-memory store of (index, id) → doc."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Any] = {}
        self.requests: list[dict[str, Any]] = []
        self.request_script: RequestScript | None = None
        self.item_script: ItemScript | None = None
        self.puts: list[tuple[float, str]] = []
        """(time answered, path) of each template or policy PUT."""
        self.put_delay = 0.0
        """Seconds a PUT takes to answer (a slow template installation)."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/_bulk", self._bulk)
        app.router.add_put("/_bulk", self._bulk)
        app.router.add_get("/_cluster/health", self._health)
        app.router.add_put("/{path:_index_template/.*|_component_template/.*}", self._put)
        self._runner, self.port = await serve_app(app, port, ssl_context)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _put(self, request: web.Request) -> web.Response:
        """Templates are accepted (after ``put_delay``); policies stay unknown (no ILM/ISM)."""
        await request.read()
        await asyncio.sleep(self.put_delay)
        self.puts.append((time.monotonic(), request.path))
        return web.json_response({"acknowledged": True}, headers=_PRODUCT)

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "green"}, headers=_PRODUCT)

    async def _bulk(self, request: web.Request) -> web.Response:
        data = await request.read()  # aiohttp undoes Content-Encoding: gzip itself
        lines = [line for line in data.split(b"\n") if line.strip()]
        ops = []
        for action, doc in zip(lines[::2], lines[1::2], strict=True):
            target = json.loads(action)["create"]
            ops.append((target, json.loads(doc)))
        number = len(self.requests)
        self.requests.append({"time": time.monotonic(), "items": len(ops), "ops": ops})
        if self.request_script is not None:
            answer = self.request_script(number, ops)
            if answer is not None:
                answer.headers.update(_PRODUCT)
                return answer
        items = []
        errors = False
        for target, doc in ops:
            key = (target["_index"], target.get("_id", ""))
            forced = self.item_script(target, doc) if self.item_script is not None else None
            if forced is not None:
                status, error = forced
                items.append({"create": {"status": status, "error": error}})
                errors = True
            elif key in self.docs:
                items.append(
                    {
                        "create": {
                            "status": 409,
                            "error": {
                                "type": "version_conflict_engine_exception",
                                "reason": "document already exists",
                            },
                        }
                    }
                )
                errors = True
            else:
                self.docs[key] = doc
                items.append({"create": {"status": 201}})
        return web.json_response({"errors": errors, "items": items}, headers=_PRODUCT)


def error_response(
    status: int, error_type: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A whole-request error answer as Elasticsearch shapes it."""
    body = {"error": {"type": error_type, "reason": f"{error_type} (test)"}, "status": status}
    return web.json_response(body, status=status, headers=headers or {})


class Proxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; can be cut and restored."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every open connection (requests in flight are lost)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
