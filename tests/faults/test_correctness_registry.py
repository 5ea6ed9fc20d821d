"""A registry outage while a `latest` subject is followed: rules keep counting, one warning.

The contract and its rules were read at start-up; the watcher asks for a newer
version off the poll loop. While the registry answers 503 the version in use is
kept and the problem is logged once (not once per check); when it answers again,
a version registered meanwhile is taken and its new rule counts from then on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_support import ORDERS, avro, confluent, order, whole_seconds_ago, write_config
from harness import Broker, RegistryServer, Samples, TidemarkProcess, wait_for

SUBJECT = "faults.orders-value"
METADATA = {"properties": {"owner": "team-shop", "tidemark.event_time": "occurred_at"}}


def _rule(name: str, expr: str) -> dict[str, Any]:
    return {"name": name, "kind": "CONDITION", "mode": "READ", "type": "CEL", "expr": expr}


def _checked(s: Samples) -> float:
    return s.value("tidemark_rule_checked_events_total", product="orders")


def test_registry_outage_keeps_the_version_in_use_and_a_new_one_follows_recovery(
    mock_only: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    broker = mock_only
    rules_v1 = [_rule("positive_amount", "message.amount_cents > 0")]
    v1 = registry.register(
        SUBJECT, json.dumps(ORDERS), metadata=METADATA, rule_set={"domainRules": rules_v1}
    )
    topic = broker.new_topic(1)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            {
                "name": "orders",
                "topic": topic,
                "contract": {"subject": SUBJECT, "check_interval": 0.2},
                "encoding": "confluent",
                "idle_timeout": 300,
            }
        ],
        registry_url=registry.url,
        retry_after=1.0,
    )
    daemon = tidemark(config)
    t0 = whole_seconds_ago(60)
    seq = iter(range(1000))

    def send(schema_id: int, **fields: Any) -> None:
        n = next(seq)
        broker.produce(topic, 0, confluent(schema_id, avro(ORDERS, order(t0 + n, n, **fields))))

    send(v1)
    send(v1, amount_cents=-1)
    broker.flush()
    wait_for(daemon.metrics_url, lambda s: _checked(s) == 2, timeout=20)

    registry.fail_with(503)
    checks_before = registry.count("GET", f"/subjects/{SUBJECT}/versions/latest")
    time.sleep(1.5)  # several failed checks
    send(v1, amount_cents=-2)
    send(v1)
    broker.flush()
    s = wait_for(daemon.metrics_url, lambda s: _checked(s) == 4, timeout=20)
    assert s.value("tidemark_rule_violations_total", product="orders", rule="positive_amount") == 2
    assert s.value("tidemark_events_correct_total", product="orders") == 2
    assert daemon.get("/healthz")[0] == 200
    assert registry.count("GET", f"/subjects/{SUBJECT}/versions/latest") >= checks_before + 3
    refused = [r for r in daemon.log_records() if r.get("event") == "contract_version_refused"]
    assert [r["kind"] for r in refused] == ["unavailable"]  # once for the whole outage

    rules_v2 = [*rules_v1, _rule("small_amount", "message.amount_cents < 1000")]
    v2 = registry.register(
        SUBJECT, json.dumps(ORDERS), metadata=METADATA, rule_set={"domainRules": rules_v2}
    )
    registry.fail_with(None)
    wait_for(
        daemon.metrics_url,
        lambda s: s.has("tidemark_contract_version_info", product="orders", version="2"),
        timeout=20,
    )
    send(v2, amount_cents=5000)
    broker.flush()
    s = wait_for(daemon.metrics_url, lambda s: _checked(s) == 5, timeout=20)
    assert s.value("tidemark_rule_violations_total", product="orders", rule="small_amount") == 1
    assert s.value("tidemark_events_correct_total", product="orders") == 2
    assert s.value("tidemark_processing_errors_total", product="orders") == 0
