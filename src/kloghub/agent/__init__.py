"""The node agent: assembles sources, buffer and outputs into a daemon."""

from kloghub.agent._app import build

__all__ = ["build"]
