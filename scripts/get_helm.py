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

import os
import sys
from pathlib import Path

# _gobuild.py is next to this file (also when tests/_kube.py loads this one by its path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gobuild

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


def helm_version(path: Path) -> str | None:
    """The version a helm binary reports (``v3.22.0``), or None when it does not run."""
    return _gobuild.output([str(path), "version", "--template", "{{.Version}}"]) or None


def build(target: Path) -> None:
    name = "get_helm"
    go = _gobuild.find_go(name, "helm", "set KLOGHUB_HELM=/path/to/helm")
    with _gobuild.building(name, f"helm {HELM_VERSION} with {go}", target, "a few minutes") as tmp:
        _gobuild.run_go(
            name,
            go,
            ["install", f"{HELM_MODULE}@{HELM_VERSION}"],
            ldflags=ldflags(),
            env={"GOBIN": str(tmp)},
        )
        built = tmp / "helm"
        if not built.exists():
            sys.exit(f"{name}: go install {HELM_MODULE} made no {built}")
        built.replace(target)


def main() -> int:
    given = os.environ.get("KLOGHUB_HELM")
    if given:
        if helm_version(Path(given)) is None:
            sys.exit(f"get_helm: KLOGHUB_HELM={given} does not run `helm version`")
        print(given)
        return 0
    bindir = _gobuild.cache_dir()
    target = bindir / "helm"
    recipe_file = bindir / ".helm.recipe"  # how the cached binary was built
    recipe = f"{HELM_MODULE}@{HELM_VERSION} {ldflags()}\n"
    with _gobuild.locked(bindir / ".helm.lock"):
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
