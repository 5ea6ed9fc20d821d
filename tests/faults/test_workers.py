"""`tidemark run --workers 2` on a real broker: one /metrics, every event once, restarts.

The daemon runs as a real process with two worker processes in one consumer
group; /metrics is scraped over HTTP. Proves: the merged scrape counts exactly
what was produced (no event lost or counted twice across workers), both
workers own partitions, a SIGKILLed worker is restarted by the parent and
counting recovers (at-least-once: the killed worker's uncommitted events may
count twice), and SIGTERM stops every worker with its offsets committed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from daemon_support import group_of, order_bytes, product, write_config
from harness import Broker, Samples, TidemarkProcess, scrape, wait_for

PARTITIONS = 4
N = 4000


def _produce(broker: Broker, topic: str, n: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    now = time.time()
    for i in range(start, start + n):
        producer.produce(topic, order_bytes(now - 60 + i * 0.001, i), partition=i % PARTITIONS)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def _start(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path, topic: str
) -> tuple[TidemarkProcess, Path]:
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, max_out_of_orderness=5, idle_timeout=300)],
        rejoin=True,  # a killed worker never sends LeaveGroup
    )
    argv = [sys.executable, "-m", "monitor", "run", "--config", str(config), "--workers", "2"]
    return tidemark(config, argv=argv, ready_timeout=60), config


def _events(s: Samples) -> float:
    return s.value("tidemark_events_total", product="orders")


def _owned(s: Samples) -> dict[str, float]:
    return {
        dict(labels)["worker"]: v
        for labels, v in s.values("tidemark_worker_assigned_partitions").items()
    }


def _settled(daemon: TidemarkProcess) -> None:
    """Both workers own partitions, every partition is owned, and it stays so for 2 s."""

    def shared(s: Samples) -> bool:
        owned = _owned(s)
        return len(owned) == 2 and min(owned.values()) >= 1 and sum(owned.values()) == PARTITIONS

    for _ in range(10):
        wait_for(daemon.metrics_url, shared, timeout=40)
        time.sleep(2.0)
        if shared(scrape(daemon.metrics_url)):
            return
    raise AssertionError("the group did not settle")


def _worker_pids(daemon: TidemarkProcess) -> list[int]:
    return [r["pid"] for r in daemon.log_records() if r.get("event") == "worker_started"]


def test_two_workers_count_every_event_once_and_share_partitions(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(PARTITIONS)
    daemon, config = _start(broker, tidemark, tmp_path, topic)
    _settled(daemon)
    # Produced once the group has settled: a rebalance while events are counted but
    # not committed yet re-counts them (at-least-once, as with any two replicas).
    _produce(broker, topic, N)
    wait_for(daemon.metrics_url, lambda s: _events(s) >= N, timeout=40)
    time.sleep(1.5)  # anything counted twice would show by now
    s = scrape(daemon.metrics_url)
    assert _events(s) == N
    owned = _owned(s)
    assert set(owned) == {"0", "1"} and all(n >= 1 for n in owned.values()), owned
    assert s.value("tidemark_assigned_partitions", product="orders") == PARTITIONS
    # The merged scrape is one process's: one series per partition, a product watermark.
    assert len(s.values("tidemark_partition_watermark_timestamp_seconds")) == PARTITIONS
    assert s.value("tidemark_watermark_timestamp_seconds", product="orders") > 0
    assert s.value("tidemark_up") == 1 and s.value("tidemark_ready") == 1
    buckets = s.values("tidemark_event_latency_seconds_count")
    assert sum(buckets.values()) == N

    # SIGTERM: the parent stops both workers, each commits, exit 0.
    assert daemon.stop() == 0
    stopped = [r for r in daemon.log_records() if r.get("event") == "tidemark_stopped"]
    assert {r.get("worker") for r in stopped} == {0, 1, None}, stopped
    watch = Consumer(broker.config(**{"group.id": group_of(config)}))
    try:
        got = watch.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        watch.close()
    assert sum(tp.offset for tp in got) == N


def test_killed_worker_is_restarted_and_counts_recover(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(PARTITIONS)
    daemon, _ = _start(broker, tidemark, tmp_path, topic)
    _settled(daemon)
    _produce(broker, topic, N)
    wait_for(daemon.metrics_url, lambda s: _events(s) >= N, timeout=40)
    time.sleep(1.5)  # both workers commit (commit_interval 0.5 s)
    victim = _worker_pids(daemon)[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    # Its series go; the parent restarts it (1 s backoff) and the group rebalances.
    _produce(broker, topic, N, start=N)
    seen: list[float] = []

    def back(s: Samples) -> bool:
        seen.append(_events(s))
        owned = _owned(s)
        return (
            s.value("tidemark_worker_restarts_total") == 1
            and len(owned) == 2
            and sum(owned.values()) == PARTITIONS
            and _events(s) >= 2 * N
        )

    s = wait_for(daemon.metrics_url, back, timeout=50)
    recovered = time.monotonic() - killed
    records = daemon.log_records()
    exited = [r for r in records if r.get("event") == "worker_exited"]
    assert len(exited) == 1 and exited[0]["exit_code"] == -signal.SIGKILL, exited
    assert len(_worker_pids(daemon)) == 3
    # The killed worker's last scraped counts are kept, so the daemon's counter never
    # falls (Prometheus would read a fall as a reset and count the survivors again),
    # and nothing is lost: every event is counted at least once.
    assert seen == sorted(seen) and seen[0] >= N, seen
    assert _events(s) >= 2 * N
    print(f"worker SIGKILL → restarted and all partitions owned again in {recovered:.1f}s")
    # /healthz turns green once the supervisor has heard from the new worker (it asks
    # every HEALTH_EVERY); its counts can reach a scrape before that round.
    deadline = time.monotonic() + 15
    while (status := daemon.get("/healthz")[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


def test_violations_are_served_from_every_worker_by_the_parent(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    """/violations under --workers: the parent asks each worker and merges per product."""
    topic = mock_only.new_topic(PARTITIONS)
    daemon, _ = _start(mock_only, tidemark, tmp_path, topic)
    _settled(daemon)
    for p in range(PARTITIONS):  # not Avro: one contract violation on each partition
        mock_only.produce(topic, p, b"\xff\xfe not an order")
    mock_only.flush()
    wait_for(
        daemon.metrics_url,
        lambda s: sum(s.values("tidemark_contract_violations_total").values()) >= PARTITIONS,
        timeout=40,
    )
    status, body = daemon.get("/violations", timeout=15)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["workers"] == {"count": 2, "answered": 2}
    listed = answer["products"]["orders"]["violations"]
    assert sorted(v["partition"] for v in listed) == list(range(PARTITIONS))  # both workers'
    assert all(v["offset"] == 0 and "reason" in v for v in listed)
    assert answer["products"]["orders"]["topic"] == topic
