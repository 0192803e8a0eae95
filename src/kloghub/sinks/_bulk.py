"""The ``_bulk`` API shared by Elasticsearch and OpenSearch: encoding and classification.

Each event becomes ``{"create": {"_index": <data stream>, "_id": <doc id>}}`` and its
document. ``create`` into a data stream with a deterministic ``_id`` is what makes a
resend harmless: the second copy is refused with 409, which counts as delivered.

Per item: 2xx and 409 → delivered; 429 and 5xx → sent again alone; any other status
(mapping conflicts, invalid data stream names) → dead-letter queue with the server's reason.
Per request: 429, 408 and 5xx → retried (``Retry-After`` honoured); 400 and 413 → split to
find the item that spoils it; 401, 403 and other statuses → fatal (paused, ``/readyz``).

A ``_id`` is unique only inside one backing index: a resend that lands after a rollover
would be a second document. So after each bulk answer, the documents that landed (201, or
409) in a backing index created *after* their own ``@timestamp`` (less
:data:`ROLLOVER_SKEW_S`) — only those can have a first copy in an older index — are looked
up by id (``_mget``, real time) in the older backing indices that were the write index at
or after that time; a copy found there means the one just written is a resend: the oldest
copy stays, every newer one (the one just written, and one a killed collector left between
them) is deleted before the events are settled (see DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import orjson

from kloghub import config, core, normalize
from kloghub.runtime import metrics
from kloghub.sinks import _dlq, _net, _sink

__all__ = [
    "CODEC",
    "FILTER_PATH",
    "BulkSink",
    "decode",
    "encode",
    "error_text",
    "outcome",
    "request_error",
]

DEFAULT_PORT = 9200

FILTER_PATH = "errors,items.*.status,items.*.error,items.*._index"
"""Only what classification and the rollover check need comes back (not every item's id
and shards)."""

ROLLOVER_SKEW_S = 60.0
"""Clock skew allowed between a line's timestamp (the node) and a backing index's creation
time (the cluster) when deciding whether a document may have a copy in an older index."""

_STREAMS_MAX = 1024
_DOC_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def encode(event: core.Event) -> bytes:
    """The action line and the document of ``event`` (``record = {"id", "doc"}``)."""
    record = event.record
    doc = record["doc"]
    doc_id = record.get("id")
    target: dict[str, Any] = {"_index": event.tag}
    if doc_id is not None:
        target["_id"] = str(doc_id)
    action = orjson.dumps({"create": target}, option=orjson.OPT_APPEND_NEWLINE)
    return action + orjson.dumps(doc, default=_default, option=_DOC_OPTIONS)


CODEC = "bulk-ndjson/1"
"""What :func:`encode` makes: the ``create`` action line and the document line."""


def decode(data: bytes) -> Any:
    """The document of what :func:`encode` made (its second line)."""
    return orjson.loads(data[data.index(b"\n") + 1 :])


def error_text(error: Any) -> str:
    """``type: reason (caused by type: reason)`` from an Elasticsearch error object."""
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping | str):
        error = error["error"]
    if not isinstance(error, Mapping):
        return str(error)[:2000]
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, Mapping):
        text += f" (caused by {cause.get('type', 'error')}: {cause.get('reason', '')})"
    return text[:2000]


def _error_type(error: Any) -> str:
    if isinstance(error, Mapping) and isinstance(error.get("type"), str):
        return str(error["type"])
    return "error"


def outcome(body: Any, count: int, retry_after: float | None = None) -> _sink.Outcome:
    """Classify a bulk answer for ``count`` items."""
    if not isinstance(body, Mapping):
        raise core.RetryableError("the bulk answer is not a JSON object")
    if not body.get("errors"):
        return _sink.DELIVERED
    items = body.get("items")
    if not isinstance(items, list) or len(items) != count:
        raise core.RetryableError("the bulk answer does not list every item")
    retry: list[int] = []
    refused: dict[int, _sink.Refusal] = {}
    reason = ""
    for i, entry in enumerate(items):
        result: Any = next(iter(entry.values()), {}) if isinstance(entry, Mapping) else {}
        status = result.get("status", 500) if isinstance(result, Mapping) else 500
        if not isinstance(status, int):
            status = 500
        if status < 300 or status == 409:  # 409 on create: the document is already there
            continue
        error = result.get("error")
        if status == 429 or status >= 500:
            retry.append(i)
            reason = reason or f"HTTP {status}: {error_text(error)}"
        else:
            refused[i] = _sink.Refusal(_error_type(error), error_text(error), status)
    return _sink.Outcome(retry, refused, retry_after=retry_after, reason=reason)


def request_error(status: int, reason: str, retry_after: float | None) -> Exception:
    """The exception a push raises for a whole request answered ``status``."""
    text = f"HTTP {status}: {reason}"
    if status in (408, 429) or status >= 500:
        return core.RetryableError(text, retry_after)
    if status in (400, 413):
        return _sink.SplitError(f"http_{status}", text, status)
    if status in (401, 403):
        return _sink.FatalError(f"credentials refused: {text}")
    return _sink.FatalError(text)


_log = logging.getLogger("kloghub.sinks")


def _status(exc: Exception) -> int | None:
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class _Generations:
    """A data stream's backing indices and their creation times (seconds), oldest first."""

    __slots__ = ("created", "names")

    def __init__(self, created: dict[str, float]) -> None:
        self.names = sorted(created, key=lambda name: (created[name], name))
        self.created = created

    def older_holders(self, landed: str, time_s: float) -> list[str]:
        """The indices older than ``landed`` that were the write index at ``time_s`` or
        later (the only ones that can hold a first copy of a document of that time)."""
        created = self.created.get(landed)
        if created is None or time_s >= created + ROLLOVER_SKEW_S:
            return []
        found = []
        for k, name in enumerate(self.names):
            if self.created[name] >= created or name == landed:
                break
            ended = self.created[self.names[k + 1]]
            if ended > time_s - ROLLOVER_SKEW_S:
                found.append(name)
        return found


