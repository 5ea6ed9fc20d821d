"""The sorted gap containers answer exactly as the plain-list tracker they replaced.

_sequences_reference.py is the tracker as it was (gaps in a list, inserts and deletes
moving every later entry); the same random history through both must give the same
counters after every step, with gaps in lists and with gaps in sorted containers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.completeness import sequences
from monitor.completeness.sequences import SequenceTracker

_spec = importlib.util.spec_from_file_location(
    "sequences_reference", Path(__file__).with_name("_sequences_reference.py")
)
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
sys.modules["sequences_reference"] = reference  # dataclasses look their module up
_spec.loader.exec_module(reference)

COUNTERS = (
    "missing",
    "duplicate",
    "out_of_order",
    "late",
    "pre_baseline",
    "resets",
    "abandoned",
    "overflowed",
    "evictions",
    "producers_tracked",
    "pending_gaps",
)

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("observe"),
            st.integers(0, 1),  # partition
            st.sampled_from(["a", "b", "c"]),  # producer
            st.one_of(st.integers(0, 12), st.integers(0, 60)),  # sequence; repeats likely
            st.floats(0.0, 100.0, allow_nan=False),  # event time
        ),
        st.tuples(st.just("advance"), st.floats(0.0, 150.0, allow_nan=False)),
        st.tuples(st.just("reset"), st.sampled_from([None, 0, 1])),
    ),
    max_size=120,
)


def trackers(per_partition: bool) -> tuple[Any, SequenceTracker]:
    kwargs: dict[str, Any] = {
        "max_producers": 2,
        "allowed_lateness": 10.0,
        "restart_threshold": 40,
        "max_pending_gaps": 12,
        "per_partition": per_partition,
    }
    return reference.SequenceTracker(**kwargs), SequenceTracker(**kwargs)


def state(tracker: Any) -> tuple[int, ...]:
    return tuple(getattr(tracker, name) for name in COUNTERS)


@pytest.mark.parametrize("small", [16384, 2])
@pytest.mark.parametrize("per_partition", [True, False])
@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_same_answers_as_the_list_tracker(
    small: int, per_partition: bool, ops: list[tuple[Any, ...]]
) -> None:
    kept = sequences._SMALL
    sequences._SMALL = small
    try:
        old, new = trackers(per_partition)
        for op in ops:
            for tracker in (old, new):
                if op[0] == "observe":
                    tracker.observe(op[1], op[2], op[3], op[4])
                elif op[0] == "advance":
                    tracker.advance(op[1])
                else:
                    tracker.reset_partitions(None if op[1] is None else [op[1]])
            assert state(new) == state(old), op
    finally:
        sequences._SMALL = kept


def test_many_open_gaps_move_to_a_sorted_container() -> None:
    tracker = SequenceTracker(
        max_producers=1,
        allowed_lateness=1e9,
        restart_threshold=10**9,
        max_pending_gaps=10**6,
        per_partition=True,
    )
    for seq in range(0, 2 * (sequences._SMALL + 10), 2):  # every other number missing
        tracker.observe(0, "p", seq, 0.0)
    producer = tracker._producers[(0, "p")]
    assert not isinstance(producer.gaps, list)
    tracker.observe(0, "p", 7, 0.0)  # fills one of them
    assert tracker.out_of_order == 1
    assert tracker.pending_gaps == sequences._SMALL + 8


@pytest.mark.parametrize("small", [16384, 0])
def test_a_repeat_of_a_number_that_shrank_a_gap_is_a_duplicate(small: int) -> None:
    """A gap filled from below keeps its sort key: the numbers under it were received."""
    kept = sequences._SMALL
    sequences._SMALL = small
    try:
        tracker = SequenceTracker(
            max_producers=1,
            allowed_lateness=1e9,
            restart_threshold=10**9,
            max_pending_gaps=100,
            per_partition=True,
        )
        for seq in (0, 10, 5, 20, 1, 1, 2):  # gaps 1..9 and 11..19; 1 shrinks the first
            tracker.observe(0, "p", seq, 0.0)
    finally:
        sequences._SMALL = kept
    assert tracker.duplicate == 1
    assert tracker.out_of_order == 3
