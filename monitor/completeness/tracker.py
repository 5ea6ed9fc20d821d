"""Completeness SLIs of one data product: tracker and snapshot.

Why: "is all the data there?" needs an expectation. Three sources, combinable:
producer sequence numbers (exact missing events), producer manifests (exact counts
per window) and expected volume (a static floor or a learned baseline). The tracker
only counts in `observe()` (hot path); windows close and gaps are declared in
`advance()`, driven by the product watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.completeness.baseline import Baseline
from monitor.completeness.config import CompletenessConfig
from monitor.completeness.sequences import SequenceTracker
from monitor.completeness.shared import ManifestSeen, PartitionCounts, ProductTable, Reconciler
from monitor.completeness.window import REJECT_REASONS, VERDICTS
from monitor.completeness.windows import WindowTracker


@dataclass(frozen=True, slots=True)
class CompletenessSnapshot:
    """Plain numbers for the scrape-time collector; counters only increase."""

    expected_events_total: int
    observed_events_total: int  # capped per window at its expectation
    last_window_ratio: float | None  # observed / expected, uncapped (>1: surplus)
    windows_closed_total: dict[str, int]  # first verdict of each closed window
    windows_recovered_total: int
    windows_degraded_total: int
    windows_skipped_total: int
    window_surplus_events_total: int
    late_amendments_total: int
    late_events_dropped_total: int
    events_beyond_open_windows_total: int
    manifests_accepted_total: int
    manifests_duplicate_total: int
    manifests_superseded_total: int
    manifests_rejected_total: dict[str, int]
    sequence_missing_total: int
    sequence_duplicate_total: int
    sequence_out_of_order_total: int
    sequence_late_total: int
    sequence_pre_baseline_total: int
    sequence_resets_total: int
    sequence_abandoned_total: int
    sequence_overflowed_total: int
    sequence_untracked_total: int
    producers_tracked: int
    producer_evictions_total: int
    pending_gaps: int
    open_windows: int
    retained_windows: int
    objective: float
    # Completeness across replicas (0 when not shared): this instance reconciles the
    # product's windows; observations dropped by the bounded table or counts.
    shared: int = 0
    reconciling: int = 0
    observations_dropped_total: int = 0


# Snapshot field -> the WindowTracker / SequenceTracker attribute it copies; 0 while
# that part of completeness is off for the product.
_WINDOW_COUNTS = {
    "expected_events_total": "expected_total",
    "observed_events_total": "observed_total",
    "windows_recovered_total": "recovered",
    "windows_degraded_total": "degraded",
    "windows_skipped_total": "skipped",
    "window_surplus_events_total": "surplus_total",
    "late_amendments_total": "late_amendments",
    "late_events_dropped_total": "late_dropped",
    "events_beyond_open_windows_total": "beyond_open",
    "manifests_accepted_total": "manifests_accepted",
    "manifests_duplicate_total": "manifests_duplicate",
    "manifests_superseded_total": "manifests_superseded",
    "open_windows": "open_windows",
    "retained_windows": "retained_windows",
}
_SEQUENCE_COUNTS = {
    "sequence_missing_total": "missing",
    "sequence_duplicate_total": "duplicate",
    "sequence_out_of_order_total": "out_of_order",
    "sequence_late_total": "late",
    "sequence_pre_baseline_total": "pre_baseline",
    "sequence_resets_total": "resets",
    "sequence_abandoned_total": "abandoned",
    "sequence_overflowed_total": "overflowed",
    "producers_tracked": "producers_tracked",
    "producer_evictions_total": "evictions",
    "pending_gaps": "pending_gaps",
}


class CompletenessTracker:
    """All completeness state of one data product on this instance."""

    def __init__(self, config: CompletenessConfig, *, max_out_of_orderness: float = 0.0) -> None:
        self.config = config
        self._ooo = max_out_of_orderness
        seq = config.sequence
        self._seq = (
            SequenceTracker(
                max_producers=seq.max_producers,
                allowed_lateness=config.allowed_lateness,
                restart_threshold=seq.restart_threshold,
                max_pending_gaps=seq.max_pending_gaps,
                per_partition=seq.scope == "partition",
            )
            if seq is not None
            else None
        )
        self._seq_on = self._seq is not None
        self._windows = _window_tracker(config)
        self._seen: set[int] = set()  # partitions that delivered an event since assignment
        self._known: set[int] = set()  # every partition that ever delivered an event
        self._owned: set[int] | None = None  # None: the caller does not manage assignment
        self._topic_partitions: int | None = None
        self._untracked = 0
        # Shared mode (completeness across replicas): events go to per-partition counts
        # that are published; the windows are fed by this product's reconciler.
        self.shared: PartitionCounts | None = None
        self.shared_table: ProductTable | None = None
        self.reconciler: Reconciler | None = None

    @property
    def windows(self) -> WindowTracker | None:
        return self._windows

    def share(self, counts: PartitionCounts, table: ProductTable, reconciler: Reconciler) -> None:
        """Count per (window, partition) for publishing; windows are judged only while
        `reconciler` is active."""
        self.shared, self.shared_table, self.reconciler = counts, table, reconciler
        if self._windows is not None:
            self._windows.full_ownership = True

    def observe(
        self, partition: int, event_time: float, producer_id: str | None, sequence: int | None
    ) -> None:
        """One valid event (hot path: O(1) amortised, no logging)."""
        if partition not in self._seen:
            self._first_event(partition, event_time)
        windows = self._windows
        if windows is not None:
            shared = self.shared
            if shared is None:
                windows.count(event_time)
            else:
                shared.count(partition, event_time)
        seq = self._seq
        if seq is not None and self._seq_on:
            if producer_id is None or sequence is None:
                self._untracked += 1
            else:
                seq.observe(partition, producer_id, sequence, event_time)

    def observe_future(
        self, partition: int, arrival: float, producer_id: str | None, sequence: int | None
    ) -> None:
        """A valid event dated beyond max_future_skew: delivered, so its sequence number
        is received (else it would be declared missing), but no window counts it and it
        does not mark where this partition's data begins. `arrival` (wall clock) stands
        in for its event time in gap deadlines."""
        seq = self._seq
        if seq is None or not self._seq_on:
            return
        if producer_id is None or sequence is None:
            self._untracked += 1
        else:
            seq.observe(partition, producer_id, sequence, arrival)

    def advance(self, product_watermark: float | None, now: float) -> None:
        """After each batch: close windows and declare gaps the watermark has passed."""
        if product_watermark is None:
            return
        if self._windows is not None and self.shared is None:
            self._windows.advance(product_watermark)
        if self._seq is not None:
            self._seq.advance(product_watermark)

    def on_manifest(
        self,
        window_start: float,
        window_end: float,
        expected: int,
        producer_id: str | None,
        *,
        replay: bool = False,
        source: tuple[str, int, int] | None = None,
    ) -> None:
        """replay: read back after an assignment (counted by an earlier owner).
        source: (control topic, partition, offset), which names it in shared mode."""
        if self._windows is None:
            return
        shared = self.shared
        if shared is not None and source is not None:
            topic, partition, offset = source
            shared.manifests.append(
                ManifestSeen(
                    shared.product,
                    f"{topic}/{partition}",
                    offset,
                    window_start,
                    window_end,
                    max(expected, 0),
                    producer_id,
                )
            )
            return
        self._windows.on_manifest(
            window_start, window_end, max(expected, 0), producer_id, replay=replay
        )

    def on_partitions_assigned(
        self, partitions: set[int], now: float, *, topic_partitions: int | None = None
    ) -> None:
        """topic_partitions (the topic's partition count) lets windows be judged only
        while this instance owns the whole topic; without it, every partition that
        ever delivered an event must be owned."""
        self._owned = (self._owned or set()) | partitions
        if topic_partitions is not None:
            self._topic_partitions = topic_partitions
        self._moved(partitions)

    def on_partitions_revoked(self, partitions: set[int]) -> None:
        self._owned = (self._owned or set()) - partitions
        self._moved(partitions)

    def snapshot(self) -> CompletenessSnapshot:
        w, s = self._windows, self._seq
        counts: dict[str, Any] = {f: getattr(w, a) if w else 0 for f, a in _WINDOW_COUNTS.items()}
        counts |= {f: getattr(s, a) if s else 0 for f, a in _SEQUENCE_COUNTS.items()}
        return CompletenessSnapshot(
            last_window_ratio=w.last_ratio if w else None,
            windows_closed_total=dict(w.closed_total) if w else dict.fromkeys(VERDICTS, 0),
            manifests_rejected_total=(
                dict(w.manifests_rejected) if w else dict.fromkeys(REJECT_REASONS, 0)
            ),
            sequence_untracked_total=self._untracked,
            objective=self.config.objective,
            shared=int(self.shared is not None),
            reconciling=int(self.reconciler is not None and self.reconciler.active),
            observations_dropped_total=(
                self.shared.dropped + self.shared_table.dropped
                if self.shared is not None and self.shared_table is not None
                else 0
            ),
            **counts,
        )

    # --- internals -----------------------------------------------------------------

    def _first_event(self, partition: int, event_time: float) -> None:
        """The previous owner may have counted events of windows up to here."""
        self._seen.add(partition)
        if self._owned is not None:
            self._owned.add(partition)  # its events prove we own it
        self._known.add(partition)
        self._update_ownership()
        if self._windows is not None and self.shared is None:
            self._windows.raise_partial_boundary(event_time + self._ooo)

    def _moved(self, partitions: set[int]) -> None:
        self._seen -= partitions
        if self._windows is not None and self.shared is None:
            self._windows.mark_open_partial()
        if self._seq is not None:
            per_partition = self.config.sequence is not None and (
                self.config.sequence.scope == "partition"
            )
            self._seq.reset_partitions(partitions if per_partition else None)
        self._update_ownership()

    def _update_ownership(self) -> None:
        owned = self._owned
        full = owned is None or (
            owned >= self._known
            and (self._topic_partitions is None or len(owned) >= self._topic_partitions)
        )
        if self._windows is not None:
            self._windows.full_ownership = full or self.shared is not None
        seq = self.config.sequence
        if self._seq is not None and seq is not None and seq.scope == "topic":
            if self._seq_on and not full:
                self._seq.reset_partitions(None)  # a topic-wide counter needs every partition
            self._seq_on = full


def _window_tracker(config: CompletenessConfig) -> WindowTracker | None:
    """Windows only exist when something says how many events a window should hold."""
    manifests, expected = config.manifests, config.expected
    if manifests is None and expected is None:
        return None
    baseline = expected.baseline if expected is not None else None
    return WindowTracker(
        window=config.window,
        retention=config.window_retention,
        max_open=config.max_open_windows,
        max_retained=config.max_retained_windows,
        manifests=manifests is not None,
        require_manifest=manifests is not None and manifests.require,
        manifest_grace=manifests.grace if manifests is not None else 0.0,
        manifest_producers=manifests.producers if manifests is not None else None,
        min_events=expected.min_events_per_window if expected is not None else None,
        baseline=(
            Baseline(
                slots=round(baseline.period / config.window),
                periods=baseline.periods,
                min_periods=baseline.min_periods,
                statistic=baseline.statistic,
                ratio=baseline.ratio,
            )
            if baseline is not None
            else None
        ),
    )
