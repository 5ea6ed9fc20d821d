"""A registry outage pages the platform, not the owners of the products it holds.

Real Alertmanager with the shipped routing and inhibition (deploy/alertmanager); the
alerts are posted as the shipped rules label them.
"""

from __future__ import annotations

from alerting_stack import Alertmanager


def _alert(name: str, severity: str, category: str, **labels: str) -> dict[str, dict[str, str]]:
    return {"labels": {"alertname": name, "severity": severity, "category": category, **labels}}


def test_registry_outage_inhibits_the_held_products_staleness_only(
    alertmanager: Alertmanager,
) -> None:
    alertmanager.post(
        [
            _alert("TidemarkSchemaRegistryUnreachable", "page", "monitor", product="orders"),
            _alert("TidemarkDataStale", "page", "data", product="orders"),
            _alert("TidemarkConsumerStuck", "page", "monitor", product="orders", partition="0"),
            _alert("TidemarkSLOFastBurn", "page", "slo", product="orders", sli="freshness"),
            # Not caused by the outage: a conformance burn, and another product's staleness.
            _alert("TidemarkSLOFastBurn", "page", "slo", product="orders", sli="conformance"),
            _alert("TidemarkDataStale", "page", "data", product="payments"),
        ]
    )
    registry = alertmanager.wait_for_alert(alertname="TidemarkSchemaRegistryUnreachable")
    assert registry["status"]["state"] == "active"
    for labels in (
        {"alertname": "TidemarkDataStale", "product": "orders"},
        {"alertname": "TidemarkConsumerStuck", "product": "orders"},
        {"alertname": "TidemarkSLOFastBurn", "sli": "freshness"},
    ):
        alert = alertmanager.wait_for_alert(**labels)
        assert alert["status"]["inhibitedBy"], (labels, alert["status"])
    for labels in (
        {"alertname": "TidemarkSLOFastBurn", "sli": "conformance"},
        {"alertname": "TidemarkDataStale", "product": "payments"},
    ):
        alert = alertmanager.wait_for_alert(**labels)
        assert not alert["status"]["inhibitedBy"], (labels, alert["status"])
    alertmanager.wait_for_notification(
        "platform-pager", alertname="TidemarkSchemaRegistryUnreachable"
    )
    alertmanager.wait_for_notification("data-pager", product="payments")
    paged = [n for n in alertmanager.notifications if n["receiver"] == "data-pager"]
    assert all(
        a["labels"].get("product") == "payments" or a["labels"].get("sli") == "conformance"
        for n in paged
        for a in n["alerts"]
    ), paged
