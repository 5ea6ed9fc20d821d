"""The Alertmanager examples load in amtool and route each kind of alert where it belongs."""

from __future__ import annotations

import pytest
import yaml
from deploy_helpers import DEPLOY, alert_names, alert_rules, run, tool

CONFIGS = [DEPLOY / "alertmanager" / "alertmanager.yml", DEPLOY / "compose" / "alertmanager.yml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_passes_amtool_check_config(path) -> None:
    result = run(tool("amtool"), "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# (labels of an alert as the shipped rules produce them, receiver it must reach)
ROUTES = [
    (
        {
            "alertname": "TidemarkDataStale",
            "severity": "page",
            "category": "data",
            "product": "orders",
            "owner": "team-checkout",
        },
        "data-pager",
    ),
    (
        {
            "alertname": "TidemarkSLOFastBurn",
            "severity": "page",
            "category": "slo",
            "product": "orders",
            "sli": "freshness",
        },
        "data-pager",
    ),
    (
        {
            "alertname": "TidemarkSLOSlowBurn",
            "severity": "ticket",
            "category": "slo",
            "product": "orders",
            "sli": "freshness",
        },
        "data-tickets",
    ),
    (
        {
            "alertname": "TidemarkSLOFastBurn",
            "severity": "page",
            "category": "slo",
            "product": "orders",
            "sli": "correctness",
            "owner": "team-checkout",
        },
        "data-pager",
    ),
    (
        {
            "alertname": "TidemarkRuleErrors",
            "severity": "ticket",
            "category": "data",
            "product": "orders",
            "rule": "positive_amount",
            "owner": "team-checkout",
        },
        "data-tickets",
    ),
    (
        {
            "alertname": "TidemarkSchemaIncompatible",
            "severity": "ticket",
            "category": "data",
            "product": "orders",
        },
        "data-tickets",
    ),
    (
        {
            "alertname": "TidemarkAbsent",
            "severity": "page",
            "category": "monitor",
            "owner": "data-platform",
        },
        "platform-pager",
    ),
    (
        {
            "alertname": "TidemarkConsumerStuck",
            "severity": "page",
            "category": "monitor",
            "product": "orders",
        },
        "platform-pager",
    ),
    (
        {
            "alertname": "TidemarkSchemaRegistryUnreachable",
            "severity": "page",
            "category": "monitor",
            "product": "orders",
            "owner": "team-checkout",
        },
        "platform-pager",
    ),
    (
        {
            "alertname": "TidemarkKafkaUnreachable",
            "severity": "page",
            "category": "monitor",
            "owner": "data-platform",
            "instance": "tidemark-1:9308",
        },
        "platform-pager",
    ),
    (
        {
            "alertname": "TidemarkDown",
            "severity": "ticket",
            "category": "monitor",
            "instance": "tidemark-1:9308",
        },
        "platform-tickets",
    ),
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=lambda v: str(v)[:40])
def test_alert_routes_to_receiver(labels: dict[str, str], receiver: str) -> None:
    args = [f"{k}={v}" for k, v in labels.items()]
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIGS[0]}",
        f"--verify.receivers={receiver}",
        *args,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_severity_and_category_the_rules_emit_is_routed() -> None:
    """No alert falls through to the default receiver by accident."""
    config = yaml.safe_load(CONFIGS[0].read_text())
    matchers = {m for route in config["route"]["routes"] for m in route["matchers"]}
    for rule in alert_rules():
        labels = rule["labels"]
        assert (
            f'severity="{labels["severity"]}"' in matchers
            or f'category="{labels["category"]}"' in matchers
        ), rule["alert"]


def test_inhibit_rules_name_only_existing_alerts() -> None:
    config = yaml.safe_load(CONFIGS[0].read_text())
    names = set(alert_names())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith('alertname="'):
                assert matcher.split('"')[1] in names, matcher
            elif matcher.startswith('alertname=~"'):
                for name in matcher.split('"')[1].split("|"):
                    assert name in names or name == "Tidemark.+", matcher


def test_grouping_is_by_product_and_alertname() -> None:
    route = yaml.safe_load(CONFIGS[0].read_text())["route"]
    assert set(route["group_by"]) == {"alertname", "product"}
