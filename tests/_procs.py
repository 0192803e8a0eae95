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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)
