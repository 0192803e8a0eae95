"""Where a search runs: the embedded store, Elasticsearch or OpenSearch.

Each backend answers one question — "the next ``size`` matches in time order after these"
— so that paging, ``--limit``, ``--follow`` and progress work the same on all of them.
Paging is by time: the next page starts at the last time seen, minus the documents already
returned at that very time (by id), so ties are neither lost nor repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kloghub import config, core, store
from kloghub.search import _dsl, _query, _sql, _times

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch
    from opensearchpy import AsyncOpenSearch

__all__ = [
    "DEFAULT_INDEX",
    "Backend",
    "BackendError",
    "ElasticsearchBackend",
    "Hit",
    "OpenSearchBackend",
    "StoreBackend",
    "open_backend",
]

DEFAULT_INDEX = "logs-kubernetes.*,logs-kloghub.alerts-*"
"""The data streams kloghub writes: container, audit and node logs and the detections'
alerts, of every namespace (as the embedded store holds them all)."""
_REQUEST_TIMEOUT_S = 30


class BackendError(core.KloghubError):
    """The backend could not answer (unreachable, refused, bad credentials)."""


@dataclass(slots=True)
class Hit:
    """One matching document."""

    id: str
    time_ns: int
    doc: dict[str, Any]
    cursor: Any = field(default=None, compare=False)
    """Backend-specific position (the store's insertion order)."""


class Backend(Protocol):
    description: str
    """What is searched, for messages (``store /var/lib/...``, ``Elasticsearch https://...``)."""

    async def page(
        self,
        node: _query.Node,
        *,
        now_ns: int,
        newest_first: bool,
        size: int,
        after: Sequence[Hit] = (),
    ) -> list[Hit]:
        """Up to ``size`` matches in time order, after ``after`` (the previous page's last
        hits that share its last time)."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- embedded store


class StoreBackend:
    """Searches a store file (read-only; the pipeline may be writing it at the same time)."""

    def __init__(self, db: store.Store) -> None:
        self.store = db
        self.description = f"store {db.path}"

    @classmethod
    def open(cls, path: Path | str) -> StoreBackend:
        """Raises :class:`kloghub.store.StoreError` for a missing, foreign or damaged file."""
        return cls(store.Store.open(path, readonly=True))

    async def page(
        self,
        node: _query.Node,
        *,
        now_ns: int,
        newest_first: bool,
        size: int,
        after: Sequence[Hit] = (),
    ) -> list[Hit]:
        where, params = _sql.translate(node, now_ns)
        position = (after[-1].time_ns, after[-1].cursor) if after else None
        rows = await asyncio.to_thread(
            self.store.select,
            where,
            params,
            newest_first=newest_first,
            limit=size,
            after=position,
        )
        return [Hit(row.id, row.time_ns, row.doc, row.seq) for row in rows]

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)


# --------------------------------------------------------------------------- clusters


def request_body(
    node: _query.Node, now_ns: int, newest_first: bool, size: int, after: Sequence[Hit]
) -> dict[str, Any]:
    """The search request for one page (shared by Elasticsearch and OpenSearch)."""
    query = _dsl.translate(node, now_ns)
    if after:
        bound = "lte" if newest_first else "gte"
        last = _times.format_ns(after[-1].time_ns)
        query = {
            "bool": {
                "filter": [
                    query,
                    {"range": {"@timestamp": {bound: last, "format": _dsl.NANOS_FORMAT}}},
                ],
                "must_not": [{"ids": {"values": [hit.id for hit in after]}}],
            }
        }
    order = "desc" if newest_first else "asc"
    return {
        "query": query,
        "size": size,
        "sort": [
            {
                "@timestamp": {
                    "order": order,
                    "numeric_type": "date_nanos",
                    "unmapped_type": "date_nanos",
                }
            }
        ],
        "track_total_hits": False,
    }


def _reason(body: Any, fallback: str) -> str:
    try:
        return str(body["error"]["root_cause"][0]["reason"])
    except (KeyError, IndexError, TypeError):
        pass
    try:
        return str(body["error"]["reason"])
    except (KeyError, TypeError):
        return fallback


class _ClusterBackend:
    """Paging over ``index`` of a search cluster; subclasses send one request."""

    product = "cluster"

    def __init__(self, client: Any, index: str = DEFAULT_INDEX, where: str = "") -> None:
        self.client = client
        self.index = index
        self.description = " ".join(part for part in (self.product, where, index) if part)

    async def close(self) -> None:
        await self.client.close()

    async def page(
        self,
        node: _query.Node,
        *,
        now_ns: int,
        newest_first: bool,
        size: int,
        after: Sequence[Hit] = (),
    ) -> list[Hit]:
        response = await self._search(request_body(node, now_ns, newest_first, size, after))
        return [
            Hit(str(hit["_id"]), int(hit["sort"][0]), hit.get("_source") or {})
            for hit in response["hits"]["hits"]
        ]

    async def _search(self, body: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _refused(self, status: object, body: Any, fallback: str) -> BackendError:
        return BackendError(
            f"{self.description} refused the search ({status}): {_reason(body, fallback)}"
        )

    def _unreachable(self, error: object) -> BackendError:
        return BackendError(f"{self.description} did not answer: {error}")


class ElasticsearchBackend(_ClusterBackend):
    """Searches Elasticsearch data streams matching ``index`` with the official async client."""

    product = "Elasticsearch"
    client: AsyncElasticsearch

    async def _search(self, body: dict[str, Any]) -> Any:
        from elasticsearch import ApiError, TransportError

        try:
            return await self.client.search(
                index=self.index, ignore_unavailable=True, allow_no_indices=True, **body
            )
        except ApiError as exc:
            raise self._refused(exc.meta.status, exc.body, exc.message) from None
        except TransportError as exc:
            raise self._unreachable(exc.message) from None


class OpenSearchBackend(_ClusterBackend):
    """Searches OpenSearch data streams matching ``index`` with the official async client."""

    product = "OpenSearch"
    client: AsyncOpenSearch

    async def _search(self, body: dict[str, Any]) -> Any:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError
        from opensearchpy.exceptions import TransportError

        try:
            return await self.client.search(
                index=self.index, body=body, ignore_unavailable=True, allow_no_indices=True
            )
        except OSConnectionError as exc:
            raise self._unreachable(exc.error) from None
        except TransportError as exc:
            raise self._refused(exc.status_code, exc.info, str(exc.error)) from None


# --------------------------------------------------------------------------- from a URL


def open_backend(
    url: str, settings: config.SearchConfig | None = None, *, index: str = DEFAULT_INDEX
) -> Backend:
    """The backend named by ``url`` (``store:PATH``, ``elasticsearch+https://host:9200``,
    ``opensearch+http://...``); credentials and TLS come from ``settings``, never the URL.

    Raises :class:`kloghub.store.StoreError` or :class:`BackendError`."""
    settings = settings or config.SearchConfig(store=url)
    scheme, sep, rest = url.partition(":")
    if scheme == "store" and sep and rest:
        return StoreBackend.open(rest)
    product, plus, transport = scheme.partition("+")
    if (
        not plus
        or product not in ("elasticsearch", "opensearch")
        or transport
        not in (
            "http",
            "https",
        )
    ):
        raise BackendError(
            f"cannot search {url!r}: use store:PATH, elasticsearch+https://HOST:PORT or "
            "opensearch+https://HOST:PORT"
        )
    http_url = f"{transport}:{rest}"
    if product == "elasticsearch":
        return ElasticsearchBackend(_es_client(http_url, settings), index, http_url)
    return OpenSearchBackend(_os_client(http_url, settings), index, http_url)


def _tls_options(url: str, tls: config.TLSConfig) -> dict[str, Any]:
    if not url.startswith("https:"):
        return {}
    options: dict[str, Any] = {"verify_certs": tls.verify}
    if tls.ca_file is not None:
        options["ca_certs"] = str(tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        options["client_cert"] = str(tls.cert_file)
        options["client_key"] = str(tls.key_file)
    elif tls.credential_bundle_file is not None:
        options["client_cert"] = str(tls.credential_bundle_file)  # key and chain in one
    return options


def _es_client(url: str, settings: config.SearchConfig) -> AsyncElasticsearch:
    from elasticsearch import AsyncElasticsearch

    options = _tls_options(url, settings.tls)
    if settings.api_key is not None:
        options["api_key"] = settings.api_key.get_secret_value()
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        options["basic_auth"] = (settings.username, password)
    return AsyncElasticsearch(url, request_timeout=_REQUEST_TIMEOUT_S, **options)


def _os_client(url: str, settings: config.SearchConfig) -> AsyncOpenSearch:
    from opensearchpy import AsyncOpenSearch

    options = _tls_options(url, settings.tls)
    if url.startswith("https:"):
        options["use_ssl"] = True
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        options["http_auth"] = (settings.username, password)
    return AsyncOpenSearch(hosts=[url], timeout=_REQUEST_TIMEOUT_S, **options)
