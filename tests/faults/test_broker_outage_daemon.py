"""The daemon through a whole-cluster outage of librdkafka's mock cluster (3 brokers, TCP).

Every broker is taken down (connections closed, new ones refused: librdkafka reports
_ALL_BROKERS_DOWN) for longer than the group session, then brought back. The daemon must
turn not ready within seconds, keep exporting the lost partitions' watermarks (freshness
growing, never absent), and recover by itself: ready again, partitions reassigned with
their watermarks carried over, new events read. tests/e2e/test_broker_outage.py does the
same with a hung Tansu, under real Prometheus and Alertmanager.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_support import by_partition, order_bytes, product, whole_seconds_ago, write_config
from harness import MockBroker, Samples, TidemarkProcess, scrape, wait_for

SESSION = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}  # lost within ~2 s


@pytest.fixture
def broker() -> Iterator[MockBroker]:
    """A cluster of this test's own: it is taken down, so it is not shared."""
    broker = MockBroker()
    yield broker
    broker.close()


def _all_brokers(broker: MockBroker, up: bool) -> None:
    for broker_id in range(1, broker.cluster.num_brokers + 1):
        broker.cluster.set_broker_up(broker_id, up)


def _freshness(samples: Samples) -> float:
    return samples.value("tidemark_freshness_seconds", product="orders")


def test_whole_cluster_down_past_the_session_keeps_freshness_and_recovers(
    broker: MockBroker, tmp_path: Path
) -> None:
    topic = broker.new_topic(2, "outage")
    event_time = whole_seconds_ago(2)
    for p in range(2):
        broker.produce(topic, p, order_bytes(event_time, seq=p))
    broker.flush()
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, idle_timeout=1, max_out_of_orderness=1)],
        kafka={"properties": SESSION},
    )
    with TidemarkProcess(config, tmp_path) as daemon:
        before = wait_for(
            daemon.metrics_url,
            lambda s: (
                len(by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders"))
                == 2
            ),
        )
        assert before.value("tidemark_kafka_reachable") == 1
        assert daemon.get("/readyz")[0] == 200

        _all_brokers(broker, up=False)
        down_at = time.monotonic()
        try:
            while daemon.get("/readyz")[0] != 503:
                assert time.monotonic() - down_at < 15, "still ready 15 s into the outage"
                time.sleep(0.05)
            not_ready_after = time.monotonic() - down_at
            status, why = daemon.get("/readyz")
            assert status == 503 and "Kafka unreachable" in why, why
            unreachable = scrape(daemon.metrics_url)
            assert unreachable.value("tidemark_kafka_reachable") == 0

            lost = wait_for(
                daemon.metrics_url,
                lambda s: s.value("tidemark_assigned_partitions", product="orders") == 0,
                timeout=20,
            )
            lost_after = time.monotonic() - down_at
            orphaned = by_partition(lost, "tidemark_partition_orphaned", "orders")
            watermarks = by_partition(
                lost, "tidemark_partition_watermark_timestamp_seconds", "orders"
            )
            assert orphaned == {0: 1.0, 1: 1.0}
            assert watermarks == {0: event_time - 1, 1: event_time - 1}
            snapshot_at = lost.value("tidemark_lag_snapshot_timestamp_seconds")
            first = _freshness(lost)
            time.sleep(2)
            later = scrape(daemon.metrics_url)
            assert _freshness(later) >= first + 1.5  # still there, and growing
            assert later.value("tidemark_lag_snapshot_timestamp_seconds") == snapshot_at
        finally:
            _all_brokers(broker, up=True)
        up_at = time.monotonic()
        daemon.wait_ready(30)
        ready_after = time.monotonic() - up_at
        back = scrape(daemon.metrics_url)
        assert back.value("tidemark_kafka_reachable") == 1
        assert by_partition(back, "tidemark_partition_orphaned", "orders") == {0: 0.0, 1: 0.0}
        # Carried over, not re-learnt: exported at once, even before anything new is read.
        assert by_partition(back, "tidemark_partition_watermark_timestamp_seconds", "orders") == {
            0: event_time - 1,
            1: event_time - 1,
        }

        fresh_time = whole_seconds_ago(0)
        for p in range(2):
            broker.produce(topic, p, order_bytes(fresh_time, seq=10 + p))
        broker.flush()
        wait_for(
            daemon.metrics_url,
            lambda s: (
                by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")
                == {0: fresh_time - 1, 1: fresh_time - 1}
            ),
            timeout=20,
        )
        assert daemon.returncode is None  # recovered without a restart
        records = daemon.log_records()
        via = [r.get("via") for r in records if r.get("event") == "kafka_unreachable"]
        assert via and "partitions_lost" in [r.get("event") for r in records]
        print(
            f"\nmock cluster down: not ready after {not_ready_after:.2f}s (via {via[0]}), "
            f"partitions lost after {lost_after:.1f}s; back: ready after {ready_after:.1f}s"
        )
