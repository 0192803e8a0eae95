"""The embedded store: ECS documents in SQLite (WAL, FTS5), searchable while written."""

from kloghub.store._errors import StoreError
from kloghub.store._schema import FIELD_COLUMNS, FTS_TABLE, TABLE, TEXT_FIELD, TIME_FIELD
from kloghub.store._sink import StoreSink, path_from_url
from kloghub.store._store import Prepared, Retained, Store, Stored, prepare

__all__ = [
    "FIELD_COLUMNS",
    "FTS_TABLE",
    "TABLE",
    "TEXT_FIELD",
    "TIME_FIELD",
    "Prepared",
    "Retained",
    "Store",
    "StoreError",
    "StoreSink",
    "Stored",
    "path_from_url",
    "prepare",
]
