"""Sequence-number completeness: gaps, duplicates, out-of-order, bounded state."""

from __future__ import annotations

import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.completeness.config import CompletenessConfig
from monitor.completeness.tracker import CompletenessTracker

T0 = 1_700_000_000.0


def tracker(lateness: float = 10.0, **sequence: Any) -> CompletenessTracker:
    seq = {"producer_field": "producer_id", "sequence_field": "sequence", **sequence}
    return CompletenessTracker(
        CompletenessConfig(allowed_lateness=lateness, sequence=seq)  # type: ignore[arg-type]
    )


def feed(t: CompletenessTracker, seqs: list[int], producer: str = "p", partition: int = 0) -> None:
    """Events numbered seqs, event time T0 + seq, the watermark following the newest."""
    newest = float("-inf")
    for s in seqs:
        t.observe(partition, T0 + s, producer, s)
        newest = max(newest, T0 + s)
        t.advance(newest, 0.0)


def needed_lateness(order: list[int]) -> float:
    """Smallest allowed lateness under which no event in `order` arrives too late."""
    newest, worst = float("-inf"), 0.0
    for s in order:
        worst = max(worst, newest - s)
        newest = max(newest, float(s))
    return worst


def finish(t: CompletenessTracker) -> None:
    t.advance(T0 + 10**12, 0.0)


# --- properties ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 150).flatmap(lambda n: st.permutations(range(n))))
def test_any_permutation_within_lateness_reports_zero_missing(order: list[int]) -> None:
    t = tracker(lateness=needed_lateness(order))
    feed(t, order)
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_missing_total == 0
    assert snap.sequence_duplicate_total == 0
    assert snap.pending_gaps == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_removing_k_events_reports_exactly_k_missing(data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 150))
    removed = data.draw(st.sets(st.integers(1, n - 2), max_size=n - 2))
    rest = data.draw(st.permutations([s for s in range(1, n) if s not in removed]))
    order = [0, *rest]  # the first event is the baseline
    t = tracker(lateness=needed_lateness(order))
    feed(t, order)
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_missing_total == len(removed)
    assert snap.sequence_duplicate_total == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_duplicates_are_counted_never_missing(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 100))
    copies = data.draw(st.lists(st.integers(0, n - 1), max_size=50))
    rest = data.draw(st.permutations([*range(1, n), *copies]))
    order = [0, *rest]
    t = tracker(lateness=needed_lateness(order))
    feed(t, order)
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_duplicate_total == len(copies)
    assert snap.sequence_missing_total == 0


# --- examples -----------------------------------------------------------------------


def test_in_order_events_count_nothing() -> None:
    t = tracker()
    feed(t, list(range(1000)))
    finish(t)
    snap = t.snapshot()
    assert (snap.sequence_missing_total, snap.sequence_duplicate_total) == (0, 0)
    assert snap.sequence_out_of_order_total == 0
    assert snap.producers_tracked == 1


def test_out_of_order_arrival_fills_the_gap() -> None:
    t = tracker()
    feed(t, [0, 1, 3, 4, 2])
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_out_of_order_total == 1
    assert snap.sequence_missing_total == 0


def test_gap_is_missing_only_once_watermark_passes_upper_neighbour_plus_lateness() -> None:
    t = tracker(lateness=5.0)
    for s in (0, 1, 3):
        t.observe(0, T0 + s, "p", s)
    t.advance(T0 + 3 + 5.0, 0.0)  # reaching the deadline is not passing it
    assert t.snapshot().sequence_missing_total == 0
    t.advance(T0 + 3 + 5.001, 0.0)
    assert t.snapshot().sequence_missing_total == 1


def test_sequences_seen_before_are_duplicates_below_and_above_the_contiguous_mark() -> None:
    t = tracker()
    feed(t, [0, 1, 2, 5, 1, 5, 2])  # 1 and 2 below the gap, 5 above it
    assert t.snapshot().sequence_duplicate_total == 3
    finish(t)
    assert t.snapshot().sequence_missing_total == 2  # 3 and 4


