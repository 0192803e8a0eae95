"""What get_helm.py and get_kube.py share: the cache they keep binaries in, the lock that
makes two runs at once build only once, and a Go build from the module proxy into a
temporary directory beside the cache, whose result the caller moves in atomically.
Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """``${KLOGHUB_CACHE:-~/.cache/kloghub}/bin``."""
    root = os.environ.get("KLOGHUB_CACHE") or str(Path.home() / ".cache" / "kloghub")
    return Path(root).expanduser() / "bin"


def output(command: list[str]) -> str | None:
    """What ``command`` prints (stripped), or None when it does not run or fails."""
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock file ``path`` (made with its folder if need be) for the block: two
    test runs at once build a binary only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def find_go(name: str, what: str, instead: str) -> str:
    """The path of ``go``; without it, exit saying it builds ``what`` and that one can
    ``instead``."""
    go = shutil.which("go")
    if go is None:
        sys.exit(
            f"{name}: Go is needed to build {what} from the Go module proxy and is not on PATH "
            f"(Debian: apt-get install golang-go; Go 1.26 or newer), or {instead}."
        )
    return go


@contextlib.contextmanager
def building(name: str, what: str, target: Path, how_long: str) -> Iterator[Path]:
    """Announce the build of ``what``, give the block a temporary directory beside
    ``target`` (the same file system: a move from it is atomic, so a concurrent reader
    never sees half a binary), remove it after, and say how long it took."""
    print(f"{name}: building {what} (once; {how_long})", file=sys.stderr)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-build-") as tmp:
        yield Path(tmp)
    print(f"{name}: built in {time.monotonic() - started:.0f} s", file=sys.stderr)


def run_go(
    name: str,
    go: str,
    args: list[str],
    *,
    ldflags: str,
    env: dict[str, str],
    cwd: Path | None = None,
) -> None:
    """``go <args[0]> -p 2 -trimpath -ldflags=<ldflags> <args[1:]>`` with static binaries
    (``CGO_ENABLED=0``) and ``env`` added; exit when it fails."""
    # -p 2: these machines have two cores shared with other work.
    command = [go, args[0], "-p", "2", "-trimpath", f"-ldflags={ldflags}", *args[1:]]
    # go's own output goes to stderr: stdout carries only the path.
    result = subprocess.run(
        command,
        cwd=cwd,
        env=dict(os.environ, CGO_ENABLED="0", **env),
        stdout=sys.stderr,
        check=False,
    )
    if result.returncode != 0:
        where = f" in {cwd}" if cwd else ""
        sys.exit(f"{name}: `{' '.join(command)}`{where} failed (exit {result.returncode})")
