"""The torture test of issue #3: kubelet-style rotation under load, agent SIGKILLed twice.

A writer emits numbered CRI lines at about 20k lines/s across 20 container log files for
60 s, rotating each file at 10 MiB the way the kubelet does (rename, new file, keep 5
files, gzip the older rotated ones). The agent runs as a real process with a ``file:``
output and is killed with SIGKILL twice, then restarted. Afterwards the output must hold
every number; duplicates are counted (allowed only for lines in flight at a kill).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

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


def start_agent(pods: Path, out: Path, state: Path) -> subprocess.Popen[bytes]:
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
            f"file:{out}",
            "--state-dir",
            str(state),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_rotation_under_load_with_two_sigkills_loses_no_line(tmp_path: Path):
    """If this failed, a crash during kubelet rotation would lose or duplicate log lines."""
    pods, out, state = tmp_path / "pods", tmp_path / "out.ndjson", tmp_path / "state"
    pods.mkdir()
    seconds = float(os.environ.get("KLOGHUB_TORTURE_SECONDS", "60"))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(pods),
            "20",
            "20000",
            str(seconds),
            str(10 * 1024 * 1024),
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    agent = start_agent(pods, out, state)
    kills = 0
    try:
        for fraction in (0.33, 0.66):
            time.sleep(seconds * fraction - (seconds * 0.33 if kills else 0))
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            kills += 1
            agent = start_agent(pods, out, state)
        written_text, _ = writer.communicate(timeout=seconds + 120)
        written, rotations = map(int, written_text.split())
        deadline = time.monotonic() + 120
        seen: dict[int, int] = {}
        offset = 0
        while time.monotonic() < deadline:
            with out.open("rb") as f:
                f.seek(offset)
                data = f.read()
            cut = data.rfind(b"\n") + 1
            offset += cut
            for line in data[:cut].splitlines():
                msg = orjson.loads(line)["log"]
                n = int(msg.split(" ", 1)[0][2:])
                seen[n] = seen.get(n, 0) + 1
            if len(seen) >= written:
                break
            time.sleep(1)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            _, err = agent.communicate()
        writer.kill()
    missing = [n for n in range(written) if n not in seen]
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    print(
        f"torture: written={written} rotations={rotations} kills={kills} "
        f"missing={len(missing)} duplicates={duplicates}"
    )
    assert rotations >= 40, "every file should have rotated twice (the older one gzipped)"
    assert not missing, (
        f"lost {len(missing)} lines, e.g. {missing[:10]}; agent said {err[-2000:]!r}"
    )
    # Only lines in flight at a kill may come twice: at most a few output batches per kill.
    assert duplicates <= kills * 20 * 8192, f"{duplicates} duplicates"
