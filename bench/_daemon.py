"""A kloghub daemon run for a bench: a port for it, started as a process of its own with
its stderr in a log file (under cProfile when asked), waited for, and stopped as an
operator would (SIGTERM, SIGKILL after 30 s).

Shared by ``agent_e2e.py``, ``collector_e2e.py`` and ``detect_bench.py`` (run from the repo
root as ``python bench/<script>.py``: this folder is on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    kind: str, level: str, config: Path, log: Path, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    """``kloghub <kind> --level <level> --config <config>``, its stderr into ``log``, its
    profile into ``profile`` when given."""
    command = [sys.executable, "-m", "kloghub"]
    if profile is not None:
        command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    return subprocess.Popen(
        [*command, kind, "--level", level, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until something listens on ``port`` (exit when ``proc`` ends or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kloghub exited ({proc.returncode}); see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listened on port {port} in {timeout:.0f} s; see {log}")


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """Stop each in turn (an agent before its collector: it drains first)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()
