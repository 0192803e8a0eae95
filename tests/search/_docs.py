"""The incident fixture (tests/fixtures/search/incident.ndjson) and helpers to load it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kloghub import search, store

FIXTURE = Path(__file__).parents[1] / "fixtures" / "search" / "incident.ndjson"
SINCE = "2026-11-27T05:00:00Z"
UNTIL = "2026-11-27T07:00:00Z"
"""A window that holds every fixture document (they are all between 06:00 and 06:26)."""


def load() -> list[tuple[str, int, dict[str, Any]]]:
    """``(id, time_ns, doc)`` for each fixture document, time from its ``@timestamp``."""
    docs = []
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        doc = record["doc"]
        time_ns = search.parse_instant(doc["@timestamp"]).resolve(0)
        docs.append((record["id"], time_ns, doc))
    return docs


def fill(path: Path) -> Path:
    """A store at ``path`` holding the fixture."""
    with store.Store.open(path) as db:
        db.add(load())
    return path
