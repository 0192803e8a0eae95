"""Test receivers for alert notifications, built from the receivers' published contracts.

Slack and Alertmanager cannot run here (no Slack workspace; no Alertmanager binary in the
harness), and a "generic webhook" is whatever the user runs, so the notifier is tested
against these aiohttp servers. Each one validates what its protocol requires and answers
as the real one does; each class docstring says what it does not cover.

All three share the fault injection a notifier must survive: :meth:`_Base.fail_next`
(answer the next requests with a status, optionally ``Retry-After``), :attr:`_Base.hang`
(hold each request unanswered for that many seconds), and :meth:`_Base.stop` /
:meth:`_Base.start` on the same port (a receiver that is down, then up again).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Base:
    path = "/"

    def __init__(
        self,
        *,
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        authorization: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.authorization = authorization
        """When set, requests without exactly this ``Authorization`` header get 401."""
        self.requests: list[dict[str, Any]] = []
        """Every request received: ``headers``, ``body`` (bytes) and the ``status`` answered."""
        self.hang = 0.0
        self._failures: list[tuple[int, str | None]] = []
        self._runner: web.AppRunner | None = None
        self.received = asyncio.Event()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.path}"

    def fail_next(self, count: int, status: int, retry_after: str | None = None) -> None:
        self._failures.extend([(status, retry_after)] * count)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> _Base:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` requests were accepted."""
        async with asyncio.timeout(timeout):
            while len(self.accepted) < count:
                self.received.clear()
                await self.received.wait()

    @property
    def accepted(self) -> list[Any]:
        """Decoded bodies of the requests answered 2xx."""
        return [
            r["json"]
            for r in self.requests
            if 200 <= r["status"] < 300 and r.get("json") is not None
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record: dict[str, Any] = {"headers": dict(request.headers), "body": body, "status": 0}
        self.requests.append(record)
        try:
            if self.hang:
                await asyncio.sleep(self.hang)
            response = self._answer(request, body, record)
        finally:
            self.received.set()
        record["status"] = response.status
        return response

    def _answer(self, request: web.Request, body: bytes, record: dict[str, Any]) -> web.Response:
        if self._failures:
            status, retry_after = self._failures.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else None
            return web.Response(status=status, text="injected failure", headers=headers)
        if self.authorization is not None and (
            request.headers.get("Authorization") != self.authorization
        ):
            return web.Response(status=401, text="unauthorized")
        return self.handle(request, body, record)

    def handle(self, request: web.Request, body: bytes, record: dict[str, Any]) -> web.Response:
        raise NotImplementedError


class WebhookServer(_Base):
    """A generic JSON webhook: ``POST`` of a JSON object, ``2xx`` when taken.

    Checks the method (405), ``Content-Type: application/json`` (415) and that the body is
    one JSON object (400); answers 200 ``{"status": "ok"}``. Keeps every body.

    Does not cover: what a particular webhook product does with the payload (templating,
    routing), request signing (HMAC headers), or limits on body size.
    """

    path = "/hook"

    def handle(self, request: web.Request, body: bytes, record: dict[str, Any]) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="POST only")
        if request.content_type != "application/json":
            return web.Response(status=415, text="expected application/json")
        try:
            decoded = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="body is not JSON")
        if not isinstance(decoded, dict):
            return web.Response(status=400, text="expected a JSON object")
        record["json"] = decoded
        return web.json_response({"status": "ok"})


