"""The consume loop: poll a batch, hand it to the pipeline, commit what is done.

Nothing else lives here. Offsets are committed only after the pipeline has
processed the events they cover: periodically, before partitions are given up,
and once more on shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from monitor.logs import RepeatLimiter
from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState

log = structlog.get_logger("tidemark.loop")

# Client-side notices that say nothing is wrong with the data path.
_BENIGN = {KafkaError._PARTITION_EOF}


class ConsumeLoop:
    def __init__(
        self,
        consumer: Consumer,
        pipeline: Pipeline,
        health: HealthState,
        *,
        batch_size: int,
        poll_timeout: float,
        commit_interval: float,
        readback_messages: int,
        start_from_earliest: bool = False,
        on_rebalance: Callable[[], None] = lambda: None,
        partition_count: Callable[[str], int | None] = lambda topic: None,
        on_stopping: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.pipeline = pipeline
        self.health = health
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.commit_interval = commit_interval
        self.readback = readback_messages
        self.start_from_earliest = start_from_earliest
        self.on_rebalance = on_rebalance
        self.partition_count = partition_count
        self.on_stopping = on_stopping
        self.clock = clock
        self.stop_requested = threading.Event()
        self._last_commit = 0.0
        self._committed: dict[tuple[str, int], int] = {}
        self._error_log = RepeatLimiter()  # an outage repeats each error many times a second

    # --- rebalance callbacks (run inside consume()) ---------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition a bounded read-back before its committed offset.

        The read-back re-establishes the watermark within seconds of an
        assignment or restart; those events were counted by the previous owner,
        so they only warm the clock. A group with no committed offset starts at
        the end (start_from=latest, with the read-back) or the beginning.
        """
        now = self.clock()
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            self._count_error(exc.args[0])
            committed = [
                TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in partitions
            ]
        bounds = [self._bounds(tp) for tp in committed]  # Kafka calls outside the lock
        counts = self._partition_counts({tp.topic for tp in committed})
        starts: list[TopicPartition] = []
        with self.pipeline.lock:
            for tp, (low, high) in zip(committed, bounds, strict=True):
                fresh_start = low if self.start_from_earliest else high
                resume = tp.offset if tp.offset >= 0 else fresh_start
                start = max(low, resume - self.readback)
                self.pipeline.assign(
                    tp.topic,
                    tp.partition,
                    now,
                    start=start,
                    warmup_until=resume,
                    topic_partitions=counts.get(tp.topic),
                )
                self._committed[(tp.topic, tp.partition)] = resume
                starts.append(TopicPartition(tp.topic, tp.partition, start))
            self.health.assigned = self.pipeline.owns_partitions()
            self.health.connected = True
        for tp in starts:
            log.info(
                "partition_assigned",
                topic=tp.topic,
                partition=tp.partition,
                resume_offset=self._committed.get((tp.topic, tp.partition)),
                readback_from=tp.offset,
            )
        consumer.assign(starts)
        self.on_rebalance()

    def _bounds(self, tp: TopicPartition) -> tuple[int, int]:
        try:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            self._count_error(exc.args[0])
            return 0, 0

    def _partition_counts(self, topics: set[str]) -> dict[str, int]:
        """Partitions per topic, so completeness knows whether it owns a whole topic.

        Asked through `partition_count` (another client), never this consumer:
        this runs inside consume(), and confluent-kafka's list_topics() resets
        the consumer's per-thread call state on return, so the next callback of
        the same consume() (a librdkafka log line, an error) aborts the process
        (`CallState_get: Assertion 'cs != NULL' failed`). committed(),
        get_watermark_offsets(), assign() and commit() do not touch that state.
        """
        counts = {}
        for topic in topics:
            count = self.partition_count(topic)
            if count is not None:
                counts[topic] = count
        return counts

    def _drop(self, partitions: list[TopicPartition]) -> None:
        """Forget revoked or lost partitions: their state and their series go."""
        with self.pipeline.lock:
            for tp in partitions:
                self.pipeline.revoke(tp.topic, tp.partition)
                self._committed.pop((tp.topic, tp.partition), None)
            self.health.assigned = self.pipeline.owns_partitions()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commit(sync=True)
        self._drop(partitions)
        for tp in partitions:
            log.info("partition_revoked", topic=tp.topic, partition=tp.partition)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so no commit.
        self._drop(partitions)
        log.warning("partitions_lost", count=len(partitions))
        consumer.unassign()

    # --- the loop ---------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            self.pipeline.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consumer_subscribed", topics=self.pipeline.topics)
        try:
            while not self.stop_requested.is_set():
                self.poll_once()
        finally:
            self.health.stopping = True
            self.on_stopping()
            self.commit(sync=True)
            self.consumer.close()
            log.info("consumer_closed")

    def poll_once(self) -> int:
        messages = self.consumer.consume(self.batch_size, self.poll_timeout)
        started = time.perf_counter()
        now = self.clock()
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() not in _BENIGN:
                self._count_error(err)
        with self.pipeline.lock:
            if good:
                self.pipeline.process_batch(good, now)
            self.pipeline.advance(now)
            loop = self.health.loop
            loop.heartbeat = now
            if messages:
                loop.batch_size.observe(len(messages))
                loop.batch_seconds.observe(time.perf_counter() - started)
        if good:  # evidence of a working connection; so are assignments and lag answers
            self.health.connected = True
        if now - self._last_commit >= self.commit_interval:
            self.commit(sync=False)
        return len(good)

    def commit(self, *, sync: bool) -> None:
        """Commit the next offset of every partition whose events are processed."""
        self._last_commit = self.clock()
        with self.pipeline.lock:
            offsets = [
                TopicPartition(topic, partition, offset)
                for topic, partition, offset in self.pipeline.positions()
                if self._committed.get((topic, partition), -1) < offset
            ]
        if not offsets:
            return
        try:
            if sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            self._count_error(exc.args[0])
            with self.pipeline.lock:
                self.health.loop.commits["error"] += 1
            log.warning("commit_failed", error=exc.args[0].str(), partitions=len(offsets))
            return
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def _count_error(self, err: Any) -> None:
        name = err.name() if hasattr(err, "name") else "UNKNOWN"
        with self.pipeline.lock:
            self.health.loop.kafka_errors[name] += 1
        suppressed = self._error_log.admit(name)  # counted above every time, logged once a while
        if suppressed is not None:
            log.warning(
                "kafka_error",
                code=name,
                error=err.str() if hasattr(err, "str") else str(err),
                **({"suppressed": suppressed} if suppressed else {}),
            )

    def commit_cb(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Result of an asynchronous commit, delivered inside consume()."""
        if err is None:
            with self.pipeline.lock:
                self.health.loop.commits["ok"] += 1
            return
        self._count_error(err)
        with self.pipeline.lock:
            self.health.loop.commits["error"] += 1

    def error_cb(self, err: KafkaError) -> None:
        """Client-level errors (broker down, auth failure): counted and logged."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.health.connected = False
        self._count_error(err)
