"""The daemon's own HTTP endpoints: /metrics (Prometheus), /healthz and /readyz."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kloghub.core import Service, Supervisor
from kloghub.runtime import _metrics

__all__ = ["ObservabilityServer", "Readiness"]

_log = logging.getLogger("kloghub.http")

Check = Callable[[], str | None]
"""A readiness check: ``None`` when ready, else the reason it is not."""


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
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a failing check means "not ready"
                reason = f"check failed: {exc!r}"
            if reason is not None:
                found[name] = reason
        return found


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
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def _on_start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        _log.info("serving metrics and health", extra={"host": self._host, "port": self.bound_port})

    async def _on_close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(_metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = self.readiness.problems()
        _metrics.READY.set(0 if problems else 1)
        if problems:
            return web.Response(
                status=503,
                body=orjson.dumps({"ready": False, "problems": problems}),
                content_type="application/json",
            )
        return web.Response(body=b'{"ready":true}', content_type="application/json")
