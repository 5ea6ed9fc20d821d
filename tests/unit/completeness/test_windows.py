"""Event-time windows reconciled against producer manifests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.completeness.config import CompletenessConfig
from monitor.completeness.tracker import CompletenessTracker

W = 60.0
T0 = 1_700_000_040.0  # a window boundary: windows are [T0 + i*W, T0 + (i+1)*W)


def tracker(*, primed: bool = True, **overrides: Any) -> CompletenessTracker:
    """Manifest mode; `primed` spends the partial first window before T0."""
    manifests = {"topic": "manifests", "grace": 120.0, **overrides.pop("manifests", {})}
    config = CompletenessConfig(window=W, manifests=manifests, **overrides)  # type: ignore[arg-type]
    t = CompletenessTracker(config)
    if primed:
        t.observe(0, T0 - 1.0, None, None)  # first event: its window is partial
    return t


def events(t: CompletenessTracker, window: int, n: int, partition: int = 0) -> None:
    for i in range(n):
        t.observe(partition, T0 + window * W + (i % 59) + 0.5, None, None)


def manifest(t: CompletenessTracker, window: int, n: int, producer: str | None = "a") -> None:
    t.on_manifest(T0 + window * W, T0 + (window + 1) * W, n, producer)


def replayed(t: CompletenessTracker, window: int, n: int, producer: str | None = "a") -> None:
    """A manifest read back after a restart or assignment (an earlier owner counted it)."""
    t.on_manifest(T0 + window * W, T0 + (window + 1) * W, n, producer, replay=True)


def close(t: CompletenessTracker, window: int, after: float = 0.0) -> None:
    """Move the watermark to the end of `window` (plus `after` seconds)."""
    t.advance(T0 + (window + 1) * W + after, 0.0)


def verdicts(t: CompletenessTracker) -> dict[str, int]:
    return {k: v for k, v in t.snapshot().windows_closed_total.items() if v}


def test_window_with_manifest_and_all_events_is_complete_with_ratio_one() -> None:
    t = tracker()
    events(t, 0, 100)
    manifest(t, 0, 100)
    close(t, 0)
    snap = t.snapshot()
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert snap.last_window_ratio == 1.0
    assert (snap.expected_events_total, snap.observed_events_total) == (100, 100)


def test_window_with_loss_is_incomplete_with_the_exact_ratio() -> None:
    t = tracker()
    events(t, 0, 97)
    manifest(t, 0, 100)
    close(t, 0)
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1
    assert snap.last_window_ratio == 0.97
    assert (snap.expected_events_total, snap.observed_events_total) == (100, 97)


def test_window_is_not_judged_before_the_watermark_reaches_its_end() -> None:
    t = tracker()
    events(t, 0, 10)
    manifest(t, 0, 10)
    close(t, 0, after=-0.001)
    assert t.snapshot().windows_closed_total["complete"] == 0
    close(t, 0)
    assert t.snapshot().windows_closed_total["complete"] == 1


def test_manifest_arriving_before_the_data_works() -> None:
    t = tracker()
    manifest(t, 0, 50)
    events(t, 0, 50)
    close(t, 0)
    assert t.snapshot().windows_closed_total["complete"] == 1


def test_manifest_arriving_after_the_window_closed_reconciles_it() -> None:
    t = tracker()
    events(t, 0, 50)
    close(t, 0)
    assert t.snapshot().windows_closed_total["complete"] == 0  # waiting for the manifest
    manifest(t, 0, 50)
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.expected_events_total == 50


def test_window_without_manifest_after_grace_is_no_manifest() -> None:
    t = tracker()
    events(t, 0, 50)
    close(t, 0, after=119.0)
    assert verdicts(t) == {"partial": 1}
    close(t, 0, after=120.0)
    snap = t.snapshot()
    assert snap.windows_closed_total["no_manifest"] == 1
    assert snap.expected_events_total == 0  # nothing to compare against


def test_manifest_after_grace_is_rejected_as_late() -> None:
    t = tracker()
    events(t, 0, 50)
    close(t, 0, after=130.0)
    manifest(t, 0, 50)
    snap = t.snapshot()
    assert snap.manifests_rejected_total["late"] == 1
    assert snap.windows_closed_total["no_manifest"] == 1


def test_window_with_manifest_but_no_events_is_incomplete() -> None:
    t = tracker()
    manifest(t, 0, 40)
    close(t, 0)
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1
    assert snap.last_window_ratio == 0.0


def test_late_event_within_retention_recovers_the_window() -> None:
    t = tracker(window_retention=600.0)
    events(t, 0, 99)
    manifest(t, 0, 100)
    close(t, 0, after=300.0)
    t.observe(0, T0 + 30.0, None, None)
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1  # first verdicts stay counted
    assert snap.windows_closed_total["complete"] == 0
    assert snap.windows_recovered_total == 1
    assert snap.late_amendments_total == 1
    assert (snap.expected_events_total, snap.observed_events_total) == (100, 100)
    assert snap.last_window_ratio == 1.0


def test_late_event_after_retention_is_dropped() -> None:
    t = tracker(window_retention=600.0)
    events(t, 0, 99)
    manifest(t, 0, 100)
    close(t, 0, after=600.0)
    t.observe(0, T0 + 30.0, None, None)
    snap = t.snapshot()
    assert snap.late_events_dropped_total == 1
    assert snap.observed_events_total == 99
    assert snap.windows_recovered_total == 0


def test_surplus_is_counted_and_observed_is_capped_at_expected() -> None:
    t = tracker()
    events(t, 0, 105)
    manifest(t, 0, 100)
    close(t, 0)
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.observed_events_total == 100  # a surplus cannot hide loss elsewhere
    assert snap.window_surplus_events_total == 5
    assert snap.last_window_ratio == 1.05


def test_manifests_of_several_producers_add_up() -> None:
    t = tracker()
    events(t, 0, 70)
    manifest(t, 0, 30, "a")
    manifest(t, 0, 40, "b")
    manifest(t, 0, 40, "b")  # a retried send is not counted twice
    close(t, 0)
    snap = t.snapshot()
    assert snap.expected_events_total == 70
    assert snap.manifests_duplicate_total == 1
    assert snap.windows_closed_total["complete"] == 1


def manifest_results(t: CompletenessTracker) -> dict[str, int]:
    snap = t.snapshot()
    return {
        "accepted": snap.manifests_accepted_total,
        "duplicate": snap.manifests_duplicate_total,
        "superseded": snap.manifests_superseded_total,
    }


def test_each_received_manifest_is_counted_under_exactly_one_result() -> None:
    """Three sends of one producer's manifest were accepted 3 AND duplicate 2 on main."""
    t = tracker()
    for _ in range(3):
        manifest(t, 0, 40, "b")
    assert manifest_results(t) == {"accepted": 1, "duplicate": 2, "superseded": 0}
    manifest(t, 0, 45, "b")  # a cumulative update: a larger count replaces 40
    manifest(t, 0, 44, "b")  # an older update arriving late changes nothing
    manifest(t, 0, 10, None)  # anonymous manifests add up: each is accepted
    manifest(t, 0, 5, None)
    assert manifest_results(t) == {"accepted": 3, "duplicate": 3, "superseded": 1}
    events(t, 0, 60)
    close(t, 0)
    assert t.snapshot().expected_events_total == 45 + 10 + 5
    received = 3 + 2 + 2
    assert sum(manifest_results(t).values()) == received


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 50)), max_size=30))
def test_manifest_results_partition_what_was_received(sends: list[tuple[str | None, int]]) -> None:
    t = tracker()
    best: dict[str | None, int] = {}
    for producer, n in sends:
        manifest(t, 0, n, producer)
        best[producer] = (
            best.get(producer, 0) + n if producer is None else max(best.get(producer, 0), n)
        )
    assert sum(manifest_results(t).values()) == len(sends)
    close(t, 0, after=200.0)
    assert t.snapshot().expected_events_total == (sum(best.values()) if sends else 0)


