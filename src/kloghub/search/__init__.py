"""``kloghub search``: one query language over the embedded store, Elasticsearch and OpenSearch.

Query syntax (see ``_query`` for the grammar)::

    connection refused                 free text in message: both words (implicit AND)
    "connection refused"               a phrase
    time*                              words starting with "time"
    pod:web-*  level:error             exact fields, * and ? wildcards (case-sensitive)
    user:"system:anonymous"            exact value, no wildcards
    field:*                            the field exists
    verb:(get OR list)                 several values of one field
    a AND b, a OR b, NOT a, -a, ( )    NOT binds tightest, then AND, then OR
    @timestamp:[now-1h TO now]         time range ([ ] inclusive, { } exclusive, * open)
    @timestamp:>=2026-11-27T06:00:00Z  time comparison (>, >=, <, <=)

Aliases: ns/namespace, pod, container, node, host, level, user, verb, resource, code,
dataset, image, msg, time (``ALIASES``). Options add ``--namespace``, ``--pod``,
``--container`` (wildcards allowed), ``--since``/``--until`` (``15m``, ``2h``, ``now-1d``,
RFC 3339), ``--limit``, ``--sort``, ``--follow``.
"""

from kloghub.search._backends import (
    DEFAULT_INDEX,
    Backend,
    BackendError,
    ElasticsearchBackend,
    Hit,
    OpenSearchBackend,
    StoreBackend,
    open_backend,
    request_body,
)
from kloghub.search._dsl import translate as to_dsl
from kloghub.search._fields import ALIASES
from kloghub.search._format import FORMATS, Formatter, make_formatter, summary
from kloghub.search._query import (
    All,
    And,
    Exists,
    Node,
    Not,
    Or,
    QueryError,
    Term,
    Text,
    TimeRange,
    Wild,
    Wildcard,
    parse,
)
from kloghub.search._run import Plan, Request, fetch, plan, run, stream
from kloghub.search._sql import translate as to_sql
from kloghub.search._times import Instant, format_ns, parse_instant

__all__ = [
    "ALIASES",
    "DEFAULT_INDEX",
    "FORMATS",
    "All",
    "And",
    "Backend",
    "BackendError",
    "ElasticsearchBackend",
    "Exists",
    "Formatter",
    "Hit",
    "Instant",
    "Node",
    "Not",
    "OpenSearchBackend",
    "Or",
    "Plan",
    "QueryError",
    "Request",
    "StoreBackend",
    "Term",
    "Text",
    "TimeRange",
    "Wild",
    "Wildcard",
    "fetch",
    "format_ns",
    "make_formatter",
    "open_backend",
    "parse",
    "parse_instant",
    "plan",
    "request_body",
    "run",
    "stream",
    "summary",
    "to_dsl",
    "to_sql",
]
