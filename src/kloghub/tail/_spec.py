"""What to tail: include and exclude globs, the line format, where to start."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["NEVER_DISCOVERED", "FileSpec"]

NEVER_DISCOVERED = ("*.gz", "*.tmp", "*.swp")
"""Rotated archives and temporary files are never tailed as new files."""


@dataclass(frozen=True)
class FileSpec:
    """One kind of file to tail (container logs, node logs, the audit log)."""

    kind: str
    """``containers``, ``node`` or ``audit``: passed back to the source with each chunk."""
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    fmt: Literal["auto", "cri", "docker", "text", "json"] = "auto"
    read_from: Literal["head", "tail"] = "head"
    _exclude_all: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_exclude_all", (*self.exclude, *NEVER_DISCOVERED))

    def excluded(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(name, pat)
            for pat in self._exclude_all
        )
