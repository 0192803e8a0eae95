"""The store's one error: what is wrong, and with which file."""

from __future__ import annotations

from pathlib import Path

from kloghub import core

__all__ = ["StoreError"]


class StoreError(core.KloghubError):
    """The store at ``path`` cannot be used: missing, not a kloghub store, damaged, locked."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"store {path}: {problem}")
