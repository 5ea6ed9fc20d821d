"""The daemon classifies every event exactly once: conforming, drifted or a violation.

A scripted mix goes to two products of one running daemon: schemaless Avro
(`avro-raw`) and Confluent framing resolved through the registry stand-in (it stands
for Confluent Schema Registry / Karapace / Redpanda's registry, which cannot be
installed here). Every counter is asserted exactly from the script.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from daemon_support import (
    ORDERS,
    ORDERS_INCOMPATIBLE,
    ORDERS_V2,
    READINGS,
    avro,
    by_partition,
    confluent,
    decodes,
    order,
    product,
    violations,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, RegistryServer, TidemarkProcess, scrape

REASONS = {
    "decode_error",
    "unknown_schema",
    "null_value",
    "bad_framing",
    "incompatible_schema",
    "payload_too_large",
    "unsafe_schema",
    "nesting_too_deep",
    "missing_event_time",
    "bad_event_time",
}
Script = list[tuple[int, bytes | None, str]]  # (partition, value, expected outcome)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _readings_script(marker: str, now: int) -> Script:
    """avro-raw product: outcome is 'conforming' or the violation reason."""

    def reading(i: int, measured_at: str | None) -> bytes:
        return avro(
            READINGS, {"sensor": f"{marker}-sensor-{i}", "value": i / 4, "measured_at": measured_at}
        )

    garbage = [b"\xff" * 9 + marker.encode(), b"\xff" * 3, b"\x80" * 12]
    script: Script = [(0, reading(i, _iso(now + i)), "conforming") for i in range(7)]
    script += [(0, g, "decode_error") for g in garbage]
    script += [(0, None, "null_value")]
    script += [(0, reading(99, _iso(now)) + b"\x00", "decode_error")]  # one trailing byte
    script += [(1, reading(10 + i, _iso(now + 10 + i)), "conforming") for i in range(4)]
    script += [(1, reading(20, None), "missing_event_time")]
    script += [(1, reading(21, "yesterday, around noon"), "bad_event_time")]
    script += [(1, reading(22, _iso(now + 20)), "conforming")]
    for _, value, outcome in script:
        assert value is None or decodes(READINGS, value) == (outcome != "decode_error")
    return script


def _orders_script(marker: str, now: int, ids: dict[str, int]) -> Script:
    """confluent product: 'conforming', 'compatible' or the violation reason."""

    def body(i: int) -> dict[str, object]:
        return order(now + i, i, order_id=f"{marker}-order-{i}")

    v1 = [(0, confluent(ids["v1"], avro(ORDERS, body(i))), "conforming") for i in range(5)]
    v2 = [
        (1, confluent(ids["v2"], avro(ORDERS_V2, {**body(10 + i), "channel": "web"})), "compatible")
        for i in range(3)
    ]
    bad_writer = {k: v for k, v in body(20).items() if k not in ("customer_id", "currency")}
    incompatible = avro(ORDERS_INCOMPATIBLE, {**bad_writer, "amount_cents": "12.50"})
    script: Script = [*v1, *v2]
    script += [(0, confluent(ids["incompatible"], incompatible), "incompatible_schema")] * 2
    script += [(1, confluent(4242, avro(ORDERS, body(30))), "unknown_schema")] * 2
    script += [(0, b"\x01" + confluent(ids["v1"], avro(ORDERS, body(31)))[1:], "bad_framing")]
    script += [(1, b"\x00\x00\x01", "bad_framing")]  # too short to hold a schema id
    script += [(0, None, "null_value")]
    script += [(1, confluent(ids["v1"], b"\xff\xff\xff" + marker.encode()), "decode_error")]
    script += [(0, confluent(ids["v1"], avro(ORDERS, body(40))), "conforming")]
    return script


def _expect(script: Script) -> tuple[int, int, dict[str, int], int]:
    """(events, conforming, violations by reason incl. zeros, compatible drift)."""
    outcomes = Counter(outcome for _, _, outcome in script)
    conforming = outcomes["conforming"] + outcomes["compatible"]
    by_reason = {reason: outcomes[reason] for reason in REASONS}
    assert sum(by_reason.values()) + conforming == len(script)  # the script is well-formed
    return len(script), conforming, by_reason, outcomes["compatible"]


def test_every_event_is_counted_once_under_its_contract(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    marker = f"PAYLOAD{uuid.uuid4().hex[:12]}"
    ids = {
        "v1": registry.register("orders-value", json.dumps(ORDERS)),
        "v2": registry.register("orders-value", json.dumps(ORDERS_V2)),
        "incompatible": registry.register("orders-value", json.dumps(ORDERS_INCOMPATIBLE)),
    }
    readings_topic, orders_topic = broker.new_topic(2), broker.new_topic(2)
    readings_path = tmp_path / "readings.avsc"
    readings_path.write_text(json.dumps(READINGS))
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            product(
                "readings",
                readings_topic,
                contract=readings_path,
                event_time="measured_at",
            ),
            product("orders", orders_topic, encoding="confluent"),
        ],
        registry_url=registry.url,
    )
    now = whole_seconds_ago(30)
    scripts = {
        ("readings", readings_topic): _readings_script(marker, now),
        ("orders", orders_topic): _orders_script(marker, now, ids),
    }
    for (_, topic), script in scripts.items():
        for partition, value, _ in script:
            broker.produce(topic, partition, value)
    ends = broker.flush()

    daemon = tidemark(config)
    for (name, topic), script in scripts.items():
        n, conforming, by_reason, compatible = _expect(script)
        got = wait_events(daemon, name, n)
        assert got.value("tidemark_events_conforming_total", product=name) == conforming
        assert violations(got, name) == by_reason
        drift = {"compatible": compatible, "incompatible": by_reason["incompatible_schema"]}
        for verdict, count in drift.items():
            assert (
                got.value("tidemark_schema_drift_events_total", product=name, verdict=verdict)
                == count
            )
        # All event times are recent, none from the future: every conforming event is
        # fresh and has its latency observed.
        assert got.value("tidemark_events_fresh_total", product=name) == conforming
        assert got.value("tidemark_event_latency_seconds_count", product=name) == conforming
        assert got.value("tidemark_late_events_total", product=name) == 0
        assert got.value("tidemark_future_events_total", product=name) == 0
        # Bad events never stall their partition: the daemon read to the end of each.
        want_ends = {p: ends[(topic, p)] for p in (0, 1)}
        assert by_partition(got, "tidemark_partition_high_watermark_offset", name) == want_ends
        assert by_partition(got, "tidemark_consumer_lag_messages", name) == {0: 0, 1: 0}

    samples = scrape(daemon.metrics_url)
    writers = {
        (dict(labels)["product"], dict(labels)["schema"], dict(labels)["verdict"])
        for labels in samples.values("tidemark_writer_schema_info")
    }
    assert writers == {
        ("readings", "contract", "conforming"),
        ("orders", f"id:{ids['v1']}", "conforming"),
        ("orders", f"id:{ids['v2']}", "compatible"),
        ("orders", f"id:{ids['incompatible']}", "incompatible"),
    }
    # Each schema id was asked for once, however many events carried it.
    assert {
        dict(labels)["result"]: value
        for labels, value in samples.values("tidemark_schema_registry_lookups_total").items()
    } == {"ok": 3, "not_found": 1, "error": 0}
    assert registry.count("GET", "/schemas/ids/") == 4

    # Logs name topics and partitions, never payload bytes.
    output = daemon.output()
    assert any(
        r.get("event") == "partition_assigned" and r.get("topic") == orders_topic
        for r in daemon.log_records()
    ), daemon.log_tail()
    for needle in (marker, marker.encode().hex(), "yesterday, around noon"):
        assert needle not in output
