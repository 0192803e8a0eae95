"""A Splunk HTTP Event Collector test server, built from Splunk's published REST documentation.

Splunk cannot run here, so the HEC sink is tested against this aiohttp server. It follows
the "HTTP Event Collector REST API" reference (``services/collector/event``, ``/raw``,
``/ack``, ``/health``), "Troubleshoot HTTP Event Collector" (the status-code table: HEC
``code``, HTTP status and ``text``) and "About HTTP Event Collector Indexer
Acknowledgment".

What it does:

- **Endpoints**: ``POST /services/collector``, ``/services/collector/event`` (and
  ``/1.0``): concatenated JSON event envelopes; ``POST /services/collector/raw``: one event
  per non-empty line; ``POST /services/collector/ack``: ``{"acks": [ids]}`` →
  ``{"acks": {"id": bool}}``; ``GET /services/collector/health``.
- **Token auth**: ``Authorization: Splunk <token>``. No header → 401 code 2 "Token is
  required"; another scheme → 401 code 3 "Invalid authorization"; unknown token → 403
  code 4 "Invalid token"; disabled token → 403 code 1 "Token disabled"; a ``token`` query
  parameter → 400 code 16 "Query string authorization is not enabled".
- **Bodies**: gzip (``Content-Encoding: gzip``). Empty → 400 code 5 "No data"; JSON that
  does not parse → 400 code 6 "Invalid data format"; an envelope without ``event`` → 400
  code 12 "Event field is required"; ``event: ""`` → 400 code 13 "Event field cannot be
  blank"; ``fields`` that are not a flat object of strings (or lists of strings) → 400 code
  15 "Error in handling indexed fields"; an ``index`` the token does not allow → 400 code 7
  "Incorrect index". These answers carry ``invalid-event-number`` (0-based) for batches.
- **Indexer acknowledgement** (per token): every event/raw request needs a channel
  (``X-Splunk-Request-Channel`` header or ``channel`` query parameter): missing → 400 code
  10 "Data channel is missing", not a GUID → 400 code 11 "Invalid data channel". A
  success carries ``ackId``, counting up from 0 per channel. An id becomes true after
  ``ack_delay`` seconds (or :meth:`HecServer.release_acks`); once it was reported true it
  is forgotten, so asking again answers false. Querying acks with a token that has none →
  400 code 14 "ACK is disabled".
- **Health**: 200 code 17 "HEC is healthy"; 503 code 18 "HEC is unhealthy, queues are
  full" while :attr:`HecServer.unhealthy`; with ``?token=``: 400 code 21 "Invalid token" /
  code 22 "Token disabled".
- **TLS** when started with an ``ssl_context``.
- **A slow indexer**: ``delay`` seconds before each event or raw request is answered (a
  Splunk that indexes slower than the collector receives).
- **Fault injection**: :meth:`HecServer.fail_next` answers the next event requests with any
  documented code (its HTTP status and text from the table, ``Retry-After`` optional);
  :meth:`HecServer.reject_when` refuses requests holding an envelope a predicate picks,
  with a chosen per-event code (6, 12, 13, 15, ...) and its ``invalid-event-number``;
  :meth:`HecServer.restart` forgets channels and acks (ack ids start again at 0), as a
  restarted Splunk does; ``lose_acks`` keeps ack ids false forever.

What it does not cover: a request is all-or-nothing here (the documentation does not say
whether events before ``invalid-event-number`` are indexed, and on a real Splunk they may
be); no timestamp extraction, line breaking rules beyond ``\\n`` for raw, props/transforms,
sourcetype or index defaults of the token beyond "allowed indexes"; no channel limits
(``maxChannels``, idle channel cleanup, ``maxEventSize``: codes 24-27 only when injected),
no ack expiry, no metrics events, no HEC clustering behind a load
balancer (sticky channels), no query-string auth even when enabled.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CODES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity and cannot process any more requests"),
    27: (429, "HEC ACK channel is at capacity and cannot process any more requests"),
}
"""HEC status code → (HTTP status, text), from "Troubleshoot HTTP Event Collector"."""


@dataclass
class Token:
    enabled: bool = True
    ack: bool = False
    indexes: set[str] | None = None
    """Allowed indexes; None = any."""


@dataclass
class _Channel:
    next_ack: int = 0
    pending: dict[int, float] = field(default_factory=dict)
    """ack id → monotonic time at which it becomes true."""


@dataclass
class _Failure:
    code: int
    retry_after: str | None = None


class HecServer:
    """Start with ``await server.start()``; ``server.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(
        self, tokens: dict[str, Token] | None = None, ack_delay: float = 0.0, delay: float = 0.0
    ) -> None:
        self.tokens = tokens if tokens is not None else {"good-token": Token()}
        self.ack_delay = ack_delay
        self.delay = delay
        """Seconds each event/raw request waits before it is handled."""
        self.unhealthy = False
        self.lose_acks = False
        self.events: list[dict[str, Any]] = []
        """Every stored event envelope (raw events as ``{"event": line}``)."""
        self.requests: list[dict[str, Any]] = []
        """Every request to an event or raw endpoint: path, time, headers, answer code."""
        self.ack_queries: list[list[int]] = []
        """The ack ids asked about, one list per ack request."""
        self.acks_reported_true: list[int] = []
        self._channels: dict[str, _Channel] = {}
        self._failures: list[_Failure] = []
        self._rejections: list[tuple[Callable[[dict[str, Any]], bool], int]] = []
        self._held = False
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.scheme = "http"

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if ssl_context is not None else "http"
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path in (
            "/services/collector",
            "/services/collector/event",
            "/services/collector/event/1.0",
        ):
            app.router.add_post(path, self._event)
        app.router.add_post("/services/collector/raw", self._raw)
        app.router.add_post("/services/collector/raw/1.0", self._raw)
        app.router.add_post("/services/collector/ack", self._ack)
        app.router.add_get("/services/collector/health", self._health)
        app.router.add_get("/services/collector/health/1.0", self._health)
        self._runner, self.port = await serve_app(app, port, ssl_context)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, code: int, count: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``count`` event/raw requests with HEC ``code`` (nothing stored)."""
        self._failures.extend(_Failure(code, retry_after) for _ in range(count))

    def reject_when(self, predicate: Callable[[dict[str, Any]], bool], code: int) -> None:
        """Refuse any request holding an envelope ``predicate`` picks, with ``code`` and
        that envelope's ``invalid-event-number``."""
        self._rejections.append((predicate, code))

    def hold_acks(self) -> None:
        """Keep every ack false until :meth:`release_acks`."""
        self._held = True

    def release_acks(self) -> None:
        self._held = False

    def restart(self) -> None:
        """Forget channels and acks, as a restarted Splunk does."""
        self._channels.clear()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _answer(code: int, **extra: Any) -> web.Response:
        status, text = CODES[code]
        return web.json_response({"text": text, "code": code, **extra}, status=status)

    def _auth(self, request: web.Request) -> tuple[Token | None, web.Response | None]:
        if "token" in request.query:
            return None, self._answer(16)
        header = request.headers.get("Authorization")
        if header is None:
            return None, self._answer(2)
        scheme, _, value = header.partition(" ")
        if scheme != "Splunk" or not value:
            return None, self._answer(3)
        token = self.tokens.get(value)
        if token is None:
            return None, self._answer(4)
        if not token.enabled:
            return None, self._answer(1)
        return token, None

    def _channel(
        self, request: web.Request, token: Token
    ) -> tuple[str | None, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not token.ack and channel is None:
            return None, None
        if channel is None:
            return None, self._answer(10)
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, self._answer(11)
        return channel, None

    @staticmethod
    async def _body(request: web.Request) -> bytes:
        return await request.read()  # aiohttp undoes Content-Encoding: gzip itself

    def _accept(
        self, token: Token, channel: str | None, envelopes: list[dict[str, Any]]
    ) -> web.Response:
        self.events.extend(envelopes)
        if not token.ack:
            return self._answer(0)
        assert channel is not None
        state = self._channels.setdefault(channel, _Channel())
        ack_id = state.next_ack
        state.next_ack += 1
        state.pending[ack_id] = time.monotonic() + self.ack_delay
        return self._answer(0, ackId=ack_id)

    def _record(self, request: web.Request, code: int, count: int) -> None:
        self.requests.append(
            {
                "path": request.path,
                "time": time.monotonic(),
                "code": code,
                "events": count,
                "authorization": request.headers.get("Authorization"),
                "content_encoding": request.headers.get("Content-Encoding"),
                "channel": request.headers.get("X-Splunk-Request-Channel"),
            }
        )

    async def _prelude(
        self, request: web.Request
    ) -> tuple[Token | None, str | None, bytes, web.Response | None]:
        token, refused = self._auth(request)
        if refused is not None or token is None:
            return None, None, b"", refused
        channel, refused = self._channel(request, token)
        if refused is not None:
            return None, None, b"", refused
        if self._failures:
            failure = self._failures.pop(0)
            answer = self._answer(failure.code)
            if failure.retry_after is not None:
                answer.headers["Retry-After"] = failure.retry_after
            return None, None, b"", answer
        body = await self._body(request)
        if not body.strip():
            return None, None, b"", self._answer(5)
        return token, channel, body, None

    # ------------------------------------------------------------------ endpoints

    async def _event(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        token, channel, body, refused = await self._prelude(request)
        if refused is not None or token is None:
            assert refused is not None
            self._record(request, _code_of(refused), 0)
            return refused
        envelopes, answer = self._parse(body, token)
        if answer is not None:
            self._record(request, _code_of(answer), 0)
            return answer
        self._record(request, 0, len(envelopes))
        return self._accept(token, channel, envelopes)

    def _parse(self, body: bytes, token: Token) -> tuple[list[dict[str, Any]], web.Response | None]:
        decoder = json.JSONDecoder()
        text = body.decode("utf-8", "replace")
        envelopes: list[dict[str, Any]] = []
        pos = 0
        number = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                return [], self._answer(6, **{"invalid-event-number": number})
            if not isinstance(value, dict):
                return [], self._answer(6, **{"invalid-event-number": number})
            problem = self._invalid(value, token)
            if problem is not None:
                return [], self._answer(problem, **{"invalid-event-number": number})
            envelopes.append(value)
            number += 1
        return envelopes, None

    def _invalid(self, envelope: dict[str, Any], token: Token) -> int | None:
        for predicate, code in self._rejections:
            if predicate(envelope):
                return code
        if "event" not in envelope:
            return 12
        if envelope["event"] in ("", None):
            return 13
        fields = envelope.get("fields")
        if fields is not None and not _flat_fields(fields):
            return 15
        index = envelope.get("index")
        if index is not None and token.indexes is not None and index not in token.indexes:
            return 7
        return None

    async def _raw(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        token, channel, body, refused = await self._prelude(request)
        if refused is not None or token is None:
            assert refused is not None
            self._record(request, _code_of(refused), 0)
            return refused
        lines = [line for line in body.decode("utf-8", "replace").split("\n") if line.strip()]
        envelopes = [{"event": line} for line in lines]
        self._record(request, 0, len(envelopes))
        return self._accept(token, channel, envelopes)

    async def _ack(self, request: web.Request) -> web.Response:
        token, refused = self._auth(request)
        if refused is not None or token is None:
            assert refused is not None
            return refused
        if not token.ack:
            return self._answer(14)
        channel, refused = self._channel(request, token)
        if refused is not None or channel is None:
            return refused or self._answer(10)
        try:
            ids = json.loads(await self._body(request))["acks"]
            ids = [int(i) for i in ids]
        except (ValueError, KeyError, TypeError):
            return self._answer(6)
        self.ack_queries.append(ids)
        state = self._channels.get(channel, _Channel())
        now = time.monotonic()
        answer: dict[str, bool] = {}
        for ack_id in ids:
            ready_at = state.pending.get(ack_id)
            done = (
                ready_at is not None and ready_at <= now and not self._held and not self.lose_acks
            )
            answer[str(ack_id)] = done
            if done:
                del state.pending[ack_id]  # reported true once, then forgotten
                self.acks_reported_true.append(ack_id)
        return web.json_response({"acks": answer})

    async def _health(self, request: web.Request) -> web.Response:
        if "token" in request.query:
            token = self.tokens.get(request.query["token"])
            if token is None:
                return self._answer(21)
            if not token.enabled:
                return self._answer(22)
        if self.unhealthy:
            return self._answer(18)
        return self._answer(17)


async def serve_app(
    app: web.Application, port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1:``port`` (0 picks one); returns the runner and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port


def _code_of(response: web.Response) -> int:
    body = response.body
    assert isinstance(body, bytes | bytearray)
    return int(json.loads(body)["code"])


def _flat_fields(fields: Any) -> bool:
    if not isinstance(fields, dict):
        return False
    for value in fields.values():
        if isinstance(value, list):
            if not all(isinstance(v, str | int | float) for v in value):
                return False
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            return False
    return True


async def started(**kwargs: Any) -> HecServer:
    """A started server (the caller stops it)."""
    server = HecServer(**kwargs)
    await server.start()
    return server


__all__ = ["CODES", "HecServer", "Token", "serve_app", "started"]
