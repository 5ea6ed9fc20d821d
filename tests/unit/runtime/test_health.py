"""Readiness follows whether Kafka answers, judged on a fake clock.

Answers (lag probe, assignment) make the instance reachable; _ALL_BROKERS_DOWN or a lag
snapshot nothing answered make it unreachable at once; messages from the prefetch queue
do not count; an answer obtained before the outage began does not end it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError

from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState, Reachability
from monitor.runtime.loop import ConsumeLoop

T = 1_800_000_000.0


def healthy(now: float = T) -> HealthState:
    health = HealthState(liveness_limit=60)
    health.loop.heartbeat = now
    health.connected = True
    health.assigned = True
    health.kafka.answered(now)
    return health


def test_no_answer_yet_is_not_reachable() -> None:
    kafka = Reachability()
    assert not kafka.reachable
    assert kafka.answered(T) is False  # the first answer is not a recovery
    assert kafka.reachable


def test_failure_then_answer_is_one_outage_with_a_start() -> None:
    kafka = Reachability()
    kafka.answered(T)
    assert kafka.failed(T + 1) is True
    assert kafka.failed(T + 2) is False  # same outage: its start stays
    assert kafka.down_since == T + 1 and not kafka.reachable
    assert kafka.answered(T + 5) is True
    assert kafka.reachable and kafka.down_since is None


def test_an_answer_from_before_the_outage_does_not_end_it() -> None:
    """A slow request that completed just before the brokers went reports late."""
    kafka = Reachability()
    kafka.answered(T)
    kafka.failed(T + 2)
    assert kafka.answered(T + 1) is False
    assert not kafka.reachable


def test_a_failure_older_than_the_newest_answer_is_ignored() -> None:
    kafka = Reachability()
    kafka.answered(T + 2)
    assert kafka.failed(T + 1) is False
    assert kafka.reachable


def test_ready_needs_alive_reachable_and_assigned() -> None:
    health = healthy()
    assert health.ready(T + 1) and health.not_ready_reason(T + 1) is None
    health.kafka.failed(T + 1)
    assert not health.ready(T + 4)
    assert health.not_ready_reason(T + 4) == "Kafka unreachable for 3s"
    health.connected = True  # a prefetched message arrives: not evidence of a broker
    assert not health.ready(T + 4)
    health.kafka.answered(T + 6)
    assert health.ready(T + 6)


def test_not_ready_reasons_in_order() -> None:
    health = HealthState(liveness_limit=60)
    assert health.not_ready_reason(T) == "poll loop not running"
    health.loop.heartbeat = T
    assert health.not_ready_reason(T) == "not connected to Kafka"
    health.kafka.answered(T)
    assert health.not_ready_reason(T) == "connected, no partitions assigned yet"
    health.assigned = True
    assert health.not_ready_reason(T) is None
    health.stopping = True
    assert health.not_ready_reason(T) == "shutting down"


@pytest.fixture
def loop() -> Iterator[ConsumeLoop]:
    """A loop around a real client that has no broker to talk to (nothing is consumed)."""
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9", "group.id": "health-test"})
    health = healthy()
    yield ConsumeLoop(
        consumer,
        Pipeline({}),
        health,
        batch_size=10,
        poll_timeout=0.1,
        commit_interval=5,
        readback_messages=0,
        clock=lambda: T + 2,
    )
    consumer.close()


def test_all_brokers_down_makes_the_instance_not_ready_at_once(loop: ConsumeLoop) -> None:
    loop.error_cb(KafkaError(KafkaError._TRANSPORT))
    assert loop.health.ready(T + 2)  # one broker connection failing is not an outage
    loop.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert not loop.health.ready(T + 2)
    assert loop.health.kafka.down_since == T + 2
    assert loop.health.loop.kafka_errors == {"_TRANSPORT": 1, "_ALL_BROKERS_DOWN": 1}
