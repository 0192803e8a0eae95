"""The agent-side filter chain, built from FiltersConfig."""

from __future__ import annotations

import pytest

from kloghub import config, core, filters


def ev(message: str) -> core.Event:
    return core.Event("t", 0, {"log": message, "kloghub": {"offset": 7}})


def test_per_file_rules_in_order_namespace_labels_container():
    """If this failed, include/exclude by namespace, labels or container would not work."""
    f = filters.Filters(
        config.FiltersConfig(
            include_namespaces=["shop-*", "default"],
            exclude_namespaces=["shop-canary"],
            label_selector="tier!=cache",
            exclude_containers=["istio-*"],
        )
    )
    assert f.file_verdict("shop-eu", {"tier": "web"}, "app") is None
    assert f.file_verdict("kube-system", {}, "app") == "namespace"
    assert f.file_verdict("shop-canary", {}, "app") == "namespace"
    assert f.file_verdict("default", {"tier": "cache"}, "app") == "labels"
    assert f.file_verdict("default", {}, "istio-proxy") == "container"


def test_what_is_not_known_passes():
    """If this failed, an API outage (unknown labels) would silently drop logs."""
    f = filters.Filters(config.FiltersConfig(include_namespaces=["shop"], label_selector="app=web"))
    assert f.file_verdict("shop", None, "app") is None  # labels unknown
    assert f.file_verdict(None, None, None) is None  # a path that says nothing


def test_drop_then_keep_then_redact_per_event():
    """If this failed, message filters would run out of order or redact dropped lines."""
    f = filters.Filters(
        config.FiltersConfig(
            drop_regex=["healthz"],
            keep_regex=["ERROR", "WARN"],
            redact=config.RedactionConfig(enabled=True),
        )
    )
    assert f.chain is not None
    assert f.chain(ev("ERROR GET /healthz")) is None
    assert f.chain(ev("INFO all good")) is None
    kept = f.chain(ev("ERROR login password=hunter2"))
    assert kept is not None
    assert kept.record["log"] == "ERROR login password=[REDACTED]"
    assert kept.record["kloghub"]["offset"] == 7


def test_no_filters_means_no_per_event_work():
    """If this failed, every event would pay for a chain that does nothing."""
    f = filters.Filters(config.FiltersConfig())
    assert f.chain is None
    assert not f.has_file_rules


def test_bad_filters_are_config_errors_naming_the_key():
    """If this failed, a typo in a filter would surface as a crash at the first line."""
    with pytest.raises(core.ConfigError) as info:
        filters.Filters(
            config.FiltersConfig(
                label_selector="app in web",
                drop_regex=["ok", "(unclosed"],
                redact=config.RedactionConfig(patterns=["[z-a]"]),
            )
        )
    text = str(info.value)
    assert "agent.filters.label_selector" in text
    assert "agent.filters.drop_regex[1]" in text
    assert "agent.filters.redact.patterns[0]" in text


def test_redaction_is_on_by_default_at_level_run_only():
    """If this failed, the run preset would ship secrets (or crawl would pay for redaction)."""
    run = config.load(flags={"level": "run"})
    crawl = config.load(flags={"level": "crawl"})
    assert filters.Filters(run.agent.filters).chain is not None
    assert filters.Filters(crawl.agent.filters).chain is None
