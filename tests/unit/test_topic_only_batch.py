"""Topic-only events counted a batch at a time leave exactly the state of one at a time.

Pipeline.process_batch hands a topic-only product's events to
ProductPipeline.count_topic_only (the per-event steps inlined, for throughput);
ProductPipeline.process is the reference. Random batches mix partitions,
read-back offsets, late, future and timestamp-less events and a partition the
pipeline was never told about.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from monitor.config import ProductConfig
from monitor.pipeline import Pipeline, ProductPipeline

TOPIC = "plain"
NOW = 1_800_000_000.0


class Msg:
    __slots__ = ("_o", "_p", "_ts")

    def __init__(self, partition: int, offset: int, timestamp_ms: int) -> None:
        self._p, self._o, self._ts = partition, offset, timestamp_ms

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return b"ignored"

    def timestamp(self) -> tuple[int, int]:
        return (1 if self._ts >= 0 else 0, self._ts)

    def error(self) -> None:
        return None


def _pipeline() -> Pipeline:
    config = ProductConfig(
        name=TOPIC, owner="ops", topic=TOPIC, encoding="none", max_out_of_orderness=5
    )
    pipeline = Pipeline({TOPIC: ProductPipeline.build(config, None, None, 60)})
    for p in range(3):
        pipeline.assign(TOPIC, p, NOW - 100, start=0, warmup_until=20 if p == 1 else 0)
    return pipeline


def _batches(seed: int) -> list[list[Msg]]:
    rng = random.Random(seed)
    offsets = [0, 0, 0, 0]
    batches = []
    for _ in range(30):
        batch = []
        for _ in range(rng.randint(0, 80)):
            p = rng.choice((0, 0, 1, 2, 3))  # 3: never assigned
            roll = rng.random()
            if roll < 0.05:
                ts = -1  # no timestamp
            elif roll < 0.1:
                ts = int((NOW + 3600) * 1000)  # beyond max_future_skew
            else:
                ts = int((NOW - rng.uniform(0, 400)) * 1000)  # some late, some stale
            batch.append(Msg(p, offsets[p], ts))
            offsets[p] += 1
        batches.append(batch)
    return batches


def _state(pipeline: Pipeline) -> dict[str, Any]:
    product = pipeline.products[TOPIC]
    return {
        "stats": dataclasses.asdict(product.stats),
        "clocks": {p: dataclasses.asdict(c) for p, c in product.clock.partitions.items()},
        "positions": sorted(pipeline.positions()),
    }


@pytest.mark.parametrize("seed", range(5))
def test_batched_topic_only_counting_equals_one_event_at_a_time(seed: int) -> None:
    batched, single = _pipeline(), _pipeline()
    assert batched.products[TOPIC].batchable
    for i, batch in enumerate(_batches(seed)):
        now = NOW + i
        batched.process_batch(batch, now)
        for msg in batch:
            single.products[TOPIC].process(msg, now)  # type: ignore[arg-type]
        batched.advance(now)
        single.advance(now)
    got, expected = _state(batched), _state(single)
    assert got == expected
    stats = got["stats"]
    assert stats["events"] > 100 and stats["late"] > 0 and stats["future"] > 0
    assert 3 in got["clocks"]  # the partition nobody assigned got a clock on both paths
