"""A store holding the incident fixture, shared (read-only) by the tests of a module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.search import _docs


@pytest.fixture(scope="module")
def incident_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a store with every fixture document; tests must not write to it."""
    return _docs.fill(tmp_path_factory.mktemp("incident") / "store.db")
