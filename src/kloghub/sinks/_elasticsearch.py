"""``elasticsearch+https://`` and ``elasticsearch+http://``: ``_bulk`` ``create`` into data streams.

The official async client (``AsyncElasticsearch``) does the HTTP: gzip (``compress``),
``concurrency`` connections, credentials (``username``/``password`` or ``api_key``) and TLS
(``tls.ca_file``, ``tls.verify``, client certificates). Its own retries are off: the
:class:`~kloghub.sinks._sink.Sink` layers retry only what needs it. The start-up check is
``GET _cluster/health`` (``GET /`` is not served by every build).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kloghub import core
from kloghub.sinks import _bulk, _sink

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ElasticsearchSink"]

_log = logging.getLogger("kloghub.sinks.elasticsearch")

_CHECK_TIMEOUT_S = 10.0


class ElasticsearchSink(_bulk.BulkSink["AsyncElasticsearch"]):
    """Bulk-indexes normalized documents into Elasticsearch data streams."""

    kind = "elasticsearch"
    _client: AsyncElasticsearch | None

    async def push(self, items: Sequence[_sink.Item]) -> _sink.Outcome:
        import elastic_transport
        import elasticsearch

        await self._templates_tried()
        assert self._client is not None
        body = b"".join(item.data for item in items)
        try:
            response = await self._client.bulk(
                operations=body,  # type: ignore[arg-type]  # pre-encoded NDJSON is passed as is
                filter_path=_bulk.FILTER_PATH,
            )
        except elasticsearch.ApiError as exc:
            raise _bulk.request_error(
                exc.meta.status,
                _bulk.error_text(exc.body),
                _sink.parse_retry_after(exc.meta.headers.get("retry-after")),
            ) from exc
        except elastic_transport.TransportError as exc:
            raise core.RetryableError(_sink.describe_error(exc)) from exc
        retry_after = _sink.parse_retry_after(response.meta.headers.get("retry-after"))
        await self.absorb_rollover_copies(items, response.body)
        return _bulk.outcome(response.body, len(items), retry_after)

    async def _open(self) -> None:
        from elasticsearch import AsyncElasticsearch

        options = self._client_options()
        options["request_timeout"] = self._request_timeout
        options["connections_per_node"] = self.cfg.concurrency
        if self.cfg.api_key is not None:
            options["api_key"] = self.cfg.api_key.get_secret_value()
        elif (auth := self._basic_auth()) is not None:
            options["basic_auth"] = auth
        self._client = AsyncElasticsearch([self._url], **options)

    async def _put(self, path: str, body: dict[str, Any]) -> None:
        assert self._client is not None
        await self._client.perform_request(
            "PUT",
            f"/{path}",
            body=body,
            headers={"content-type": "application/json", "accept": "application/json"},
        )

    async def _bulk(self, body: bytes) -> Any:
        assert self._client is not None
        response = await self._client.bulk(
            operations=body,  # type: ignore[arg-type]  # pre-encoded NDJSON is passed as is
            filter_path=_bulk.FILTER_PATH,
        )
        return response.body

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self._client is not None
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        response = await self._client.perform_request(method, path, body=body, headers=headers)
        return response.body

    async def _check(self) -> None:
        import elasticsearch

        assert self._client is not None
        try:
            health = await self._client.options(request_timeout=_CHECK_TIMEOUT_S).cluster.health()
        except elasticsearch.ApiError as exc:
            if exc.meta.status in (401, 403):
                self._fatal(f"credentials refused: HTTP {exc.meta.status}")
            raise
        _log.info(
            "Elasticsearch answers",
            extra={"sink": self.name, "cluster_status": health.body.get("status")},
        )
