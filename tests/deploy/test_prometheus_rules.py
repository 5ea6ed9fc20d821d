"""The shipped rules load in Prometheus, pass their unit tests, and carry what on-call needs."""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    REPO,
    RULE_TESTS_DIR,
    RUNBOOK_BASE,
    RUNBOOKS,
    alert_names,
    alert_rules,
    rule_files,
    rule_groups,
    run,
    tool,
)

PRODUCT_JOIN = "group_left (owner, tier) tidemark:data_product_info:max"


def test_rule_files_pass_promtool_check() -> None:
    result = run(tool("promtool"), "check", "rules", *rule_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass_promtool() -> None:
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests, "no promtool unit tests found"
    result = run(tool("promtool"), "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = run(tool("promtool"), "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout


def test_generated_files_are_up_to_date() -> None:
    """Recording rules, PrometheusRule and dashboards are rendered by deploy/render.py."""
    result = run(sys.executable, DEPLOY / "render.py", "--check")
    assert result.returncode == 0, result.stderr


def test_recording_rules_cover_every_sli_and_window() -> None:
    records = {
        (r["record"], r.get("labels", {}).get("sli"))
        for g in rule_groups()
        for r in g["rules"]
        if "record" in r
    }
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        for sli in ("freshness", "conformance", "completeness", "correctness"):
            assert (f"tidemark:slo_events:rate{window}", sli) in records
            assert (f"tidemark:slo_good_events:rate{window}", sli) in records
        assert (f"tidemark:slo_burn_rate:rate{window}", None) in records


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_owner_summary_description_and_runbook(rule: dict) -> None:
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    assert labels.get("severity") in {"page", "ticket"}
    assert labels.get("category") in {"slo", "data", "monitor"}
    assert {"summary", "description", "runbook_url"} <= annotations.keys()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{rule['alert']}.md"
    # Owner comes from the product's info series, or is static for Tidemark-wide alerts.
    if PRODUCT_JOIN in rule["expr"]:
        assert "product" not in labels and "owner" not in labels
    else:
        assert labels.get("owner") and labels["category"] == "monitor"
    # Description shows current values, not only prose.
    assert "$value" in annotations["description"] or "query" in annotations["description"]


@pytest.mark.parametrize("name", alert_names())
def test_alert_has_a_runbook(name: str) -> None:
    path = RUNBOOKS / f"{name}.md"
    assert path.exists(), f"write {path.relative_to(REPO)}"
    text = path.read_text().lower()
    for section in (
        "## what it means",
        "## how to confirm",
        "## likely causes",
        "## what to do",
        "## backfill",
    ):
        assert section in text, f"{path.name} lacks '{section}'"


def _rule_test_cases() -> list[tuple[str, bool]]:
    cases = []
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((case["alertname"], bool(case.get("exp_alerts"))))
    return cases


@pytest.mark.parametrize("name", alert_names())
def test_alert_is_unit_tested_firing_and_not_firing(name: str) -> None:
    cases = _rule_test_cases()
    assert (name, True) in cases, f"no promtool test expects {name} to fire"
    assert (name, False) in cases, f"no promtool test expects {name} to stay silent"


def test_page_alerts_wait_before_paging() -> None:
    """A page needs a `for:` so one odd evaluation cannot wake anyone (absent() included)."""
    for rule in alert_rules():
        if rule["labels"]["severity"] == "page":
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), rule["alert"]
