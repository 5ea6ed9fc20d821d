"""The e2e fixtures work: real Prometheus scrapes, evaluates the shipped rules and
pushes to a real Alertmanager that routes and inhibits with the shipped config.

This tests the WIRING ONLY. The scrape target is a prometheus_client registry serving
a few hand-set tidemark_* series, not Tidemark; the end-to-end test with a real broker
and a running Tidemark builds on the same fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from alerting_stack import Alertmanager, Prometheus, free_port
from prometheus_client import CollectorRegistry, Gauge, start_http_server


@dataclass(slots=True)
class FakeExporter:
    """A scrape target that looks like one Tidemark instance watching product "orders"."""

    address: str
    watermark: Gauge

    def set_watermark_age(self, seconds: float) -> None:
        self.watermark.labels("orders", "shop.orders.v1", "0").set(time.time() - seconds)


@pytest.fixture
def exporter() -> Iterator[FakeExporter]:
    registry = CollectorRegistry()
    Gauge("tidemark_up", "poll loop alive", registry=registry).set(1)
    info = Gauge(
        "tidemark_data_product_info",
        "product",
        ["product", "topic", "owner", "tier"],
        registry=registry,
    )
    info.labels("orders", "shop.orders.v1", "team-checkout", "gold").set(1)
    threshold = Gauge(
        "tidemark_slo_threshold_seconds", "threshold", ["product", "sli"], registry=registry
    )
    threshold.labels("orders", "freshness").set(60)
    idle = Gauge(
        "tidemark_partition_idle", "idle", ["product", "topic", "partition"], registry=registry
    )
    idle.labels("orders", "shop.orders.v1", "0").set(0)
    watermark = Gauge(
        "tidemark_partition_watermark_timestamp_seconds",
        "watermark",
        ["product", "topic", "partition"],
        registry=registry,
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    fake = FakeExporter(f"127.0.0.1:{port}", watermark)
    fake.set_watermark_age(5)
    yield fake
    server.shutdown()
    thread.join(timeout=5)


def test_prometheus_scrapes_target_and_evaluates_recording_rules(
    prometheus: Prometheus, exporter: FakeExporter
) -> None:
    prometheus.set_targets([exporter.address])
    prometheus.wait_for('tidemark_up{job="tidemark"} == 1')
    freshness = prometheus.wait_for("tidemark:product_freshness_seconds")
    assert freshness[0]["metric"] == {
        "__name__": "tidemark:product_freshness_seconds",
        "product": "orders",
    }
    assert 0 < float(freshness[0]["value"][1]) < 60


def test_stale_product_pages_through_alertmanager_and_resolves(
    prometheus: Prometheus, alertmanager: Alertmanager, exporter: FakeExporter
) -> None:
    prometheus.set_targets([exporter.address])
    prometheus.wait_for("tidemark:product_freshness_seconds < 60")
    assert alertmanager.alerts(alertname="TidemarkDataStale") == []

    exporter.set_watermark_age(600)  # 10 minutes old, threshold 60s
    alert = alertmanager.wait_for_alert(alertname="TidemarkDataStale", product="orders")
    assert alert["labels"] == {
        "alertname": "TidemarkDataStale",
        "severity": "page",
        "category": "data",
        "product": "orders",
        "owner": "team-checkout",
        "tier": "gold",
    }
    assert alert["annotations"]["runbook_url"].endswith("/TidemarkDataStale.md")
    alertmanager.wait_for_notification(
        "data-pager", product="orders", alertname="TidemarkDataStale"
    )

    exporter.set_watermark_age(1)  # the producer resumed
    alertmanager.wait_for_notification(
        "data-pager", status="resolved", product="orders", alertname="TidemarkDataStale"
    )
    assert alertmanager.alerts(alertname="TidemarkDataStale") == []


def test_shipped_inhibition_hides_symptoms_while_tidemark_is_absent(
    alertmanager: Alertmanager,
) -> None:
    alertmanager.post(
        [
            {"labels": {"alertname": "TidemarkAbsent", "severity": "page", "category": "monitor"}},
            {
                "labels": {
                    "alertname": "TidemarkDataStale",
                    "severity": "page",
                    "category": "data",
                    "product": "orders",
                }
            },
        ]
    )
    absent = alertmanager.wait_for_alert(alertname="TidemarkAbsent")
    assert absent["status"]["state"] == "active"
    stale = alertmanager.wait_for_alert(alertname="TidemarkDataStale")
    assert stale["status"]["inhibitedBy"], stale["status"]
    alertmanager.wait_for_notification("platform-pager", alertname="TidemarkAbsent")
    assert not any(n["receiver"] == "data-pager" for n in alertmanager.notifications)
