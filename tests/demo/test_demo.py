"""`kloghub demo` (what `make demo` runs) as a smoke test: its searches find the story."""

import subprocess
import sys

from kloghub import demo


def test_demo_runs_end_to_end_and_its_searches_find_the_attack_story(tmp_path):
    """If this failed, a new user's first command would fail or show nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "kloghub", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for _title, query, _ns in demo.SEARCHES:
        assert query in out
    assert "system:anonymous get /apis/namespaces -> 403" in out
    assert f"{demo.ATTACKER_SA} get /api/v1/names" in out  # the secret read (cut to width)
    assert "SocketTimeoutException" in out
    assert "(no matches)" not in out
