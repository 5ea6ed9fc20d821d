"""One lag refresh asks Kafka a bounded number of times, however many partitions it owns.

The admin client is replaced by a stand-in that answers list_offsets and counts
calls; the tracker's consumer answers metadata only. At 1,000 topics x 4
partitions one call per partition meant 4,000 round trips a refresh.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from monitor.pipeline import Pipeline
from monitor.runtime import lag as lag_module
from monitor.runtime.health import HealthState
from monitor.runtime.lag import LagTracker
from tests.unit.fakes import topic_only_pipeline

TOPICS, PARTITIONS = 1000, 4


@dataclass
class _Admin:
    """Answers list_offsets like AdminClient: a resolved future per partition."""

    ends: dict[tuple[str, int], int]
    failing: dict[str, KafkaError] = field(default_factory=dict)  # topic -> error
    calls: list[int] = field(default_factory=list)  # partitions per call

    def list_offsets(
        self, request: dict[TopicPartition, Any], request_timeout: float
    ) -> dict[TopicPartition, concurrent.futures.Future[Any]]:
        self.calls.append(len(request))
        answer: dict[TopicPartition, concurrent.futures.Future[Any]] = {}
        for tp in request:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            if tp.topic in self.failing:
                future.set_exception(KafkaException(self.failing[tp.topic]))
            else:
                future.set_result(SimpleNamespace(offset=self.ends[(tp.topic, tp.partition)]))
            answer[tp] = future
        return answer

    def poll(self, timeout: float) -> int:
        return 0


@dataclass
class _Consumer:
    """The tracker's metadata client; must not be asked for offsets."""

    topics: list[str]
    watermark_calls: int = 0

    def list_topics(self, timeout: float) -> Any:
        parts = dict.fromkeys(range(PARTITIONS))
        return SimpleNamespace(topics={t: SimpleNamespace(partitions=parts) for t in self.topics})

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        self.watermark_calls += 1
        return 0, 0

    def poll(self, timeout: float) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def many() -> tuple[LagTracker, _Admin, _Consumer, Pipeline]:
    topics = [f"t{i:04d}" for i in range(TOPICS)]
    pipeline = topic_only_pipeline(topics, PARTITIONS)
    tracker = LagTracker({"bootstrap.servers": "127.0.0.1:1"}, pipeline, HealthState(60), 30.0)
    tracker._client.close()
    consumer = _Consumer(topics)
    admin = _Admin({(t, p): 10 * i + p for i, t in enumerate(topics) for p in range(PARTITIONS)})
    tracker._client = consumer  # type: ignore[assignment]
    tracker._admin = admin
    return tracker, admin, consumer, pipeline


def test_one_refresh_of_4000_partitions_is_a_few_batched_requests(
    many: tuple[LagTracker, _Admin, _Consumer, Pipeline],
) -> None:
    tracker, admin, consumer, pipeline = many
    tracker.refresh()
    assert consumer.watermark_calls == 0
    assert len(admin.calls) == -(-TOPICS * PARTITIONS // lag_module._CHUNK)  # 4 calls
    assert max(admin.calls) <= lag_module._CHUNK
    assert sum(len(v) for v in pipeline.high_watermarks.values()) == TOPICS * PARTITIONS
    assert pipeline.high_watermarks["t0007"] == {p: 70 + p for p in range(PARTITIONS)}
    assert tracker._health.lag_snapshot_at > 0


def test_failures_are_logged_once_per_error_code_and_keep_the_previous_ends(
    many: tuple[LagTracker, _Admin, _Consumer, Pipeline],
) -> None:
    tracker, admin, _, pipeline = many
    tracker.refresh()
    first = tracker._health.lag_snapshot_at
    failing = {f"t{i:04d}" for i in range(300)}
    admin.failing = dict.fromkeys(failing, KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    admin.failing["t0999"] = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    for key in list(admin.ends):
        admin.ends[key] += 1
    with structlog.testing.capture_logs() as logs:
        tracker.refresh()
    warnings = [e for e in logs if e["event"] == "high_watermark_query_failed"]
    assert sorted(e["error"] for e in warnings) == sorted(
        {
            KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION).str(),
            KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART).str(),
        }
    )
    errors = tracker._health.loop.kafka_errors
    assert errors["NOT_LEADER_FOR_PARTITION"] == 300 * PARTITIONS
    assert errors["UNKNOWN_TOPIC_OR_PART"] == PARTITIONS
    assert pipeline.high_watermarks["t0001"] == {p: 10 + p for p in range(PARTITIONS)}  # old
    assert pipeline.high_watermarks["t0500"] == {p: 5001 + p for p in range(PARTITIONS)}  # new
    assert tracker._health.lag_snapshot_at == first  # incomplete: its time stands


def test_bounds_for_an_assignment_are_two_batched_requests(
    many: tuple[LagTracker, _Admin, _Consumer, Pipeline],
) -> None:
    tracker, admin, consumer, _ = many
    partitions = [TopicPartition(f"t{i:04d}", p) for i in range(TOPICS) for p in range(PARTITIONS)]
    bounds = tracker.bounds(partitions)
    assert len(admin.calls) == 2 * -(-len(partitions) // lag_module._CHUNK)
    assert consumer.watermark_calls == 0
    assert bounds[("t0002", 3)] == (23, 23)
    assert len(bounds) == len(partitions)


def test_bounds_that_raise_leave_the_partitions_unanswered_instead_of_raising(
    many: tuple[LagTracker, _Admin, _Consumer, Pipeline],
) -> None:
    """bounds() runs in the rebalance callback: an exception there would stop the loop."""
    tracker, admin, _, _ = many

    def refuse(request: object, request_timeout: float) -> object:
        raise KafkaException(KafkaError(KafkaError._DESTROY))

    admin.list_offsets = refuse  # type: ignore[method-assign,assignment]
    assert tracker.bounds([TopicPartition("t0001", 0)]) == {}


def test_partitions_absent_from_the_first_answer_were_created_since_start(
    many: tuple[LagTracker, _Admin, _Consumer, Pipeline],
) -> None:
    tracker, _, consumer, _ = many
    assert not tracker.created_since_start("t0001", 0)  # no answer yet: not known to be new
    tracker.refresh()
    assert not tracker.created_since_start("t0001", PARTITIONS - 1)
    assert tracker.created_since_start("t0001", PARTITIONS)  # a partition added later
    consumer.topics.append("born-later")
    tracker._counts_at = -1e9  # the next refresh re-reads metadata
    tracker.refresh()
    assert tracker.created_since_start("born-later", 0)  # later answers do not move the baseline
    assert not tracker.created_since_start("t0001", 0)
