"""The ``_bulk`` API shared by Elasticsearch and OpenSearch: encoding and classification.

Each event becomes ``{"create": {"_index": <data stream>, "_id": <doc id>}}`` and its
document. ``create`` into a data stream with a deterministic ``_id`` is what makes a
resend harmless: the second copy is refused with 409, which counts as delivered.

Per item: 2xx and 409 → delivered; 429 and 5xx → sent again alone; any other status
(mapping conflicts, invalid data stream names) → dead-letter queue with the server's reason.
Per request: 429, 408 and 5xx → retried (``Retry-After`` honoured); 400 and 413 → split to
find the item that spoils it; 401, 403 and other statuses → fatal (paused, ``/readyz``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import orjson

from kloghub import config, core, normalize
from kloghub.sinks import _dlq, _net, _sink

__all__ = ["FILTER_PATH", "BulkSink", "encode", "error_text", "outcome", "request_error"]

DEFAULT_PORT = 9200

FILTER_PATH = "errors,items.*.status,items.*.error"
"""Only what classification needs comes back (not every item's index, id and shards)."""

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

    def encode(self, event: core.Event) -> bytes:
        return encode(event)

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
