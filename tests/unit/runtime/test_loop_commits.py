"""The consume loop's commits, against a scripted consumer (arroyo's test_processor style).

The fake consumer behaves like confluent_kafka.Consumer where it matters here: an
asynchronous commit returns at once and its answer (on_commit) is delivered inside
a later consume(); a synchronous one returns the per-partition result; either may
fail as a whole (KafkaException) or on one partition (error set, call successful).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from monitor.config import FreshnessObjective
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.health import HealthState
from monitor.runtime.loop import ConsumeLoop
from tests.unit.fakes import BOOM, CONTRACT, NOW, Msg, RaisingDecoder, order, orders_config

TOPIC = "shop.orders"
INTERVAL = 1.0


@dataclass
class Part:
    """A partition in a commit result (TopicPartition.error is read-only, so not that)."""

    topic: str
    partition: int
    offset: int
    error: KafkaError | None = None


FAIL_CALL = "call"  # the commit call raises KafkaException
FAIL_ANSWER = "answer"  # an async commit's answer carries a top-level error
FAIL_PARTITION = "partition"  # the call succeeds, one partition carries an error


@dataclass
class FakeConsumer:
    partitions: list[int]
    broker_committed: dict[int, int] = field(default_factory=dict)
    high: int = 1_000
    queue: deque[Msg] = field(default_factory=deque)
    failures: deque[str] = field(default_factory=deque)  # scripted, one per commit call
    commits: list[tuple[dict[int, int], bool]] = field(default_factory=list)
    answers: deque[tuple[KafkaError | None, list[Part]]] = field(default_factory=deque)
    on_commit: Callable[[Any, list[Any]], None] | None = None
    callbacks: dict[str, Any] = field(default_factory=dict)
    assigned: bool = False
    closed: bool = False
    after_consume: Callable[[], None] = lambda: None

    # --- the confluent_kafka.Consumer surface the loop uses ---------------------
    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        while self.answers:  # librdkafka serves commit callbacks inside consume()
            err, parts = self.answers.popleft()
            assert self.on_commit is not None
            self.on_commit(err, parts)
        if not self.assigned:
            self.assigned = True
            tps = [TopicPartition(TOPIC, p) for p in self.partitions]
            self.callbacks["on_assign"](self, tps)
        batch = [self.queue.popleft() for _ in range(min(num_messages, len(self.queue)))]
        self.after_consume()
        return batch

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.broker_committed.get(tp.partition, -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        return 0, self.high

    def list_topics(self, topic: str, timeout: float) -> Any:
        parts = {p: None for p in self.partitions}
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=parts)})

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def unassign(self) -> None:
        self.assigned = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[Part] | None:
        assert not self.closed
        self.commits.append(({tp.partition: tp.offset for tp in offsets}, asynchronous))
        failure = self.failures.popleft() if self.failures else None
        err = KafkaError(KafkaError.REQUEST_TIMED_OUT)
        if failure == FAIL_CALL:
            raise KafkaException(err)
        parts = [Part(tp.topic, tp.partition, tp.offset) for tp in offsets]
        if failure == FAIL_PARTITION:
            parts[0].error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
        for part in parts:
            if part.error is None and failure != FAIL_ANSWER:
                self.broker_committed[part.partition] = part.offset
        if asynchronous:
            self.answers.append((err if failure == FAIL_ANSWER else None, parts))
            return None
        return parts

    def close(self) -> None:
        self.closed = True


@dataclass
class Rig:
    consumer: FakeConsumer
    loop: ConsumeLoop
    pipeline: Pipeline
    time: list[float]

    def tick(self, seconds: float) -> None:
        self.time[0] += seconds

    def feed(self, partition: int, offsets: range, value: bytes | None = None) -> None:
        for o in offsets:
            payload = value if value is not None else order(o)
            self.consumer.queue.append(Msg(TOPIC, partition, o, payload))

    @property
    def stats(self) -> Any:
        return self.pipeline.products[TOPIC].stats


def rig(
    partitions: tuple[int, ...] = (0,),
    committed: dict[int, int] | None = None,
    *,
    start_from_earliest: bool = True,
    created_since_start: Callable[[str, int], bool] = lambda topic, partition: False,
) -> Rig:
    config = orders_config(
        TOPIC,
        max_out_of_orderness=5.0,
        idle_timeout=30.0,
        max_future_skew=60.0,
        freshness=FreshnessObjective(threshold=10.0, target=0.99),
    )
    contract = Contract.load(CONTRACT)
    product = ProductPipeline.build(
        config, RaisingDecoder(contract), make_extractor(contract, "occurred_at"), 60
    )
    pipeline = Pipeline({TOPIC: product})
    consumer = FakeConsumer(list(partitions), broker_committed=dict(committed or {}))
    now = [NOW]
    loop = ConsumeLoop(
        consumer,  # type: ignore[arg-type]
        pipeline,
        HealthState(liveness_limit=30),
        batch_size=100,
        poll_timeout=0.0,
        commit_interval=INTERVAL,
        readback_messages=0,
        start_from_earliest=start_from_earliest,
        created_since_start=created_since_start,
        clock=lambda: now[0],
    )
    consumer.on_commit = loop.commit_cb
    consumer.callbacks = {"on_assign": loop._on_assign}
    return Rig(consumer, loop, pipeline, now)


def test_offsets_are_committed_after_the_events_and_counted_once_confirmed() -> None:
    r = rig(committed={0: 0})
    r.feed(0, range(0, 10))
    assert r.loop.poll_once() == 10
    assert r.consumer.commits == [({0: 10}, True)]
    assert r.loop.offsets.confirmed((TOPIC, 0)) == 0  # sent, not yet answered
    r.tick(0.1)
    r.loop.poll_once()  # the answer arrives inside consume()
    assert r.loop.offsets.confirmed((TOPIC, 0)) == 10
    assert r.loop.health.loop.commits == {"ok": 1}
    r.tick(INTERVAL)
    r.loop.poll_once()
    assert len(r.consumer.commits) == 1  # nothing new: nothing sent


def test_a_failed_async_commit_is_retried_without_new_events() -> None:
    r = rig(committed={0: 0})
    r.consumer.failures.append(FAIL_ANSWER)
    r.feed(0, range(0, 10))
    r.loop.poll_once()
    r.tick(0.1)
    r.loop.poll_once()  # the failure arrives
    assert r.loop.health.loop.commits == {"error": 1}
    assert r.consumer.broker_committed == {0: 0}
    r.tick(INTERVAL)
    r.loop.poll_once()  # no new event on the partition, still the offset goes again
    r.loop.poll_once()
    assert r.consumer.commits == [({0: 10}, True), ({0: 10}, True)]
    assert r.consumer.broker_committed == {0: 10}
    assert r.loop.offsets.confirmed((TOPIC, 0)) == 10
    assert r.loop.health.loop.commits == {"error": 1, "ok": 1}
    assert r.loop.health.loop.kafka_errors == {"REQUEST_TIMED_OUT": 1}


def test_a_raising_commit_call_is_retried() -> None:
    r = rig(committed={0: 0})
    r.consumer.failures.append(FAIL_CALL)
    r.feed(0, range(0, 5))
    r.loop.poll_once()
    assert r.consumer.broker_committed == {0: 0}
    r.tick(INTERVAL)
    r.loop.poll_once()
    r.loop.poll_once()
    assert r.consumer.broker_committed == {0: 5}
    assert r.loop.offsets.confirmed((TOPIC, 0)) == 5


def test_a_partition_error_inside_a_successful_call_is_a_failure() -> None:
    r = rig(partitions=(0, 1), committed={0: 0, 1: 0})
    r.consumer.failures.append(FAIL_PARTITION)  # the first partition in the request fails
    r.feed(0, range(0, 4))
    r.feed(1, range(0, 6))
    r.loop.poll_once()
    r.tick(0.1)
    r.loop.poll_once()
    first, _ = r.consumer.commits[0]
    failed = next(iter(first))
    assert r.loop.offsets.confirmed((TOPIC, failed)) == 0
    assert r.loop.health.loop.commits == {"error": 1}
    r.tick(INTERVAL)
    r.loop.poll_once()  # only the failed partition is sent again
    assert r.consumer.commits[1] == ({failed: first[failed]}, True)
    r.loop.poll_once()
    assert r.consumer.broker_committed == {0: 4, 1: 6}


def test_shutdown_commits_synchronously_what_is_still_owed() -> None:
    # The async commit fails, and its answer only comes after the stop was asked for:
    # shutdown must send the offset again, synchronously, before closing.
    r = rig(committed={0: 0})
    r.consumer.failures.append(FAIL_ANSWER)
    r.feed(0, range(0, 7))
    turns = iter(range(2))
    r.consumer.after_consume = lambda: (
        None if next(turns, None) is not None else r.loop.stop_requested.set()
    )
    r.loop.run()
    assert r.consumer.closed
    assert r.consumer.commits[-1] == ({0: 7}, False)
    assert r.consumer.broker_committed == {0: 7}
    assert r.loop.offsets.confirmed((TOPIC, 0)) == 7


def test_shutdown_sends_events_processed_since_the_last_commit() -> None:
    r = rig(committed={0: 0})
    r.loop.commit_policy.interval = 3600.0
    r.feed(0, range(0, 3))
    r.loop.poll_once()  # the first turn commits 3
    r.feed(0, range(3, 9))
    r.loop.poll_once()  # not yet due
    assert r.consumer.broker_committed == {0: 3}
    r.loop.stop_requested.set()
    r.loop.run()
    assert r.consumer.commits[-1] == ({0: 9}, False)
    assert r.consumer.broker_committed == {0: 9}


def test_revoke_commits_synchronously_before_the_partition_is_given_up() -> None:
    r = rig(committed={0: 0})
    r.loop.commit_policy.interval = 3600.0
    r.loop.poll_once()
    r.feed(0, range(0, 5))
    r.loop.poll_once()
    r.loop._on_revoke(r.consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert r.consumer.commits[-1] == ({0: 5}, False)
    assert r.consumer.broker_committed == {0: 5}
    assert r.loop.offsets.partitions == {}


def test_an_event_whose_processing_raises_is_counted_as_such_and_does_not_stop_the_loop() -> None:
    # Choice: a defect is counted (processing_errors), logged, skipped and committed. A
    # retry would fail the same way and stall the partition; a crash stops every product.
    r = rig(committed={0: 0})
    r.feed(0, range(0, 3))
    r.feed(0, range(3, 4), value=BOOM)
    r.feed(0, range(4, 6))
    assert r.loop.poll_once() == 6  # no exception escapes the loop
    assert r.stats.processing_errors == 1
    assert r.stats.events == 5  # the others are counted as usual
    assert r.consumer.commits == [({0: 6}, True)]
    r.feed(0, range(6, 8))  # the partition goes on
    r.tick(INTERVAL)
    r.loop.poll_once()
    assert r.stats.events == 7
    assert r.consumer.commits[-1] == ({0: 8}, True)


def test_a_partition_reading_back_commits_nothing_below_its_committed_offset() -> None:
    r = rig(committed={0: 100})
    r.feed(0, range(90, 100))  # read-back: already counted by the previous owner
    r.loop.poll_once()
    assert r.consumer.commits == []
    assert r.stats.events == 0
    r.feed(0, range(100, 102))
    r.tick(INTERVAL)
    r.loop.poll_once()
    assert r.consumer.commits == [({0: 102}, True)]


def test_a_partition_back_after_a_refused_revoke_commit_is_not_counted_twice() -> None:
    # The commit in the revoke callback is refused (a rebalance in progress); the same
    # process gets the partition back: it resumes after its own count and commits it.
    r = rig(committed={0: 0})
    r.loop.commit_policy.interval = 3600.0
    r.loop.poll_once()
    r.feed(0, range(0, 5))
    r.loop.poll_once()
    r.consumer.failures.append(FAIL_CALL)
    r.loop._on_revoke(r.consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert r.consumer.broker_committed == {0: 0}
    r.feed(0, range(0, 7))  # read from the committed offset again, plus two new events
    r.loop.poll_once()  # reassigned inside consume()
    assert r.stats.events == 7  # 5 before, only the 2 new ones now
    r.loop.commit(sync=True)
    assert r.consumer.broker_committed == {0: 7}


@dataclass
class FakeSharing:
    """Completeness sharing as the loop sees it: publish may fail; assigned covers."""

    publish_ok: deque[bool] = field(default_factory=deque)
    covered: dict[tuple[str, int], int] = field(default_factory=dict)
    published: int = 0
    revoked_partitions: list[tuple[str, int]] = field(default_factory=list)

    def assigned(self, partitions: Any, counts: dict[str, int]) -> dict[tuple[str, int], int]:
        return dict(self.covered)

    def revoked(self, partitions: Any) -> None:
        self.revoked_partitions.extend(partitions)

    def publish(self, now: float) -> bool:
        self.published += 1
        return self.publish_ok.popleft() if self.publish_ok else True


def test_no_commit_until_the_observations_it_covers_are_published() -> None:
    r = rig(committed={0: 0})
    sharing = FakeSharing(publish_ok=deque([False]))
    r.loop.sharing = sharing  # type: ignore[assignment]
    r.feed(0, range(0, 10))
    r.loop.poll_once()
    assert sharing.published == 1
    assert r.consumer.commits == []  # the publish failed: the offsets stay owed
    r.tick(INTERVAL)
    r.loop.poll_once()
    assert r.consumer.commits == [({0: 10}, True)]


def test_a_new_owner_resumes_after_what_published_observations_cover() -> None:
    """A replica killed after publishing, before committing: offsets 0-5 are counted."""
    r = rig(committed={0: 0})
    r.loop.sharing = FakeSharing(covered={(TOPIC, 0): 6})  # type: ignore[assignment]
    r.feed(0, range(0, 10))
    r.loop.poll_once()
    assert r.stats.events == 4  # 6-9 only: the rest only warm the clock
    assert r.consumer.commits == [({0: 10}, True)]


@dataclass
class ErrorMsg(Msg):
    """A consumed item carrying an error instead of an event (confluent_kafka's way)."""

    _error: KafkaError | None = None

    def error(self) -> Any:
        return self._error


def test_errors_inside_a_batch_are_counted_and_the_events_around_them_processed() -> None:
    r = rig(committed={0: 0})
    r.feed(0, range(0, 3))
    r.consumer.queue.append(
        ErrorMsg(TOPIC, 0, -1, None, _error=KafkaError(KafkaError._PARTITION_EOF))
    )
    r.consumer.queue.append(ErrorMsg(TOPIC, 0, -1, None, _error=KafkaError(KafkaError._TRANSPORT)))
    r.feed(0, range(3, 5))
    assert r.loop.poll_once() == 5
    assert r.stats.conforming == 5
    assert r.loop.health.loop.kafka_errors == {"_TRANSPORT": 1}  # end of partition: benign


def test_latest_skips_old_backlog_but_a_partition_created_while_running_counts_all() -> None:
    """start_from=latest with no committed offset: an old partition's backlog is not
    counted; one created since the process started holds only events produced while
    it watched, so all of them count (a topic found by discovery misses none)."""
    old = rig(partitions=(0, 1), start_from_earliest=False)
    old.consumer.high = 10
    old.feed(0, range(0, 10))
    old.loop.poll_once()
    assert old.stats.events == 0  # below the end at assignment: read-back, not counted

    new = rig(
        partitions=(0, 1),
        start_from_earliest=False,
        created_since_start=lambda topic, partition: partition == 1,
    )
    new.consumer.high = 10
    new.feed(0, range(0, 10))
    new.feed(1, range(0, 10))
    new.loop.poll_once()
    assert new.stats.events == 10  # partition 1's ten; partition 0 as before
