"""Correctness end to end: a contract registered with metadata and a ruleSet, a real broker.

The product's config names only the subject: owner, event time and the correctness
target come from the registered metadata, the rules from its ruleSet. Scripted
events have exactly known rule outcomes, read back from /metrics and /violations.
A version with a new rule registered while the daemon runs is taken without a
restart: counters continue and tidemark_contract_version_info moves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_support import ORDERS, avro, confluent, order, whole_seconds_ago, write_config
from harness import Broker, RegistryServer, Samples, TidemarkProcess, scrape, wait_for

SUBJECT = "shop.orders-value"
METADATA = {
    "properties": {
        "owner": "team-shop",
        "tidemark.event_time": "occurred_at",
        "tidemark.correctness.target": "99.5%",
    }
}


def rule(name: str, expr: str, mode: str = "WRITEREAD", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "CONDITION", "mode": mode, "type": "CEL", "expr": expr, **extra}


RULES_V1 = [
    rule("positive_amount", "message.amount_cents > 0"),
    rule("known_currency", "message.currency in ['EUR', 'USD']"),
    # The producer's promise (run by its serializer) is checked on the stream too.
    rule("producer_promise", "message.sequence >= 0", mode="WRITE"),
    rule("switched_off", "false", disabled=True),
]
RULES_V2 = [*RULES_V1, rule("small_amount", "message.amount_cents < 1000")]


def _checked(s: Samples) -> tuple[float, float]:
    return (
        s.value("tidemark_rule_checked_events_total", product="orders"),
        s.value("tidemark_events_correct_total", product="orders"),
    )


def _broken(s: Samples) -> dict[str, float]:
    return {
        dict(labels)["rule"]: value
        for labels, value in s.values("tidemark_rule_violations_total").items()
    }


def _version(s: Samples) -> dict[str, str] | None:
    series = list(s.values("tidemark_contract_version_info"))
    return None if not series else {k: v for k, v in series[0] if k != "topic"}


def test_registered_rules_are_counted_and_a_new_version_is_taken_while_running(
    mock_only: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    broker = mock_only
    v1 = registry.register(
        SUBJECT, json.dumps(ORDERS), metadata=METADATA, rule_set={"domainRules": RULES_V1}
    )
    topic = broker.new_topic(1)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            {
                "name": "orders",
                "topic": topic,
                "contract": {"subject": SUBJECT, "version": "latest", "check_interval": 0.3},
                "encoding": "confluent",
                "idle_timeout": 300,
            }
        ],
        registry_url=registry.url,
    )
    daemon = tidemark(config)
    t0 = whole_seconds_ago(60)
    # offset -> fields; every other event passes every rule
    bad = {
        2: {"amount_cents": -5},
        4: {"currency": "XXX"},
        6: {"amount_cents": 0, "currency": "GBP"},
        8: {"amount_cents": -1},
    }
    for offset in range(10):
        record = order(t0 + offset, offset, **bad.get(offset, {}))
        broker.produce(topic, 0, confluent(v1, avro(ORDERS, record)))
    broker.flush()
    s = wait_for(daemon.metrics_url, lambda s: _checked(s) == (10, 6), timeout=20)
    assert _broken(s) == {"positive_amount": 3, "known_currency": 2, "producer_promise": 0}
    assert s.value("tidemark_rule_errors_total", product="orders", rule="known_currency") == 0
    assert s.value("tidemark_slo_objective_ratio", product="orders", sli="correctness") == 0.995
    assert s.has("tidemark_data_product_info", product="orders", owner="team-shop")
    assert _version(s) == {
        "product": "orders",
        "subject": SUBJECT,
        "version": "1",
        "schema_id": str(v1),
    }
    status, body = daemon.get("/violations")
    assert status == 200
    listed = json.loads(body)["products"]["orders"]["violations"]
    assert [(v["partition"], v["offset"]) for v in listed] == [(0, 8), (0, 6), (0, 4), (0, 2)]
    assert sorted(listed[1]["rules"]) == ["known_currency", "positive_amount"]
    assert "customer-" not in body  # where the events are, never what they hold
    skipped = [r for r in daemon.log_records() if r.get("event") == "rules_not_evaluated"]
    assert len(skipped) == 1
    assert sorted(r["name"] for r in skipped[0]["rules"]) == ["switched_off"]

    # A new version with one more rule, registered while running.
    v2 = registry.register(
        SUBJECT, json.dumps(ORDERS), metadata=METADATA, rule_set={"domainRules": RULES_V2}
    )
    assert v2 != v1
    s = wait_for(
        daemon.metrics_url, lambda s: (_version(s) or {}).get("version") == "2", timeout=20
    )
    assert _version(s) == {
        "product": "orders",
        "subject": SUBJECT,
        "version": "2",
        "schema_id": str(v2),
    }
    assert s.value("tidemark_rule_violations_total", product="orders", rule="small_amount") == 0
    more = {12: {"amount_cents": 5000}, 13: {"amount_cents": -7}}
    for offset in range(10, 15):
        record = order(t0 + offset, offset, **more.get(offset, {}))
        broker.produce(topic, 0, confluent(v2, avro(ORDERS, record)))
    broker.flush()
    s = wait_for(daemon.metrics_url, lambda s: _checked(s)[0] == 15, timeout=20)
    assert _checked(s) == (15, 9)  # counters continued across the switch
    assert _broken(s) == {
        "positive_amount": 4,
        "known_currency": 2,
        "small_amount": 1,
        "producer_promise": 0,
    }
    listed = json.loads(daemon.get("/violations")[1])["products"]["orders"]["violations"]
    assert [v["offset"] for v in listed[:2]] == [13, 12]
    switched = [r for r in daemon.log_records() if r.get("event") == "contract_version_switched"]
    assert [r["version"] for r in switched] == [2]
    assert (
        scrape(daemon.metrics_url).value("tidemark_processing_errors_total", product="orders") == 0
    )