def _landed(body: Any, count: int) -> list[tuple[int, str]]:
    """``(item, backing index)`` of every item the answer says is in the stream now."""
    entries = body.get("items") if isinstance(body, Mapping) else None
    if not isinstance(entries, list) or len(entries) != count:
        return []
    found = []
    for i, entry in enumerate(entries):
        result: Any = next(iter(entry.values()), {}) if isinstance(entry, Mapping) else {}
        if not isinstance(result, Mapping):
            continue
        status, index = result.get("status"), result.get("_index")
        if status in (200, 201, 409) and isinstance(index, str):
            found.append((i, index))
    return found


class _Client(Protocol):
    async def close(self) -> Any: ...


ClientT = TypeVar("ClientT", bound=_Client)


class BulkSink(_sink.Sink, Generic[ClientT]):
    """What the Elasticsearch and OpenSearch sinks share: encoding, address, client options."""

    takes_api_key = True
    """Elasticsearch API keys; OpenSearch has none (refused at construction)."""

    def __init__(
        self,
        cfg: config.SinkConfig,
        dead_letters: _dlq.DeadLetters,
        *,
        supervisor: core.Supervisor | None = None,
        request_timeout: float = _sink.REQUEST_TIMEOUT,
    ) -> None:
        if cfg.api_key is not None and not self.takes_api_key:
            raise core.ConfigError(
                [f"sink {cfg.url}: api_key is an Elasticsearch setting; use username/password"]
            )
        super().__init__(cfg, dead_letters, supervisor=supervisor, request_timeout=request_timeout)
        self._url = _net.http_url(cfg.url, DEFAULT_PORT)
        self._client: ClientT | None = None
        self._generations: dict[str, _Generations] = {}
        self._rollover_copies = metrics.ROLLOVER_COPIES.labels(self.kind)

    codec = CODEC

    def encode(self, event: core.Event) -> bytes:
        return encode(event)

    def decode(self, data: bytes) -> Any:
        return decode(data)

    install_templates_at_start = True
    """Collectors install the index templates and lifecycle policy when they start."""

    _first_install: asyncio.Event | None = None

    async def _on_start(self) -> None:
        await super()._on_start()
        if self.install_templates_at_start:
            self._first_install = asyncio.Event()
            self.spawn("templates", self._install_until_done())

    async def _templates_tried(self) -> None:
        """Waits (once, at start) until the first installation attempt is over: a bulk
        request sent before the templates are there would create a data stream's first
        index with dynamic mappings instead of kloghub's, for good."""
        if self._first_install is not None:
            await self._first_install.wait()

    async def _install_until_done(self) -> None:
        """Retry the installation (the server may be down at start) with capped backoff."""
        wait = 1.0
        while True:
            try:
                await self.install_templates()
            except Exception as exc:  # noqa: BLE001 - logged and retried; data waits in queue
                assert self._first_install is not None
                self._first_install.set()
                _log.warning(
                    "index templates not installed yet; retrying",
                    extra={
                        "sink": self.name,
                        "error": _sink.describe_error(exc),
                        "retry_in_s": wait,
                    },
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, 60.0)
            else:
                assert self._first_install is not None
                self._first_install.set()
                return

    async def install_templates(self, retention_days: int | None = None) -> list[str]:
        """PUT the index templates and the lifecycle policy (idempotent).

        A cluster that refuses the policy (no ILM or ISM: the test harness's minimal
        builds) gets the templates without lifecycle, with a warning. An ISM policy that
        exists already (409) is left as it is. Returns the paths installed."""
        days = retention_days or max(1, round((self.cfg.retention or 30 * 86400.0) / 86400))
        product: normalize.Kind = "opensearch" if self.kind == "opensearch" else "elasticsearch"
        plan = normalize.templates(product, days)
        policy_path = next(iter(plan))
        installed = []
        try:
            await self._put(policy_path, plan[policy_path])
            installed.append(policy_path)
        except Exception as exc:  # noqa: BLE001 - any refusal means: no lifecycle here
            if _status(exc) == 409:
                installed.append(policy_path)
            else:
                _log.warning(
                    "lifecycle policy refused (no ILM/ISM?); templates go without lifecycle",
                    extra={"sink": self.name, "error": _sink.describe_error(exc)},
                )
                plan = normalize.templates(product, days, lifecycle=False)
        for path, body in plan.items():
            if path == policy_path:
                continue
            await self._put(path, body)
            installed.append(path)
        _log.info("index templates installed", extra={"sink": self.name, "count": len(installed)})
        return installed

    async def _put(self, path: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; raises the client's error (``_status(exc)`` reads it)."""
        raise NotImplementedError

    async def _bulk(self, body: bytes) -> Any:
        """One ``_bulk`` request of NDJSON ``body`` (:data:`FILTER_PATH`); the answer's body."""
        raise NotImplementedError

    async def absorb_rollover_copies(self, items: Sequence[_sink.Item], body: Any) -> None:
        """Remove the documents of this bulk answer that are resends across a rollover
        (see the module doc). Raises ``RetryableError`` when it cannot tell: the request
        is then sent again (409s), and checked again."""
        try:
            await self._absorb(items, _landed(body, len(items)))
        except core.RetryableError:
            raise
        except Exception as exc:
            raise core.RetryableError(
                f"cannot check for copies in older backing indices: {_sink.describe_error(exc)}"
            ) from exc

    async def _absorb(self, items: Sequence[_sink.Item], landed: list[tuple[int, str]]) -> None:
        lookups = await self._lookups(items, landed)
        if not lookups:
            return
        answer = await self._call(
            "POST",
            "/_mget",
            {"docs": [{"_index": o, "_id": d, "_source": False} for o, d, _ in lookups]},
        )
        docs = answer.get("docs") if isinstance(answer, Mapping) else None
        if not isinstance(docs, list) or len(docs) != len(lookups):
            raise core.RetryableError("the _mget answer does not list every document")
        # The oldest index holding a copy keeps it; every newer copy goes: the one just
        # written and any one left between them (a collector killed while removing it,
        # then another rollover before its resend). Two checks of one document at the
        # same time agree on which copy stays.
        kept: dict[tuple[str, str], str] = {}
        copies: set[tuple[str, str]] = set()
        for (older, doc_id, index), found in zip(lookups, docs, strict=True):
            if not isinstance(found, Mapping):
                raise core.RetryableError("the _mget answer is not a list of documents")
            if found.get("found") is True:
                first = kept.setdefault((doc_id, index), older)  # lookups go oldest first
                copies.add((index, doc_id))
                if first != older:
                    copies.add((older, doc_id))
            elif found.get("error") is not None:
                # An older index gone (retention) holds nothing any more; anything else
                # is a reason to ask again.
                if "index_not_found" not in str(found["error"]):
                    raise core.RetryableError(f"_mget in {older}: {error_text(found['error'])}")
                self._generations.clear()
        copies -= {(older, doc_id) for (doc_id, _), older in kept.items()}
        if copies:
            await self._remove(sorted(copies))

    async def _lookups(
        self, items: Sequence[_sink.Item], landed: list[tuple[int, str]]
    ) -> list[tuple[str, str, str]]:
        """``(older index, id, landed index)`` for every document that may have a first
        copy in an older backing index."""
        lookups: list[tuple[str, str, str]] = []
        for i, index in landed:
            event = items[i].event
            record = event.record
            if isinstance(record, core.Encoded):
                doc_id = record.id
            else:
                doc_id = record.get("id") if isinstance(record, dict) else None
            if doc_id is None:
                continue
            generations = await self._generations_of(event.tag, index)
            if generations is not None:
                lookups.extend(
                    (older, str(doc_id), index)
                    for older in generations.older_holders(index, event.time_ns / 1e9)
                )
        return lookups

    async def _remove(self, copies: list[tuple[str, str]]) -> None:
        """Delete ``(backing index, id)`` copies in one ``_bulk`` request (404: gone already)."""
        body = b"".join(
            orjson.dumps({"delete": {"_index": index, "_id": doc_id}}, option=_DOC_OPTIONS)
            for index, doc_id in copies
        )
        answer = await self._bulk(body)
        if not isinstance(answer, Mapping):
            raise core.RetryableError("the answer to removing copies is not a JSON object")
        if answer.get("errors"):
            for entry in answer.get("items") or [{}]:
                result: Any = next(iter(entry.values()), {}) if isinstance(entry, Mapping) else {}
                status = result.get("status") if isinstance(result, Mapping) else None
                if status not in (200, 404):
                    error = result.get("error") if isinstance(result, Mapping) else None
                    raise core.RetryableError(
                        f"copies not removed: HTTP {status}: {error_text(error)}"
                    )
        self._rollover_copies.inc(len(copies))
        _log.info(
            "resent documents crossed a rollover; their copies in the newer backing "
            "index were removed",
            extra={"sink": self.name, "documents": len(copies)},
        )

    async def _generations_of(self, stream: str, landed: str) -> _Generations | None:
        """The backing indices of ``stream``, read again when ``landed`` is not among them
        (a rollover since). ``None``: ``landed`` is not a backing index of it."""
        known = self._generations.get(stream)
        if known is not None and landed in known.created:
            return known
        answer = await self._call(
            "GET", f"/{urllib.parse.quote(stream, safe='')}/_settings/index.creation_date"
        )
        created: dict[str, float] = {}
        if isinstance(answer, Mapping):
            for name, entry in answer.items():
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    created[name] = int(entry["settings"]["index"]["creation_date"]) / 1000.0
        generations = _Generations(created)
        if len(self._generations) >= _STREAMS_MAX:
            self._generations.clear()
        self._generations[stream] = generations
        return generations if landed in created else None

    def _client_options(self) -> dict[str, Any]:
        """Options both official clients take: gzip, no retries of their own, TLS."""
        options: dict[str, Any] = {
            "http_compress": self.cfg.compress,
            "max_retries": 0,
            "retry_on_timeout": False,
        }
        if _net.is_https(self.cfg.url):
            options["ssl_context"] = _net.ssl_context(self.cfg.tls, self.name)
        return options

    def _basic_auth(self) -> tuple[str, str] | None:
        cfg = self.cfg
        if cfg.username is None:
            return None
        password = cfg.password.get_secret_value() if cfg.password is not None else ""
        return cfg.username, password

    async def _close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
