"""`kloghub search` as a user runs it: a real process on a store file, every format, the
exit codes, errors that point at the problem, and --follow stopped with Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kloghub import store
from tests._procs import run_kloghub
from tests.search import _docs

WINDOW = ("--since", _docs.SINCE, "--until", _docs.UNTIL)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLOGHUB_")}
    env["NO_COLOR"] = "1"
    return env


def kloghub(*args: str) -> subprocess.CompletedProcess[str]:
    return run_kloghub("search", *args, env=_env())


ERRORS = {"c-api-0002", "c-pay-0001", "c-pay-0002", "c-web-0003", "c-wrk-0002"}


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson", "csv"])
def test_search_prints_the_matches_in_each_format(incident_store: Path, fmt: str):
    """If this failed, `kloghub search --format ...` would not give a responder (or a
    script) the matching logs."""
    result = kloghub("level:error", "--store", f"store:{incident_store}", "--format", fmt, *WINDOW)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    if fmt == "table":
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["TIME", "NAMESPACE", "POD"]
        assert len(lines) == 1 + len(ERRORS)
        assert "Connection refused by payments service" in out
        assert "\x1b[" not in out  # not a terminal: no colours
    elif fmt == "json":
        docs = json.loads(out)
        assert {d["log"]["level"] for d in docs} == {"error"}
        assert len(docs) == len(ERRORS)
    elif fmt == "ndjson":
        docs = [json.loads(line) for line in out.splitlines()]
        stamps = [d["@timestamp"] for d in docs]
        assert stamps == sorted(stamps) and len(docs) == len(ERRORS)
    else:
        rows = list(csv.DictReader(io.StringIO(out)))
        assert {row["_id"] for row in rows} == ERRORS


def test_search_options_narrow_sort_and_limit(incident_store: Path):
    """If this failed, --namespace, --pod, --container, --sort or --limit would be ignored."""
    result = kloghub(
        "--store",
        f"store:{incident_store}",
        "--namespace",
        "shop",
        "--pod",
        "web-*",
        "--container",
        "nginx",
        "--sort",
        "desc",
        "--limit",
        "2",
        "--format",
        "csv",
        *WINDOW,
    )
    assert result.returncode == 0, result.stderr
    assert [row["_id"] for row in csv.DictReader(io.StringIO(result.stdout))] == [
        "c-web-0005",
        "c-web-0004",
    ]


def _corrupt(path: Path) -> None:
    path.write_bytes(b"not a database\n" * 300)


@pytest.mark.parametrize(
    ("case", "code", "stderr_has"),
    [
        ("query error", 2, ["column 18", "  level:error AND (", "                  ^"]),
        ("missing store", 1, ["does not exist", "missing.db"]),
        ("corrupt store", 1, ["is not a kloghub store", "corrupt.db"]),
        ("no match", 0, ["no matches in store"]),
        ("bad since", 2, ["--since", "is not a time"]),
    ],
)
def test_search_failures_exit_non_zero_and_say_what_is_wrong(
    incident_store: Path, tmp_path: Path, case, code, stderr_has
):
    """If this failed, a responder could not tell a typo, a wrong path or a broken store
    from "nothing happened"."""
    args = ["--store", f"store:{incident_store}", *WINDOW]
    if case == "query error":
        args = ["level:error AND (", *args]
    elif case == "missing store":
        args = ["--store", f"store:{tmp_path / 'missing.db'}"]
    elif case == "corrupt store":
        _corrupt(tmp_path / "corrupt.db")
        args = ["--store", f"store:{tmp_path / 'corrupt.db'}"]
    elif case == "no match":
        args = ["nosuchwordanywhere", *args]
    else:
        args = ["--store", f"store:{incident_store}", "--since", "yesterday"]
    result = kloghub(*args)
    assert result.returncode == code, result.stderr
    for words in stderr_has:
        assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_follow_prints_new_documents_until_interrupted(tmp_path: Path):
    """If this failed, `kloghub search --follow` would not live-tail the store, or Ctrl-C
    would leave a traceback instead of a clean exit."""
    path = tmp_path / "store.db"
    now = time.time_ns()
    with store.Store.open(path) as db:
        db.add([("first", now - 10**9, {"message": "first line"})])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kloghub",
            "search",
            "--store",
            f"store:{path}",
            "--follow",
            "--format",
            "ndjson",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["message"] == "first line"
        with store.Store.open(path) as db:
            db.add([("second", time.time_ns(), {"message": "second line"})])
        assert json.loads(proc.stdout.readline())["message"] == "second line"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
