"""The ``kloghub`` command line."""

from kloghub.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
