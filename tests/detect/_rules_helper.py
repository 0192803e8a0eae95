"""Writing small Sigma rules to files for the loader and backend tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from kloghub import detect
from kloghub.detect import _compile


def write(tmp: Path, text: str, name: str = "rule.yml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def audit_rule(
    detection: dict[str, Any], rule_id: str = "0b5ef1b4-9a3c-4a44-9d55-000000000001"
) -> str:
    return yaml.safe_dump(
        {
            "title": "t",
            "id": rule_id,
            "level": "low",
            "logsource": {"product": "kubernetes", "service": "audit"},
            "detection": detection,
        }
    )


def matcher(tmp: Path, detection: dict[str, Any]) -> _compile.Matcher:
    ruleset = detect.load([write(tmp, audit_rule(detection))])
    return ruleset.detections[0].match
