"""Topic-only events counted a batch at a time leave exactly the state of one at a time.

Pipeline.process_batch hands a topic-only product's events to
ProductPipeline.count_topic_only (the per-event steps inlined, for throughput);
ProductPipeline.process is the reference. Random batches mix partitions,
read-back offsets, late, future and timestamp-less events and a partition the
pipeline was never told about.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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


def _pipeline(warm_until: int = 20) -> Pipeline:
    """Partition 1 reads back below offset `warm_until`; the others count from 0."""
    config = ProductConfig(
        name=TOPIC, owner="ops", topic=TOPIC, encoding="none", max_out_of_orderness=5
    )
    pipeline = Pipeline({TOPIC: ProductPipeline.build(config, None, None, 60)})
    for p in range(3):
        pipeline.assign(TOPIC, p, NOW - 100, start=0, warmup_until=warm_until if p == 1 else 0)
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


# --- partition runs (count_topic_only's C-level path) --------------------------------


def _run_pipeline() -> Pipeline:
    """Partition 1 reads back below offset 40 (warm runs, and one that crosses it)."""
    return _pipeline(warm_until=40)


def _full_state(pipeline: Pipeline, now: float) -> dict[str, Any]:
    """Everything a verdict is made of: counters, histograms, clocks, positions, and
    the verdicts themselves (watermark, idle, stuck, lag) at a few end offsets."""
    product = pipeline.products[TOPIC]
    clock = product.clock
    verdicts = []
    for later in (0.0, 30.0, 90.0):
        for end in (0, 50, 10_000):
            ends = dict.fromkeys(clock.partitions, end)
            verdicts.append(
                (
                    [c.is_idle(now + later, end) for c in clock.partitions.values()],
                    [c.is_stuck(now + later, end) for c in clock.partitions.values()],
                    [c.lag(end) for c in clock.partitions.values()],
                    ProductClockCopy.watermark(clock, now + later, ends),
                )
            )
    return {
        "stats": dataclasses.asdict(product.stats),
        "clock": dataclasses.asdict(clock),
        "positions": sorted(pipeline.positions()),
        "verdicts": verdicts,
    }


class ProductClockCopy:
    """watermark() without changing the clock it reads (it remembers what it emitted)."""

    @staticmethod
    def watermark(clock: Any, now: float, ends: dict[int, int]) -> float | None:
        return copy.deepcopy(clock).watermark(now, ends)  # type: ignore[no-any-return]


# A run: partition, length, start (seconds before NOW; negative: ahead of it; whole
# seconds often, so ages land exactly on histogram bounds and the freshness threshold),
# step in ms (0: equal timestamps), events at the end pushed beyond max_future_skew,
# and a shape: 0 ordered, 1 one timestamp missing (-1), 2 two timestamps swapped,
# 3 the same offset delivered again and again (the position does not move), 4 the
# first timestamp missing.
runs = st.tuples(
    st.sampled_from((0, 1, 1, 2, 3)),  # 3: never assigned
    st.integers(0, 60),
    st.one_of(
        st.sampled_from((-60.0, 0.0, 300.0)),  # at max_future_skew, now, the threshold
        st.integers(-30, 400).map(float),
        st.floats(-30, 400, allow_nan=False),
    ),
    st.integers(0, 400),
    st.integers(0, 3),
    st.sampled_from((0, 0, 0, 1, 2, 3, 4)),
)


def _materialize(batches: list[list[tuple[int, int, float, int, int, int]]]) -> list[list[Msg]]:
    offsets = [0, 0, 0, 0]
    out = []
    for batch in batches:
        msgs = []
        for partition, length, before, step, future, shape in batch:
            base = int((NOW - before) * 1000)
            stamps = [base + i * step for i in range(length)]
            for i in range(max(0, length - future), length):
                stamps[i] = int((NOW + 3600) * 1000)
            if length >= 2 and shape == 1:
                stamps[length // 2] = -1
            elif length >= 1 and shape == 4:
                stamps[0] = -1
            elif length >= 2 and shape == 2:
                stamps[0], stamps[-1] = stamps[-1], stamps[0]
            for ts in stamps:
                if shape == 3 and offsets[partition]:
                    msgs.append(Msg(partition, offsets[partition] - 1, ts))
                    continue
                msgs.append(Msg(partition, offsets[partition], ts))
                offsets[partition] += 1
        out.append(msgs)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(runs, max_size=5), min_size=1, max_size=6),
    steps=st.lists(st.sampled_from((0.0, 0.5, 1.0, 10.0, 120.0)), min_size=6, max_size=6),
)
@example(  # ages exactly at the freshness threshold and a bucket bound, then at max_future_skew
    batches=[[(0, 20, 300.0, 0, 0, 0), (2, 20, 60.0, 0, 0, 0)], [(0, 20, -60.0, 0, 0, 0)]],
    steps=[0.0] * 6,
)
def test_partition_runs_give_every_verdict_of_one_event_at_a_time(
    batches: list[list[tuple[int, int, float, int, int, int]]], steps: list[float]
) -> None:
    batched, single = _run_pipeline(), _run_pipeline()
    now = NOW
    for batch, step in zip(_materialize(batches), steps, strict=False):
        now += step
        batched.process_batch(batch, now)
        for msg in batch:
            single.products[TOPIC].process(msg, now)  # type: ignore[arg-type]
        batched.advance(now)
        single.advance(now)
        assert _full_state(batched, now) == _full_state(single, now)


def test_long_ordered_runs_take_the_run_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above only proves something if runs are counted in _count_run."""
    taken: list[bool] = []
    real = ProductPipeline._count_run

    def spy(self: ProductPipeline, *args: Any) -> bool:
        taken.append(real(self, *args))
        return taken[-1]

    monkeypatch.setattr(ProductPipeline, "_count_run", spy)
    pipeline = _run_pipeline()
    # A warm run (partition 1 below 40), a counted run with a future tail, one event of
    # partition 2 (a short run: per event), then a late run of partition 0.
    batch = _materialize(
        [
            [
                (1, 30, 10.0, 5, 0, 0),
                (0, 40, 100.0, 10, 3, 0),
                (2, 1, 0.0, 0, 0, 0),
                (0, 20, 300.0, 1, 0, 0),
            ]
        ]
    )[0]
    pipeline.process_batch(batch, NOW)
    assert taken == [True, True, True]
    stats = pipeline.products[TOPIC].stats
    assert (stats.events, stats.future, stats.late) == (61, 3, 20)
