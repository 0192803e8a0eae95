"""Running processes: the daemon, its JSON log, its metrics and health endpoints."""

from kloghub.runtime import _metrics as metrics
from kloghub.runtime._daemon import EXIT_CRASH, EXIT_OK, Daemon, tune_gc
from kloghub.runtime._http import ObservabilityServer, Readiness
from kloghub.runtime._logging import JsonFormatter, setup_logging

__all__ = [
    "EXIT_CRASH",
    "EXIT_OK",
    "Daemon",
    "JsonFormatter",
    "ObservabilityServer",
    "Readiness",
    "metrics",
    "setup_logging",
    "tune_gc",
]
