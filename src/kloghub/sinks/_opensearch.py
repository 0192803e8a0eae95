"""``opensearch+https://`` and ``opensearch+http://``: ``_bulk`` as for Elasticsearch.

The official async client (``AsyncOpenSearch``, aiohttp underneath) does the HTTP: gzip,
``concurrency`` connections, basic auth and TLS. Its own retries are off. OpenSearch has
no Elasticsearch API keys: ``api_key`` is refused at construction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kloghub import core
from kloghub.sinks import _bulk, _sink

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

__all__ = ["OpenSearchSink"]

_log = logging.getLogger("kloghub.sinks.opensearch")

_CHECK_TIMEOUT_S = 10.0


class OpenSearchSink(_bulk.BulkSink["AsyncOpenSearch"]):
    """Bulk-indexes normalized documents into OpenSearch data streams."""

    kind = "opensearch"
    takes_api_key = False
    _client: AsyncOpenSearch | None

    async def push(self, items: Sequence[_sink.Item]) -> _sink.Outcome:
        from opensearchpy import exceptions

        await self._templates_tried()
        assert self._client is not None
        body = b"".join(item.data for item in items)
        try:
            answer = await self._client.bulk(body=body, params={"filter_path": _bulk.FILTER_PATH})
        except exceptions.TransportError as exc:
            status = exc.status_code
            if not isinstance(status, int):  # "N/A" (connection) or "TIMEOUT"
                raise core.RetryableError(_sink.describe_error(exc)) from exc
            raise _bulk.request_error(status, _bulk.error_text(exc.info), None) from exc
        except exceptions.SerializationError as exc:
            raise core.RetryableError(_sink.describe_error(exc)) from exc
        await self.absorb_rollover_copies(items, answer)
        return _bulk.outcome(answer, len(items))

    async def _open(self) -> None:
        from opensearchpy import AsyncOpenSearch

        options = self._client_options()
        options["timeout"] = self._request_timeout
        options["pool_maxsize"] = self.cfg.concurrency
        if (auth := self._basic_auth()) is not None:
            options["http_auth"] = auth
        self._client = AsyncOpenSearch(hosts=[self._url], **options)

    async def _put(self, path: str, body: dict[str, Any]) -> None:
        assert self._client is not None
        await self._client.transport.perform_request("PUT", f"/{path}", body=body)

    async def _bulk(self, body: bytes) -> Any:
        assert self._client is not None
        return await self._client.bulk(body=body, params={"filter_path": _bulk.FILTER_PATH})

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self._client is not None
        return await self._client.transport.perform_request(method, path, body=body)

    async def _check(self) -> None:
        from opensearchpy import exceptions

        assert self._client is not None
        try:
            health = await self._client.cluster.health(params={"request_timeout": _CHECK_TIMEOUT_S})
        except exceptions.TransportError as exc:
            if exc.status_code in (401, 403):
                self._fatal(f"credentials refused: HTTP {exc.status_code}")
            raise
        _log.info(
            "OpenSearch answers", extra={"sink": self.name, "cluster_status": health.get("status")}
        )
