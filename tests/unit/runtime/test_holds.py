"""Held partitions: paused at the event that waits, resumed there, forgotten when revoked.

A fake consumer records pause/resume/seek (the calls a real confluent_kafka.Consumer
gets); the loop-level tests run ConsumeLoop.poll_once against it with a real
pipeline and a resolver whose answers the test sets.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from fastavro import schemaless_writer

from monitor.config import ProductConfig
from monitor.contract.decoding import ConfluentDecoder, HoldReason
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.contract.registry import Lookup, Resolution
from monitor.pipeline import HeldEvent, Pipeline, ProductPipeline
from monitor.runtime.health import HealthState
from monitor.runtime.holds import PartitionHolds
from monitor.runtime.loop import HELD_POLL_TIMEOUT, ConsumeLoop
from tests.unit.fakes import Msg

REPO = Path(__file__).resolve().parents[3]
CONTRACT = REPO / "config" / "contracts" / "orders.avsc"
TOPIC, OTHER = "shop.orders", "shop.payments"
NOW = 1_800_000_000.0


@dataclass
class FakeConsumer:
    """What PartitionHolds and ConsumeLoop.poll_once call; records every call in order."""

    batches: list[list[Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    paused: set[tuple[str, int]] = field(default_factory=set)
    timeouts: list[float] = field(default_factory=list)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in partitions]))
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in partitions]))
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def seek(self, partition: TopicPartition) -> None:
        self.calls.append(("seek", (partition.topic, partition.partition, partition.offset)))

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.timeouts.append(timeout)
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.calls.append(("commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))


class Answers:
    """A resolver (decoder side) and hold check (loop side) over answers the test sets."""

    def __init__(self) -> None:
        self.state: dict[int, Resolution] = {}
        self.asked: list[int] = []

    def resolve(self, schema_id: int) -> Resolution:
        self.asked.append(schema_id)
        return self.state.get(schema_id, Resolution(Lookup.PENDING))

    def check(self, schema_id: int) -> HoldReason | None:
        state = self.state.get(schema_id, Resolution(Lookup.PENDING)).state
        if state is Lookup.PENDING:
            return HoldReason.SCHEMA_LOOKUP
        if state is Lookup.UNREACHABLE:
            return HoldReason.REGISTRY_UNREACHABLE
        return None


def event(schema_id: int, seq: int) -> bytes:
    buf = io.BytesIO()
    record = {
        "order_id": f"o-{seq}",
        "customer_id": "c",
        "amount_cents": 1,
        "currency": "EUR",
        "occurred_at": int((NOW - 100 + seq) * 1000),
        "producer_id": "p",
        "sequence": seq,
    }
    schemaless_writer(buf, Contract.load(CONTRACT).parsed, record)
    return b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()


def pipeline_with(answers: Answers) -> Pipeline:
    contract = Contract.load(CONTRACT)
    products = {}
    for name, topic in (("orders", TOPIC), ("payments", OTHER)):
        cfg = ProductConfig(
            name=name,
            owner="team",
            topic=topic,
            contract=CONTRACT,
            encoding="confluent",
            event_time="occurred_at",
        )
        products[topic] = ProductPipeline.build(
            cfg, ConfluentDecoder(contract, answers), make_extractor(contract, "occurred_at"), 60
        )
    pipeline = Pipeline(products)
    for topic in (TOPIC, OTHER):
        for p in (0, 1):
            pipeline.assign(topic, p, NOW, start=0, warmup_until=0)
    return pipeline


def loop_with(answers: Answers, consumer: FakeConsumer, poll_timeout: float = 0.0) -> ConsumeLoop:
    return ConsumeLoop(
        consumer,  # type: ignore[arg-type]
        pipeline_with(answers),
        HealthState(liveness_limit=60),
        batch_size=100,
        poll_timeout=poll_timeout,
        commit_interval=0.0,
        readback_messages=0,
        clock=lambda: NOW,
        hold_check=answers.check,
    )


def found(answers: Answers, schema_id: int) -> None:
    """The registry has answered `schema_id` with the contract itself."""
    answers.state[schema_id] = Resolution(Lookup.FOUND, json.dumps(Contract.load(CONTRACT).schema))


# --- PartitionHolds alone -----------------------------------------------------------------


def test_hold_pauses_once_and_release_seeks_to_the_held_offset_then_resumes() -> None:
    consumer, answers = FakeConsumer(), Answers()
    holds = PartitionHolds(consumer, answers.check)
    holds.hold([HeldEvent(TOPIC, 1, 42, 7, HoldReason.SCHEMA_LOOKUP)], NOW)
    assert consumer.calls == [("pause", [(TOPIC, 1)])]
    assert (TOPIC, 1) in holds and len(holds) == 1
    assert holds.release_ready(NOW + 1) == []  # still no answer
    answers.state[7] = Resolution(Lookup.UNREACHABLE)
    assert holds.release_ready(NOW + 2) == []
    assert holds.counts() == {(TOPIC, "registry_unreachable"): 1}
    found(answers, 7)
    released = holds.release_ready(NOW + 3)
    assert [(h.partition, h.offset, h.since) for h in released] == [(1, 42, NOW)]
    assert consumer.calls[1:] == [("seek", (TOPIC, 1, 42)), ("resume", [(TOPIC, 1)])]
    assert len(holds) == 0 and holds.counts() == {}


def test_not_found_releases_too_the_event_then_counts_as_unknown_schema() -> None:
    consumer, answers = FakeConsumer(), Answers()
    holds = PartitionHolds(consumer, answers.check)
    holds.hold([HeldEvent(TOPIC, 0, 5, 9, HoldReason.SCHEMA_LOOKUP)], NOW)
    answers.state[9] = Resolution(Lookup.NOT_FOUND)
    assert [h.offset for h in holds.release_ready(NOW)] == [5]


def test_revoked_partition_is_forgotten_and_unpaused_for_its_next_assignment() -> None:
    # librdkafka keeps an application pause across unassign/assign: a partition given
    # back to this member later must not stay paused with no hold to resume it.
    consumer, answers = FakeConsumer(), Answers()
    holds = PartitionHolds(consumer, answers.check)
    holds.hold([HeldEvent(TOPIC, 0, 5, 9, HoldReason.SCHEMA_LOOKUP)], NOW)
    holds.forget(TOPIC, 0)
    holds.forget(TOPIC, 1)  # never held: nothing to do
    assert consumer.paused == set()
    found(answers, 9)
    assert holds.release_ready(NOW) == []
    assert [c for c, _ in consumer.calls] == ["pause", "resume"]  # no seek: not ours


# --- through ConsumeLoop.poll_once ------------------------------------------------------


def test_only_the_partition_with_the_unknown_id_waits_and_resumes_where_it_stopped() -> None:
    answers, consumer = Answers(), FakeConsumer()
    found(answers, 1)
    loop = loop_with(answers, consumer)
    orders = loop.pipeline.products[TOPIC]
    consumer.batches = [
        [
            Msg(TOPIC, 0, 0, event(1, 0)),
            Msg(TOPIC, 0, 1, event(2, 1)),  # id 2 unknown: partition 0 waits here
            Msg(TOPIC, 1, 0, event(1, 2)),  # other partition: counted
            Msg(TOPIC, 0, 2, event(1, 3)),  # behind the held event: not processed
            Msg(OTHER, 0, 0, event(1, 4)),  # other product: counted
        ],
        [Msg(TOPIC, 0, 3, event(1, 5))],  # fetched before the pause took effect: skipped
    ]
    loop.poll_once()
    assert consumer.paused == {(TOPIC, 0)}
    assert orders.stats.events == 2 and loop.pipeline.products[OTHER].stats.events == 1
    assert orders.clock.partitions[0].position == 1  # at the held event
    assert loop.health.held == {(TOPIC, "schema_lookup"): 1}
    loop.poll_once()
    assert orders.stats.events == 2
    assert ("commit", [(TOPIC, 0, 1), (TOPIC, 1, 1), (OTHER, 0, 1)]) in consumer.calls

    found(answers, 2)  # the look-up answers
    consumer.calls.clear()
    loop.poll_once()
    assert consumer.calls[:2] == [("seek", (TOPIC, 0, 1)), ("resume", [(TOPIC, 0)])]
    assert loop.health.held == {}
    # The consumer delivers again from the held offset: each event counted once.
    consumer.batches = [[Msg(TOPIC, 0, o, event(2 if o == 1 else 1, o)) for o in (1, 2, 3)]]
    loop.poll_once()
    assert orders.stats.events == 5 and orders.stats.conforming == 5
    assert orders.clock.partitions[0].position == 4


def test_revoked_held_partition_is_dropped_with_its_hold() -> None:
    answers, consumer = Answers(), FakeConsumer()
    loop = loop_with(answers, consumer)
    consumer.batches = [[Msg(TOPIC, 0, 0, event(2, 0))]]
    loop.poll_once()
    assert loop.health.held == {(TOPIC, "schema_lookup"): 1}
    loop._drop([TopicPartition(TOPIC, 0)])
    assert len(loop.holds) == 0 and loop.health.held == {}
    found(answers, 2)
    consumer.calls.clear()
    loop.poll_once()
    assert not [c for c, _ in consumer.calls if c in ("seek", "resume")]


def test_held_partition_prefetches_the_ids_waiting_behind_it() -> None:
    answers, consumer = Answers(), FakeConsumer()
    loop = loop_with(answers, consumer)
    consumer.batches = [[Msg(TOPIC, 0, o, event(100 + o, o)) for o in range(5)]]
    loop.poll_once()
    assert set(answers.asked) == {100, 101, 102, 103, 104}


def test_loop_polls_briefly_only_while_a_lookup_is_in_flight() -> None:
    # A held partition resumes only between polls. With every owned partition held
    # (a worker's first events), a poll waits its whole poll_timeout, so a look-up
    # answered in milliseconds would leave the partition standing for 0.5 s.
    answers, consumer = Answers(), FakeConsumer()
    loop = loop_with(answers, consumer, poll_timeout=0.5)
    consumer.batches = [[Msg(TOPIC, 0, 0, event(2, 0))]]
    loop.poll_once()  # nothing held yet: the configured wait
    loop.poll_once()  # id 2 is being looked up: a short wait
    answers.state[2] = Resolution(Lookup.UNREACHABLE)
    loop.poll_once()  # still short: the hold learns its new reason after this poll
    loop.poll_once()  # the registry is unreachable, retried in seconds: no hurry
    found(answers, 2)
    loop.poll_once()  # resumed after this poll
    loop.poll_once()
    assert consumer.timeouts == [0.5, HELD_POLL_TIMEOUT, HELD_POLL_TIMEOUT, 0.5, 0.5, 0.5]
    assert HELD_POLL_TIMEOUT <= 0.05
