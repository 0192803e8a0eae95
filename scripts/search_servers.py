#!/usr/bin/env python3
"""Fetch, start and stop local OpenSearch and Elasticsearch servers for kloghub's tests.

Standard library only (Python 3.11+): it runs before any virtualenv exists.

    python scripts/search_servers.py check   # prerequisites: java 17, a JDK 21+, mvn, ...
    python scripts/search_servers.py fetch   # download + unpack into the cache (idempotent)
    python scripts/search_servers.py start   # fetch if needed, start both, write servers.env
    python scripts/search_servers.py status  # what runs, on which ports
    python scripts/search_servers.py stop    # stop both, remove their data dirs
    python scripts/search_servers.py probe-extras  # ask Maven Central again for the missing plugins

Environment:
    KLOGHUB_CACHE            download/unpack cache (default ~/.cache/kloghub/servers)
    KLOGHUB_RUN_DIR          config/data/logs/pids/servers.env (default ~/.cache/kloghub/run)
    KLOGHUB_START_TIMEOUT    seconds to wait for each server to turn green/yellow (default 180)
    KLOGHUB_OPENSEARCH_VERSION / KLOGHUB_ELASTICSEARCH_VERSION   override the pinned versions
    KLOGHUB_JAVA17_HOME / KLOGHUB_JDK21_HOME   override the JDK discovery

See scripts/README-search-servers.md for the versions chosen and what the minimal builds lack.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

OPENSEARCH_VERSION = os.environ.get("KLOGHUB_OPENSEARCH_VERSION", "2.19.6")
ELASTICSEARCH_VERSION = os.environ.get("KLOGHUB_ELASTICSEARCH_VERSION", "9.2.8")
JVM_ROOT = Path("/usr/lib/jvm")
HEAP = "512m"
ENV_FILE_NAME = "servers.env"

# Official artifacts that would fill the gaps of the integ-test-zip builds. None of them is
# published to Maven Central (checked with `mvn dependency:get`, see the README), so nothing
# is added today; `probe-extras` asks again, e.g. after a version bump.
EXTRA_CANDIDATES = {
    "opensearch": [
        (
            "ISM (index state management)",
            "org.opensearch.plugin:opensearch-index-management:{v}.0:zip",
        ),
        ("ISM SPI", "org.opensearch:opensearch-index-management-spi:{v}.0"),
        (
            "job-scheduler (ISM dependency; useless alone)",
            "org.opensearch.plugin:opensearch-job-scheduler:{v}.0:zip",
        ),
    ],
    "elasticsearch": [
        (
            "data-streams module (_data_stream APIs)",
            "org.elasticsearch.plugin:data-streams:{v}:zip",
        ),
        ("data-streams module jar", "org.elasticsearch.plugin:data-streams:{v}"),
        ("x-pack-ilm (index lifecycle management)", "org.elasticsearch.plugin:x-pack-ilm:{v}:zip"),
        ("x-pack-ilm jar", "org.elasticsearch.plugin:x-pack-ilm:{v}"),
        ("rest-root module (GET / and HEAD /)", "org.elasticsearch.plugin:rest-root:{v}"),
    ],
}


class HarnessError(Exception):
    """A failure with a message meant for the person running the script."""


def log(msg: str) -> None:
    print(f"[search-servers] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    return Path(
        os.environ.get("KLOGHUB_CACHE") or Path.home() / ".cache/kloghub/servers"
    ).expanduser()


def run_dir() -> Path:
    return Path(
        os.environ.get("KLOGHUB_RUN_DIR") or Path.home() / ".cache/kloghub/run"
    ).expanduser()


@dataclass(frozen=True)
class Server:
    name: str  # "opensearch" | "elasticsearch"
    version: str
    group: str  # Maven groupId of the integ-test-zip
    executable: str  # bin/<executable>
    env_var: str  # KLOGHUB_TEST_..._URL
    java_env: str  # variable the launcher reads to find java
    conf_env: str  # variable pointing at the config dir
    tmp_env: str
    opts_env: str
    config_file: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.name}:{self.version}:zip"

    @property
    def zip_name(self) -> str:
        return f"{self.name}-{self.version}.zip"

    @property
    def home(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version}"

    @property
    def marker(self) -> Path:
        return self.home / ".kloghub-fetch.json"

    @property
    def needs_jdk21(self) -> bool:
        # Elasticsearch 9 and OpenSearch 3 require Java 21+; OpenSearch 2.19 runs on 17.
        return self.name == "elasticsearch" or self.major >= 3

    @property
    def rundir(self) -> Path:
        return run_dir() / self.name

    @property
    def pidfile(self) -> Path:
        return run_dir() / f"{self.name}.pid"


OPENSEARCH = Server(
    name="opensearch",
    version=OPENSEARCH_VERSION,
    group="org.opensearch.distribution.integ-test-zip",
    executable="opensearch",
    env_var="KLOGHUB_TEST_OPENSEARCH_URL",
    java_env="OPENSEARCH_JAVA_HOME",
    conf_env="OPENSEARCH_PATH_CONF",
    tmp_env="OPENSEARCH_TMPDIR",
    opts_env="OPENSEARCH_JAVA_OPTS",
    config_file="opensearch.yml",
)
ELASTICSEARCH = Server(
    name="elasticsearch",
    version=ELASTICSEARCH_VERSION,
    group="org.elasticsearch.distribution.integ-test-zip",
    executable="elasticsearch",
    env_var="KLOGHUB_TEST_ELASTICSEARCH_URL",
    java_env="ES_JAVA_HOME",
    conf_env="ES_PATH_CONF",
    tmp_env="ES_TMPDIR",
    opts_env="ES_JAVA_OPTS",
    config_file="elasticsearch.yml",
)
SERVERS = (OPENSEARCH, ELASTICSEARCH)


# --------------------------------------------------------------------------- prerequisites


def jdk_major(home: Path) -> int | None:
    """Feature version of the JDK/JRE at `home`, from its `release` file or `java -version`."""
    java = home / "bin/java"
    if not java.is_file() or not os.access(java, os.X_OK):
        return None
    release = home / "release"
    if release.is_file():
        m = re.search(
            r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"), re.M
        )
        if m:
            major = int(m.group(1))
            return int(m.group(2)) if major == 1 and m.group(2) else major
    try:
        out = subprocess.run(
            [str(java), "-version"], check=False, capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def find_java17() -> tuple[Path | None, str]:
    """A Java 17 home: KLOGHUB_JAVA17_HOME, else `java` on PATH, else /usr/lib/jvm/*17*."""
    override = os.environ.get("KLOGHUB_JAVA17_HOME")
    if override:
        major = jdk_major(Path(override))
        if major == 17:
            return Path(override), f"KLOGHUB_JAVA17_HOME={override} (Java {major})"
        return None, f"KLOGHUB_JAVA17_HOME={override} is not a Java 17 home (found {major})"
    on_path = shutil.which("java")
    if on_path:
        home = Path(on_path).resolve().parent.parent
        if jdk_major(home) == 17:
            return home, f"`java` on PATH -> {home}"
    if JVM_ROOT.is_dir():
        for home in sorted(JVM_ROOT.iterdir()):
            if not home.is_symlink() and jdk_major(home) == 17:
                return home, f"{home}"
    return None, "no Java 17 found (`java` on PATH is not 17, nothing under /usr/lib/jvm)"


def find_jdk21() -> tuple[Path | None, str]:
    """The newest JDK >= 21: KLOGHUB_JDK21_HOME, else under /usr/lib/jvm."""
    override = os.environ.get("KLOGHUB_JDK21_HOME")
    if override:
        major = jdk_major(Path(override))
        if major and major >= 21:
            return Path(override), f"KLOGHUB_JDK21_HOME={override} (Java {major})"
        return None, f"KLOGHUB_JDK21_HOME={override} is not a JDK 21+ home (found {major})"
    best: tuple[int, Path] | None = None
    if JVM_ROOT.is_dir():
        for home in sorted(JVM_ROOT.iterdir()):
            if home.is_symlink():
                continue
            major = jdk_major(home)
            if major and major >= 21 and (best is None or major > best[0]):
                best = (major, home)
    if best:
        return best[1], f"{best[1]} (Java {best[0]})"
    return None, "no JDK 21+ under /usr/lib/jvm"


def java_home_for(server: Server) -> Path:
    home, why = find_jdk21() if server.needs_jdk21 else find_java17()
    if home is None:
        raise HarnessError(f"{server.name} {server.version}: {why}; run `{sys.argv[0]} check`")
    return home


def drop_root_prefix() -> list[str]:
    """Both servers refuse to run as root. As root, run them in a user namespace that maps
    an unprivileged uid onto root: the JVM sees a non-root uid, files stay root's."""
    if os.geteuid() != 0:
        return []
    try:
        uid, gid = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid
    except KeyError:
        uid = gid = 65534
    return ["unshare", "--user", f"--map-user={uid}", f"--map-group={gid}"]


def userns_works() -> tuple[bool, str]:
    prefix = drop_root_prefix()
    if not prefix:
        return True, "not root: servers run as the current user"
    if not shutil.which("unshare"):
        return False, "running as root but `unshare` (util-linux) is missing"
    res = subprocess.run([*prefix, "id", "-u"], check=False, capture_output=True, text=True)
    if res.returncode != 0 or res.stdout.strip() == "0":
        return False, (
            "running as root and `unshare --user` failed (user namespaces disabled?): "
            f"{res.stderr.strip()}; run this script as a non-root user instead"
        )
    return True, f"running as root: servers run in a user namespace as uid {res.stdout.strip()}"


def cmd_check(_: argparse.Namespace) -> int:
    problems: list[str] = []
    lines: list[str] = []

    def item(ok: bool, what: str, detail: str, fix: str = "") -> None:
        lines.append(f"  [{'ok' if ok else 'MISSING'}] {what}: {detail}")
        if not ok:
            problems.append(f"{what}: {detail}" + (f" -> {fix}" if fix else ""))

    item(sys.version_info >= (3, 11), "python >= 3.11", sys.version.split()[0])
    os_needs21 = OPENSEARCH.needs_jdk21
    j17, why17 = find_java17()
    item(
        j17 is not None or os_needs21,
        f"Java 17 (OpenSearch {OPENSEARCH.version})",
        why17,
        "apt-get install openjdk-17-jdk-headless, or set KLOGHUB_JAVA17_HOME",
    )
    j21, why21 = find_jdk21()
    item(
        j21 is not None,
        f"JDK 21+ (Elasticsearch {ELASTICSEARCH.version}"
        + (f", OpenSearch {OPENSEARCH.version})" if os_needs21 else ")"),
        why21,
        "install a JDK >= 21 under /usr/lib/jvm (e.g. apt-get install openjdk-21-jdk-headless) "
        "or set KLOGHUB_JDK21_HOME",
    )
    mvn = shutil.which("mvn")
    mvn_detail = "not on PATH"
    if mvn:
        res = subprocess.run([mvn, "-v"], check=False, capture_output=True, text=True)
        mvn_detail = f"{mvn}: {res.stdout.splitlines()[0] if res.stdout else res.stderr.strip()}"
        mvn_detail = re.sub(r"\x1b\[[0-9;]*m", "", mvn_detail)
    item(mvn is not None, "mvn (Maven, for `fetch`)", mvn_detail, "apt-get install maven")
    ok, detail = userns_works()
    item(ok, "non-root execution", detail)
    for path in (cache_dir(), run_dir()):
        probe = path
        while not probe.exists():
            probe = probe.parent
        free_gb = shutil.disk_usage(probe).free / 2**30
        item(free_gb >= 1.5, f"free disk at {path}", f"{free_gb:.1f} GiB", "free at least 1.5 GiB")
    for server in SERVERS:
        ready = verify_install(server) is None
        lines.append(
            f"  [{'ok' if ready else 'info'}] {server.name} {server.version} in cache: "
            f"{'yes' if ready else 'no (start/fetch will download it)'} ({server.home})"
        )
    print("\n".join(lines))
    if problems:
        print("\nMissing prerequisites:\n" + "\n".join(f"  - {p}" for p in problems))
        return 1
    print("\nAll prerequisites present.")
    return 0


# --------------------------------------------------------------------------- fetch


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mvn_base() -> list[str]:
    mvn = shutil.which("mvn")
    if not mvn:
        raise HarnessError(
            "`mvn` is not on PATH (apt-get install maven); needed to download the servers"
        )
    # A private local repository keeps everything under the cache (a cold cache is really cold)
    # and leaves ~/.m2 alone.
    return [mvn, "-B", "-q", f"-Dmaven.repo.local={cache_dir() / 'm2'}"]


def mvn_copy(coordinates: str, outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    goal = ["dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={outdir}"]
    log(f"downloading {coordinates}")
    # Strict checksums (-C) where the repository has them. The Elasticsearch 9 integ-test-zip is
    # served without .sha1/.md5 files, which -C rejects; for it fall back to Maven's default
    # (warn) -- the zip's own CRCs are still checked when it is unpacked.
    res = subprocess.run([*mvn_base(), "-C", *goal], check=False, capture_output=True, text=True)
    if res.returncode != 0 and "no checksums available" in res.stdout + res.stderr:
        log(f"{coordinates}: the repository has no checksum files for it; fetching without -C")
        res = subprocess.run(mvn_base() + goal, check=False, capture_output=True, text=True)
    if res.returncode != 0:
        out = re.sub(r"\x1b\[[0-9;]*m", "", (res.stdout + res.stderr).strip())
        raise HarnessError(f"mvn could not fetch {coordinates}:\n{out[-3000:]}")
    # dependency:copy leaves a second copy in the private local repository: drop it.
    group, artifact, version = coordinates.split(":")[:3]
    shutil.rmtree(
        cache_dir() / "m2" / group.replace(".", "/") / artifact / version, ignore_errors=True
    )


def extract_zip(archive: Path, dest: Path) -> None:
    """Unzip keeping the unix permission bits (zipfile drops them) and symlinks."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep):
                raise HarnessError(f"{archive}: unsafe path {info.filename!r}")
            mode = (info.external_attr >> 16) & 0xFFFF
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                os.symlink(zf.read(info).decode(), target)
                continue
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if mode & 0o777:
                os.chmod(target, mode & 0o777)


def verify_install(server: Server) -> str | None:
    """None if the unpacked server in the cache is complete, else what is wrong."""
    if not server.marker.is_file():
        return f"{server.home} is not unpacked"
    try:
        marker = json.loads(server.marker.read_text())
    except ValueError:
        return f"{server.marker} is corrupt"
    if marker.get("coordinates") != server.coordinates:
        return f"{server.home} was unpacked from {marker.get('coordinates')}"
    for rel in (
        f"bin/{server.executable}",
        "lib",
        "modules/transport-netty4",
        "config/jvm.options",
        f"lib/{server.name}-{server.version}.jar",
    ):
        if not (server.home / rel).exists():
            return f"{server.home / rel} is missing"
    if not os.access(server.home / "bin" / server.executable, os.X_OK):
        return f"{server.home}/bin/{server.executable} is not executable"
    archive = cache_dir() / "downloads" / server.zip_name
    if archive.is_file() and sha256(archive) != marker.get("sha256"):
        return f"{archive} does not match the checksum recorded when it was unpacked"
    return None


def fetch(server: Server) -> bool:
    """Make sure `server` is unpacked in the cache; True if anything was downloaded/unpacked."""
    with locked(cache_dir() / ".lock"):
        problem = verify_install(server)
        if problem is None:
            log(f"{server.name} {server.version}: cache ok ({server.home})")
            return False
        log(f"{server.name} {server.version}: {problem}; fetching")
        downloads = cache_dir() / "downloads"
        archive = downloads / server.zip_name
        if archive.is_file():
            try:
                zipfile.ZipFile(archive).close()
            except zipfile.BadZipFile:
                archive.unlink()
        if not archive.is_file():
            mvn_copy(server.coordinates, downloads)
        digest = sha256(archive)
        tmp = Path(tempfile.mkdtemp(prefix=f".{server.name}-", dir=cache_dir()))
        try:
            extract_zip(archive, tmp)
            tops = list(tmp.iterdir())
            if len(tops) != 1 or not (tops[0] / "bin" / server.executable).is_file():
                raise HarnessError(f"{archive}: unexpected layout {[p.name for p in tops]}")
            shutil.rmtree(server.home, ignore_errors=True)
            tops[0].rename(server.home)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        server.marker.write_text(
            json.dumps(
                {
                    "coordinates": server.coordinates,
                    "sha256": digest,
                    "archive": str(archive),
                    "unpacked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    # Official plugin/module artifacts added on top: none exist (see README).
                    "added": [],
                },
                indent=2,
            )
            + "\n"
        )
        problem = verify_install(server)
        if problem:
            raise HarnessError(f"{server.name}: unpacked but still incomplete: {problem}")
        log(f"{server.name} {server.version}: unpacked into {server.home}")
        return True


def cmd_fetch(_: argparse.Namespace) -> int:
    t0 = time.monotonic()
    for server in SERVERS:
        fetch(server)
    log(f"fetch done in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_probe_extras(_: argparse.Namespace) -> int:
    """Ask Maven Central whether the official artifacts the minimal builds lack are served."""
    with tempfile.TemporaryDirectory() as repo:
        for server in SERVERS:
            for what, pattern in EXTRA_CANDIDATES[server.name]:
                coords = pattern.format(v=server.version)
                cmd = [
                    shutil.which("mvn") or "mvn",
                    "-B",
                    "-q",
                    f"-Dmaven.repo.local={repo}",
                    "dependency:get",
                    f"-Dartifact={coords}",
                    "-Dtransitive=false",
                ]
                res = subprocess.run(cmd, check=False, capture_output=True, text=True)
                print(
                    f"{'SERVED    ' if res.returncode == 0 else 'not served'}  {coords}  ({what})"
                )
    return 0


# --------------------------------------------------------------------------- processes


def proc_start_time(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]  # field 22 of stat: start time in clock ticks since boot


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def read_pidfile(server: Server) -> dict | None:
    try:
        return json.loads(server.pidfile.read_text())
    except (OSError, ValueError):
        return None


def is_ours_and_alive(info: dict) -> bool:
    return proc_start_time(info["pid"]) == info.get("start_time")


def http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def health(port: int, timeout: float = 5.0) -> str | None:
    try:
        return http_json(
            f"http://127.0.0.1:{port}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout
        ).get("status")
    except (OSError, ValueError, urllib.error.URLError):
        return None


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :].decode(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data[-lines:])


def write_config(server: Server, http_port: int, transport_port: int) -> Path:
    base = server.rundir
    conf = base / "config"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.rmtree(base / "data", ignore_errors=True)
    shutil.rmtree(base / "tmp", ignore_errors=True)
    shutil.rmtree(base / "logs", ignore_errors=True)  # each run keeps only its own logs
    shutil.copytree(server.home / "config", conf)
    for sub in ("data", "logs", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    settings = {
        "cluster.name": f"kloghub-test-{server.name}",
        "node.name": f"kloghub-{server.name}",
        "path.data": str(base / "data"),
        "path.logs": str(base / "logs"),
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        # A nearly full disk must not block writes (flood-stage read-only blocks) or allocation.
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    if server.name == "elasticsearch":
        settings["xpack.security.enabled"] = False
    # (OpenSearch's integ-test-zip has no security plugin, so there is nothing to disable.)
    (conf / server.config_file).write_text(
        "# written by scripts/search_servers.py\n"
        + "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items())
    )
    # JVM options: our heap, no GC log / heap dumps / crash files in the install dir.
    dropped = re.compile(
        r"^(\d+-?\d*:)?-(Xms|Xmx|Xlog:gc|Xloggc|XX:\+HeapDumpOnOutOfMemoryError|"
        r"XX:HeapDumpPath|XX:ErrorFile)"
    )
    jvm_options = conf / "jvm.options"
    kept = [ln for ln in jvm_options.read_text().splitlines() if not dropped.match(ln.strip())]
    jvm_options.write_text("\n".join(kept) + "\n")
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    (conf / "jvm.options.d" / "kloghub.options").write_text(
        f"-Xms{HEAP}\n-Xmx{HEAP}\n-XX:ErrorFile={base / 'logs'}/hs_err_pid%p.log\n"
    )
    return conf


def launch(server: Server) -> tuple[subprocess.Popen, dict]:
    java_home = java_home_for(server)
    http_port, transport_port = free_ports(2)
    conf = write_config(server, http_port, transport_port)
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "JAVA_HOME"
        and not k.startswith(
            ("ES_", "OPENSEARCH_", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS")
        )
    }
    env.update(
        {
            server.java_env: str(java_home),
            server.conf_env: str(conf),
            server.tmp_env: str(server.rundir / "tmp"),
            server.opts_env: f"-Xms{HEAP} -Xmx{HEAP}",
        }
    )
    stdout_log = server.rundir / "logs" / "stdout.log"
    cmd = [*drop_root_prefix(), str(server.home / "bin" / server.executable)]
    with open(stdout_log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=server.rundir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    info = {
        "pid": proc.pid,
        "pgid": proc.pid,
        "start_time": proc_start_time(proc.pid),
        "http_port": http_port,
        "transport_port": transport_port,
        "version": server.version,
        "home": str(server.home),
        "java_home": str(java_home),
        "url": f"http://127.0.0.1:{http_port}",
        "stdout_log": str(stdout_log),
    }
    server.pidfile.write_text(json.dumps(info, indent=2) + "\n")
    log(
        f"{server.name} {server.version}: pid {proc.pid}, http {http_port}, "
        f"transport {transport_port}, java {java_home}"
    )
    return proc, info


def failure_message(server: Server, info: dict, why: str) -> str:
    logs = server.rundir / "logs"
    main_log = logs / f"kloghub-test-{server.name}.log"
    stdout_log = Path(info["stdout_log"])
    shown = stdout_log if stdout_log.is_file() and stdout_log.stat().st_size else main_log
    # Stack traces can push the cause out of the tail: name the ERROR lines first.
    errors = [ln for ln in tail(shown, 400).splitlines() if "][ERROR]" in ln or "ERROR:" in ln]
    seen = "".join(f"  {ln[:400]}\n" for ln in errors[:5])
    return (
        f"{server.name} {server.version} {why}.\n"
        + (f"--- errors in {shown} ---\n{seen}" if seen else "")
        + f"--- last lines of {shown} ---\n{tail(shown)}\n--- end of {shown} "
        f"(also see {main_log}) ---"
    )


def wait_ready(started: dict[str, tuple[subprocess.Popen, dict]], timeout: float) -> list[str]:
    """Wait for all servers at once; returns error messages (empty when all are green/yellow)."""
    deadline = time.monotonic() + timeout
    pending = dict(started)
    errors = []
    t0 = time.monotonic()
    while pending:
        for name, (proc, info) in list(pending.items()):
            server = next(s for s in SERVERS if s.name == name)
            code = proc.poll()
            if code is not None:
                errors.append(
                    failure_message(server, info, f"exited with code {code} while starting")
                )
                del pending[name]
                continue
            status = health(info["http_port"], timeout=3)
            if status in ("green", "yellow"):
                log(f"{name}: {status} after {time.monotonic() - t0:.1f}s on {info['url']}")
                del pending[name]
        if errors:  # one failed: the caller stops everything, no point waiting for the rest
            break
        if pending and time.monotonic() > deadline:
            for name, (_, info) in pending.items():
                server = next(s for s in SERVERS if s.name == name)
                errors.append(
                    failure_message(
                        server, info, f"was not green/yellow after {timeout:.0f}s on {info['url']}"
                    )
                )
            break
        if pending:
            time.sleep(0.5)
    return errors


def write_env_file(infos: dict[str, dict]) -> str:
    text = "".join(f"{s.env_var}={infos[s.name]['url']}\n" for s in (ELASTICSEARCH, OPENSEARCH))
    target = run_dir() / ENV_FILE_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return text


def running_servers() -> dict[str, dict]:
    """Servers recorded in the run dir that are alive and answer on their port."""
    found = {}
    for server in SERVERS:
        info = read_pidfile(server)
        if (
            info
            and info.get("version") == server.version
            and is_ours_and_alive(info)
            and health(info["http_port"]) in ("green", "yellow")
        ):
            found[server.name] = info
    return found


def cmd_start(_: argparse.Namespace) -> int:
    t_start = time.monotonic()
    run_dir().mkdir(parents=True, exist_ok=True)
    with locked(run_dir() / ".lock"):
        running = running_servers()
        if len(running) == len(SERVERS):
            log("both servers already running; reusing them")
            print(write_env_file(running), end="")
            return 0
        stop_all(quiet=True)
        ok, detail = userns_works()
        if not ok:
            raise HarnessError(detail)
        for server in SERVERS:
            fetch(server)
            java_home_for(server)  # fail before starting anything if a JDK is missing
        timeout = float(os.environ.get("KLOGHUB_START_TIMEOUT", "180"))
        started: dict[str, tuple[subprocess.Popen, dict]] = {}
        try:
            for server in SERVERS:  # both start in parallel; we only wait after launching both
                started[server.name] = launch(server)
            errors = wait_ready(started, timeout)
        except BaseException:
            stop_all(quiet=True)
            raise
        if errors:
            stop_all(quiet=True)
            raise HarnessError("\n\n".join(errors))
        infos = {name: info for name, (_, info) in started.items()}
        for server in SERVERS:
            info = infos[server.name]
            with contextlib.suppress(Exception):
                nodes = http_json(f"{info['url']}/_nodes/_local?filter_path=nodes.*.version")
                versions = {n["version"] for n in nodes.get("nodes", {}).values()}
                if versions != {server.version}:
                    raise HarnessError(f"{server.name} on {info['url']} reports version {versions}")
        log(f"ready in {time.monotonic() - t_start:.1f}s; env file {run_dir() / ENV_FILE_NAME}")
        print(write_env_file(infos), end="")
    return 0


def stop_server(server: Server, grace: float = 30.0, quiet: bool = False) -> None:
    info = read_pidfile(server)
    if info and is_ours_and_alive(info):
        pgid = info["pgid"]
        if not quiet:
            log(f"{server.name}: SIGTERM to process group {pgid}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if group_members(pgid):
            log(f"{server.name}: still running after {grace:.0f}s, SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
    elif info and not quiet:
        log(f"{server.name}: recorded pid {info['pid']} is not running")
    elif not quiet:
        log(f"{server.name}: not running")
    with contextlib.suppress(FileNotFoundError):
        server.pidfile.unlink()
    for sub in ("data", "tmp"):
        shutil.rmtree(server.rundir / sub, ignore_errors=True)


def stop_all(quiet: bool = False) -> None:
    for server in SERVERS:
        stop_server(server, quiet=quiet)
    with contextlib.suppress(FileNotFoundError):
        (run_dir() / ENV_FILE_NAME).unlink()


def cmd_stop(_: argparse.Namespace) -> int:
    if run_dir().is_dir():
        with locked(run_dir() / ".lock"):
            stop_all()
    else:
        log("nothing to stop")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    rc = 0
    for server in SERVERS:
        info = read_pidfile(server)
        if not info:
            print(f"{server.name}: not started")
            rc = 1
        elif not is_ours_and_alive(info):
            print(f"{server.name}: dead (stale pid file {server.pidfile})")
            rc = 1
        else:
            print(
                f"{server.name} {info['version']}: pid {info['pid']} {info['url']} "
                f"health={health(info['http_port'])}"
            )
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("check", cmd_check, "verify prerequisites and say what is missing"),
        ("fetch", cmd_fetch, "download and unpack both servers into the cache (idempotent)"),
        ("start", cmd_start, "start both servers and write servers.env"),
        ("stop", cmd_stop, "stop both servers and remove their data dirs"),
        ("status", cmd_status, "show what runs"),
        ("probe-extras", cmd_probe_extras, "check Maven Central for the plugins the builds lack"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"search_servers.py {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
