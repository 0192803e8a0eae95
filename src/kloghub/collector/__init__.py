"""The central collector: assembles the Forward listener, sink queues and sinks."""

from kloghub.collector._app import build

__all__ = ["build"]
