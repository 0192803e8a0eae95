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

echo "== pytest"
status=0
"$BIN/python" -m pytest "$@" || status=$?
echo "== make test took $(( $(date +%s) - started )) s"
exit $status
