"""The consume loop: poll a batch, hand it to the pipeline, commit what is done.

Nothing else lives here. Offsets are committed only after the pipeline has
counted the events they cover: every commit_interval (asynchronously), before
partitions are given up and once more on shutdown (synchronously). When to
commit and what is still owed is decided in runtime/commit.py; an offset counts
as committed only once the broker confirmed it, so a failed commit is retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from monitor.logs import RepeatLimiter
from monitor.pipeline import HeldEvent, Pipeline, ProductPipeline
from monitor.runtime.commit import CommitPolicy, OffsetLedger
from monitor.runtime.health import HealthState
from monitor.runtime.holds import HoldCheck, PartitionHolds

if TYPE_CHECKING:
    from monitor.runtime.sharing import Sharing

log = structlog.get_logger("tidemark.loop")

# Partitions -> {(topic, partition): (low, high)}; partitions that failed are left out.
Bounds = Callable[[list[TopicPartition]], dict[tuple[str, int], tuple[int, int]]]

# How long consume() may wait while a partition is held for a look-up in flight. The
# loop resumes a held partition only between polls, and when every partition it owns is
# held (a worker's first events) a poll waits its whole poll_timeout: 0.5 s of standing
# still after a registry answer that took milliseconds.
HELD_POLL_TIMEOUT = 0.02

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
        created_since_start: Callable[[str, int], bool] = lambda topic, partition: False,
        on_stopping: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        hold_check: HoldCheck = lambda schema_id: None,
        between_batches: Callable[[], object] = lambda: None,
        discover: Callable[[set[str]], dict[str, ProductPipeline]] | None = None,
        sharing: Sharing | None = None,
        offset_bounds: Bounds | None = None,
    ) -> None:
        self.consumer = consumer
        self.pipeline = pipeline
        self.health = health
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.readback = readback_messages
        self.start_from_earliest = start_from_earliest
        self.on_rebalance = on_rebalance
        self.partition_count = partition_count
        # Partitions created while this process ran start at their beginning.
        self.created_since_start = created_since_start
        # (low, high) for many partitions in a few batched requests (LagTracker.bounds);
        # without it, one consumer call per partition.
        self.offset_bounds = offset_bounds
        # Builds products for assigned topics nobody configured (the discover: section).
        self.discover = discover
        # Completeness across replicas: publishes before each commit, seeds on assign.
        self.sharing = sharing
        self.on_stopping = on_stopping
        self.clock = clock
        # Runs after each batch, outside the lock (e.g. take a new contract version).
        self.between_batches = between_batches
        self.stop_requested = threading.Event()
        self.commit_policy = CommitPolicy(commit_interval)
        self.offsets = OffsetLedger()
        # Partitions waiting for a schema look-up; they never stall the loop.
        self.holds = PartitionHolds(consumer, hold_check)
        self._error_log = RepeatLimiter()  # an outage repeats each error many times a second

    # --- rebalance callbacks (run inside consume()) ---------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition a bounded read-back before its committed offset.

        The read-back re-establishes the watermark within seconds of an
        assignment or restart; those events were counted by the previous owner,
        so they only warm the clock. A group with no committed offset starts at
        the end (start_from=latest, with the read-back) or the beginning; a
        partition created while this process ran always at its beginning.
        """
        now = self.clock()
        # Discovered products are built outside the lock (a registry look-up each).
        discovered = self.discover({tp.topic for tp in partitions}) if self.discover else {}
        if discovered:
            with self.pipeline.lock:
                self.pipeline.add_discovered(discovered)
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            self._count_error(exc.args[0])
            committed = [
                TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in partitions
            ]
        bounds = self._all_bounds(committed)  # Kafka calls outside the lock
        counts = self._partition_counts({tp.topic for tp in committed})
        covered = (
            self.sharing.assigned([(tp.topic, tp.partition) for tp in committed], counts)
            if self.sharing is not None
            else {}
        )
        starts: list[TopicPartition] = []
        resumes: dict[tuple[str, int], int] = {}
        with self.pipeline.lock:
            for tp, (low, high) in zip(committed, bounds, strict=True):
                key = (tp.topic, tp.partition)
                from_beginning = self.start_from_earliest or self.created_since_start(*key)
                fresh_start = low if from_beginning else high
                group_offset = tp.offset if tp.offset >= 0 else fresh_start
                # Past the group's offset only where this process counted the events itself.
                resume = self.offsets.resume_offset(key, group_offset, high)
                # A replica killed after publishing, before committing: what its
                # observations cover is counted already (they seed this owner's counts).
                resume = max(resume, covered.get(key, resume))
                start = max(low, resume - self.readback)
                self.pipeline.assign(
                    tp.topic,
                    tp.partition,
                    now,
                    start=start,
                    warmup_until=resume,
                    topic_partitions=counts.get(tp.topic),
                )
                self.offsets.assigned(key, group_offset, resume)
                starts.append(TopicPartition(tp.topic, tp.partition, start))
                resumes[key] = resume
            # Orphans of an earlier loss that this share does not include are another
            # member's now: its series are the true ones, ours would only be stale.
            released = self.pipeline.keep_orphans((tp.topic, tp.partition) for tp in committed)
            forgotten = self.pipeline.forget_discovered(
                (tp.topic, tp.partition) for tp in committed
            )
            self.health.assigned = self.pipeline.owns_partitions()
            self.health.connected = True
            recovered = self.health.kafka.answered(now)  # only a coordinator assigns
        if recovered:
            log.info("kafka_reachable", via="assignment")
        if released:
            log.info("orphaned_partitions_released", partitions=len(released))
        if forgotten:
            log.info("discovered_products_removed", topics=len(forgotten))
        for tp in starts:
            log.info(
                "partition_assigned",
                topic=tp.topic,
                partition=tp.partition,
                resume_offset=resumes[(tp.topic, tp.partition)],
                readback_from=tp.offset,
            )
        consumer.assign(starts)
        self.on_rebalance()

    def _all_bounds(self, partitions: list[TopicPartition]) -> list[tuple[int, int]]:
        """Each partition's (low, high); (0, 0) where Kafka did not answer, as before."""
        if self.offset_bounds is None:
            return [self._bounds(tp) for tp in partitions]
        answered = self.offset_bounds(partitions)
        return [answered.get((tp.topic, tp.partition), (0, 0)) for tp in partitions]

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

    def _drop(self, partitions: list[TopicPartition], *, lost: bool = False) -> None:
        """Give up revoked or lost partitions; nothing of them is committed any more.

        Revoked partitions were handed over: their state and series go. Lost
        ones were not (the session expired, usually because no broker
        answered): their last watermark stays exported as an orphan, so
        freshness keeps growing through the outage instead of vanishing.
        """
        now = self.clock()
        with self.pipeline.lock:
            for tp in partitions:
                if lost:
                    self.pipeline.lose(tp.topic, tp.partition, now)
                else:
                    self.pipeline.revoke(tp.topic, tp.partition)
                self.offsets.forget((tp.topic, tp.partition))
            self.health.assigned = self.pipeline.owns_partitions()
        if self.sharing is not None:
            self.sharing.revoked((tp.topic, tp.partition) for tp in partitions)
        if self.holds:  # resumes them in the client (outside the lock: it calls Kafka)
            for tp in partitions:
                self.holds.forget(tp.topic, tp.partition)
            with self.pipeline.lock:
                self.health.held = self.holds.counts()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commit(sync=True)
        owed = self.offsets.owed()
        if unsettled := [tp for tp in partitions if (tp.topic, tp.partition) in owed]:
            # Refused: another owner counts these again (at-least-once); this one won't.
            log.warning("commit_owed_at_revoke", partitions=len(unsettled))
        self._drop(partitions)
        for tp in partitions:
            log.info("partition_revoked", topic=tp.topic, partition=tp.partition)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so no commit.
        self._drop(partitions, lost=True)
        log.warning("partitions_lost", count=len(partitions))
        consumer.unassign()

    # --- the loop ---------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            self.pipeline.subscription,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consumer_subscribed", topics=self.pipeline.subscription)
        try:
            while not self.stop_requested.is_set():
                self.poll_once()
        finally:
            self.health.stopping = True
            self.on_stopping()
            self.commit(sync=True)
            if owed := self.offsets.owed():
                # The next owner counts these again: at-least-once, never lost.
                log.warning(
                    "commit_owed_at_close", partitions=len(owed), events=self.offsets.debt()
                )
            self.consumer.close()
            log.info("consumer_closed")

    def poll_once(self) -> int:
        timeout = self.poll_timeout
        if self.holds and self.holds.awaiting_lookup():
            timeout = min(timeout, HELD_POLL_TIMEOUT)
        messages = self.consumer.consume(self.batch_size, timeout)
        started = time.perf_counter()
        now = self.clock()
        good = [msg for msg in messages if msg.error() is None]  # one pass, per event
        if len(good) != len(messages):  # the rare batch with errors or notices in it
            for msg in messages:
                err = msg.error()
                if err is not None and err.code() not in _BENIGN:
                    self._count_error(err)
        held: list[HeldEvent] = []
        with self.pipeline.lock:
            if good:
                held = self.pipeline.process_batch(good, now, self.holds.held)
            self.pipeline.advance(now)
            loop = self.health.loop
            loop.heartbeat = now
            if messages:
                loop.batch_size.observe(len(messages))
                loop.batch_seconds.observe(time.perf_counter() - started)
        if held or self.holds:
            self._update_holds(held, now)
        if good:  # evidence of a working connection; so are assignments and lag answers
            self.health.connected = True
        if self.commit_policy.should_commit(now):
            self.commit(sync=False)
        self.between_batches()
        return len(good)

    def _update_holds(self, held: list[HeldEvent], now: float) -> None:
        """Pause newly held partitions, resume those whose schema id has an answer."""
        self.holds.hold(held, now)
        self.holds.release_ready(now)
        counts = self.holds.counts()
        with self.pipeline.lock:
            self.health.held = counts

    def commit(self, *, sync: bool) -> None:
        """Send every partition's next offset after its counted events, if not yet confirmed.

        Asynchronous rounds skip offsets already in flight; their answer arrives in
        commit_cb. A synchronous round (revoke, shutdown) sends everything still
        unconfirmed and settles it from the call's per-partition result.
        """
        now = self.clock()
        self.commit_policy.did_commit(now)
        if self.sharing is not None and not self.sharing.publish(now):
            return  # never commit past observations the broker has not stored
        with self.pipeline.lock:
            self.offsets.processed(self.pipeline.positions())
        owed = self.offsets.owed(None if sync else now)
        if not owed:
            return
        offsets = [TopicPartition(topic, p, offset) for (topic, p), offset in owed.items()]
        self.offsets.sent(owed, now)
        try:
            if sync:
                self._settle(None, self.consumer.commit(offsets=offsets, asynchronous=False))
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            self._settle(exc.args[0], offsets)

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
        self._settle(err, partitions)

    def _settle(self, err: Any, partitions: list[TopicPartition]) -> None:
        """Confirm what the broker accepted; what it refused stays owed for the next round.

        A call that succeeded can still carry an error on one partition (e.g. not
        the coordinator, or a rebalance in progress): that partition failed.
        """
        failed = []
        for tp in partitions:
            ok = err is None and tp.error is None
            self.offsets.settle((tp.topic, tp.partition), tp.offset, ok)
            if not ok:
                failed.append(tp)
        result = "error" if failed else "ok"
        with self.pipeline.lock:
            self.health.loop.commits[result] += 1
        if failed:
            error: Any = err if err is not None else failed[0].error
            self._count_error(error)
            log.warning(
                "commit_failed",
                code=error.name() if hasattr(error, "name") else "UNKNOWN",
                partitions=len(failed),
                retry="next commit round",
            )

    def error_cb(self, err: KafkaError) -> None:
        """Client-level errors (broker down, auth failure): counted and logged.

        _ALL_BROKERS_DOWN makes the instance not ready at once; the lag tracker
        (or the next assignment) says when a broker answers again.
        """
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self.health.kafka.failed(self.clock()):
            log.warning("kafka_unreachable", via="all_brokers_down")
        self._count_error(err)
