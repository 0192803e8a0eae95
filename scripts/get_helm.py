"""Print the path of a Helm 3 binary for the chart tests, building it once if needed.

Usage: python3 scripts/get_helm.py      (prints the path of helm on stdout, progress on stderr)

Helm is built from the Go module proxy (``go install helm.sh/helm/v3/cmd/helm@VERSION``)
and cached as ``${KLOGHUB_CACHE:-~/.cache/kloghub}/bin/helm``; later runs only check that
the cached binary was built by this recipe and runs (a fraction of a second). A helm given
in ``KLOGHUB_HELM`` is used as it is. Needs Go (``apt-get install golang-go``, or any Go
recent enough for the pinned Helm release). A cold build takes about 2.5 minutes on two
cores: about 100 MB of modules downloaded once, and Go's build cache grows by ~0.5 GB.
Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELM_VERSION = "v3.22.0"
"""Pinned Helm release (the newest v3 known to build with the Go on these machines)."""
HELM_KUBE_VERSION = (1, 37)
"""The Kubernetes version of the pinned release's client-go (v0.37): `helm template` and
`helm lint` assume it when no cluster is given, as the official binaries do."""
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"


def ldflags() -> str:
    """The -X stamps of Helm's own Makefile; without them `go install` gives a helm that
    reports v3.22 and assumes Kubernetes 1.20."""
    major, minor = HELM_KUBE_VERSION
    stamps = [f"helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    for pkg in ("pkg/lint/rules", "pkg/chartutil"):
        stamps += [
            f"helm.sh/helm/v3/{pkg}.k8sVersionMajor={major}",
            f"helm.sh/helm/v3/{pkg}.k8sVersionMinor={minor}",
        ]
    return "-s -w " + " ".join(f"-X {stamp}" for stamp in stamps)


def cache_dir() -> Path:
    root = os.environ.get("KLOGHUB_CACHE") or str(Path.home() / ".cache" / "kloghub")
    return Path(root).expanduser() / "bin"


def helm_version(path: Path) -> str | None:
    """The version a helm binary reports (``v3.22.0``), or None when it does not run."""
    try:
        out = subprocess.run(
            [str(path), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def build(target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        sys.exit(
            "get_helm: Go is needed to build helm from the Go module proxy and is not on "
            "PATH (Debian: apt-get install golang-go), or set KLOGHUB_HELM=/path/to/helm."
        )
    print(
        f"get_helm: building helm {HELM_VERSION} with {go} (once; a few minutes)", file=sys.stderr
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".helm-build-") as tmp:
        env = dict(os.environ, GOBIN=tmp, CGO_ENABLED="0")
        # -p 2: these machines have two cores shared with other work.
        command = [
            go,
            "install",
            "-p",
            "2",
            "-trimpath",
            f"-ldflags={ldflags()}",
            f"{HELM_MODULE}@{HELM_VERSION}",
        ]
        # go's own output goes to stderr: stdout carries only the path.
        result = subprocess.run(command, env=env, stdout=sys.stderr, check=False)
        built = Path(tmp) / "helm"
        if result.returncode != 0 or not built.exists():
            sys.exit(f"get_helm: `{' '.join(command)}` failed (exit {result.returncode})")
        built.replace(target)  # atomic: a concurrent reader never sees half a binary
    print(f"get_helm: built in {time.monotonic() - started:.0f} s", file=sys.stderr)


def main() -> int:
    given = os.environ.get("KLOGHUB_HELM")
    if given:
        if helm_version(Path(given)) is None:
            sys.exit(f"get_helm: KLOGHUB_HELM={given} does not run `helm version`")
        print(given)
        return 0
    bindir = cache_dir()
    bindir.mkdir(parents=True, exist_ok=True)
    target = bindir / "helm"
    recipe_file = bindir / ".helm.recipe"  # how the cached binary was built
    recipe = f"{HELM_MODULE}@{HELM_VERSION} {ldflags()}\n"
    with (bindir / ".helm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it only once
        built_by = recipe_file.read_text() if recipe_file.exists() else ""
        if built_by != recipe or helm_version(target) != HELM_VERSION:
            build(target)
            found = helm_version(target)
            if found != HELM_VERSION:
                sys.exit(
                    f"get_helm: the helm built at {target} reports {found}, not {HELM_VERSION}"
                )
            recipe_file.write_text(recipe)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