def test_event_after_its_gap_was_declared_missing_is_late_not_duplicate() -> None:
    t = tracker(lateness=1.0)
    feed(t, [0, 1, 3])
    finish(t)
    t.observe(0, T0 + 2, "p", 2)
    t.observe(0, T0 + 2, "p", 2)
    snap = t.snapshot()
    assert snap.sequence_missing_total == 1
    assert snap.sequence_late_total == 1
    assert snap.sequence_duplicate_total == 1  # the second copy


def test_split_gap_halves_keep_the_original_deadline() -> None:
    t = tracker(lateness=0.0)
    t.observe(0, T0, "p", 0)
    t.observe(0, T0 + 100, "p", 10)  # gap 1..9, deadline T0 + 100
    t.observe(0, T0 + 5, "p", 5)  # splits it into 1..4 and 6..9
    t.advance(T0 + 99, 0.0)
    assert t.snapshot().sequence_missing_total == 0
    assert t.snapshot().pending_gaps == 2
    t.advance(T0 + 101, 0.0)
    assert t.snapshot().sequence_missing_total == 8


def test_huge_sequence_jump_is_one_range_not_a_billion_entries() -> None:
    t = tracker()
    tracemalloc.start()
    try:
        t.observe(0, T0, "p", 0)
        t.observe(0, T0 + 1, "p", 10**9)
        for s in (17, 10**6, 10**9 - 1):
            t.observe(0, T0 + 1, "p", s)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000
    assert t.snapshot().pending_gaps == 3
    finish(t)
    assert t.snapshot().sequence_missing_total == 10**9 - 1 - 3


def test_producers_are_bounded_with_evictions_counted() -> None:
    t = tracker(max_producers=3)
    for i in range(5):
        t.observe(0, T0, f"p{i}", 0)
    snap = t.snapshot()
    assert snap.producers_tracked == 3
    assert snap.producer_evictions_total == 2
    t.observe(0, T0 + 1, "p0", 500)  # evicted: a new baseline, not a gap of 499
    finish(t)
    assert t.snapshot().sequence_missing_total == 0


def test_lru_keeps_the_producers_seen_most_recently() -> None:
    t = tracker(max_producers=2)
    t.observe(0, T0, "a", 0)
    t.observe(0, T0, "b", 0)
    t.observe(0, T0, "a", 1)  # a is now the most recent
    t.observe(0, T0, "c", 0)  # evicts b
    t.observe(0, T0 + 1, "a", 3)  # a still tracked: gap 2
    finish(t)
    assert t.snapshot().sequence_missing_total == 1


def test_gaps_of_an_evicted_producer_are_still_declared_missing() -> None:
    t = tracker(max_producers=1)
    feed(t, [0, 2], producer="a")
    t.observe(0, T0, "b", 0)  # evicts a with its gap at 1
    finish(t)
    assert t.snapshot().sequence_missing_total == 1


def test_large_backward_jump_is_a_producer_restart_not_duplicates() -> None:
    t = tracker(restart_threshold=100)
    feed(t, list(range(500)))
    feed(t, list(range(50)))  # the producer restarted its counter
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_resets_total == 1
    assert snap.sequence_duplicate_total == 0
    assert snap.sequence_missing_total == 0


def test_gaps_from_before_a_restart_are_still_declared_missing() -> None:
    t = tracker(restart_threshold=100)
    feed(t, [0, 1, *range(3, 500)])
    feed(t, [0, 1, 2])  # restarted; its 2 is not the old epoch's 2
    finish(t)
    snap = t.snapshot()
    assert (snap.sequence_resets_total, snap.sequence_missing_total) == (1, 1)


def test_small_backward_jump_is_a_replay_of_duplicates() -> None:
    t = tracker(restart_threshold=100)
    feed(t, [*range(500), *range(450, 500)])
    snap = t.snapshot()
    assert snap.sequence_duplicate_total == 50
    assert snap.sequence_resets_total == 0


def test_numbers_below_the_baseline_are_not_judged() -> None:
    t = tracker(lateness=10.0)
    feed(t, [10, 11, 5, 12])  # 5 may have been seen by the previous owner
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_pre_baseline_total == 1
    assert (snap.sequence_duplicate_total, snap.sequence_missing_total) == (0, 0)


