"""The collector's audit webhook input: the API server's ``--audit-webhook-config-file``
backend posts ``audit.k8s.io/v1`` ``EventList`` batches here.

- **Who**: mutual TLS only; a client certificate signed by ``client_ca_file`` (checked in
  the handshake: a peer without one never gets to HTTP) whose Organization (O) names one
  of ``allowed_roles``, else ``403`` before the body is read. The certificate's common
  name is the sender's identity (``kloghub.sender``, ``host.name``), as for the Forward
  listener's certificates.
- **What**: ``POST`` with at most ``max_body_bytes`` (``413`` above, from the declared
  length before reading); a JSON object ``{"kind": "EventList", "items": [...]}`` (``400``
  otherwise). Each item becomes the record an agent makes of one line of a tailed audit
  log (tag ``audit``, the event's JSON as ``log``, with the ``kind`` and ``apiVersion``
  that a list's items leave to the list), so the normalizer treats both alike;
  an item that is not an event becomes a flagged ``pipeline_error`` document there.
- **When acknowledged**: ``200`` only after ``deliver`` returned, i.e. the documents are
  durable in every sink's queue. While stopping, or when storing fails, ``503``: the API
  server keeps the batch and retries it. At most ``max_concurrent`` batches are stored at
  once; the others wait, with the API server's own timeout as the bound.

Every refusal is counted in ``kloghub_audit_webhook_refused_total`` by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

import orjson
from aiohttp import web

from kloghub import config, core, parse
from kloghub.runtime import metrics
from kloghub.transport import _auth
from kloghub.transport._server import Deliver, _split_hostport

__all__ = ["AuditWebhook"]

_log = logging.getLogger("kloghub.transport.webhook")

_TAG = "audit"


def _ssl_context(cfg: config.AuditWebhookConfig) -> ssl.SSLContext:
    assert cfg.cert_file is not None and cfg.key_file is not None
    assert cfg.client_ca_file is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
        context.load_verify_locations(cafile=cfg.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise core.ConfigError([f"audit_webhook: cannot load certificates: {exc}"]) from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _time_ns(item: Any) -> int | None:
    """The stage's time of an audit event (what the normalizer takes too)."""
    if type(item) is not dict:
        return None
    for key in ("stageTimestamp", "requestReceivedTimestamp"):
        value = item.get(key)
        if type(value) is str:
            parsed = parse.parse_rfc3339(value.encode())
            if parsed is not None:
                return parsed
    return None


class _RefusedError(Exception):
    """A request answered with an error status, counted under ``reason``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class AuditWebhook(core.Service):
    """HTTPS endpoint for ``EventList`` batches; stores each through ``deliver``."""

    def __init__(
        self,
        cfg: config.AuditWebhookConfig,
        deliver: Deliver,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.name = f"audit-webhook:{cfg.listen}"
        self._cfg = cfg
        self._host, self._port = _split_hostport(cfg.listen)
        self._deliver = deliver
        self._roles = frozenset(cfg.allowed_roles)
        self._limit = int(cfg.max_body_bytes)
        self._slots = asyncio.Semaphore(cfg.max_concurrent)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._draining = False
        self._received = metrics.RECORDS_RECEIVED.labels(input="audit_webhook")

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): useful with port 0."""
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        if not sockets:
            raise RuntimeError(f"{self.name} is not listening")
        host, port = sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _on_start(self) -> None:
        context = _ssl_context(self._cfg)
        app = web.Application(client_max_size=self._limit)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port, ssl_context=context)
        await self._site.start()
        host, port = self.address
        _log.info(
            "audit webhook listener started",
            extra={"addr": f"{host}:{port}", "allowed_roles": sorted(self._roles)},
        )

    async def _on_drain(self) -> None:
        self._draining = True
        # Batches being stored finish; new ones get 503 (the API server retries them).
        for _ in range(self._cfg.max_concurrent):
            await self._slots.acquire()

    async def _on_close(self) -> None:
        self._draining = True
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
        self._runner = self._site = None

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            origin = self._admit(request)
            events = self._events(*await self._body(request))
            async with self._slots:
                await self._store(events, origin)
        except _RefusedError as refused:
            metrics.AUDIT_WEBHOOK_REFUSED.labels(reason=refused.reason).inc()
            return web.json_response({"error": str(refused)}, status=refused.status)
        self._received.inc(len(events))
        return web.json_response({})

    def _admit(self, request: web.Request) -> core.Origin:
        """The sender, when it may send audit events (checked before the body is read)."""
        if request.method != "POST":
            raise _RefusedError(405, "method", "only POST of an audit EventList is accepted")
        transport = request.transport
        identity = _auth.certificate_identity(
            transport.get_extra_info("peercert") if transport is not None else None
        )
        if identity is None or self._roles.isdisjoint(identity[1]):
            raise _RefusedError(
                403,
                "role",
                "the client certificate carries none of the roles allowed to send audit events",
            )
        if request.content_length is not None and request.content_length > self._limit:
            raise _RefusedError(413, "too_large", f"the batch is over {self._limit} bytes")
        if self._draining:
            raise _RefusedError(503, "stopping", "the collector is stopping; retry")
        peername = transport.get_extra_info("peername") if transport is not None else None
        name, roles = identity
        return core.Origin(
            "certificate",
            name,
            name,
            roles,
            may_send_audit=True,
            address=str(peername[0]) if peername else "",
        )

    async def _body(self, request: web.Request) -> tuple[str, list[Any]]:
        """(the list's apiVersion, its items)."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _RefusedError(
                413, "too_large", f"the batch is over {self._limit} bytes"
            ) from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        items = doc.get("items") if type(doc) is dict else None
        if type(doc) is not dict or doc.get("kind") != "EventList" or type(items) is not list:
            raise _RefusedError(400, "not_an_event_list", "the body is not an audit EventList")
        version = doc.get("apiVersion")
        return (version if type(version) is str else "audit.k8s.io/v1"), items

    @staticmethod
    def _events(version: str, items: list[Any]) -> list[core.Event]:
        """Each item as the record of one tailed audit log line: the items of a list carry
        no ``kind`` and ``apiVersion`` of their own; a line of the log does."""
        events = []
        for item in items:
            when = _time_ns(item)
            event = {"kind": "Event", "apiVersion": version, **item} if type(item) is dict else item
            record = {"log": orjson.dumps(event).decode(), "stream": ""}
            events.append(core.Event(_TAG, when if when is not None else time.time_ns(), record))
        return events

    async def _store(self, events: list[core.Event], origin: core.Origin) -> None:
        if self._draining:
            raise _RefusedError(503, "stopping", "the collector is stopping; retry")
        try:
            await self._deliver(core.Batch(events, origin))
        except Exception as exc:  # noqa: BLE001 - the API server retries; never crash
            _log.warning(
                "audit webhook batch not stored; the API server will retry it",
                extra={"events": len(events), "error": repr(exc)},
            )
            raise _RefusedError(
                503, "store_failed", "the batch could not be stored; retry"
            ) from None
