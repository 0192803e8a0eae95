"""Pytest plugin: the real Elasticsearch and OpenSearch servers the integration tests talk to.

Loaded by the root conftest (``pytest_plugins = ["tests._servers"]``). The servers are
found through ``KLOGHUB_TEST_ELASTICSEARCH_URL`` and ``KLOGHUB_TEST_OPENSEARCH_URL``:
``make test`` starts local ones with ``scripts/search_servers.py`` and exports both, and a
developer can point them at servers of their own (``http://user:pass@host:port`` works).

A missing variable or a server that does not answer skips the test with instructions,
except under ``CI=true``, where it fails: CI must never pass by skipping its servers.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch
    from opensearchpy import AsyncOpenSearch

ELASTICSEARCH_URL_VAR = "KLOGHUB_TEST_ELASTICSEARCH_URL"
OPENSEARCH_URL_VAR = "KLOGHUB_TEST_OPENSEARCH_URL"
HOW_TO_START = (
    "`make test` starts local servers; or run `python scripts/search_servers.py start` and "
    "export what it prints (`set -a; . ~/.cache/kloghub/run/servers.env; set +a`), "
    "or point the variable at a server of your own"
)
PROBE_TIMEOUT_S = 5.0
CLIENT_TIMEOUT_S = 30


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _unavailable(product: str, reason: str) -> None:
    message = f"{product} is not available: {reason}. {HOW_TO_START}."
    if _in_ci():
        pytest.fail(
            f"{message} (CI=true: a missing server is a failure, not a skip)", pytrace=False
        )
    pytest.skip(message)


def _probe(url: str) -> str | None:
    """None if an HTTP server answers at `url`, else why not. Any HTTP status counts as an
    answer (a 401 is the clients' business); only connection-level failures do not."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    # GET / is not served by the minimal Elasticsearch build (no rest-root module); the
    # cluster health API exists in every build of both products.
    target = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/_cluster/health", "", "")
    )
    request = urllib.request.Request(target)
    if parts.username is not None:
        userinfo = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        request.add_header("Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"nothing answers at {url} ({getattr(exc, 'reason', exc)})"


def _server_url(env_var: str, product: str) -> str:
    url = os.environ.get(env_var, "").strip()
    if not url:
        _unavailable(product, f"{env_var} is not set")
    problem = _probe(url)
    if problem is not None:
        _unavailable(product, f"{env_var}={url}: {problem}")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """Base URL of a running Elasticsearch 9 (from KLOGHUB_TEST_ELASTICSEARCH_URL)."""
    return _server_url(ELASTICSEARCH_URL_VAR, "Elasticsearch")


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """Base URL of a running OpenSearch (from KLOGHUB_TEST_OPENSEARCH_URL)."""
    return _server_url(OPENSEARCH_URL_VAR, "OpenSearch")


# The async clients are function-scoped: each test gets a client bound to its own event loop
# (pytest-asyncio's default function loop scope), closed at teardown. A session-scoped client
# would need a session-scoped loop for every test that touches it.


@pytest_asyncio.fixture(loop_scope="function")
async def es_client(elasticsearch_url: str) -> AsyncIterator[AsyncElasticsearch]:
    """The official async Elasticsearch client for `elasticsearch_url`, closed afterwards."""
    from elasticsearch import AsyncElasticsearch

    client = AsyncElasticsearch(elasticsearch_url, request_timeout=CLIENT_TIMEOUT_S)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="function")
async def os_client(opensearch_url: str) -> AsyncIterator[AsyncOpenSearch]:
    """The official async OpenSearch client for `opensearch_url`, closed afterwards."""
    from opensearchpy import AsyncOpenSearch

    client = AsyncOpenSearch(hosts=[opensearch_url], timeout=CLIENT_TIMEOUT_S)
    try:
        yield client
    finally:
        await client.close()