def test_anonymous_manifests_add_up() -> None:
    t = tracker()
    manifest(t, 0, 30, None)
    manifest(t, 0, 40, None)
    close(t, 0)
    assert t.snapshot().expected_events_total == 70


def test_a_cumulative_manifest_raises_the_expectation_and_can_degrade_a_verdict() -> None:
    t = tracker()
    events(t, 0, 30)
    manifest(t, 0, 30, "a")
    close(t, 0)
    manifest(t, 0, 35, "a")  # the producer counted 5 more late events
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.windows_degraded_total == 1
    assert (snap.expected_events_total, snap.observed_events_total) == (35, 30)


def test_expected_producers_holds_the_verdict_until_all_manifests_arrive() -> None:
    t = tracker(manifests={"producers": 2})
    events(t, 0, 70)
    manifest(t, 0, 30, "a")
    close(t, 0)
    assert t.snapshot().windows_closed_total["complete"] == 0
    manifest(t, 0, 40, "b")
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.windows_degraded_total == 0


def test_misaligned_manifest_is_rejected() -> None:
    t = tracker()
    t.on_manifest(T0 + 10.0, T0 + 70.0, 5, "a")
    t.on_manifest(T0, T0 + 120.0, 5, "a")
    assert t.snapshot().manifests_rejected_total["misaligned"] == 2
    assert t.snapshot().manifests_accepted_total == 0


