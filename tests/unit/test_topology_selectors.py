"""Label selectors for ListResources."""

from __future__ import annotations

import pytest

from corrmesh.topology.selectors import SelectorError, parse_selector

LABELS = {"app": "api", "tier": "web", "app.kubernetes.io/name": "shop"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=api", True),
        ("app==api", True),
        ("app=db", False),
        ("tier!=db", True),
        ("tier!=web", False),
        ("missing!=x", True),
        ("app=api, tier", True),
        ("canary", False),
        ("!canary", True),
        ("!app", False),
        ("app.kubernetes.io/name=shop,app=api", True),
        ("app=", False),
    ],
)
def test_selector_matching(selector: str, matches: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize("selector", ["app in (api,db)", "=api", "app=a b", "!app=api", "a,,b"])
def test_unsupported_or_malformed_selectors_are_errors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)
