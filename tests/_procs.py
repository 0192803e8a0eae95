"""Run kloghub daemons as real processes and read their JSON log lines."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Stop ``proc`` as an operator would (SIGTERM; SIGKILL after ``timeout`` seconds) and
    return its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def run_kloghub(
    *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kloghub <args>`` run to its end, its output captured as text; the caller reads
    ``returncode`` (``env`` replaces the environment when given)."""
    return subprocess.run(
        [sys.executable, "-m", "kloghub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def search(query: str, store: str, since: str = "1000d") -> list[dict[str, Any]]:
    """The documents ``kloghub search QUERY --store STORE`` finds (up to 1000, NDJSON)."""
    result = run_kloghub(
        *("search", query, "--store", store, "--since", since),
        *("--limit", "1000", "--format", "ndjson"),
    )
    return [orjson.loads(line) for line in result.stdout.splitlines()]


class Daemon:
    """``kloghub <args>`` in a subprocess; its stderr JSON lines collected in a thread."""

    def __init__(
        self,
        *args: str,
        config: dict[str, Any] | None = None,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        if config is not None:
            assert workdir is not None
            path = workdir / f"config-{args[0]}-{time.monotonic_ns()}.yaml"
            path.write_text(yaml.safe_dump(config))
            self.args += ["--config", str(path)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KLOGHUB_")}
        self.env.update(env or {})
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        self.logs.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kloghub", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            text = line.decode("utf-8", "replace")
            self.raw.append(text)
            with contextlib.suppress(orjson.JSONDecodeError):
                self.logs.append(orjson.loads(line))

    def wait_log(self, message: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in list(self.logs):
                if entry.get("message") == message:
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log {message!r}; got: {''.join(self.raw)[-3000:]}")

    def metrics_port(self) -> int:
        return int(self.wait_log("started")["port"])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        return terminate(self.proc, timeout)


CONTROL_PLANE = {"username": "cp-1", "password": "pw", "roles": ["control-plane"]}
"""The collector's one user: the identity audit events are accepted from (level run)."""


def start_run_pipeline(
    workdir: Path,
    *,
    audit: Path,
    sinks: list[dict[str, Any]],
    collector: dict[str, Any] | None = None,
    audit_source: dict[str, Any] | None = None,
    containers: str | None = None,
) -> tuple[Daemon, Daemon]:
    """A collector and an agent at level run, both started: the agent (node ``cp-1``, no
    Kubernetes API, no node logs) tails the audit log ``audit`` (``audit_source``: more of
    its settings) and the container logs of ``containers`` (a glob; none by default) and
    forwards them as :data:`CONTROL_PLANE`, the collector writes to ``sinks``;
    ``collector`` adds to or replaces the collector's settings (``normalizer``,
    ``detections``...). State and configs go below ``workdir``."""
    port = free_port()
    shared_key = "k"
    collector_daemon = Daemon(
        "collector",
        config={
            "level": "run",
            "collector": {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(workdir / "c"),
                "metrics_addr": "127.0.0.1:0",
                "listener": {"shared_key": shared_key, "users": [CONTROL_PLANE]},
                "sinks": sinks,
                **(collector or {}),
            },
        },
        workdir=workdir,
    ).start()
    agent = Daemon(
        "agent",
        config={
            "level": "run",
            "agent": {
                "state_dir": str(workdir / "a"),
                "metrics_addr": "127.0.0.1:0",
                "enrichment": {"kubernetes_api": False},
                "sources": {
                    "containers": {"paths": [containers or str(workdir / "no-pods" / "*.log")]},
                    "node": {"enabled": False},
                    "audit": {"path": str(audit), **(audit_source or {})},
                    "poll_interval": "50ms",
                },
                "node_name": CONTROL_PLANE["username"],
                "outputs": [
                    {
                        "url": f"forward://127.0.0.1:{port}",
                        "flush_interval": "100ms",
                        "shared_key": shared_key,
                        "username": CONTROL_PLANE["username"],
                        "password": CONTROL_PLANE["password"],
                    }
                ],
            },
        },
        workdir=workdir,
    ).start()
    try:
        collector_daemon.wait_log("started", timeout=60)
        agent.wait_log("started", timeout=60)
    except BaseException:
        agent.stop()
        collector_daemon.stop()
        raise
    return collector_daemon, agent