def test_manifest_with_millisecond_timestamps_aligns() -> None:
    t = tracker()
    t.on_manifest(round(T0 * 1000) / 1000, round((T0 + W) * 1000) / 1000, 5, "a")
    assert t.snapshot().manifests_accepted_total == 1


def test_first_window_after_start_is_partial() -> None:
    t = tracker(primed=False)
    events(t, 0, 10)
    manifest(t, 0, 100)
    events(t, 1, 10)
    manifest(t, 1, 10)
    close(t, 1)
    snap = t.snapshot()
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert snap.expected_events_total == 10


def test_windows_closed_before_the_first_event_are_partial() -> None:
    """A watermark from read-back data can close windows before any counted event."""
    t = tracker(primed=False)
    manifest(t, 0, 10)
    close(t, 0)
    assert verdicts(t) == {"partial": 1}


def test_windows_open_at_assignment_are_partial() -> None:
    t = tracker(primed=False)
    t.on_partitions_assigned({0}, 0.0)
    t.observe(0, T0 - 1.0, None, None)  # window -1: partial (first event)
    events(t, 0, 10)
    manifest(t, 0, 20)
    t.on_partitions_assigned({1}, 0.0)  # the old owner of 1 counted part of window 0
    events(t, 1, 10)
    manifest(t, 1, 10)
    close(t, 1)
    assert verdicts(t) == {"partial": 2, "complete": 1}
    assert t.snapshot().expected_events_total == 10


def test_first_event_of_a_new_partition_marks_windows_up_to_it_partial() -> None:
    t = tracker(primed=False)
    t.on_partitions_assigned({0, 1}, 0.0)
    t.observe(0, T0 - 1.0, None, None)
    events(t, 0, 10)
    manifest(t, 0, 10)
    t.observe(1, T0 + W + 1.0, None, None)  # partition 1 resumes in window 1
    events(t, 1, 9)
    manifest(t, 1, 10)
    close(t, 1)
    assert verdicts(t) == {"partial": 3}


def test_max_out_of_orderness_widens_the_partial_boundary() -> None:
    config = CompletenessConfig(window=W, manifests={"topic": "m"})  # type: ignore[arg-type]
    t = CompletenessTracker(config, max_out_of_orderness=W)
    t.observe(0, T0 - 1.0, None, None)  # the old owner may have seen up to T0 - 1 + W
    events(t, 0, 10)
    manifest(t, 0, 10)
    close(t, 0)
    assert verdicts(t) == {"partial": 2}


def test_windows_are_partial_while_the_instance_owns_part_of_the_topic() -> None:
    t = tracker(primed=False)
    t.on_partitions_assigned({0, 1}, 0.0, topic_partitions=2)
    t.observe(0, T0 - 1.0, None, None)
    t.on_partitions_revoked({1})
    events(t, 1, 10)  # the other half went to the new owner of partition 1
    manifest(t, 1, 20)
    close(t, 1)
    assert verdicts(t) == {"partial": 2}  # windows -1 and 1; window 0 saw nothing here


