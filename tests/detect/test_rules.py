"""The loader refuses what cannot run, at load, naming file, line, rule and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from kloghub import detect
from tests.detect._rules_helper import write

GOOD = """
title: good
id: 0b5ef1b4-9a3c-4a44-9d55-0000000000aa
level: low
logsource: {product: kubernetes, service: audit}
detection:
  sel: {verb: get}
  condition: sel
"""


def refusal(tmp_path: Path, text: str) -> detect.RuleError:
    path = write(tmp_path, GOOD + "---\n" + text)
    with pytest.raises(detect.LoadError) as info:
        detect.load([path])
    assert len(info.value.errors) == 1, info.value
    error = info.value.errors[0]
    assert error.path == path
    return error


@pytest.mark.parametrize(
    ("body", "reason", "line_holds"),
    [
        (
            "  sel: {verb|fieldref: user.username}\n  condition: sel\n",
            "field references",
            "fieldref",
        ),
        ("  sel: {verb|windash: get}\n  condition: sel\n", "value expansions", "windash"),
        ("  sel: [get, list]\n  condition: sel\n", "values without a field", "title: bad"),
        ("  sel: {verb|nosuch: get}\n  condition: sel\n", "nosuch", "title: bad"),
        ("  sel: {verb: get}\n  condition: sel | count() > 5\n", "pipe syntax", "title: bad"),
    ],
)
def test_unsupported_construct_is_refused_with_file_line_and_reason(
    tmp_path: Path, body: str, reason: str, line_holds: str
) -> None:
    """If this failed, a rule the backend cannot evaluate would load and silently never
    fire, or its refusal would not say where it is."""
    text = (
        "title: bad\nid: 0b5ef1b4-9a3c-4a44-9d55-0000000000bb\nlevel: low\n"
        "logsource: {product: kubernetes, service: audit}\ndetection:\n" + body
    )
    error = refusal(tmp_path, text)
    assert reason in error.reason
    assert error.rule == "bad"
    assert line_holds in error.path.read_text().split("\n")[error.line - 1]
    assert str(error).startswith(f"{error.path}:{error.line}: rule 'bad': ")


def test_rule_without_id_or_level_is_refused(tmp_path: Path) -> None:
    """If this failed, settings and alerts could not name a rule, or it would have no severity."""
    error = refusal(tmp_path, GOOD.replace("id: 0b5ef1b4-9a3c-4a44-9d55-0000000000aa\n", ""))
    assert "no id" in error.reason
    error = refusal(
        tmp_path,
        GOOD.replace("level: low", "level: urgent").replace("0000000000aa", "0000000000cc"),
    )
    assert "level" in error.reason


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    """If this failed, two rules would share settings and alert ids."""
    assert "also used" in refusal(tmp_path, GOOD).reason


@pytest.mark.parametrize(
    ("correlation", "reason"),
    [
        ("type: event_count\n  rules: [good]\n  timespan: 1m\n  condition: {lte: 3}", "lte needs"),
        ("type: temporal_ordered\n  rules: [good]\n  timespan: 1m", "temporal_ordered"),
        ("type: event_count\n  rules: [nosuch]\n  timespan: 1m\n  condition: {gte: 3}", "nosuch"),
    ],
)
def test_correlation_that_cannot_run_in_real_time_is_refused(
    tmp_path: Path, correlation: str, reason: str
) -> None:
    """If this failed, a correlation would load that can never be decided on a stream."""
    text = f"title: corr\nid: 0b5ef1b4-9a3c-4a44-9d55-0000000000dd\ncorrelation:\n  {correlation}\n"
    path = write(tmp_path, GOOD.replace("title: good", "title: good\nname: good") + "---\n" + text)
    with pytest.raises(detect.LoadError) as info:
        detect.load([path])
    assert reason in str(info.value)


def test_every_error_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    """If this failed, a user would fix rules one error per restart."""
    write(tmp_path, "title: a\nlevel: low\n", "a.yml")
    write(tmp_path, "title: b\n  bad: [yaml\n", "b.yml")
    with pytest.raises(detect.LoadError) as info:
        detect.load([tmp_path])
    assert sorted(e.path.name for e in info.value.errors) == ["a.yml", "b.yml"]


def test_the_default_pack_loads() -> None:
    """If this failed, the collector could not start with detections on."""
    ruleset = detect.load([detect.default_pack()])
    assert len(ruleset.detections) >= 12
    assert {c.type for c in ruleset.correlations} == {"event_count", "value_count"}


def test_an_id_that_is_not_a_uuid_string_is_refused_not_crashed_on(tmp_path: Path) -> None:
    """If this failed, `id: 1` in a user's rule file would crash the collector at start
    with a traceback from pySigma instead of an error naming the file."""
    path = tmp_path / "r.yml"
    path.write_text("title: x\nid: 1\nlevel: high\nlogsource: {product: kubernetes}\n")
    with pytest.raises(detect.LoadError, match=r"r\.yml:1: .*id must be a UUID string"):
        detect.load([path])
    path.write_text(
        "title: x\nid: not-a-uuid\nlevel: high\nlogsource: {product: kubernetes}\n"
        "detection: {s: {verb: get}, condition: s}\n"
    )
    with pytest.raises(detect.LoadError, match=r"r\.yml:1"):
        detect.load([path])


def test_a_folder_mounted_from_a_configmap_loads_each_rule_once(tmp_path: Path) -> None:
    """If this failed, rules given to the chart as a ConfigMap would be refused as
    duplicates: the kubelet keeps each file under ``..data/`` and ``..<timestamp>/`` too."""
    stamp = tmp_path / "..2026_12_03_10_00_00.123456789"
    stamp.mkdir()
    (stamp / "mine.yml").write_text(GOOD)
    (tmp_path / "..data").symlink_to(stamp.name)
    (tmp_path / "mine.yml").symlink_to("..data/mine.yml")
    ruleset = detect.load([tmp_path])
    assert [d.title for d in ruleset.detections] == ["good"]
