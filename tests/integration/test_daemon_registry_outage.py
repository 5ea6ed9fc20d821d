"""A schema registry outage holds the partition that needs it, never the loop.

The registry stand-in (for Confluent Schema Registry / Karapace / Redpanda's registry)
is stopped, so connections are refused. Events whose schema id is already cached keep
decoding; the first event with a new id holds its partition (paused, nothing counted
or committed past it, no contract violation: the producer did nothing wrong); the
registry is asked again with backoff up to schema_registry.retry_after, and once it
answers the partition resumes at the held event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from daemon_support import (
    ORDERS,
    ORDERS_V2,
    avro,
    by_partition,
    confluent,
    events,
    order,
    product,
    violations,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, RegistryServer, Samples, TidemarkProcess, scrape, wait_for

OUT_OF_ORDERNESS = 5
RETRY_AFTER = 2.0


def _lookups(s: Samples) -> dict[str, float]:
    return {
        dict(labels)["result"]: value
        for labels, value in s.values("tidemark_schema_registry_lookups_total").items()
    }


def test_registry_outage_is_counted_and_decoding_resumes_after_retry_after(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    v1 = registry.register("orders-value", json.dumps(ORDERS))
    topic = broker.new_topic(2)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            product(
                "orders",
                topic,
                encoding="confluent",
                max_out_of_orderness=OUT_OF_ORDERNESS,
                idle_timeout=300,
            )
        ],
        registry_url=registry.url,
        retry_after=RETRY_AFTER,
    )
    daemon = tidemark(config)
    t0 = whole_seconds_ago(600)
    seq = iter(range(10_000))

    def v1_event(partition: int, t: int) -> None:
        broker.produce(topic, partition, confluent(v1, avro(ORDERS, order(t, next(seq)))))

    def v2_event(partition: int, t: int, schema_id: int) -> None:
        record = {**order(t, next(seq)), "channel": "app"}
        broker.produce(topic, partition, confluent(schema_id, avro(ORDERS_V2, record)))

    # Before the outage: schema v1 is looked up once and cached.
    for p in (0, 1):
        for i in range(3):
            v1_event(p, t0 + i)
    broker.flush()
    n = 6
    s = wait_events(daemon, "orders", n)
    assert _lookups(s) == {"ok": 1, "not_found": 0, "error": 0}

    # Outage. v2 is registered meanwhile (say by a producer's deploy); its id is new.
    registry.stop()
    v2 = registry.register("orders-value", json.dumps(ORDERS_V2))
    outage_v2 = 4
    for i in range(outage_v2):
        v2_event(0, t0 + 50 + i, v2)  # the first holds partition 0...
    v1_event(0, t0 + 60)  # ...and these wait behind it
    v1_event(0, t0 + 61)
    for i in range(3):
        v1_event(1, t0 + 70 + i)  # the other partition keeps flowing
    broker.flush()
    s = wait_for(
        daemon.metrics_url,
        lambda s: events(s, "orders") == n + 3 and held(s)["registry_unreachable"] == 1,
        timeout=20,
    )
    assert sum(violations(s, "orders").values()) == 0
    assert s.value("tidemark_events_conforming_total", product="orders") == n + 3
    assert _lookups(s)["ok"] == 1 and _lookups(s)["error"] >= 1
    assert s.value("tidemark_schema_registry_up") == 0
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == {
        0: t0 + 2 - OUT_OF_ORDERNESS,
        1: t0 + 72 - OUT_OF_ORDERNESS,
    }
    lag = wait_for(
        daemon.metrics_url,
        lambda s: by_partition(s, "tidemark_consumer_lag_messages", "orders") == {0: 6, 1: 0},
        timeout=10,
    )
    heartbeat = lag.value("tidemark_poll_loop_heartbeat_timestamp_seconds")
    wait_for(
        daemon.metrics_url,
        lambda s: s.value("tidemark_poll_loop_heartbeat_timestamp_seconds") > heartbeat + 0.2,
        timeout=5,
    )
    assert daemon.get("/healthz")[0] == 200
    assert daemon.get("/readyz")[0] == 200

    # The registry is back: within the backoff (at most retry_after) the new id is
    # answered and partition 0 resumes at the held event; v2 is compatible drift.
    registry.start()
    n += outage_v2 + 2 + 3
    s = wait_events(daemon, "orders", n, timeout=RETRY_AFTER + 10)
    after = 3
    for i in range(after):
        v2_event(0, t0 + 80 + i, v2)
    broker.flush()
    n += after
    s = wait_events(daemon, "orders", n)
    assert sum(violations(s, "orders").values()) == 0
    assert s.value("tidemark_events_conforming_total", product="orders") == n
    assert (
        s.value("tidemark_schema_drift_events_total", product="orders", verdict="compatible")
        == outage_v2 + after
    )
    assert _lookups(s)["ok"] == 2
    assert held(s) == {"schema_lookup": 0, "registry_unreachable": 0}
    assert s.value("tidemark_schema_registry_up") == 1
    assert s.value("tidemark_writer_schema_info", product="orders", schema=f"id:{v2}") == 1
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")[0] == (
        t0 + 82 - OUT_OF_ORDERNESS
    )
    assert registry.count("GET", f"/schemas/ids/{v2}") == 1
    assert scrape(daemon.metrics_url).value("tidemark_ready") == 1


def held(s: Samples) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for labels, value in s.values("tidemark_partitions_held").items()
        if dict(labels)["product"] == "orders"
    }
