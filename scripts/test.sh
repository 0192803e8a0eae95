#!/usr/bin/env bash
# `make test`: static checks, then the whole pytest suite against real OpenSearch and
# Elasticsearch servers that this script starts and always stops (also when tests fail),
# and a real etcd + kube-apiserver that pytest starts once for the session (tests/_kube.py).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
PYTHON=${PYTHON:-python3}
started=$(date +%s)

"$PYTHON" scripts/prereqs.py
"$PYTHON" scripts/search_servers.py check

echo "== static checks (ruff, mypy --strict, import-linter)"
make --no-print-directory lint

run_dir=${KLOGHUB_RUN_DIR:-$HOME/.cache/kloghub/run}
if [[ -z "${KLOGHUB_TEST_ELASTICSEARCH_URL:-}" || -z "${KLOGHUB_TEST_OPENSEARCH_URL:-}" ]]; then
  echo "== starting OpenSearch and Elasticsearch (cached in ${KLOGHUB_CACHE:-$HOME/.cache/kloghub})"
  trap '"$PYTHON" scripts/search_servers.py stop || true' EXIT
  "$PYTHON" scripts/search_servers.py start
  set -a
  # shellcheck disable=SC1091
  source "$run_dir/servers.env"
  set +a
else
  echo "== using the servers given in KLOGHUB_TEST_ELASTICSEARCH_URL / KLOGHUB_TEST_OPENSEARCH_URL"
fi

echo "== helm (built from the Go module proxy, cached)"
KLOGHUB_HELM=$("$PYTHON" scripts/get_helm.py)
export KLOGHUB_HELM

echo "== kube-apiserver (built from the Go module proxy, cached)"
KLOGHUB_KUBE_BIN=$("$PYTHON" scripts/get_kube.py)
export KLOGHUB_KUBE_BIN

# The image of these sources, for tests/charts/test_image_run.py: built once (cold: ~9
# min on two cores), then reused while the Dockerfile, the sources and the base are
# unchanged. Under CI=true a missing buildah or a failed build fails the run.
echo "== image (buildah, no daemon; reused while the sources are unchanged)"
if ! command -v buildah >/dev/null 2>&1; then
  reason="buildah is not installed (Debian: apt-get install buildah mmdebstrap)"
  if [[ "${CI:-}" == "true" ]]; then
    echo "$reason" >&2
    exit 1
  fi
  echo "   skipping the image run tests: $reason"
elif ! "$PYTHON" scripts/image.py ensure >/dev/null; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "the image build failed (output above)" >&2
    exit 1
  fi
  echo "   skipping the image run tests: the image build failed (output above)"
fi

echo "== pytest"
status=0
"$BIN/python" -m pytest "$@" || status=$?
echo "== make test took $(( $(date +%s) - started )) s"
exit $status
