"""Real-time detections: Sigma rules compiled to matchers over kloghub's ECS documents."""

from kloghub.detect._alert import DATASET, alert_document
from kloghub.detect._backtest import Backtest
from kloghub.detect._compile import UnsupportedError, lookup, required
from kloghub.detect._engine import Alert, Detector
from kloghub.detect._export import Exported, export
from kloghub.detect._notify import Notifier
from kloghub.detect._pipeline import audit_field, pipeline
from kloghub.detect._rules import (
    LEVELS,
    Correlation,
    Detection,
    LoadError,
    RuleError,
    Ruleset,
    default_pack,
    load,
)
from kloghub.detect._stage import AlertHook, Stage

__all__ = [
    "DATASET",
    "LEVELS",
    "Alert",
    "AlertHook",
    "Backtest",
    "Correlation",
    "Detection",
    "Detector",
    "Exported",
    "LoadError",
    "Notifier",
    "RuleError",
    "Ruleset",
    "Stage",
    "UnsupportedError",
    "alert_document",
    "audit_field",
    "default_pack",
    "export",
    "load",
    "lookup",
    "pipeline",
    "required",
]
