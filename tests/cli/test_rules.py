"""`kloghub rules list|validate|test|export`: the rules from the terminal, with honest exit
codes (0 ok, 1 refused rules or a failed backend, 2 bad usage)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from kloghub import store
from tests._procs import run_kloghub
from tests.detect import _events as ev

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
CLUSTER_ADMIN = "a1c5a4e4-7e5a-4877-a7ef-9fef3065bd81"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("KLOGHUB_"):
            monkeypatch.delenv(key)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_kloghub("rules", *args, timeout=120)


@pytest.fixture(scope="module")
def audit_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the real audit fixture, normalized."""
    path = tmp_path_factory.mktemp("audit") / "store.db"
    with store.Store.open(path) as db:
        db.add([(doc_id, time_ns, doc) for doc_id, doc, time_ns in ev.fixture_documents()])
    return path


def _config(tmp_path: Path, detections: dict) -> Path:
    path = tmp_path / "kloghub.yaml"
    path.write_text(yaml.safe_dump({"collector": {"detections": detections}}))
    return path


def test_list_shows_the_pack_with_the_configured_mode_and_state(tmp_path):
    """If this failed, a user could not see which rules run, and how, before deploying."""
    cfg = _config(
        tmp_path, {"rules": {EXEC: {"mode": "dry-run"}, CLUSTER_ADMIN: {"enabled": False}}}
    )
    result = run("list", "--config", str(cfg), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert len(rows) == 16
    assert rows[EXEC]["mode"] == "dry-run" and rows[EXEC]["enabled"]
    assert not rows[CLUSTER_ADMIN]["enabled"]
    assert rows[EXEC]["source"] == "pack:pod_exec_attach.yml:1"
    assert rows[EXEC]["logsource"] == "kubernetes/audit"
    table = run("list", "--config", str(cfg))
    assert "Exec or attach into a pod" in table.stdout and "16 rules" in table.stdout


def test_validate_reports_file_line_and_reason_and_exits_non_zero(tmp_path):
    """If this failed, a broken rule would only be found when the collector refuses to start."""
    good = tmp_path / "good.yml"
    good.write_text(
        "title: Nodes listed\nid: 6a0c3a5e-1b7e-4d55-9a7e-000000000001\nlevel: low\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel: {verb: list, objectRef.resource: nodes}\n  condition: sel\n"
    )
    assert run("validate", str(good)).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text(
        good.read_text().replace("000000000001", "000000000003")
        + "---\ntitle: Fieldref thing\nid: 6a0c3a5e-1b7e-4d55-9a7e-000000000002\nlevel: low\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    verb|fieldref: stage\n  condition: sel\n"
    )
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    assert f"{bad}:15: rule 'Fieldref thing'" in result.stderr
    assert "field references (|fieldref) are not supported" in result.stderr
    assert run("validate", str(tmp_path / "missing.yml")).returncode == 2


def test_rules_test_backtests_one_rule_over_the_store_with_counts(audit_store):
    """If this failed, a user could not see what a rule would have raised before enabling it."""
    result = run("test", "Exec or attach into a pod", "--store", f"store:{audit_store}",
                 "--since", "2020-01-01T00:00:00Z", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["id"] for r in report["rules"]] == [EXEC]
    (rule,) = report["rules"]
    assert rule["alerts"] == 2
    assert sorted(g["user"] for g in rule["groups"]) == [
        "kloghub-admin",
        "system:serviceaccount:shop:reader",
    ]
    assert report["documents"] == len(ev.raw_events())


def test_rules_test_applies_the_configured_exceptions_and_modes(audit_store, tmp_path):
    """If this failed, the backtest would not show the effect of the tuning being tried."""
    cfg = _config(
        tmp_path,
        {"rules": {EXEC: {"mode": "dry-run", "exceptions": [{"user.username": "kloghub-admin"}]}}},
    )
    result = run("test", EXEC, "--config", str(cfg), "--store", f"store:{audit_store}",
                 "--since", "2020-01-01T00:00:00Z")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dry-run" in result.stdout
    assert "user system:serviceaccount:shop:reader" in result.stdout
    assert "kloghub-admin" not in result.stdout
    assert "1 rules would have fired 1 alerts" in result.stdout


def test_rules_test_refuses_an_unknown_rule_and_an_unreadable_store(tmp_path):
    """If this failed, a typo would backtest nothing and look like "no false positives"."""
    assert run("test", "no such rule", "--store", f"store:{tmp_path}/x.db").returncode == 2
    missing = run("test", "--store", f"store:{tmp_path}/missing.db")
    assert missing.returncode == 1 and "kloghub:" in missing.stderr


@pytest.mark.parametrize("target", ["elasticsearch", "opensearch"])
def test_export_writes_a_query_per_rule_and_says_what_it_skipped(target):
    """If this failed, teams alerting in their SIEM could not take kloghub's rules."""
    result = run("export", "--to", target, "--format", "dsl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 14
    exec_query = next(line for line in lines if line["id"] == EXEC)["query"]
    text = json.dumps(exec_query)
    assert "kubernetes.audit.objectRef.subresource" in text
    assert result.stderr.count("not exported") == 2  # the two correlations
    native_format = "kibana_ndjson" if target == "elasticsearch" else "monitor_rule"
    native = run("export", "--to", target, "--format", native_format, EXEC)
    assert native.returncode == 0, native.stderr
    assert "Exec or attach into a pod" in native.stdout
    assert run("export", "--to", target, "--format", "nope").returncode == 2
