"""Agent sources: container, node and audit logs from files."""

from kloghub.sources._logs import LogSource, Sink, specs_from_config
from kloghub.sources._paths import PathMeta, from_path

__all__ = ["LogSource", "PathMeta", "Sink", "from_path", "specs_from_config"]
