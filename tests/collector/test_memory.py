"""The collector's memory is bounded by its configuration, not by the load.

A real ``kloghub collector`` process receives a burst from a sender in another process
(``tests/collector/_burst.py``) far faster than its sink can take it: a Splunk HEC sink
against the HEC test server (``tests/_hec.py``) answering every request only after a
delay. The sink queue on disk is small, so it fills, the listener stops reading (TCP
back-pressure), and the sender waits. The collector's peak resident size (``VmHWM``)
must stay within its bound, and once the sink has caught up every record must have
arrived exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from tests._hec import HecServer
from tests._procs import Daemon, free_port
from tests.collector.test_walk import metric

RECORDS = 45_000
MESSAGE_BYTES = 2_000
IN_FLIGHT = 2 * 1024 * 1024
HEADROOM = 96 * 1024 * 1024
"""What the collector may add to its idle resident size under any load with these limits:
the in-flight budget decoded and normalized (several times its wire size), four requests
being decoded, the sink's batches, and the allocator's slack."""
SEQ = re.compile(r"seq=(\d+) ")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


class _SlowHec:
    """The HEC test server on its own event loop in a thread, answering after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.server = HecServer(delay=delay)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> HecServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_burst_faster_than_the_sink_keeps_memory_bounded_and_loses_nothing(tmp_path: Path):
    """If this failed, a burst of logs would grow the collector until it is OOM-killed, or
    back-pressure would lose or duplicate records."""
    port = free_port()
    with _SlowHec(delay=0.1) as hec:
        collector = Daemon(
            "collector",
            config={
                "level": "walk",
                "collector": {
                    "listen": f"127.0.0.1:{port}",
                    "state_dir": str(tmp_path / "state"),
                    "metrics_addr": "127.0.0.1:0",
                    "max_in_flight_bytes": IN_FLIGHT,
                    "sinks": [
                        {
                            "url": f"splunk-hec+http://127.0.0.1:{hec.port}",
                            "token": "good-token",
                            "compress": False,
                            "batch_max_records": 500,
                            "concurrency": 1,
                            "flush_interval": "100ms",
                            "queue": {"max_bytes": "8MiB", "segment_bytes": "1MiB"},
                        }
                    ],
                },
            },
            workdir=tmp_path,
        ).start()
        try:
            metrics = collector.metrics_port()
            collector.wait_log("forward listener started")
            assert collector.proc is not None
            pid = collector.proc.pid
            idle_kib = _status_kib(pid, "VmRSS")
            sender = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.collector._burst",
                    str(port),
                    str(RECORDS),
                    str(MESSAGE_BYTES),
                ],
                capture_output=True,
                timeout=600,
                check=False,
            )
            assert sender.returncode == 0, sender.stderr.decode()[-2000:]
            wire_bytes = int(sender.stdout.split()[0])
            deadline = time.monotonic() + 300
            while len(hec.events) < RECORDS and time.monotonic() < deadline:
                time.sleep(0.2)
            peak_kib = _status_kib(pid, "VmHWM")
            paused = metric(metrics, "kloghub_forward_paused_total")
        finally:
            assert collector.stop() == 0
    # The burst was larger than the bound even as bytes on the wire (decoded, several
    # times larger), and the listener did stop reading.
    print(f"idle {idle_kib} KiB, peak {peak_kib} KiB, burst {wire_bytes} bytes, paused {paused}")
    assert wire_bytes > HEADROOM
    assert paused > 0
    assert (peak_kib - idle_kib) * 1024 < HEADROOM
    seen = collections.Counter(
        int(m.group(1))
        for envelope in hec.events
        if (m := SEQ.search(orjson.dumps(envelope["event"]).decode()))
    )
    assert set(seen) == set(range(RECORDS))
    assert max(seen.values()) == 1
