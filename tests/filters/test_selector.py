"""Label selectors with the Kubernetes syntax and meaning."""

from __future__ import annotations

import pytest

from kloghub import filters

LABELS = {"app": "web", "tier": "frontend", "app.kubernetes.io/name": "shop", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=api", False),
        ("app!=api", True),
        ("missing!=x", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("tier in (frontend, backend)", True),
        ("tier in (backend)", False),
        ("missing in (x)", False),
        ("tier notin (backend,cache)", True),
        ("tier notin (frontend)", False),
        ("missing notin (x)", True),
        ("app.kubernetes.io/name=shop", True),
        ("empty=", True),
        ("app=web,tier!=cache,!canary", True),
        ("app=web, tier in (backend)", False),
    ],
)
def test_selector_matches_like_kubectl(selector, matches):
    """If this failed, label_selector would ship (or drop) the wrong pods."""
    assert filters.LabelSelector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector",
    [
        "app=",
        "a in b",
        "a in (",
        "a in ()",
        "a notin (x",
        "a=b,",
        "=b",
        "a>1",
        "bad key=x",
        "a=b c",
        "-bad=x",
        "UPPER.example/x=y",
        "a=" + "v" * 64,
    ],
)
def test_malformed_selectors_are_refused(selector):
    """If this failed, a typo in label_selector would silently match everything or nothing."""
    if selector == "app=":  # an empty value is valid
        assert filters.LabelSelector(selector).matches({"app": ""})
        return
    with pytest.raises(ValueError):
        filters.LabelSelector(selector)
