"""``splunk-hec+https://``: Splunk's HTTP Event Collector, ``/services/collector/event``.

Each event becomes one envelope; a request is the envelopes concatenated::

    {"time": 1700000000.123456, "host": "<node>", "source": "<log.file.path>",
     "sourcetype": "kube:container:<container>" | "kube:apiserver:audit" | "kube:node"
                   | "kloghub:alert",
     "index": "<SinkConfig.index, when set>", "event": {<the ECS document>},
     "fields": {"namespace": ..., "pod": ..., "container": ..., "node": ...}}

gzip-compressed when ``compress`` (level 1, in a worker thread for large bodies), with
``Authorization: Splunk <token>``.

**Indexer acknowledgement** (``indexer_ack: true``): every request carries this sink's
channel (one random GUID per sink, ``X-Splunk-Request-Channel``). A ``200`` answer only
gives an ``ackId``; the events settle when ``/services/collector/ack`` reports that id
``true``. One poller per sink asks for all outstanding ids every ``ack_interval``; an id
reported ``true`` is forgotten at once (Splunk forgets it too, so it is never asked for
again). No acknowledgement within ``ack_timeout``, or an id the server hands out again
(it restarted), resends the request: at-least-once, so Splunk may then hold a duplicate.

**HEC status codes** (the ``code`` of the JSON answer; the table is in ``DESIGN.md``):
0, 24, 25 succeed; 8, 9, 18-20, 23, 26, 27 are retried; 1-4 (token problems) and 7, 10, 11,
14, 16, 21, 22 (configuration) are fatal: sending stops, ``problem()`` fails ``/readyz``;
5, 6, 12, 13, 15 split the request until the bad event stands alone, and it is
dead-lettered. Answers without a known code are classified by HTTP status (429/5xx retry,
401/403 fatal, 413 split, other 4xx split when ``invalid-event-number`` names the event,
else fatal). ``invalid-event-number`` narrows the split to the event it names.

Caveat: if a real Splunk indexes the events before an invalid one (the docs do not say),
those events are indexed twice after the split, since HEC has no document ids.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from kloghub import config, core
from kloghub.sinks import _dlq, _net, _sink

__all__ = ["SplunkHecSink", "envelope"]

_log = logging.getLogger("kloghub.sinks.splunk")

DEFAULT_PORT = 8088
CHANNEL_HEADER = "X-Splunk-Request-Channel"
ACK_INTERVAL = 1.0
ACK_TIMEOUT = 300.0
MAX_UNACKED = 32
"""Requests waiting for their acknowledgement at once (beyond ``concurrency``)."""

RETRY_CODES = frozenset({8, 9, 18, 19, 20, 23, 26, 27})
FATAL_CODES = frozenset({1, 2, 3, 4, 7, 10, 11, 14, 16, 21, 22})
SPLIT_CODES = frozenset({5, 6, 12, 13, 15})
OK_CODES = frozenset({0, 24, 25})
_FIX = {
    1: "enable the token in Splunk",
    2: "set the sink's token",
    3: "the Authorization header was refused",
    4: "check the sink's token",
    7: "allow the sink's index for this token, or unset index",
    10: "the token requires indexer acknowledgement: set indexer_ack: true",
    11: "the channel was refused",
    14: "the token has indexer acknowledgement off: set indexer_ack: false",
}
_ACTION = {
    **dict.fromkeys(RETRY_CODES, "retry"),
    **dict.fromkeys(FATAL_CODES, "fatal"),
    **dict.fromkeys(SPLIT_CODES, "split"),
}
_ACK_QUERY_MAX = 1000
_COMPRESS_IN_THREAD_BYTES = 64 * 1024
_CHECK_TIMEOUT_S = 10.0
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    """``doc["a"]["b"]`` or ``doc["a.b"]`` for ``"a.b"``: ECS documents come either way."""
    if dotted in doc:
        return doc[dotted]
    value: Any = doc
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value)


def _sourcetype(tag: str, container: str | None) -> str:
    # Data stream names: logs-kubernetes.<dataset>-<namespace>.
    if "audit_logs" in tag:
        return "kube:apiserver:audit"
    if "node_logs" in tag:
        return "kube:node"
    if tag.startswith("logs-kloghub.alerts-"):
        return "kloghub:alert"
    return f"kube:container:{container or 'unknown'}"


def envelope(event: core.Event, index: str | None) -> dict[str, Any]:
    """The HEC event envelope of a normalized event."""
    doc = event.record["doc"]
    container = _text(_get(doc, "kubernetes.container.name") or _get(doc, "container.name"))
    node = _text(_get(doc, "kubernetes.node.name") or _get(doc, "host.name"))
    seconds, nanos = divmod(event.time_ns, 1_000_000_000)
    out: dict[str, Any] = {"time": round(seconds + nanos / 1e9, 6)}
    host = _text(_get(doc, "host.name")) or node
    if host:
        out["host"] = host
    source = _text(_get(doc, "log.file.path"))
    out["source"] = source or event.tag
    out["sourcetype"] = _sourcetype(event.tag, container)
    if index:
        out["index"] = index
    out["event"] = doc
    fields = {
        "namespace": _text(_get(doc, "kubernetes.namespace")),
        "pod": _text(_get(doc, "kubernetes.pod.name")),
        "container": container,
        "node": node,
    }
    present = {key: value for key, value in fields.items() if value}
    if present:
        out["fields"] = present
    return out


def _answer(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def classify(
    status: int, answer: Mapping[str, Any], raw: bytes, retry_after: float | None
) -> Exception:
    """The exception a push raises for a HEC answer that is not a success."""
    code = _int(answer.get("code"))
    hint = _int(answer.get("invalid-event-number"))
    text = str(answer.get("text") or raw[:200].decode("utf-8", "replace") or "no answer text")
    if code is not None:
        desc = f"HEC code {code}: {text} (HTTP {status})"
        kind = f"hec_code_{code}"
    else:
        desc = f"HTTP {status}: {text}"
        kind = f"http_{status}"
    if code in _ACTION:
        action = _ACTION[code]
    elif status in (408, 429) or status >= 500 or status < 400:
        action = "retry"
    elif status in (401, 403):
        action = "fatal"
    elif status == 413 or hint is not None:
        action = "split"
    else:
        action = "fatal"
    if action == "retry":
        return core.RetryableError(desc, retry_after)
    if action == "split":
        return _sink.SplitError(kind, desc, status, hint)
    fix = _FIX.get(code) if code is not None else None
    return _sink.FatalError(f"{desc}; {fix}" if fix else desc)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _AckPoller:
    """Asks ``/services/collector/ack`` about outstanding ack ids; resolves their futures."""

    def __init__(self, sink: str, url: str, headers: Mapping[str, str], interval: float) -> None:
        self._sink = sink
        self._url = url
        self._headers = dict(headers)
        self._interval = interval
        self._outstanding: dict[int, asyncio.Future[_sink.Outcome]] = {}
        self._wake = asyncio.Event()
        self._failing = False
        self.queries = 0
        """Ack queries sent (for tests and debugging)."""

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def wait(self, ack_id: int) -> asyncio.Future[_sink.Outcome]:
        """A future that resolves when ``ack_id`` is acknowledged."""
        old = self._outstanding.pop(ack_id, None)
        if old is not None and not old.done():
            # Ack ids count up per channel; seeing one again means the server restarted
            # and the earlier request's fate is unknown: send it again.
            old.set_exception(
                core.RetryableError(f"ack id {ack_id} handed out again (HEC restarted?)")
            )
        future: asyncio.Future[_sink.Outcome] = asyncio.get_running_loop().create_future()
        self._outstanding[ack_id] = future
        self._wake.set()
        return future

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval)
            for ack_id, future in list(self._outstanding.items()):
                if future.done():  # abandoned: the request timed out and was resent
                    del self._outstanding[ack_id]
            if not self._outstanding:
                self._wake.clear()
                continue
            ids = sorted(self._outstanding)
            for start in range(0, len(ids), _ACK_QUERY_MAX):
                await self._query(session, ids[start : start + _ACK_QUERY_MAX])

    async def _query(self, session: aiohttp.ClientSession, ids: list[int]) -> None:
        self.queries += 1
        try:
            async with session.post(
                self._url, data=orjson.dumps({"acks": ids}), headers=self._headers
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._trouble(_sink.describe_error(exc))
            return
        answer = _answer(raw)
        acks = answer.get("acks")
        if status != 200 or not isinstance(acks, Mapping):
            self._trouble(f"HTTP {status}: {answer.get('text') or raw[:200]!r}")
            return
        if self._failing:
            self._failing = False
            _log.info("indexer acknowledgements answer again", extra={"sink": self._sink})
        for key, value in acks.items():
            if value is not True:
                continue
            try:
                ack_id = int(key)
            except ValueError:
                continue
            future = self._outstanding.pop(ack_id, None)
            if future is not None and not future.done():
                future.set_result(_sink.DELIVERED)

    def _trouble(self, error: str) -> None:
        if not self._failing:
            self._failing = True
            _log.warning(
                "cannot query indexer acknowledgements; still waiting",
                extra={"sink": self._sink, "error": error},
            )


class SplunkHecSink(_sink.Sink):
    """Sends normalized documents to Splunk HEC, optionally waiting for indexer acks."""

    kind = "splunk_hec"

    def __init__(
        self,
        cfg: config.SinkConfig,
        dead_letters: _dlq.DeadLetters,
        *,
        supervisor: core.Supervisor | None = None,
        request_timeout: float = _sink.REQUEST_TIMEOUT,
        ack_interval: float = ACK_INTERVAL,
        ack_timeout: float = ACK_TIMEOUT,
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        if cfg.token is None:
            raise core.ConfigError([f"sink {cfg.url}: a Splunk HEC sink needs a token"])
        super().__init__(
            cfg,
            dead_letters,
            supervisor=supervisor,
            request_timeout=request_timeout,
            confirm_timeout=ack_timeout,
            max_unconfirmed=max_unacked if cfg.indexer_ack else 0,
        )
        base = _net.http_url(cfg.url, DEFAULT_PORT)
        self._event_url = f"{base}/services/collector/event"
        self._ack_url = f"{base}/services/collector/ack"
        self._health_url = f"{base}/services/collector/health"
        self.channel = str(uuid.uuid4())
        """This sink's HEC channel (sent when ``indexer_ack`` is on)."""
        self._ack = cfg.indexer_ack
        self._index = cfg.index
        self._compress = cfg.compress
        self._auth = f"Splunk {cfg.token.get_secret_value()}"
        self._ack_interval = ack_interval
        self._session: aiohttp.ClientSession | None = None
        self.acks: _AckPoller | None = None
        self._warned_no_ack_id = False

    codec = "hec-event/1"

    def encode(self, event: core.Event) -> bytes:
        return orjson.dumps(envelope(event, self._index), default=_default, option=_OPTIONS)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)["event"]

    async def push(self, items: Sequence[_sink.Item]) -> _sink.Outcome:
        assert self._session is not None
        body = b"".join(item.data for item in items)
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        if self._ack:
            headers[CHANNEL_HEADER] = self.channel
        if self._compress:
            if len(body) >= _COMPRESS_IN_THREAD_BYTES:
                body = await asyncio.to_thread(gzip.compress, body, 1)
            else:
                body = gzip.compress(body, 1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self._event_url, data=body, headers=headers) as response:
                status = response.status
                raw = await response.read()
                retry_after = _sink.parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, OSError) as exc:
            raise core.RetryableError(_sink.describe_error(exc)) from exc
        answer = _answer(raw)
        code = answer.get("code")
        if not (200 <= status < 300 and (code is None or code in OK_CODES)):
            raise classify(status, answer, raw, retry_after)
        if code in (24, 25):
            _log.warning("HEC is approaching its capacity", extra={"sink": self.name, "code": code})
        if not self._ack:
            return _sink.DELIVERED
        ack_id = _int(answer.get("ackId"))
        if ack_id is None:
            if not self._warned_no_ack_id:
                self._warned_no_ack_id = True
                _log.warning(
                    "indexer_ack is on but HEC answered without an ackId; events settle on "
                    "HTTP 200 (is acknowledgement enabled on the token?)",
                    extra={"sink": self.name},
                )
            return _sink.DELIVERED
        assert self.acks is not None
        return _sink.Outcome(confirm=self.acks.wait(ack_id))

    async def _open(self) -> None:
        ssl_context = (
            _net.ssl_context(self.cfg.tls, self.name) if _net.is_https(self.cfg.url) else None
        )
        connector = aiohttp.TCPConnector(
            limit=self.cfg.concurrency + 1, ssl=ssl_context if ssl_context is not None else True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            auto_decompress=True,
        )
        if self._ack:
            headers = {
                "Authorization": self._auth,
                "Content-Type": "application/json",
                CHANNEL_HEADER: self.channel,
            }
            self.acks = _AckPoller(self.name, self._ack_url, headers, self._ack_interval)
            self.spawn("acks", self.acks.run(self._session))

    async def _close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _check(self) -> None:
        assert self._session is not None
        async with self._session.get(
            self._health_url, timeout=aiohttp.ClientTimeout(total=_CHECK_TIMEOUT_S)
        ) as response:
            status = response.status
            answer = _answer(await response.read())
        if status == 200:
            _log.info("Splunk HEC is healthy", extra={"sink": self.name})
        else:
            _log.warning(
                "Splunk HEC reports a problem; events wait in the queue",
                extra={
                    "sink": self.name,
                    "status": status,
                    "code": answer.get("code"),
                    "text": answer.get("text"),
                },
            )
