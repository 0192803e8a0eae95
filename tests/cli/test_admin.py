"""`kloghub dlq` and `kloghub setup`: the operator's side of the collector's sinks."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from kloghub import core, sinks
from tests._procs import run_kloghub


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_kloghub(*args, timeout=120)


async def test_dlq_list_counts_entries_by_error_and_shows_the_newest(tmp_path):
    """If this failed, an operator could not see why events were dead-lettered."""
    dlq = sinks.DeadLetterQueue(tmp_path / "dlq", 10 * 1024 * 1024)
    await dlq.start()
    event = core.Event(
        "logs-kubernetes.container_logs-default", 1, {"id": "abc", "doc": {"message": "x"}}
    )
    await dlq.put(
        "opensearch+http://os:9200",
        [
            sinks.Rejection(event, "mapper_parsing_exception", "failed to parse [x]", 400),
            sinks.Rejection(event, "mapper_parsing_exception", "failed to parse [y]", 400),
        ],
    )
    await dlq.stop(5)
    result = run("dlq", "list", "--state-dir", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["entries"] == 2
    assert summary["by_error"] == {"mapper_parsing_exception": 2}
    assert summary["newest"][-1]["reason"] == "failed to parse [y]"
    table = run("dlq", "list", "--state-dir", str(tmp_path))
    assert "2 dead-lettered events" in table.stdout


@pytest.mark.integration
@pytest.mark.parametrize("product", ["elasticsearch", "opensearch"])
def test_setup_installs_the_templates_twice_without_error(product, request):
    """If this failed, `kloghub setup` could not prepare a SIEM, or would fail on rerun."""
    url = request.getfixturevalue(f"{product}_url")
    for _ in range(2):
        result = run("setup", "--sink", f"{product}+{url}", "--retention-days", "7")
        assert result.returncode == 0, result.stderr
        assert "_index_template/kloghub-kubernetes.audit_logs" in result.stdout
    with urllib.request.urlopen(
        f"{url}/_index_template/kloghub-kubernetes.node_logs", timeout=10
    ) as resp:
        body = json.load(resp)
    assert body["index_templates"][0]["index_template"]["index_patterns"] == [
        "logs-kubernetes.node_logs-*"
    ]
