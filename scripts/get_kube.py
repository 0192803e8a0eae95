"""Print the directory of kube-apiserver, etcd and kubectl for the tests, building them once.

Usage: python3 scripts/get_kube.py   (prints the directory on stdout, progress on stderr)

The binaries are built from the Go module proxy in the small module ``scripts/k8s/``:
``kube-apiserver`` and ``kubectl`` from ``k8s.io/kubernetes/cmd/...`` (its ``go.mod``
replaces the ``k8s.io/*`` staging modules with their published ``v0.<minor>`` releases),
``etcd`` from ``go.etcd.io/etcd/server/v3/etcdmain`` in a two-line main
(``scripts/k8s/etcd/main.go``). They are cached in
``${KLOGHUB_CACHE:-~/.cache/kloghub}/bin/kube-<version>-etcd-<version>/``; a later run
only checks that each cached binary runs and reports the pinned version (a fraction of a
second), so a directory built by an earlier copy of this script is reused as long as its
binaries are sound. A directory given in ``KLOGHUB_KUBE_BIN`` is used as it is.

Needs Go (the version ``scripts/k8s/go.mod`` names, 1.26 for Kubernetes 1.37). A cold
build downloads about 600 MB of modules once and compiles for a long while on two cores
(kube-apiserver alone is ~120 MB of binary): see the README's test section for the time
measured. Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

# _gobuild.py is next to this file (also when tests/_kube.py loads this one by its path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gobuild

KUBE_VERSION = "v1.37.2"
"""k8s.io/kubernetes release; scripts/k8s/go.mod requires it and replaces its staging
modules with v0.37.2."""
ETCD_VERSION = "v3.7.0"
"""go.etcd.io/etcd/server/v3 release (the one k8s.io/kubernetes v1.37.2 itself requires)."""
MODULE_DIR = Path(__file__).resolve().parent / "k8s"
PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "etcd": "./etcd",
}
BINARIES = tuple(PACKAGES)


def ldflags() -> str:
    """The version stamps of Kubernetes' own build (hack/lib/version.sh): without them the
    binaries report v0.0.0-master, and clients' version checks and the apiserver's
    /version are wrong."""
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"{pkg}.gitVersion={KUBE_VERSION}",
            f"{pkg}.gitMajor={major}",
            f"{pkg}.gitMinor={minor}",
            f"{pkg}.gitTreeState=clean",
            f"{pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return "-s -w " + " ".join(f"-X {stamp}" for stamp in stamps)


def bin_dir() -> Path:
    return _gobuild.cache_dir() / f"kube-{KUBE_VERSION}-etcd-{ETCD_VERSION}"


def reported_versions(directory: Path) -> dict[str, str | None]:
    """The version each binary in ``directory`` reports (None when it does not run)."""
    # Kubernetes v1.37.2 / etcd Version: 3.7.0\n... / Client Version: v1.37.2\n...
    apiserver = _gobuild.output([str(directory / "kube-apiserver"), "--version"])
    etcd = _gobuild.output([str(directory / "etcd"), "--version"])
    kubectl = _gobuild.output([str(directory / "kubectl"), "version", "--client"])
    return {
        "kube-apiserver": apiserver.rpartition(" ")[2] if apiserver else None,
        "etcd": "v" + etcd.splitlines()[0].rpartition(" ")[2] if etcd else None,
        "kubectl": kubectl.splitlines()[0].rpartition(" ")[2] if kubectl else None,
    }


def wanted_versions() -> dict[str, str]:
    return {"kube-apiserver": KUBE_VERSION, "etcd": ETCD_VERSION, "kubectl": KUBE_VERSION}


def problems(directory: Path) -> list[str]:
    """What is wrong with the binaries of ``directory`` (empty when all are sound)."""
    found = reported_versions(directory)
    return [
        f"{name}: " + (f"reports {found[name]}, not {want}" if found[name] else "missing or broken")
        for name, want in wanted_versions().items()
        if found[name] != want
    ]


def recipe() -> str:
    """What the binaries are built from: packages, flags, and the module's files' digest."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "etcd/main.go"):
        digest.update((MODULE_DIR / name).read_bytes())
    return f"{' '.join(PACKAGES.values())} {ldflags()} {digest.hexdigest()}\n"


def build(target: Path) -> None:
    name = "get_kube"
    go = _gobuild.find_go(
        name,
        "kube-apiserver and etcd",
        "set KLOGHUB_KUBE_BIN to a directory holding kube-apiserver, etcd and kubectl",
    )
    what = (
        f"kube-apiserver/kubectl {KUBE_VERSION} and etcd {ETCD_VERSION} with {go} in {MODULE_DIR}"
    )
    with _gobuild.building(name, what, target, "this takes long") as tmp:
        out = tmp / "bin"
        out.mkdir()
        _gobuild.run_go(
            name,
            go,
            ["build", "-o", str(out) + os.sep, *PACKAGES.values()],
            ldflags=ldflags(),
            env={"GOFLAGS": "-mod=readonly"},
            cwd=MODULE_DIR,
        )
        missing = [name for name in BINARIES if not (out / name).exists()]
        if missing:
            sys.exit(f"{name}: go build in {MODULE_DIR} made no {', '.join(missing)}")
        (out / ".recipe").write_text(recipe())
        wrong = problems(out)
        if wrong:
            sys.exit(f"{name}: the binaries built in {out} are wrong: {'; '.join(wrong)}")
        if target.exists():  # broken (checked by the caller): set aside, then replaced
            shutil.rmtree(target)
        out.replace(target)


def main() -> int:
    given = os.environ.get("KLOGHUB_KUBE_BIN")
    if given:
        wrong = problems(Path(given))
        if wrong:
            sys.exit(f"get_kube: KLOGHUB_KUBE_BIN={given}: {'; '.join(wrong)}")
        print(given)
        return 0
    target = bin_dir()
    with _gobuild.locked(target.parent / ".kube.lock"):
        wrong = problems(target)
        if wrong:
            if target.exists():
                print(f"get_kube: rebuilding {target}: {'; '.join(wrong)}", file=sys.stderr)
            build(target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