class SlackServer(_Base):
    """A Slack incoming webhook, from Slack's "Sending messages using incoming webhooks"
    and its error table.

    ``POST /services/<T>/<B>/<secret>`` with a JSON body (``application/json``) or a form
    body whose ``payload`` field is the JSON. Answers as Slack does, in plain text: ``200
    ok``; ``400 invalid_payload`` (not JSON, not an object, ``text`` not a string,
    ``blocks`` not a list); ``400 no_text`` (neither ``text`` nor ``blocks``); ``404
    no_service`` (another path: the webhook was revoked or never existed); ``403
    invalid_token`` (right path shape, wrong secret); ``410 channel_is_archived`` when
    :attr:`archived`; ``429`` with ``Retry-After`` beyond :attr:`per_second` messages in a
    second (Slack's limit is one per second, with short bursts allowed).

    Does not cover: Block Kit validation of ``blocks`` content, ``mrkdwn`` rendering,
    truncation of ``text`` beyond 40,000 characters, attachments, and ``thread_ts``.
    """

    def __init__(self, secret: str = "XXXXXXXXXXXXXXXXXXXXXXXX", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.path = f"/services/T00000000/B00000000/{secret}"
        self.archived = False
        self.per_second: int | None = None
        self._stamps: list[float] = []

    def handle(self, request: web.Request, body: bytes, record: dict[str, Any]) -> web.Response:
        parts = request.path.strip("/").split("/")
        if request.method != "POST" or len(parts) != 4 or parts[0] != "services":
            return web.Response(status=404, text="no_service")
        if parts[3] != self.secret:
            return web.Response(status=403, text="invalid_token")
        if self.archived:
            return web.Response(status=410, text="channel_is_archived")
        if self.per_second is not None:
            now = asyncio.get_running_loop().time()
            self._stamps = [t for t in self._stamps if t > now - 1.0]
            if len(self._stamps) >= self.per_second:
                return web.Response(status=429, text="rate_limited", headers={"Retry-After": "1"})
            self._stamps.append(now)
        raw = body
        if request.content_type == "application/x-www-form-urlencoded":
            raw = parse_qs(body.decode()).get("payload", [""])[0].encode()
        try:
            payload = json.loads(raw)
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        text, blocks = payload.get("text"), payload.get("blocks")
        if (text is not None and not isinstance(text, str)) or (
            blocks is not None and not isinstance(blocks, list)
        ):
            return web.Response(status=400, text="invalid_payload")
        if not text and not blocks:
            return web.Response(status=400, text="no_text")
        record["json"] = payload
        return web.Response(status=200, text="ok")


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _date_time(value: Any) -> dt.datetime | None:
    """An OpenAPI ``date-time`` (RFC 3339, go-openapi strfmt); None when it is not one."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", value, re.IGNORECASE
    )
    if not match:
        return None
    frac = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3).upper() == "Z" else match.group(3)
    return dt.datetime.fromisoformat(match.group(1) + frac + zone)


class AlertmanagerServer(_Base):
    """Alertmanager's API v2 alert intake, from ``api/v2/openapi.yaml`` (``postAlerts``)
    and the validation Alertmanager applies after it (``postAlertsHandler``,
    ``model.Alert.Validate``).

    ``POST /api/v2/alerts``: the body must be ``application/json`` (415) and JSON (400);
    then it must match ``postableAlerts`` — an array of objects whose ``labels`` (required)
    and ``annotations`` are maps of strings, ``startsAt``/``endsAt`` RFC 3339 date-times,
    ``generatorURL`` a URI — or the answer is 422 ``{"code": 602, "message": ...}`` as
    go-swagger sends. Each alert is then completed and checked as Alertmanager does: empty
    label values removed, a missing ``startsAt`` is now (or ``endsAt``), a missing
    ``endsAt`` is now + :attr:`resolve_timeout`; at least one label, valid label names,
    ``endsAt`` not before ``startsAt``. The valid alerts are stored, merged by label set
    (the fingerprint), and if any was invalid the answer is ``400`` with the errors as a
    string. ``GET /api/v2/alerts`` lists the stored alerts (``labels``, ``annotations``,
    ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``, ``updatedAt``).

    Does not cover: routing, grouping, notification, silences and inhibition (the
    Alertmanager's own job once it has the alerts), clustering, UTF-8 label names
    (``--enable-feature=utf8-strict-mode`` off), the other endpoints, and authentication
    (Alertmanager has none of its own; a proxy or ``web.config`` adds it).
    """

    path = "/"

    def __init__(self, resolve_timeout: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolve_timeout = resolve_timeout
        self.alerts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def handle(self, request: web.Request, body: bytes, record: dict[str, Any]) -> web.Response:
        if request.path != "/api/v2/alerts":
            return web.Response(status=404, text="404 page not found")
        if request.method == "GET":
            record["json"] = None
            return web.json_response(list(self.alerts.values()))
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed")
        if request.content_type != "application/json":
            return web.json_response(
                {"code": 415, "message": f"unsupported media type {request.content_type!r}"},
                status=415,
            )
        try:
            alerts = json.loads(body)
        except ValueError as exc:
            return web.json_response({"code": 400, "message": f"parsing alerts body: {exc}"},
                                     status=400)  # fmt: skip
        problem = self._schema(alerts)
        if problem:
            return web.json_response({"code": 602, "message": problem}, status=422)
        record["json"] = alerts
        errors = []
        now = dt.datetime.now(dt.UTC)
        for alert in alerts:
            labels = {k: v for k, v in alert["labels"].items() if v}
            starts = _date_time(alert.get("startsAt"))
            ends = _date_time(alert.get("endsAt"))
            if starts is None:
                starts = ends or now
            if ends is None:
                ends = now + dt.timedelta(seconds=self.resolve_timeout)
            if not labels:
                errors.append("at least one label pair required")
                continue
            bad = [k for k in labels if not _LABEL_NAME.match(k)]
            if bad:
                errors.append(f"invalid label name {bad[0]!r}")
                continue
            if ends < starts:
                errors.append("start time must be before end time")
                continue
            key = tuple(sorted(labels.items()))
            self.alerts[key] = {
                "labels": labels,
                "annotations": alert.get("annotations") or {},
                "startsAt": starts.isoformat(),
                "endsAt": ends.isoformat(),
                "generatorURL": alert.get("generatorURL", ""),
                "fingerprint": format(abs(hash(key)), "016x")[:16],
                "updatedAt": now.isoformat(),
            }
        if errors:
            return web.Response(status=400, text="; ".join(errors))
        return web.Response(status=200)

    @staticmethod
    def _schema(alerts: Any) -> str | None:
        if not isinstance(alerts, list):
            return "alerts in body must be of type array"
        for i, alert in enumerate(alerts):
            where = f"alerts.{i}"
            if not isinstance(alert, dict):
                return f"{where} in body must be of type object"
            if "labels" not in alert:
                return f"{where}.labels in body is required"
            for key in ("labels", "annotations"):
                value = alert.get(key)
                if key == "annotations" and value is None:
                    continue
                if not isinstance(value, dict) or not all(
                    isinstance(v, str) for v in value.values()
                ):
                    return f"{where}.{key} in body must be a map of strings"
            for key in ("startsAt", "endsAt"):
                if key in alert and _date_time(alert[key]) is None:
                    return f"{where}.{key} in body must be of type date-time: {alert[key]!r}"
            url = alert.get("generatorURL")
            if url is not None:
                if not isinstance(url, str):
                    return f"{where}.generatorURL in body must be of type uri"
                try:
                    urlsplit(url)
                except ValueError:
                    return f"{where}.generatorURL in body must be of type uri"
        return None


@contextlib.contextmanager
def serving_in_thread(server: _Base) -> Iterator[_Base]:
    """Runs ``server`` on an event loop of its own thread, for tests that are not async
    (read ``server.requests`` / ``server.accepted`` from the test's thread)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-receiver", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
