"""The chaos scenario of issue 16, shared by ``tests/chaos`` and ``bench/soak.py``.

Real processes only: a writer emits numbered CRI lines into several container log files
at a set rate and rotates them the way the kubelet does (rename ``0.log`` →
``0.log.<stamp>``, a new ``0.log``, the previous rotated file gzipped 0.5-3 s later
through ``.gz.tmp`` + rename, ``keep`` files kept) — one file by copytruncate instead. A
``kloghub agent`` tails them and forwards to a ``kloghub collector``, whose sinks are the
real OpenSearch of the harness (through a TCP proxy that the scenario cuts for the sink
outage) and an embedded store. The schedule, drawn from ``seed`` and printed, SIGKILLs
the agent (once at a random point, then ~30 ms after a rotation) and the collector, with
restarts, and cuts OpenSearch away; then the writer stops, everything drains, both
daemons get SIGTERM, and every numbered line is counted in OpenSearch and in the store.

With ``disk_full`` the agent's and the collector's state directories are each a tmpfs of
their own, filled to the last byte for that long (checkpoints, the agent's buffer, the
collector's queues and dead letters all on it). What it does not cover: several agents or
collectors, TLS, Elasticsearch (the same bulk code as OpenSearch).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import queue
import random
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests._procs import Daemon, free_port
from tests.sinks._fakes import Proxy

NUM = re.compile(r"n=(\d+) ")

WRITER = textwrap.dedent(
    r"""
    import gzip, json, os, random, shutil, sys, time
    a = json.loads(sys.argv[1])
    root, files, rate, seconds = a["root"], a["files"], a["rate"], a["seconds"]
    rotate_bytes, keep, pad = a["rotate_bytes"], a["keep"], "x" * a["pad"]
    rng = random.Random(a["seed"])
    copytruncate = files - 1  # the last file is rotated by copytruncate
    dirs = []
    for i in range(files):
        d = os.path.join(root, f"chaos_pod-{i}_{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "app")
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    handles = [open(os.path.join(d, "0.log"), "ab") for d in dirs]
    sizes = [0] * files
    stamps = [0] * files
    pending = []  # (due, path): rotated files to gzip
    rotations = truncations = 0

    def say(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    def gzip_due(now):
        for due, src in list(pending):
            if due <= now:
                pending.remove((due, src))
                with open(src, "rb") as f, gzip.open(src + ".gz.tmp", "wb", 1) as g:
                    shutil.copyfileobj(f, g)
                os.rename(src + ".gz.tmp", src + ".gz")
                os.unlink(src)

    def rotate(i):
        global rotations, truncations
        path = os.path.join(dirs[i], "0.log")
        stamps[i] += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"{stamps[i]:04d}"
        rotated = f"{path}.{stamp}"
        handles[i].flush()
        if i == copytruncate:
            shutil.copyfile(path, rotated)
            os.truncate(path, 0)  # the handle appends: the next line lands at offset 0
            truncations += 1
        else:
            handles[i].close()
            os.rename(path, rotated)
            handles[i] = open(path, "ab")
            rotations += 1
        sizes[i] = 0
        # kubelet: the previous rotated file is compressed (later), the oldest deleted
        names = sorted(p for p in os.listdir(dirs[i]) if p.startswith("0.log.") and
                       not p.endswith((".gz", ".tmp")))
        for name in names[:-1]:
            src = os.path.join(dirs[i], name)
            if all(s != src for _, s in pending):
                pending.append((time.monotonic() + rng.uniform(0.5, 3.0), src))
        kept = sorted(p for p in os.listdir(dirs[i]) if p.startswith("0.log.") and
                      not p.endswith(".tmp"))
        for name in kept[: max(0, len(kept) - (keep - 1))]:
            gone = os.path.join(dirs[i], name)
            pending[:] = [(d, s) for d, s in pending if s != gone]
            os.unlink(gone)
        say(event="copytruncate" if i == copytruncate else "rotate", file=i, t=time.time())

    n = 0
    start = time.monotonic()
    per_tick = max(1, rate // 100)
    while time.monotonic() - start < seconds:
        tick = time.monotonic()
        for _ in range(per_tick):
            i = n % files
            now = time.time()
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            line = f"{ts}.{int(now % 1 * 1e9):09d}Z stdout F n={n} f={i} {pad}\n".encode()
            handles[i].write(line)
            sizes[i] += len(line)
            n += 1
            if sizes[i] >= rotate_bytes:
                rotate(i)
        for h in handles:
            h.flush()
        gzip_due(time.monotonic())
        time.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))
    for h in handles:
        h.close()
    gzip_due(float("inf"))
    say(event="done", written=n, rotations=rotations, truncations=truncations)
    """
)


@dataclasses.dataclass
class Scenario:
    """The knobs; the schedule is drawn from ``seed`` over ``seconds``."""

    seed: int
    seconds: float = 60.0
    files: int = 8
    rate: int = 2000
    """Lines per second over all files."""
    rotate_bytes: int = 256 * 1024
    keep: int = 5
    pad: int = 60
    outage: float = 15.0
    """Seconds OpenSearch is unreachable."""
    sink_outage: bool = True
    disk_full: float = 0.0
    """Seconds the agent's state disk and (in another slot) the collector's are full: each
    is a tmpfs of its own, filled to the last byte (needs root; else skipped, and said)."""
    agent_disk: str = "512m"
    collector_disk: str = "3g"
    rollover: bool = True
    """Roll the data stream over while the collector is down after each of its kills: what
    it resends then lands in a new backing index (deduplication across the rollover)."""
    agent_kills: int = 3
    """The first at a random point, the others ~30 ms after a rotation."""
    collector_kills: int = 2
    chaos_until: float = 0.9
    """The schedule's events fall in the first ``chaos_until`` of the run."""
    drain_timeout: float = 300.0

    def schedule(self) -> list[tuple[float, str, float]]:
        """``(at seconds, action, argument)``, in time order: ``kill_agent`` (argument:
        seconds down; ``kill_agent_after_rotation`` the same), ``kill_collector``,
        ``cut_sink`` (argument: seconds until restored)."""
        rng = random.Random(self.seed)
        span = self.seconds * self.chaos_until
        events: list[tuple[float, str, float]] = []
        # One slot each, shuffled, so no two events overlap (each kill waits its downtime).
        order = ["cut_sink"] if self.sink_outage else []
        if self.agent_kills:
            order += ["kill_agent"] + ["kill_agent_after_rotation"] * (self.agent_kills - 1)
        order += ["kill_collector"] * self.collector_kills
        if self.disk_full > 0:
            order += ["fill_agent_disk", "fill_collector_disk"]
        rng.shuffle(order)
        slots = max(1, len(order))
        width = span / slots
        for k, action in enumerate(order):
            at = width * k + rng.uniform(0.15, 0.6) * width
            if action == "cut_sink":
                argument = self.outage
            elif action.startswith("fill_"):
                argument = self.disk_full
            else:
                argument = round(rng.uniform(1.0, 3.5), 2)
            events.append((round(at, 2), action, argument))
        return events


@dataclasses.dataclass
class Life:
    """One agent process: when it ran and its counters as last scraped."""

    spawned: float
    started: float | None = None
    ended: float | None = None
    port: int | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Result:
    written: int
    rotations: int
    truncations: int
    rotation_times: list[float]
    truncation_times: list[float]
    opensearch: Counter[int]
    opensearch_total: int
    store: Counter[int]
    agent_lives: list[Life]
    dead_letters: int
    drain_seconds: float
    exit_codes: dict[str, int]
    warnings: dict[str, int] = dataclasses.field(default_factory=dict)
    """Warning and error log lines of every daemon life, by message."""
    rollovers: int = 0
    copies_removed: float = 0.0
    """Rollover copies the collector's last life removed (its counter)."""

    def missing(self, found: Counter[int]) -> list[int]:
        return [n for n in range(self.written) if n not in found]

    @staticmethod
    def duplicates(found: Counter[int]) -> int:
        return sum(c - 1 for c in found.values() if c > 1)

    def summary(self) -> str:
        return (
            f"written={self.written} rotations={self.rotations} "
            f"truncations={self.truncations} "
            f"opensearch: docs={self.opensearch_total} distinct={len(self.opensearch)} "
            f"missing={len(self.missing(self.opensearch))} "
            f"duplicated={self.duplicates(self.opensearch)}; "
            f"store: distinct={len(self.store)} missing={len(self.missing(self.store))} "
            f"duplicated={self.duplicates(self.store)}; dead letters={self.dead_letters}; "
            f"rollovers={self.rollovers} (copies removed by the last collector: "
            f"{self.copies_removed:.0f}); drain {self.drain_seconds:.0f} s; "
            f"last agent: { {k: v for k, v in self.agent_lives[-1].metrics.items() if v} }; "
            f"warnings: {self.warnings}"
        )


_AGENT_METRICS = (
    "kloghub_tail_rotations_total",
    "kloghub_tail_truncations_total",
    "kloghub_lines_read_total",
    "kloghub_records_dropped_total",
)


def scrape(port: int, names: tuple[str, ...] = _AGENT_METRICS) -> dict[str, float]:
    """Sum of each named sample (all label sets) on a daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    found = dict.fromkeys(names, 0.0)
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in found:
            value = float(line.rsplit(" ", 1)[1])
            found[name] += value
            if "{" in line and value:
                found[line.rsplit(" ", 1)[0]] = value  # each label set too
    return found


class ThreadProxy:
    """``tests.sinks._fakes.Proxy`` on its own event loop thread, for synchronous code."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = Proxy(host, port)
        self._call(self.proxy.start())

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    @property
    def port(self) -> int:
        return self.proxy.port

    def cut(self) -> None:
        self._call(self.proxy.cut())

    def restore(self) -> None:
        self._call(self.proxy.restore())

    def close(self) -> None:
        self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class OpenSearch:
    """Just enough of the REST API to count the documents of one data stream."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 9200
        self.base = f"{parts.scheme}://{self.host}:{self.port}"
        self.auth: str | None = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            pair = f"{user}:{urllib.parse.unquote(parts.password or '')}"
            self.auth = "Basic " + base64.b64encode(pair.encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.auth:
            request.add_header("Authorization", self.auth)
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def count(self, stream: str) -> int:
        try:
            self.call("POST", f"/{stream}/_refresh")
            return int(self.call("GET", f"/{stream}/_count")["count"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    def numbers(self, stream: str) -> tuple[Counter[int], int]:
        """Every document's line number (scrolled), and the total by ``_count``."""
        total = self.count(stream)
        found: Counter[int] = Counter()
        if not total:
            return found, 0
        page = self.call(
            "POST",
            f"/{stream}/_search?scroll=2m",
            {"size": 10000, "sort": ["_doc"], "_source": ["message"]},
        )
        scroll_id = page.get("_scroll_id")
        try:
            while page["hits"]["hits"]:
                for hit in page["hits"]["hits"]:
                    m = NUM.search(hit["_source"].get("message", ""))
                    if m:
                        found[int(m.group(1))] += 1
                page = self.call(
                    "POST", "/_search/scroll", {"scroll": "2m", "scroll_id": scroll_id}
                )
                scroll_id = page.get("_scroll_id", scroll_id)
        finally:
            with contextlib.suppress(Exception):
                self.call("DELETE", "/_search/scroll", {"scroll_id": scroll_id})
        return found, total

    def rollover(self, stream: str) -> bool:
        try:
            self.call("POST", f"/{stream}/_rollover")
        except urllib.error.HTTPError:
            return False  # no documents yet: no data stream to roll over
        return True

    def delete_stream(self, stream: str) -> None:
        with contextlib.suppress(urllib.error.HTTPError):
            self.call("DELETE", f"/_data_stream/{stream}")


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; unlink the returned file to free it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def store_numbers(path: Path) -> Counter[int]:
    found: Counter[int] = Counter()
    if not path.exists():
        return found
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        for (message,) in db.execute("SELECT message FROM events"):
            m = NUM.search(message or "")
            if m:
                found[int(m.group(1))] += 1
    finally:
        db.close()
    return found


def store_count(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


class Run:
    """One run of a :class:`Scenario` in ``workdir`` against the OpenSearch at ``url``."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        opensearch_url: str,
        say: Callable[[str], None] = print,
    ) -> None:
        self.sc = scenario
        self.root = workdir
        self.say = say
        self.os = OpenSearch(opensearch_url)
        self.ns = f"chaos{scenario.seed % 10**6}x{time.monotonic_ns() % 10**6}"
        self.stream = f"logs-kubernetes.container_logs-{self.ns}"
        self.pods = workdir / "pods"
        self.store = workdir / "store.db"
        self.port = free_port()
        self.proxy: ThreadProxy | None = None
        self.agent: Daemon | None = None
        self.collector: Daemon | None = None
        self.lives: list[Life] = []
        self.rotations: queue.Queue[float] = queue.Queue()
        self.rotation_times: list[float] = []
        self.truncation_times: list[float] = []
        self.done: dict[str, Any] = {}
        self.rollovers = 0
        self._pending: list[tuple[float, Callable[[], None]]] = []
        self.disks: dict[str, Path] = {}
        self._stop = threading.Event()
        self.samplers: list[Callable[[], None]] = []
        """Called about once a second while the run lasts (the soak bench samples /proc)."""

    # -------------------------------------------------------------- processes

    def agent_config(self) -> dict[str, Any]:
        return {
            "level": "walk",
            "agent": {
                "state_dir": str(self.root / "state" / "agent"),
                "metrics_addr": "127.0.0.1:0",
                "enrichment": {"kubernetes_api": False},
                "sources": {
                    "containers": {"paths": [str(self.pods / "*/*/*.log")]},
                    "node": {"enabled": False},
                },
                "outputs": [
                    {
                        "url": f"forward://127.0.0.1:{self.port}",
                        "flush_interval": "100ms",
                        "ack_timeout": "10s",
                        "retry": {"initial_backoff": "100ms", "max_backoff": "1s"},
                    }
                ],
            },
        }

    def collector_config(self) -> dict[str, Any]:
        assert self.proxy is not None
        return {
            "level": "walk",
            "collector": {
                "listen": f"127.0.0.1:{self.port}",
                "state_dir": str(self.root / "state" / "collector"),
                "metrics_addr": "127.0.0.1:0",
                "normalizer": {"namespace": self.ns},
                "sinks": [
                    {
                        "url": f"opensearch+http://127.0.0.1:{self.proxy.port}",
                        "flush_interval": "200ms",
                        "compress": False,
                        "retry": {"initial_backoff": "200ms", "max_backoff": "2s"},
                    },
                    {"url": f"store:{self.store}", "flush_interval": "200ms"},
                ],
            },
        }

    def _start_agent(self) -> None:
        if self.agent is None:
            self.agent = Daemon("agent", config=self.agent_config(), workdir=self.root)
        self.lives.append(Life(spawned=time.time()))
        self.agent.start()

    def _kill_agent(self) -> None:
        assert self.agent is not None
        self.agent.kill()
        self.lives[-1].ended = time.time()

    def _start_collector(self) -> None:
        if self.collector is None:
            self.collector = Daemon("collector", config=self.collector_config(), workdir=self.root)
        self.collector.start()

    # -------------------------------------------------------------- background

    def _read_writer(self, writer: subprocess.Popen[str]) -> None:
        assert writer.stdout is not None
        for line in writer.stdout:
            event = json.loads(line)
            if event["event"] == "rotate":
                self.rotation_times.append(event["t"])
                self.rotations.put(event["t"])
            elif event["event"] == "copytruncate":
                self.truncation_times.append(event["t"])
            elif event["event"] == "done":
                self.done = event

    def _watch(self) -> None:
        """Scrape the agent's counters (each life's last values), run the samplers."""
        while not self._stop.wait(0.5):
            agent, life = self.agent, self.lives[-1] if self.lives else None
            if agent is not None and life is not None and life.ended is None:
                with contextlib.suppress(Exception):
                    for entry in list(agent.logs):
                        if entry.get("message") == "started" and life.started is None:
                            life.started = time.time()
                            life.port = int(entry["port"])
                    port = life.port
                    if port is not None and agent.proc is not None and agent.proc.poll() is None:
                        life.metrics = scrape(port)
            for sample in self.samplers:
                with contextlib.suppress(Exception):
                    sample()

    # -------------------------------------------------------------- the run

    def run(self) -> Result:
        sc = self.sc
        schedule = sc.schedule()
        self.say(
            f"chaos: seed={sc.seed} seconds={sc.seconds} files={sc.files} rate={sc.rate}/s "
            f"rotate_bytes={sc.rotate_bytes} keep={sc.keep} outage={sc.outage}s "
            f"stream={self.stream}"
        )
        self.say(f"chaos: schedule={schedule} (replay: KLOGHUB_CHAOS_SEED={sc.seed})")
        self.pods.mkdir(parents=True, exist_ok=True)
        self.proxy = ThreadProxy(self.os.host, self.os.port)
        writer: subprocess.Popen[str] | None = None
        watcher = threading.Thread(target=self._watch, daemon=True)
        exit_codes: dict[str, int] = {}
        self._mount_disks()
        try:
            self._start_collector()
            assert self.collector is not None
            self.collector.wait_log("started", timeout=60)
            self._start_agent()
            watcher.start()
            args = {
                "root": str(self.pods),
                "files": sc.files,
                "rate": sc.rate,
                "seconds": sc.seconds,
                "rotate_bytes": sc.rotate_bytes,
                "keep": sc.keep,
                "pad": sc.pad,
                "seed": sc.seed,
            }
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, json.dumps(args)], stdout=subprocess.PIPE, text=True
            )
            threading.Thread(target=self._read_writer, args=(writer,), daemon=True).start()
            begin = time.monotonic()
            for at, action, argument in schedule:
                while time.monotonic() - begin < at:
                    self._run_due()
                    time.sleep(0.01)
                self._act(action, argument, begin)
                self._run_due()
            while self._pending:
                self._run_due()
                time.sleep(0.05)
            writer.wait(timeout=sc.seconds + 600)
            deadline = time.monotonic() + 10
            while not self.done and time.monotonic() < deadline:
                time.sleep(0.05)
            written = int(self.done["written"])
            self.say(f"chaos: writer done: {self.done}")
            drained = time.monotonic()
            self._drain(written)
            drain_seconds = time.monotonic() - drained
            life = self.lives[-1]
            if life.port is not None:
                with contextlib.suppress(Exception):
                    life.metrics = scrape(life.port)
            copies = 0.0
            with contextlib.suppress(Exception):
                assert self.collector is not None
                name = "kloghub_sink_rollover_copies_removed_total"
                copies = scrape(self.collector.metrics_port(), (name,))[name]
        finally:
            self._stop.set()
            if writer is not None and writer.poll() is None:
                writer.kill()
            for name, daemon in (("agent", self.agent), ("collector", self.collector)):
                if daemon is not None:
                    exit_codes[name] = daemon.stop(timeout=60)
            if self.lives and self.lives[-1].ended is None:
                self.lives[-1].ended = time.time()
            if self.proxy is not None:
                self.proxy.close()
        dead_letters = self._dead_letters()
        self._unmount_disks()
        warnings: Counter[str] = Counter()
        for name, daemon in (("agent", self.agent), ("collector", self.collector)):
            if daemon is None:
                continue
            (self.root / f"{name}.log").write_text("".join(daemon.raw))
            for line in daemon.raw:
                with contextlib.suppress(ValueError, AttributeError):
                    entry = json.loads(line)
                    if entry.get("level") in ("warning", "error", "critical"):
                        # the HTTP clients' own lines name the URL and the timing
                        message = re.sub(r"https?://\S+|\[status:.*", "…", entry["message"])
                        warnings[f"{name}: {message}"] += 1
        found, total = self.os.numbers(self.stream)
        return Result(
            written=written,
            rotations=int(self.done["rotations"]),
            truncations=int(self.done["truncations"]),
            rotation_times=list(self.rotation_times),
            truncation_times=list(self.truncation_times),
            opensearch=found,
            opensearch_total=total,
            store=store_numbers(self.store),
            agent_lives=self.lives,
            dead_letters=dead_letters,
            drain_seconds=drain_seconds,
            exit_codes=exit_codes,
            rollovers=self.rollovers,
            copies_removed=copies,
            warnings=dict(warnings),
        )

    def _run_due(self) -> None:
        """Undo what is due of the outages (sink cut, disks full)."""
        now = time.monotonic()
        for due, undo in [p for p in self._pending if p[0] <= now]:
            self._pending.remove((due, undo))
            undo()

    def _act(self, action: str, argument: float, begin: float) -> None:
        t = time.monotonic() - begin
        if action == "cut_sink":
            assert self.proxy is not None
            self.proxy.cut()
            self.say(f"chaos: {t:6.1f}s OpenSearch cut for {argument}s")
            self._pending.append((time.monotonic() + argument, self._restore_sink))
        elif action.startswith("fill_"):
            who = action.split("_")[1]
            disk = self.disks.get(who)
            if disk is None:
                self.say(f"chaos: {t:6.1f}s {who} disk full: skipped (no tmpfs: not root?)")
                return
            filler = fill(disk)
            self.say(f"chaos: {t:6.1f}s {who} state disk full for {argument}s")

            def free() -> None:
                filler.unlink()
                self.say(f"chaos: {who} state disk has space again")

            self._pending.append((time.monotonic() + argument, free))
        elif action.startswith("kill_agent"):
            if action == "kill_agent_after_rotation":
                with contextlib.suppress(queue.Empty):
                    while True:
                        self.rotations.get_nowait()
                give_up = time.monotonic() + 30
                while time.monotonic() < give_up:
                    try:
                        self.rotations.get(timeout=0.02)
                        break
                    except queue.Empty:
                        self._run_due()
                time.sleep(0.03)
            self._kill_agent()
            self.say(
                f"chaos: {time.monotonic() - begin:6.1f}s agent SIGKILL ({action}), "
                f"down {argument}s"
            )
            self._sleep(argument)
            self._start_agent()
        elif action == "kill_collector":
            assert self.collector is not None
            self.collector.kill()
            self.say(f"chaos: {t:6.1f}s collector SIGKILL, down {argument}s")
            if self.sc.rollover and self.os.rollover(self.stream):
                self.rollovers += 1
                self.say(f"chaos: {self.stream} rolled over")
            self._sleep(argument)
            self._start_collector()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._run_due()
            time.sleep(0.01)

    def _restore_sink(self) -> None:
        assert self.proxy is not None
        self.proxy.restore()
        self.say("chaos: OpenSearch reachable again")

    def _mount_disks(self) -> None:
        if self.sc.disk_full <= 0:
            return
        for who, size in (("agent", self.sc.agent_disk), ("collector", self.sc.collector_disk)):
            where = self.root / "state" / who
            where.mkdir(parents=True, exist_ok=True)
            if os.geteuid() != 0:
                continue
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                self.disks[who] = where
            else:
                self.say(f"chaos: cannot mount a tmpfs: {done.stderr.decode().strip()}")

    def _unmount_disks(self) -> None:
        for where in self.disks.values():
            subprocess.run(["umount", "-l", str(where)], check=False)
        self.disks.clear()

    def _drain(self, written: int) -> None:
        """Wait until both sinks hold at least ``written`` documents and stop growing."""
        deadline = time.monotonic() + self.sc.drain_timeout
        last: tuple[int, int] = (-1, -1)
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            now = (self.os.count(self.stream), store_count(self.store))
            if now != last:
                last, stable_since = now, time.monotonic()
            if min(now) >= written and time.monotonic() - stable_since >= 3:
                return
            if time.monotonic() - stable_since >= 60:
                self.say(f"chaos: nothing moves any more at opensearch, store = {now}")
                return
            time.sleep(1)
        self.say(f"chaos: drain timed out at opensearch, store = {last}")

    def _dead_letters(self) -> int:
        folder = self.root / "state" / "collector" / "dlq"
        if not folder.exists():
            return 0
        return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.ndjson"))

    def cleanup(self) -> None:
        self.os.delete_stream(self.stream)