def test_far_below_the_baseline_is_a_restart_only_after_the_baseline_lateness() -> None:
    t = tracker(lateness=10.0, restart_threshold=100)
    t.observe(0, T0, "p", 5000)
    t.observe(0, T0, "p", 1)  # may still be the previous owner's out-of-order tail
    t.advance(T0 + 10.001, 0.0)
    t.observe(0, T0 + 11, "p", 2)  # long after: the counter started again
    t.observe(0, T0 + 12, "p", 3)
    snap = t.snapshot()
    assert (snap.sequence_pre_baseline_total, snap.sequence_resets_total) == (1, 1)
    assert snap.sequence_duplicate_total == 0


def test_revoke_abandons_pending_gaps_and_reassignment_sets_a_new_baseline() -> None:
    t = tracker()
    t.on_partitions_assigned({0, 1}, 0.0)
    feed(t, [0, 1, 5], partition=0)
    t.on_partitions_revoked({0})
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_missing_total == 0
    assert snap.sequence_abandoned_total == 3
    t.on_partitions_assigned({0}, 0.0)
    feed(t, [900, 901], partition=0)
    finish(t)
    assert t.snapshot().sequence_missing_total == 0


def test_revoke_keeps_state_of_partitions_still_owned() -> None:
    t = tracker()
    t.on_partitions_assigned({0, 1}, 0.0)
    feed(t, [0, 2], partition=1)
    t.on_partitions_revoked({0})
    finish(t)
    assert t.snapshot().sequence_missing_total == 1


def test_partition_scope_numbers_each_partition_separately() -> None:
    t = tracker()
    feed(t, list(range(10)), partition=0)
    feed(t, list(range(10)), partition=1)
    finish(t)
    snap = t.snapshot()
    assert (snap.sequence_duplicate_total, snap.sequence_missing_total) == (0, 0)
    assert snap.producers_tracked == 2


def test_topic_scope_follows_one_counter_across_partitions() -> None:
    t = tracker(scope="topic")
    for s in range(20):
        t.observe(s % 2, T0 + s, "p", s)
    finish(t)
    snap = t.snapshot()
    assert (snap.sequence_missing_total, snap.producers_tracked) == (0, 1)


def test_topic_scope_stops_judging_while_instance_owns_part_of_the_topic() -> None:
    t = tracker(scope="topic")
    t.on_partitions_assigned({0, 1}, 0.0, topic_partitions=2)
    t.on_partitions_revoked({1})
    feed(t, [0, 2, 4, 6], partition=0)  # odd numbers went to partition 1
    finish(t)
    snap = t.snapshot()
    assert snap.sequence_missing_total == 0
    assert snap.producers_tracked == 0


def test_pending_gaps_are_bounded_and_overflow_is_declared_missing() -> None:
    t = tracker(max_pending_gaps=10)
    t.observe(0, T0, "p", 0)
    for s in range(2, 62, 2):  # 30 gaps of one
        t.observe(0, T0 + s, "p", s)
    snap = t.snapshot()
    assert snap.pending_gaps == 10
    assert snap.sequence_overflowed_total == 20
    assert snap.sequence_missing_total == 20


def test_events_without_producer_or_sequence_are_counted_untracked() -> None:
    t = tracker()
    t.observe(0, T0, None, 1)
    t.observe(0, T0, "p", None)
    assert t.snapshot().sequence_untracked_total == 2


def test_counters_never_decrease() -> None:
    t = tracker(lateness=0.0)
    previous = t.snapshot()
    for i, s in enumerate([0, 3, 1, 1, 7, 2, 9, 0]):
        t.observe(0, T0 + i, "p", s)
        t.advance(T0 + i - 1, 0.0)
        snap = t.snapshot()
        for name in ("missing", "duplicate", "out_of_order", "late"):
            key = f"sequence_{name}_total"
            assert getattr(snap, key) >= getattr(previous, key)
        previous = snap
