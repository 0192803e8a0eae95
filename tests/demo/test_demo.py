"""`make demo` as a smoke test: the README's first command runs, its searches find the
attack story, and the default detections raise it (shown by the demo and found again by
`kloghub rules test` on the demo's store)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kloghub import demo
from tests._procs import run_kloghub

ROOT = Path(__file__).resolve().parents[2]

STORY_RULES = {
    "Exec or attach into a pod",
    "Secret read or listed outside the allow-list",
    "Binding to cluster-admin created",
}
"""The demo's attack story as the default pack sees it (the anonymous request was refused)."""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(workdir, stdout) of one demo run."""
    workdir = tmp_path_factory.mktemp("demo")
    if (ROOT / ".venv" / ".installed").exists() and shutil.which("make"):
        # What a new user types (make test has built .venv already).
        command = ["make", "-s", "-C", str(ROOT), "demo", f"DEMO_ARGS=--workdir {workdir}"]
    else:  # a developer's own virtualenv
        command = [sys.executable, "-m", "kloghub", "demo", "--workdir", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_demo_runs_end_to_end_and_its_searches_find_the_attack_story(demo_run):
    """If this failed, a new user's first command would fail or show nothing."""
    out = demo_run[1]
    for _title, query, _ns in demo.SEARCHES:
        assert query in out
    assert "system:anonymous get /apis/namespaces -> 403" in out
    assert f"{demo.ATTACKER_SA} get /api/v1/names" in out  # the secret read (cut to width)
    assert "SocketTimeoutException" in out
    assert "(no matches)" not in out


def test_demo_shows_the_alerts_the_default_detections_raise(demo_run):
    """If this failed, `make demo` would not show that the detections notice the attack."""
    out = demo_run[1]
    assert "kloghub rules test" in out
    for title in STORY_RULES:
        assert title in out
    assert "3 rules would have fired 3 alerts" in out


def test_rules_test_on_the_demo_store_finds_the_attack_story(demo_run):
    """If this failed, `kloghub rules test` would not find on stored events what the
    default pack raises on them live (the backtest a user tunes with)."""
    store = demo_run[0] / "store.db"
    result = run_kloghub(
        *("rules", "test", "--since", "2h", "--store", f"store:{store}", "--format", "json"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    fired = {r["title"]: r for r in report["rules"]}
    assert set(fired) == STORY_RULES
    for rule in fired.values():
        assert [g["user"] for g in rule["groups"]] == [demo.ATTACKER_SA]
