"""Running processes: the daemon, its JSON log, its metrics and health endpoints.

The names below are loaded on first use (PEP 562): a library that only counts
(``from kloghub.runtime import metrics``) does not import aiohttp, the daemon or the TLS
helpers with it, so commands such as ``kloghub search`` start light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kloghub.runtime import _metrics as metrics
    from kloghub.runtime._daemon import EXIT_CRASH, EXIT_OK, Daemon, tune_gc
    from kloghub.runtime._delivery import Delivery
    from kloghub.runtime._http import ObservabilityServer, Readiness
    from kloghub.runtime._logging import JsonFormatter, setup_logging
    from kloghub.runtime._tls import ClientTLS, client_ssl_context

__all__ = [
    "EXIT_CRASH",
    "EXIT_OK",
    "ClientTLS",
    "Daemon",
    "Delivery",
    "JsonFormatter",
    "ObservabilityServer",
    "Readiness",
    "client_ssl_context",
    "metrics",
    "setup_logging",
    "tune_gc",
]

_WHERE = {
    "EXIT_CRASH": "_daemon",
    "EXIT_OK": "_daemon",
    "Daemon": "_daemon",
    "tune_gc": "_daemon",
    "Delivery": "_delivery",
    "ObservabilityServer": "_http",
    "Readiness": "_http",
    "JsonFormatter": "_logging",
    "setup_logging": "_logging",
    "ClientTLS": "_tls",
    "client_ssl_context": "_tls",
}


def __getattr__(name: str) -> Any:
    if name == "metrics":
        value: Any = importlib.import_module("kloghub.runtime._lazy_metrics")
    elif name in _WHERE:
        value = getattr(importlib.import_module(f"kloghub.runtime.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module 'kloghub.runtime' has no attribute {name!r}")
    globals()[name] = value
    return value
