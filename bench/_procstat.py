"""What the benches read of a process from ``/proc`` (Linux): CPU, memory, descriptors.

Shared by ``agent_e2e.py``, ``collector_e2e.py``, ``idle_bench.py`` and ``soak.py`` (run
from the repo root as ``python bench/<script>.py``: this folder is on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (``/proc/PID/stat`` utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_mib(pid: int, key: str) -> float:
    """A ``/proc/PID/status`` size in MiB: ``VmRSS`` (now), ``VmHWM`` (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return status_mib(pid, "VmHWM")


def open_files(pid: int) -> tuple[int, list[str]]:
    """How many descriptors ``pid`` holds, and the deleted files among them."""
    folder = Path(f"/proc/{pid}/fd")
    count, deleted = 0, []
    for fd in folder.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        count += 1
        if target.endswith(" (deleted)"):
            deleted.append(target[: -len(" (deleted)")])
    return count, deleted
