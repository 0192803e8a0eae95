"""The torture test of issue #3: kubelet-style rotation under load, agent SIGKILLed twice.

A writer emits numbered CRI lines at about 20k lines/s (3k into the store) across 20
container log files for 60 s, rotating each file at 10 MiB (1.5 MiB) the way the kubelet
does (rename, new file, keep 5 files, gzip the older rotated ones). The agent runs as a
real process and is killed with SIGKILL twice, then restarted. Afterwards the output must
hold every number.

- ``store:`` (the crawl level's own output): **no duplicate** — a line read again after a
  kill has the same document id (file identity, offset) and the store keeps one.
- ``file:`` is at-least-once by nature: a batch is appended (and fsync-ed) and only then
  acknowledged, which moves the checkpoint. A kill between the two leaves the batch in the
  file and reads it again after the restart. The local outputs have no buffer and write
  one batch at a time, and a batch is the lines of one read (at most ``CHUNK_BYTES``), so
  at most one read's lines per kill may come twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kloghub.tail._tailer import CHUNK_BYTES

WRITER = textwrap.dedent(
    r"""
    import gzip, os, shutil, sys, time
    root, files, rate, seconds, rotate_bytes, keep = (sys.argv[1], int(sys.argv[2]),
        int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    pad = "x" * 650
    dirs = []
    for i in range(files):
        d = os.path.join(root, f"ns{i % 3}_pod{i}_{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "app")
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    handles = [open(os.path.join(d, "0.log"), "ab") for d in dirs]
    sizes = [0] * files
    rotations = [0] * files
    n = 0
    start = time.monotonic()
    per_tick = rate // 100
    while time.monotonic() - start < seconds:
        tick = time.monotonic()
        for _ in range(per_tick):
            i = n % files
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            line = f"{ts}.{n % 10**9:09d}Z stdout F n={n} {pad}\n".encode()
            handles[i].write(line)
            sizes[i] += len(line)
            n += 1
            if sizes[i] >= rotate_bytes:
                handles[i].close()
                path = os.path.join(dirs[i], "0.log")
                rotations[i] += 1
                os.rename(path, f"{path}.{rotations[i]:08d}")
                handles[i] = open(path, "ab")
                sizes[i] = 0
                rotated = sorted(p for p in os.listdir(dirs[i]) if p.startswith("0.log."))
                # gzip every rotated file but the newest, as the kubelet does
                for name in rotated[:-1]:
                    if not name.endswith(".gz"):
                        src = os.path.join(dirs[i], name)
                        with open(src, "rb") as a, gzip.open(src + ".gz", "wb", 1) as b:
                            shutil.copyfileobj(a, b)
                        os.unlink(src)
                rotated = sorted(p for p in os.listdir(dirs[i]) if p.startswith("0.log."))
                for name in rotated[: max(0, len(rotated) - (keep - 1))]:
                    os.unlink(os.path.join(dirs[i], name))
        for h in handles:
            h.flush()
        time.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))
    for h in handles:
        h.close()
    print(n, sum(rotations), flush=True)
    """
)


LINE_BYTES = 690
"""The writer's shortest line (timestamp, stream, tag, ``n=<n>`` and 650 bytes of pad)."""


def start_agent(pods: Path, output: str, state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kloghub",
            "agent",
            "--level",
            "crawl",
            "--path",
            str(pods / "*/*/*.log"),
            "--output",
            output,
            "--state-dir",
            str(state),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class FileNumbers:
    """The numbers in the ``file:`` output, read on from where the last look stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seen: Counter[int] = Counter()

    def distinct(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
            cut = data.rfind(b"\n") + 1
            self.offset += cut
            for line in data[:cut].splitlines():
                msg = orjson.loads(line)["log"]
                self.seen[int(msg.split(" ", 1)[0][2:])] += 1
        return len(self.seen)

    def numbers(self) -> Counter[int]:
        self.distinct()
        return self.seen


class StoreNumbers:
    """The numbers in the ``store:`` output (one row per document id)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)

    def distinct(self) -> int:
        if not self.path.exists():
            return 0
        db = self._db()
        try:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0  # not created yet
        finally:
            db.close()

    def numbers(self) -> Counter[int]:
        db = self._db()
        try:
            return Counter(
                int(message.split("n=", 1)[1].split(" ", 1)[0])
                for (message,) in db.execute("SELECT message FROM events")
            )
        finally:
            db.close()


@pytest.mark.parametrize(
    ("kind", "rate", "rotate_bytes"),
    [
        ("file", 20000, 10 * 1024 * 1024),
        # The store normalizes and indexes every line (a few thousand a second on a shared
        # core): at 20k lines/s the agent would fall minutes behind, and the writer (like
        # the kubelet) deletes rotated files it never read. Same number of rotations.
        ("store", 3000, 1536 * 1024),
    ],
)
def test_rotation_under_load_with_two_sigkills_loses_no_line(
    kind: str, rate: int, rotate_bytes: int, tmp_path: Path
):
    """If this failed, a crash during kubelet rotation would lose log lines, duplicate them
    in the store, or duplicate more than the batch in flight at each kill in a file."""
    pods, state = tmp_path / "pods", tmp_path / "state"
    pods.mkdir()
    out = tmp_path / ("out.ndjson" if kind == "file" else "store.db")
    output = f"{kind}:{out}"
    reader = FileNumbers(out) if kind == "file" else StoreNumbers(out)
    seconds = float(os.environ.get("KLOGHUB_TORTURE_SECONDS", "60"))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(pods),
            "20",
            str(rate),
            str(seconds),
            str(rotate_bytes),
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    agent = start_agent(pods, output, state)
    kills = 0
    try:
        for fraction in (0.33, 0.66):
            time.sleep(seconds * fraction - (seconds * 0.33 if kills else 0))
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            kills += 1
            agent = start_agent(pods, output, state)
        written_text, _ = writer.communicate(timeout=seconds + 120)
        written, rotations = map(int, written_text.split())
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and reader.distinct() < written:
            time.sleep(1)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            _, err = agent.communicate()
        writer.kill()
    seen = reader.numbers()
    missing = [n for n in range(written) if n not in seen]
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    print(
        f"torture ({kind}): written={written} rotations={rotations} kills={kills} "
        f"missing={len(missing)} duplicates={duplicates}"
    )
    assert rotations >= 40, "every file should have rotated twice (the older one gzipped)"
    assert not missing, (
        f"lost {len(missing)} lines, e.g. {missing[:10]}; agent said {err[-2000:]!r}"
    )
    if kind == "store":
        assert duplicates == 0
    else:
        assert duplicates <= kills * (CHUNK_BYTES // LINE_BYTES + 1), f"{duplicates} duplicates"
