"""Expected volume without manifests (static floor, learned baseline) and the config."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from monitor.completeness.config import CompletenessConfig
from monitor.completeness.tracker import CompletenessTracker

W = 60.0
T0 = 1_700_000_040.0  # a window boundary


def tracker(**config: Any) -> CompletenessTracker:
    t = CompletenessTracker(CompletenessConfig(window=W, **config))
    t.observe(0, T0 - 1.0, None, None)  # spend the partial first window (-1)
    return t


def baseline_tracker(**baseline: Any) -> CompletenessTracker:
    """Five one-minute slots per period; windows are learned a minute after closing."""
    spec = {"period": 5 * W, "periods": 3, "min_periods": 2, "ratio": 1.0, **baseline}
    return tracker(window_retention=W, expected={"baseline": spec})


def window(t: CompletenessTracker, i: int, n: int) -> None:
    """n events in window i, then the watermark to its end."""
    for j in range(n):
        t.observe(0, T0 + i * W + j % 60, None, None)
    t.advance(T0 + (i + 1) * W, 0.0)


def closed(t: CompletenessTracker) -> dict[str, int]:
    return {k: v for k, v in t.snapshot().windows_closed_total.items() if v}


# --- static minimum -----------------------------------------------------------------


def test_static_minimum_judges_each_window() -> None:
    t = tracker(expected={"min_events_per_window": 10})
    window(t, 0, 12)
    window(t, 1, 7)
    snap = t.snapshot()
    assert closed(t) == {"partial": 1, "complete": 1, "incomplete": 1}
    assert (snap.expected_events_total, snap.observed_events_total) == (20, 17)
    assert snap.last_window_ratio == 0.7


def test_a_window_with_no_events_at_all_is_incomplete() -> None:
    t = tracker(expected={"min_events_per_window": 10})
    window(t, 0, 10)
    window(t, 2, 10)  # nothing arrived in window 1
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1
    assert (snap.expected_events_total, snap.observed_events_total) == (30, 20)


def test_optional_manifest_falls_back_to_the_static_minimum_after_grace() -> None:
    t = tracker(
        manifests={"topic": "m", "require": False, "grace": 2 * W},
        expected={"min_events_per_window": 10},
    )
    window(t, 0, 5)
    assert closed(t) == {"partial": 1}  # waiting for a manifest
    t.advance(T0 + 3 * W, 0.0)
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1
    assert snap.windows_closed_total["no_manifest"] == 0
    assert snap.expected_events_total == 10


def test_a_manifest_takes_precedence_over_the_static_minimum() -> None:
    t = tracker(
        manifests={"topic": "m", "require": False},
        expected={"min_events_per_window": 10},
    )
    t.on_manifest(T0, T0 + W, 5, "a")
    window(t, 0, 5)
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.expected_events_total == 5


# --- learned baseline ---------------------------------------------------------------


def test_baseline_windows_are_not_judged_until_enough_periods_are_known() -> None:
    t = baseline_tracker()
    for i in range(10):  # two periods: slot history reaches 2 only in the third
        window(t, i, 100)
    snap = t.snapshot()
    assert closed(t) == {"partial": 1, "no_expectation": 10}
    assert snap.expected_events_total == 0


def test_baseline_expects_the_median_of_the_same_slot_in_earlier_periods() -> None:
    t = baseline_tracker(periods=3, min_periods=3, ratio=0.5)
    for period, n in enumerate((10, 30, 20)):
        for slot in range(5):
            window(t, period * 5 + slot, n + slot)
    window(t, 15, 9)  # slot 0: median(10, 30, 20) * 0.5 = 10
    window(t, 16, 10)  # slot 1: median(11, 31, 21) * 0.5 = 10
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 1
    assert snap.windows_closed_total["complete"] == 1
    assert (snap.expected_events_total, snap.observed_events_total) == (20, 19)


def test_baseline_forgets_periods_older_than_the_last_n() -> None:
    t = baseline_tracker(periods=2, min_periods=2, statistic="min")
    for period, n in enumerate((1000, 50, 60)):
        for slot in range(5):
            window(t, period * 5 + slot, n)
    window(t, 15, 50)  # min of the last two periods (50, 60), not 1000's period
    assert t.snapshot().windows_closed_total["complete"] == 6  # windows 10..15
    assert t.snapshot().windows_closed_total["incomplete"] == 0


def test_partial_windows_are_not_learned() -> None:
    t = baseline_tracker()
    for i in range(15):
        window(t, i, 100)
    # Slot of windows 4, 9, 14 also holds the partial window -1: had it been learned,
    # window 9 would have been judged.
    assert closed(t) == {"partial": 1, "no_expectation": 10, "complete": 5}


def test_static_and_learned_expectations_combine_to_the_stricter() -> None:
    t = tracker(
        window_retention=W,
        expected={
            "min_events_per_window": 80,
            "baseline": {"period": 5 * W, "periods": 1, "min_periods": 1, "ratio": 1.0},
        },
    )
    for i in range(5):
        window(t, i, 50)  # judged against 80: no history yet
    window(t, 5, 60)  # baseline 50 < 80: 80 expected
    snap = t.snapshot()
    assert snap.windows_closed_total["incomplete"] == 6
    assert snap.expected_events_total == 6 * 80


# --- configuration ------------------------------------------------------------------


def test_durations_accept_units() -> None:
    c = CompletenessConfig(
        window="1m",  # type: ignore[arg-type]
        window_retention="10m",  # type: ignore[arg-type]
        expected={"min_events_per_window": 1},  # type: ignore[arg-type]
    )
    assert (c.window, c.window_retention) == (60.0, 600.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"window": 0, "expected": {"min_events_per_window": 1}}, "window must be more than 0"),
        ({}, "at least one of sequence, manifests or expected"),
        ({"expected": {}}, "min_events_per_window, baseline, or both"),
        (
            {"window_retention": 60, "manifests": {"topic": "m", "grace": 120}},
            "manifests.grace",
        ),
        (
            {"window": 7, "expected": {"baseline": {"period": 100}}},
            "whole multiple of window",
        ),
        (
            {"expected": {"baseline": {"periods": 2, "min_periods": 3}}},
            "min_periods",
        ),
        (
            {"window_retention": 600, "expected": {"baseline": {"period": 300}}},
            "longer than window_retention",
        ),
        (
            {"window": 1, "expected": {"baseline": {"period": 86_400 * 30}}},
            "use a larger window",
        ),
        ({"expected": {"min_events_per_window": 0}}, "greater than or equal to 1"),
        ({"expected": {"min_events_per_window": 1}, "objective": 1.5}, "objective"),
        ({"expected": {"min_events_per_window": 1}, "windows": 60}, "Extra inputs"),
        ({"sequence": {"producer_field": "p"}}, "sequence_field"),
    ],
)
def test_invalid_config_says_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CompletenessConfig(**config)


# --- the snapshot -------------------------------------------------------------------


def test_snapshot_copies_the_window_counters_and_zeroes_the_parts_that_are_off() -> None:
    t = tracker(expected={"min_events_per_window": 10})
    window(t, 0, 12)
    window(t, 1, 4)
    snap = t.snapshot()
    assert (snap.expected_events_total, snap.observed_events_total) == (20, 14)
    assert snap.window_surplus_events_total == 2
    assert (snap.open_windows, snap.retained_windows) == (0, 3)  # the partial one too
    assert snap.last_window_ratio == 0.4
    # no sequence tracking configured: every sequence number is 0, none is missing
    assert (snap.sequence_missing_total, snap.producers_tracked, snap.pending_gaps) == (0, 0, 0)