def test_losing_a_partition_that_delivered_events_makes_windows_partial() -> None:
    t = tracker(primed=False)
    t.on_partitions_assigned({0, 1}, 0.0)  # partition count unknown
    t.observe(0, T0 - 1.0, None, None)
    t.observe(1, T0 - 1.0, None, None)
    t.on_partitions_revoked({1})
    events(t, 1, 10)
    manifest(t, 1, 20)
    close(t, 1)
    assert verdicts(t) == {"partial": 2}  # windows -1 and 1; window 0 saw nothing here


def test_regaining_every_partition_makes_later_windows_judged_again() -> None:
    t = tracker(primed=False)
    t.on_partitions_assigned({0, 1}, 0.0)
    t.observe(0, T0 - 1.0, None, None)
    t.observe(1, T0 - 1.0, None, None)
    t.on_partitions_revoked({0, 1})  # an eager rebalance
    t.on_partitions_assigned({0, 1}, 0.0)
    t.observe(0, T0 + 1.0, None, None)  # window 0: partial (resumed there)
    t.observe(1, T0 + 2.0, None, None)
    events(t, 1, 10)
    manifest(t, 1, 10)
    close(t, 1)
    assert verdicts(t) == {"partial": 2, "complete": 1}


# --- read back after a restart or assignment ------------------------------------------


def test_replayed_manifests_feed_expectations_but_count_in_no_manifest_counter() -> None:
    t = tracker()
    replayed(t, 0, 30, "a")
    replayed(t, 0, 30, "a")  # live, this would be a duplicate
    replayed(t, 0, 40, "b")
    t.on_manifest(T0 + 10.0, T0 + 70.0, 5, "a", replay=True)  # misaligned
    events(t, 0, 70)
    close(t, 0, after=120.0)
    replayed(t, 0, 90, "c")  # after grace: late
    snap = t.snapshot()
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert (snap.expected_events_total, snap.observed_events_total) == (70, 70)
    assert (snap.manifests_accepted_total, snap.manifests_duplicate_total) == (0, 0)
    assert not any(snap.manifests_rejected_total.values())


def test_replayed_manifests_are_ignored_without_counting_where_manifests_are_off() -> None:
    config = CompletenessConfig(window=W, expected={"min_events_per_window": 5})  # type: ignore[arg-type]
    t = CompletenessTracker(config)
    t.on_manifest(T0, T0 + W, 5, "a", replay=True)
    assert not any(t.snapshot().manifests_rejected_total.values())
    t.on_manifest(T0, T0 + W, 5, "a")
    assert t.snapshot().manifests_rejected_total["not_configured"] == 1


@pytest.mark.parametrize("watermark_first", [False, True], ids=["manifests", "watermark"])
def test_windows_seen_only_in_replayed_manifests_close_without_a_verdict(
    watermark_first: bool,
) -> None:
    """After a restart, windows the earlier instance judged (0, 1) or left open without
    live events here (2) count under no verdict, whichever topic is read back first."""
    t = tracker(primed=False)
    if watermark_first:
        close(t, 1)  # the read-back data moves the watermark
    for k in (0, 1, 2):
        replayed(t, k, 8)
    close(t, 1)
    events(t, 3, 10)  # the first live event: window 3 was seen in part
    events(t, 4, 10)
    manifest(t, 4, 10)
    close(t, 4)
    snap = t.snapshot()
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert (snap.expected_events_total, snap.manifests_accepted_total) == (10, 1)


@settings(max_examples=100, deadline=None)
@given(
    replays=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=10),
    warm=st.integers(-1, 5),
    split=st.integers(0, 10),
)
def test_verdicts_after_a_restart_do_not_depend_on_the_read_back_order(
    replays: list[tuple[int, int]], warm: int, split: int
) -> None:
    """Replayed manifests of windows 0-5, read before, between or after the read-back
    data moves the watermark to the end of window `warm`; live data starts in window 6."""
    t = tracker(primed=False)
    for k, n in replays[:split]:
        replayed(t, k, n, None)
    close(t, warm)
    for k, n in replays[split:]:
        replayed(t, k, n, None)
    events(t, 6, 10)
    events(t, 7, 10)
    manifest(t, 7, 10)
    close(t, 7)
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert t.snapshot().expected_events_total == 10


