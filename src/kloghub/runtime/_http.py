"""The daemon's own HTTP endpoints: /metrics (Prometheus), /healthz and /readyz.

They are served by prometheus-client's own WSGI exposition (``make_wsgi_app`` on the
standard library's threading WSGI server, what its ``start_http_server`` runs), not by
aiohttp: a node agent that ships over Forward never needs an HTTP stack, and aiohttp costs
it ~12 MiB of resident memory and a fifth of a second at start (bench RESULTS.md,
"agent"). The event loop accepts connections (a reader on the listening socket: no
polling thread, no wake-up while idle); each request is then answered in a thread of its
own, so a slow client never holds the loop. Readiness checks run on that thread; they are
plain attribute reads (``Readiness.add``'s contract).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import exposition

from kloghub.core import Service, Supervisor
from kloghub.runtime import _metrics

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

__all__ = ["ObservabilityServer", "Readiness"]

_log = logging.getLogger("kloghub.http")

Check = Callable[[], str | None]
"""A readiness check: ``None`` when ready, else the reason it is not. It runs on the HTTP
server's thread: it reads state, it does not await or change it."""

_REQUEST_TIMEOUT_S = 10.0
"""A client that connects and sends nothing holds its own thread this long, no more."""
_JSON = ("Content-Type", "application/json")
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


class Readiness:
    """Named readiness checks; the daemon is ready when it started and every check passes."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self.started = False

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def problems(self) -> dict[str, str]:
        found = {}
        if not self.started:
            found["daemon"] = "starting"
        for name, check in list(self._checks.items()):
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a failing check means "not ready"
                reason = f"check failed: {exc!r}"
            if reason is not None:
                found[name] = reason
        return found


class _QuietHandler(WSGIRequestHandler):
    """No access log (the daemon logs JSON lines only); a bounded wait for the request."""

    timeout = _REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class ObservabilityServer(Service):
    """Serves /metrics, /healthz and /readyz on ``addr`` (HOST:PORT; port 0 picks one)."""

    name = "http"

    def __init__(
        self, addr: str, readiness: Readiness, supervisor: Supervisor | None = None
    ) -> None:
        super().__init__(supervisor)
        host, _, port = addr.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self.readiness = readiness
        self._metrics_app = exposition.make_wsgi_app(_metrics.REGISTRY)
        self._server: exposition.ThreadingWSGIServer | None = None
        self.bound_port: int | None = None

    async def _on_start(self) -> None:
        server = self._server = await asyncio.to_thread(self._bind)
        self.bound_port = server.server_address[1]
        server.timeout = 0  # handle_request runs when the socket is readable: never waits
        asyncio.get_running_loop().add_reader(server.fileno(), server.handle_request)
        _log.info("serving metrics and health", extra={"host": self._host, "port": self.bound_port})

    def _bind(self) -> exposition.ThreadingWSGIServer:
        family = socket.getaddrinfo(
            self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0][0]

        class Server(exposition.ThreadingWSGIServer):
            address_family = family

        return make_server(self._host, self._port, self._app, Server, _QuietHandler)

    async def _on_close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            asyncio.get_running_loop().remove_reader(server.fileno())
            server.server_close()  # requests being answered finish in their own threads

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [_TEXT])  # a new list: wsgiref adds to it
            return [b"ok\n"]
        if path == "/readyz":
            problems = self.readiness.problems()
            _metrics.READY.set(0 if problems else 1)
            if problems:
                start_response("503 Service Unavailable", [_JSON])
                return [orjson.dumps({"ready": False, "problems": problems})]
            start_response("200 OK", [_JSON])
            return [b'{"ready":true}']
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        start_response("404 Not Found", [_TEXT])
        return [b"not found\n"]
