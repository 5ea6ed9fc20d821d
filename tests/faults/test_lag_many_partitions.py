"""Lag for many partitions on a real broker, asked in batches (issue 11, at scale).

Each broker (the mock cluster and Tansu) answers one ListOffsets request for
many partitions; the tracker splits the owned partitions into chunks (made small
here so several chunks are in flight) and must publish every partition's true
end, while a partition of a topic that does not exist fails alone.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition
from harness import Broker

from monitor.runtime import lag as lag_module
from monitor.runtime.health import HealthState
from monitor.runtime.lag import LagTracker
from tests.unit.fakes import topic_only_pipeline

TOPICS, PARTITIONS, CHUNK = 60, 4, 50  # 240 partitions: 5 requests in flight


def test_lag_is_right_for_every_partition_of_many_topics(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lag_module, "_CHUNK", CHUNK)
    topics = [broker.new_topic(PARTITIONS, "lag-many") for _ in range(TOPICS)]
    for i, topic in enumerate(topics):
        for p in range(PARTITIONS):
            for _ in range((i + p) % 3 + 1):  # 1 to 3 records: ends differ
                broker.produce(topic, p, b"x")
    ends = broker.flush()
    pipeline = topic_only_pipeline(topics, PARTITIONS)
    health = HealthState(liveness_limit=60)
    tracker = LagTracker({"bootstrap.servers": broker.bootstrap}, pipeline, health, 5.0)
    calls: list[int] = []
    real = tracker._admin.list_offsets
    tracker._admin = _Counting(real, calls)
    try:
        started = time.monotonic()
        tracker.refresh()
        took = time.monotonic() - started
        refresh_calls = len(calls)
        assert pipeline.high_watermarks == {
            t: {p: ends[(t, p)] for p in range(PARTITIONS)} for t in topics
        }
        assert len(calls) == -(-TOPICS * PARTITIONS // CHUNK)
        assert health.lag_snapshot_at > 0
        assert not health.loop.kafka_errors

        bounds = tracker.bounds(
            [TopicPartition(t, p) for t in topics[:3] for p in range(PARTITIONS)]
            + [TopicPartition("lag-many-never-created", 0)]
        )
        assert bounds == {(t, p): (0, ends[(t, p)]) for t in topics[:3] for p in range(PARTITIONS)}
        assert health.loop.kafka_errors["UNKNOWN_TOPIC_OR_PART"] >= 1
        print(
            f"\nlag refresh of {TOPICS * PARTITIONS} partitions: {refresh_calls} calls, {took:.2f}s"
        )
    finally:
        tracker.stop()


class _Counting:
    """The real admin client's list_offsets, counted."""

    def __init__(self, real: object, calls: list[int]) -> None:
        self._real = real
        self._calls = calls

    def list_offsets(self, request: dict[TopicPartition, object], **kwargs: object) -> object:
        self._calls.append(len(request))
        return self._real(request, **kwargs)  # type: ignore[operator]

    def poll(self, timeout: float) -> int:
        return 0
