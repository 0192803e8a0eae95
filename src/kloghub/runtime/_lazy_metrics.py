"""``kloghub.runtime.metrics`` as libraries see it: the metrics of ``_metrics``, loaded on
first use.

Importing a library (the tailer, the parser, a sink) must not import prometheus-client:
commands like ``kloghub search`` never count anything. The first attribute read here
imports ``_metrics`` (which registers every metric with prometheus-client) and keeps the
value in this module's globals, so later reads are plain module attribute lookups.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(importlib.import_module("kloghub.runtime._metrics"), name)
    globals()[name] = value
    return value
