"""`make demo` as a smoke test: the README's first command runs and its searches find the
attack story."""

import shutil
import subprocess
import sys
from pathlib import Path

from kloghub import demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_its_searches_find_the_attack_story(tmp_path):
    """If this failed, a new user's first command would fail or show nothing."""
    if (ROOT / ".venv" / ".installed").exists() and shutil.which("make"):
        # What a new user types (make test has built .venv already).
        command = ["make", "-s", "-C", str(ROOT), "demo", f"DEMO_ARGS=--workdir {tmp_path}"]
    else:  # a developer's own virtualenv
        command = [sys.executable, "-m", "kloghub", "demo", "--workdir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for _title, query, _ns in demo.SEARCHES:
        assert query in out
    assert "system:anonymous get /apis/namespaces -> 403" in out
    assert f"{demo.ATTACKER_SA} get /api/v1/names" in out  # the secret read (cut to width)
    assert "SocketTimeoutException" in out
    assert "(no matches)" not in out
