"""Running processes: the daemon, its JSON log, its metrics and health endpoints."""

from kloghub.runtime import _metrics as metrics
from kloghub.runtime._daemon import EXIT_CRASH, EXIT_OK, Daemon, tune_gc
from kloghub.runtime._delivery import Delivery
from kloghub.runtime._http import ObservabilityServer, Readiness
from kloghub.runtime._logging import JsonFormatter, setup_logging
from kloghub.runtime._tls import client_ssl_context

__all__ = [
    "EXIT_CRASH",
    "EXIT_OK",
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
