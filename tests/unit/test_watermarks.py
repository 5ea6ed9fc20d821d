"""Watermark, lateness, idleness: the semantics Flink users expect, checked directly."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from monitor.watermarks import (
    FUTURE,
    LATE,
    ON_TIME,
    ClockSettings,
    PartitionClock,
    ProductClock,
    product_watermark,
)

NOW = 1_800_000_000.0
SETTINGS = ClockSettings(
    max_out_of_orderness=5.0, idle_timeout=60.0, max_future_skew=30.0, stuck_after=20.0
)


def clock(position: int = 0) -> PartitionClock:
    return PartitionClock(SETTINGS, assigned_at=NOW, position=position)


def test_watermark_is_max_event_time_minus_out_of_orderness() -> None:
    c = clock()
    c.observe(NOW - 100, NOW)
    c.observe(NOW - 50, NOW)
    c.observe(NOW - 80, NOW)
    assert c.watermark == NOW - 50 - 5.0


def test_event_older_than_watermark_is_late_and_within_bound_is_not() -> None:
    c = clock()
    assert c.observe(NOW - 10, NOW) == ON_TIME
    assert c.observe(NOW - 14, NOW) == ON_TIME  # 4 s behind max: within the 5 s bound
    assert c.observe(NOW - 15, NOW) == ON_TIME  # exactly at the watermark: not late
    assert c.observe(NOW - 15.001, NOW) == LATE
    assert c.max_event_time == NOW - 10


def test_future_event_is_counted_and_does_not_advance_watermark() -> None:
    c = clock()
    c.observe(NOW - 10, NOW)
    assert c.observe(NOW + 31, NOW) == FUTURE
    assert c.max_event_time == NOW - 10
    assert c.observe(NOW + 29, NOW) == ON_TIME  # within max_future_skew
    assert c.max_event_time == NOW + 29


def test_partition_without_events_has_no_watermark() -> None:
    product = ProductClock(SETTINGS)
    product.assign(0, NOW)
    assert product.watermark(NOW, {0: 10}) is None


def test_idle_needs_quiet_period_and_caught_up_consumer() -> None:
    c = clock(position=10)
    c.observe(NOW - 5, NOW)
    assert not c.is_idle(NOW + 59, high_watermark=10)  # not quiet long enough
    assert c.is_idle(NOW + 61, high_watermark=10)
    assert not c.is_idle(NOW + 61, high_watermark=12)  # data waiting: not idle
    assert not c.is_idle(NOW + 61, high_watermark=None)  # end unknown: not idle


def test_empty_partition_becomes_idle_after_timeout() -> None:
    c = PartitionClock(SETTINGS, assigned_at=NOW, position=0)
    assert c.is_idle(NOW + 61, high_watermark=0)


def test_stuck_when_backlog_waits_and_position_does_not_move() -> None:
    c = clock(position=10)
    assert not c.is_stuck(NOW + 5, high_watermark=50)
    assert c.is_stuck(NOW + 21, high_watermark=50)
    assert not c.is_stuck(NOW + 21, high_watermark=10)  # caught up: idle, not stuck
    c.advance_position(11, NOW + 21)
    assert not c.is_stuck(NOW + 22, high_watermark=50)


def test_lag_is_never_negative() -> None:
    c = clock(position=100)
    assert c.lag(90) == 0  # a broker that understates its end (Tansu) or a stale snapshot
    assert c.lag(130) == 30
    assert c.lag(None) is None


def test_idle_partition_does_not_hold_product_watermark_back() -> None:
    product = ProductClock(SETTINGS)
    stalled = product.assign(0, NOW - 1000, position=5)
    stalled.observe(NOW - 900, NOW - 900)
    active = product.assign(1, NOW - 1000, position=5)
    active.observe(NOW - 2, NOW)
    active.advance_position(6, NOW)
    assert product.watermark(NOW, {0: 5, 1: 6}) == NOW - 2 - 5.0


def test_stalled_partition_with_backlog_holds_watermark_back() -> None:
    product = ProductClock(SETTINGS)
    behind = product.assign(0, NOW - 1000, position=5)
    behind.observe(NOW - 900, NOW - 900)
    active = product.assign(1, NOW - 1000)
    active.observe(NOW - 2, NOW)
    # Partition 0 has unread data: it is not idle, its old watermark is the truth.
    assert product.watermark(NOW, {0: 500, 1: 1}) == NOW - 900 - 5.0


def test_all_partitions_idle_keeps_newest_watermark_so_freshness_grows() -> None:
    product = ProductClock(SETTINGS)
    for p, age in ((0, 400.0), (1, 300.0)):
        c = product.assign(p, NOW - 1000, position=1)
        c.observe(NOW - age, NOW - age)
    assert product.watermark(NOW, {0: 1, 1: 1}) == NOW - 300 - 5.0


def test_revoking_every_partition_forgets_the_product_watermark() -> None:
    product = ProductClock(SETTINGS)
    product.assign(0, NOW).observe(NOW - 1, NOW)
    assert product.watermark(NOW, {}) is not None
    product.revoke(0)
    assert product.watermark(NOW, {}) is None


def test_warm_up_advances_clock_without_classifying() -> None:
    c = clock()
    c.warm(NOW - 20, NOW)
    c.warm(NOW - 30, NOW)
    c.warm(NOW + 3600, NOW)  # a future event never becomes the watermark
    assert c.max_event_time == NOW - 20


event_times = st.floats(min_value=NOW - 10_000, max_value=NOW + 100, allow_nan=False)


@given(st.lists(event_times, min_size=1, max_size=200))
def test_partition_watermark_never_decreases(times: list[float]) -> None:
    c = clock()
    previous = -math.inf
    for t in times:
        c.observe(t, NOW)
        assert c.watermark >= previous
        previous = c.watermark


@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), event_times, st.booleans()), max_size=20),
        min_size=1,
        max_size=20,
    )
)
def test_product_watermark_never_decreases(rounds: list[list[tuple[int, float, bool]]]) -> None:
    """Whatever arrives, and whichever partitions go idle or wake, it never goes back."""
    product = ProductClock(SETTINGS)
    for p in range(4):
        product.assign(p, NOW, position=0)
    previous = -math.inf
    for step in rounds:
        idle_now = set()
        for partition, t, idle in step:
            product.partitions[partition].observe(t, NOW)
            if idle:
                idle_now.add(partition)
        # idle <=> caught up and quiet: simulate by moving the quiet clock
        hws = {p: 0 for p in range(4)}
        for p in range(4):
            product.partitions[p].last_event_at = NOW - (1000 if p in idle_now else 0)
            product.partitions[p].assigned_at = NOW - 1000
        wm = product.watermark(NOW, hws)
        if wm is not None:
            assert wm >= previous
            previous = wm


@given(
    st.lists(st.tuples(event_times, st.booleans()), min_size=1, max_size=30),
)
def test_idle_partition_never_holds_product_watermark_back(
    parts: list[tuple[float, bool]],
) -> None:
    combined = product_watermark(parts)
    active = [w for w, idle in parts if not idle]
    assert combined is not None
    if active:
        assert combined == min(active)
    else:
        assert combined == max(w for w, _ in parts)


def test_partition_still_reading_back_holds_the_product_watermark() -> None:
    product = ProductClock(SETTINGS)
    done = product.assign(0, NOW, position=100, warm_until=100)
    done.observe(NOW - 10, NOW)
    assert product.watermark(NOW, {0: 100}) == NOW - 15
    back = product.assign(1, NOW, position=50, warm_until=80)
    back.warm(NOW - 3600, NOW)  # read-back has reached an hour-old event only
    back.advance_position(51, NOW)
    # neither the hour-old value nor a jump past partition 1: the last value holds
    assert product.watermark(NOW, {0: 100, 1: 90}) == NOW - 15
    back.warm(NOW - 2, NOW)
    back.advance_position(80, NOW)
    assert product.watermark(NOW, {0: 100, 1: 90}) == NOW - 15  # min over both, never back


def test_empty_caught_up_partition_holds_the_product_watermark_only_until_idle() -> None:
    """Its first events may be older than partition 0's: until it is idle (quiet for
    idle_timeout and caught up) nothing is known to be past; then it never holds."""
    product = ProductClock(SETTINGS)
    product.assign(0, NOW, position=100).observe(NOW - 10, NOW)
    product.assign(1, NOW, position=0)  # nothing written there yet
    assert product.watermark(NOW, {0: 100, 1: 0}) is None
    later = NOW + SETTINGS.idle_timeout
    product.partitions[0].observe(later - 10, later)
    assert product.watermark(later, {0: 100, 1: 0}) == later - 15


def test_first_data_of_a_partition_within_idle_timeout_counts_before_the_watermark_moves() -> None:
    product = ProductClock(SETTINGS)
    product.assign(0, NOW, position=0)
    product.assign(1, NOW, position=0)
    product.partitions[0].observe(NOW - 10, NOW + 1)
    product.partitions[0].advance_position(1, NOW + 1)
    assert product.watermark(NOW + 1, {0: 1, 1: 0}) is None  # partition 1 may be behind
    product.partitions[1].observe(NOW - 40, NOW + 20)  # and it was
    product.partitions[1].advance_position(1, NOW + 20)
    assert product.watermark(NOW + 20, {0: 1, 1: 1}) == NOW - 45