def test_a_window_open_at_restart_that_sees_live_events_stays_partial() -> None:
    t = tracker(primed=False)
    replayed(t, 0, 20)
    events(t, 0, 10)  # the rest of window 0 was counted by the earlier instance
    events(t, 1, 10)
    manifest(t, 1, 10)
    close(t, 1)
    assert verdicts(t) == {"partial": 1, "complete": 1}
    assert t.snapshot().expected_events_total == 10


def test_a_live_manifest_makes_a_window_partial() -> None:
    t = tracker(primed=False)
    replayed(t, 0, 20, "a")
    manifest(t, 0, 20, "b")
    close(t, 0)
    assert verdicts(t) == {"partial": 1}


def test_a_late_live_event_makes_a_silently_closed_window_partial() -> None:
    """The same count as if the event had been read before the window closed."""
    t = tracker(primed=False)
    replayed(t, 0, 20)
    close(t, 0)
    assert verdicts(t) == {}
    t.observe(0, T0 + 1.0, None, None)
    assert verdicts(t) == {"partial": 1}
    assert t.snapshot().late_amendments_total == 1


def test_a_silently_closed_window_is_never_judged_when_it_leaves_retention() -> None:
    t = tracker(primed=False, window_retention=600.0)
    replayed(t, 0, 20)
    close(t, 0, after=600.0)
    snap = t.snapshot()
    assert verdicts(t) == {}
    assert snap.retained_windows == 10  # windows 1-10 (empty); window 0 has left
    assert snap.expected_events_total == 0


def test_events_too_far_ahead_of_the_watermark_are_dropped() -> None:
    t = tracker(max_open_windows=5)
    close(t, -1)  # watermark at T0: window 0 is the first open one
    events(t, 4, 1)
    events(t, 5, 1)
    snap = t.snapshot()
    assert snap.events_beyond_open_windows_total == 1
    assert snap.open_windows == 1


def test_retained_windows_are_bounded() -> None:
    t = tracker(max_retained_windows=3)
    for i in range(10):
        events(t, i, 1)
        manifest(t, i, 1)
    close(t, 9)
    snap = t.snapshot()
    assert snap.retained_windows == 3
    assert snap.windows_closed_total["complete"] == 10


def test_a_huge_watermark_jump_does_bounded_work() -> None:
    t = tracker(max_open_windows=10, max_retained_windows=10)
    events(t, 0, 5)
    manifest(t, 0, 5)
    close(t, 10**9)  # about 1900 years of one-minute windows
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.windows_skipped_total > 10**9 - 100
    assert snap.retained_windows == 10


def test_windows_between_events_are_judged_too() -> None:
    t = tracker()
    events(t, 0, 5)
    manifest(t, 0, 5)
    events(t, 2, 5)
    manifest(t, 2, 5)
    close(t, 2, after=120.0)
    assert t.snapshot().windows_closed_total["no_manifest"] == 1  # window 1: nothing at all


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 5)),
        min_size=1,
        max_size=12,
    )
)
def test_counters_equal_the_sum_over_windows_of_expected_and_capped_observed(
    windows: list[tuple[int, int, int]],
) -> None:
    """(expected, on time, late within retention) per window, closed one by one."""
    t = tracker(window_retention=3600.0)
    previous = t.snapshot()
    for i, (expected, on_time, _late) in enumerate(windows):
        manifest(t, i, expected)
        events(t, i, on_time)
        close(t, i)
        snap = t.snapshot()
        assert snap.expected_events_total >= previous.expected_events_total
        assert snap.observed_events_total >= previous.observed_events_total
        previous = snap
    for i, (_, _, late) in enumerate(windows):
        events(t, i, late)
    snap = t.snapshot()
    assert snap.expected_events_total == sum(e for e, _, _ in windows)
    assert snap.observed_events_total == sum(min(e, o + late) for e, o, late in windows)
    incomplete = sum(1 for e, o, _ in windows if o < e)
    assert snap.windows_closed_total["incomplete"] == incomplete
    assert snap.windows_closed_total["complete"] == len(windows) - incomplete
    assert snap.windows_recovered_total == sum(1 for e, o, late in windows if o < e <= o + late)
