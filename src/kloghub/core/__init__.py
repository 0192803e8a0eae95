"""Core types: events, batches, chunks, acknowledgements, the component lifecycle, errors.

This layer imports no framework; everything else builds on it.
"""

from kloghub.core._budget import Budget
from kloghub.core._chunk import Chunk
from kloghub.core._errors import ConfigError, KloghubError, PermanentError, RetryableError
from kloghub.core._event import Batch, Encoded, Event
from kloghub.core._finalize import Delivery, Finalizer, OffsetTracker
from kloghub.core._lifecycle import Component, Service, State, Supervisor
from kloghub.core._origin import Method, Origin

__all__ = [
    "Batch",
    "Budget",
    "Chunk",
    "Component",
    "ConfigError",
    "Delivery",
    "Encoded",
    "Event",
    "Finalizer",
    "KloghubError",
    "Method",
    "OffsetTracker",
    "Origin",
    "PermanentError",
    "RetryableError",
    "Service",
    "State",
    "Supervisor",
]
