"""Completeness through the pipeline: errors of the SLIs that the pieces alone do not show.

- A future-dated event was delivered: its sequence number must not be declared missing.
- A partition whose first data comes after the others' (within idle_timeout) must not
  let windows close without it (judged incomplete, then recovered: false alarms).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from monitor.completeness.config import CompletenessConfig
from monitor.config import ProductConfig
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline

NOW = 1_700_000_000.0
TOPIC = "shop.orders"


def pipeline(orders: Contract, **overrides: Any) -> Pipeline:
    config = ProductConfig(
        name="orders",
        owner="team-checkout",
        topic=TOPIC,
        contract=orders.path,
        encoding="avro-raw",
        event_time="occurred_at",
        max_out_of_orderness=1.0,
        max_future_skew=60.0,
        completeness=CompletenessConfig(
            window=60.0,
            allowed_lateness=10.0,
            sequence={"producer_field": "producer_id", "sequence_field": "sequence"},  # type: ignore[arg-type]
            **overrides,
        ),
    )
    product = ProductPipeline.build(
        config, RawAvroDecoder(orders), make_extractor(orders, "occurred_at"), stuck_after=60
    )
    return Pipeline({TOPIC: product})


def test_a_future_dated_event_in_a_numbered_stream_is_not_missing(
    orders: Contract, avro_body: Any, make_order: Any
) -> None:
    p = pipeline(orders)
    p.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    times = [NOW - 10, NOW - 9, NOW + 3600, NOW - 8, NOW - 7]  # seq 3: a skewed clock
    batch = [
        Message(
            topic=TOPIC,
            partition=0,
            offset=i,
            value=avro_body(
                orders.schema,
                make_order(occurred_at=datetime.fromtimestamp(t, UTC), sequence=i + 1),
            ),
        )
        for i, t in enumerate(times)
    ]
    p.process_batch(batch, NOW)
    p.advance(NOW)
    # Later events of the stream move the watermark far past every gap deadline.
    later = [
        Message(
            topic=TOPIC,
            partition=0,
            offset=5 + i,
            value=avro_body(
                orders.schema,
                make_order(occurred_at=datetime.fromtimestamp(NOW + 50 + i, UTC), sequence=6 + i),
            ),
        )
        for i in range(3)
    ]
    p.process_batch(later, NOW + 100)
    p.advance(NOW + 100)
    product = p.products[TOPIC]
    assert product.stats.future == 1
    assert product.completeness is not None
    snap = product.completeness.snapshot()
    assert snap.sequence_missing_total == 0  # was 1 on main: the future event "lost"
    assert snap.sequence_out_of_order_total == 0  # it arrived in its place
    assert snap.sequence_duplicate_total == 0
    # The future event is in no window and did not move the watermark.
    assert product.clock.partitions[0].max_event_time == NOW + 52


def test_a_future_event_that_skips_numbers_still_opens_a_gap(
    orders: Contract, avro_body: Any, make_order: Any
) -> None:
    p = pipeline(orders)
    p.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    seqs_times = [(1, NOW - 10), (5, NOW + 3600), (6, NOW - 5)]  # 2..4 never arrive
    p.process_batch(
        [
            Message(
                topic=TOPIC,
                partition=0,
                offset=i,
                value=avro_body(
                    orders.schema,
                    make_order(occurred_at=datetime.fromtimestamp(t, UTC), sequence=s),
                ),
            )
            for i, (s, t) in enumerate(seqs_times)
        ],
        NOW,
    )
    late = avro_body(orders.schema, make_order(occurred_at=datetime.fromtimestamp(NOW + 30, UTC)))
    p.process_batch([Message(topic=TOPIC, partition=0, offset=3, value=late)], NOW + 40)
    p.advance(NOW + 40)
    completeness = p.products[TOPIC].completeness
    assert completeness is not None
    # The gap's deadline is the arrival (NOW) + allowed_lateness, not the event's date.
    assert completeness.snapshot().sequence_missing_total == 3


def test_a_partition_whose_first_data_comes_later_is_waited_for_not_judged_without(
    orders: Contract, avro_body: Any, make_order: Any
) -> None:
    """Start-up: partition 1 is empty and caught up while partition 0 delivers windows
    1-3. On main the product watermark followed partition 0 alone, windows 1-2 closed
    incomplete, and partition 1's events (10 s later, still within idle_timeout)
    recovered them: two false alarms."""
    p = pipeline(orders, expected={"min_events_per_window": 8})
    for partition in (0, 1):
        p.assign(TOPIC, partition, NOW, start=0, warmup_until=0)
    start = (NOW - 600) // 60 * 60  # window boundaries

    def deliver(partition: int, first_offset: int, now: float) -> int:
        batch = [
            Message(
                topic=TOPIC,
                partition=partition,
                offset=first_offset + i,
                value=avro_body(
                    orders.schema,
                    make_order(
                        occurred_at=datetime.fromtimestamp(start + k * 60 + j * 10, UTC),
                        producer_id=f"p{partition}",
                        sequence=first_offset + i + 1,
                    ),
                ),
            )
            for i, (k, j) in enumerate((k, j) for k in range(4) for j in range(4))
        ]
        p.process_batch(batch, now)
        p.high_watermarks = {TOPIC: {0: 16, 1: 16 if partition == 1 else 0}}
        p.advance(now)
        return first_offset + len(batch)

    deliver(0, 0, NOW + 1)
    completeness = p.products[TOPIC].completeness
    assert completeness is not None
    early = completeness.snapshot()
    assert sum(early.windows_closed_total.values()) == 0  # waits for partition 1
    deliver(1, 0, NOW + 10)
    snap = completeness.snapshot()
    assert snap.windows_closed_total["incomplete"] == 0
    assert snap.windows_recovered_total == 0
    assert snap.windows_closed_total["complete"] == 2  # windows 1 and 2 (0 is partial)
    assert snap.last_window_ratio == 1.0
