"""Partitions that wait for a writer schema: paused in the consumer, resumed where they stopped.

Why a component of its own: holding one partition must not hold the loop. The
pipeline reports the first event it could not decode yet (HeldEvent); here the
partition is paused at that offset, and once its schema id has an answer it is
sought back to that offset and resumed, so nothing is skipped or counted twice.
All of it runs on the loop thread (rebalance callbacks included).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog
from confluent_kafka import KafkaException, TopicPartition

from monitor.contract.decoding import HoldReason
from monitor.pipeline import HeldEvent

log = structlog.get_logger("tidemark.holds")

# Schema id -> why its partition must still wait, or None once it has an answer.
HoldCheck = Callable[[int], HoldReason | None]


class PausingConsumer(Protocol):
    """The part of confluent_kafka.Consumer a hold uses."""

    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition) -> None: ...


@dataclass(slots=True)
class Hold:
    topic: str
    partition: int
    offset: int  # the held event; the partition resumes here
    schema_id: int
    reason: HoldReason
    since: float


class PartitionHolds:
    """Held partitions of this instance; at most one hold per assigned partition."""

    def __init__(self, consumer: PausingConsumer, check: HoldCheck) -> None:
        self._consumer = consumer
        self._check = check
        self.held: dict[tuple[str, int], Hold] = {}

    def __contains__(self, key: object) -> bool:
        return key in self.held

    def __len__(self) -> int:
        return len(self.held)

    def awaiting_lookup(self) -> bool:
        """A held partition waits for a look-up in flight: its answer is due in milliseconds."""
        return any(h.reason is HoldReason.SCHEMA_LOOKUP for h in self.held.values())

    def hold(self, events: Iterable[HeldEvent], now: float) -> None:
        """Pause each event's partition; it stays at the event's offset until released."""
        paused = []
        for event in events:
            key = (event.topic, event.partition)
            if key in self.held:  # cannot happen: the pipeline skips held partitions
                continue
            self.held[key] = Hold(
                event.topic, event.partition, event.offset, event.schema_id, event.reason, now
            )
            paused.append(TopicPartition(event.topic, event.partition))
            log.info(
                "partition_held",
                topic=event.topic,
                partition=event.partition,
                offset=event.offset,
                schema_id=event.schema_id,
                reason=event.reason.value,
            )
        if paused:
            try:
                self._consumer.pause(paused)
            except KafkaException as exc:  # still safe: the pipeline skips held partitions
                log.warning("partition_pause_failed", error=str(exc.args[0]))

    def release_ready(self, now: float) -> list[Hold]:
        """Resume every partition whose schema id has an answer, at its held offset."""
        released = []
        for key, hold in list(self.held.items()):
            reason = self._check(hold.schema_id)
            if reason is not None:
                if reason is not hold.reason:
                    log.info(
                        "partition_hold_reason_changed",
                        topic=hold.topic,
                        partition=hold.partition,
                        schema_id=hold.schema_id,
                        reason=reason.value,
                    )
                    hold.reason = reason
                continue
            tp = TopicPartition(hold.topic, hold.partition, hold.offset)
            try:
                # Seek first: messages past the held offset that were fetched before
                # the pause must not be delivered; the seek discards them.
                self._consumer.seek(tp)
                self._consumer.resume([TopicPartition(hold.topic, hold.partition)])
            except KafkaException as exc:  # e.g. mid-rebalance: stays held, tried again
                log.warning(
                    "partition_resume_failed",
                    topic=hold.topic,
                    partition=hold.partition,
                    error=str(exc.args[0]),
                )
                continue
            del self.held[key]
            released.append(hold)
            log.info(
                "partition_resumed",
                topic=hold.topic,
                partition=hold.partition,
                offset=hold.offset,
                schema_id=hold.schema_id,
                held_seconds=round(now - hold.since, 3),
            )
        return released

    def forget(self, topic: str, partition: int) -> None:
        """A revoked or lost partition: no longer ours; its look-up may still be cached.

        Call before unassign: librdkafka keeps an application pause across unassign
        and assign, so a partition handed back to us later would never be fetched.
        """
        if self.held.pop((topic, partition), None) is None:
            return
        try:
            self._consumer.resume([TopicPartition(topic, partition)])
        except KafkaException as exc:
            log.warning(
                "partition_resume_failed", topic=topic, partition=partition, error=str(exc.args[0])
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Held partitions by (topic, reason), every reason present, for the gauge."""
        counts: Counter[tuple[str, str]] = Counter()
        for hold in self.held.values():
            counts[(hold.topic, hold.reason.value)] += 1
        return dict(counts)
