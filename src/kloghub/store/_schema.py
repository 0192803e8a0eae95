"""The embedded store's schema: one row per ECS document, FTS5 over the message.

Every ECS field below has a column of its own (indexed with the time, so that a filter on it
reads only its rows, newest first); any other field is reached through the JSON of the
whole document. A column holds exactly one ECS field, so a query on it means the same here
as on Elasticsearch.
"""

from __future__ import annotations

__all__ = [
    "APPLICATION_ID",
    "FIELD_COLUMNS",
    "FTS_TABLE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TABLE",
    "TEXT_FIELD",
    "TIME_FIELD",
]

APPLICATION_ID = 0x6B6C6768
"""``PRAGMA application_id`` of a kloghub store ("klgh"): tells ours from other SQLite files."""
SCHEMA_VERSION = 1
"""``PRAGMA user_version``; a store written by a newer kloghub is refused, not misread."""

TABLE = "events"
"""Columns: ``seq`` (insertion order), ``id``, ``time_ns``, the field columns, ``doc``."""
FTS_TABLE = "events_fts"
"""FTS5 index over ``message`` (external content; ``rowid`` is ``events.seq``). The store
keeps it in step in bulk, one statement per batch: triggers (one per row) cost 4 times more."""

TIME_FIELD = "@timestamp"
"""Held in ``events.time_ns`` (nanoseconds since the epoch)."""
TEXT_FIELD = "message"
"""Held in ``events.message`` and indexed word by word in :data:`FTS_TABLE`."""

FIELD_COLUMNS: dict[str, str] = {
    "message": "message",
    "kubernetes.namespace": "namespace",
    "kubernetes.pod.name": "pod",
    "kubernetes.container.name": "container",
    "kubernetes.node.name": "node",
    "host.name": "host",
    "log.level": "level",
    "stream": "stream",
    "data_stream.dataset": "dataset",
    "user.name": "user_name",
}
"""ECS field → column of :data:`TABLE` (text; ``NULL`` when the document lacks the field)."""

_INDEXED = ("namespace", "pod", "container", "node", "host", "level", "dataset", "user_name")

# FTS5's unicode61 tokenizer is set up to split words like Elasticsearch's standard
# analyzer does in the common cases: case-folded, accents kept, "_" inside words.
_TOKENIZE = "unicode61 remove_diacritics 0 tokenchars '_'"

SCHEMA: tuple[str, ...] = (
    f"""CREATE TABLE {TABLE} (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        time_ns INTEGER NOT NULL,
        {", ".join(f"{column} TEXT" for column in FIELD_COLUMNS.values())},
        doc TEXT NOT NULL
    )""",
    f"CREATE INDEX {TABLE}_time ON {TABLE} (time_ns)",
    *(
        f"CREATE INDEX {TABLE}_{column} ON {TABLE} ({column}, time_ns) WHERE {column} IS NOT NULL"
        for column in _INDEXED
    ),
    f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        message, content='{TABLE}', content_rowid='seq', tokenize="{_TOKENIZE}"
    )""",
)
"""Statements that create an empty store (run once, in one transaction)."""
