"""Real-time detections: Sigma rules compiled to matchers over kloghub's ECS documents."""

from kloghub.detect._alert import DATASET, alert_document
from kloghub.detect._compile import UnsupportedError, lookup, required
from kloghub.detect._engine import Alert, Detector
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
    "Correlation",
    "Detection",
    "Detector",
    "LoadError",
    "RuleError",
    "Ruleset",
    "Stage",
    "UnsupportedError",
    "alert_document",
    "audit_field",
    "default_pack",
    "load",
    "lookup",
    "pipeline",
    "required",
]
