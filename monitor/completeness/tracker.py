"""Completeness SLIs of one data product: configuration, tracker and snapshot.

Why: "is all the data there?" needs an expectation. Three sources, combinable:
producer sequence numbers (exact missing events), producer manifests (exact counts
per window) and expected volume (a static floor or a learned baseline). The tracker
only counts in `observe()` (hot path); windows close and gaps are declared in
`advance()`, driven by the product watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.completeness.sequences import SequenceTracker
from monitor.completeness.windows import (
    REJECT_REASONS,
    VERDICTS,
    Baseline,
    Statistic,
    WindowTracker,
)
from monitor.durations import Seconds

_MAX_BASELINE_SLOTS = 1_000_000  # period / window: bounds the baseline's memory


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SequenceConfig(_Model):
    """Producer-id and sequence fields (dotted paths in the contract)."""

    producer_field: str = Field(min_length=1)
    sequence_field: str = Field(min_length=1)
    max_producers: int = Field(default=10_000, ge=1, le=10_000_000)
    # "partition": numbers rise per (producer, partition); "topic": one counter per
    # producer across the topic (then this instance must own every partition).
    scope: Literal["partition", "topic"] = "partition"
    # A number this far below the highest seen is a producer restart, not a duplicate.
    restart_threshold: int = Field(default=10_000, ge=1)
    max_pending_gaps: int = Field(default=100_000, ge=1)


class ManifestConfig(_Model):
    """Producer manifests on a control topic (schema: monitor/completeness/manifest.avsc)."""

    topic: str = Field(min_length=1)
    require: bool = True  # a window without a manifest is a verdict of its own
    grace: Seconds = 120.0  # watermark time after window end during which manifests count
    producers: int | None = Field(default=None, ge=1)  # manifests that make a window final


class BaselineConfig(_Model):
    """Expect the same window slot to hold about what it held in earlier periods."""

    periods: int = Field(default=7, ge=1, le=1000)
    period: Seconds = 86_400.0
    statistic: Statistic = "median"
    min_periods: int = Field(default=3, ge=1)
    ratio: float = Field(default=0.5, gt=0.0, le=1.0)  # fraction of the statistic expected

    @model_validator(mode="after")
    def _min_periods_fit(self) -> BaselineConfig:
        if self.min_periods > self.periods:
            raise ValueError(
                f"min_periods ({self.min_periods}) cannot exceed periods ({self.periods}): "
                "a window would never be judged"
            )
        return self


class ExpectedConfig(_Model):
    """Expected volume per window when there are no manifests (or none arrived)."""

    min_events_per_window: int | None = Field(default=None, ge=1)
    baseline: BaselineConfig | None = None

    @model_validator(mode="after")
    def _something_expected(self) -> ExpectedConfig:
        if self.min_events_per_window is None and self.baseline is None:
            raise ValueError("expected needs min_events_per_window, baseline, or both")
        return self


class CompletenessConfig(_Model):
    """Per data product; see the README section on completeness for each mode."""

    window: Seconds = 60.0
    window_retention: Seconds = 600.0
    allowed_lateness: Seconds = 60.0
    max_open_windows: int = Field(default=100, ge=1, le=100_000)
    max_retained_windows: int = Field(default=1000, ge=1, le=1_000_000)
    sequence: SequenceConfig | None = None
    manifests: ManifestConfig | None = None
    expected: ExpectedConfig | None = None
    objective: float = Field(default=0.999, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> CompletenessConfig:
        if self.window <= 0:
            raise ValueError("window must be more than 0 seconds, e.g. window: 1m")
        if self.sequence is None and self.manifests is None and self.expected is None:
            raise ValueError(
                "completeness needs at least one of sequence, manifests or expected; "
                "remove the completeness section to turn it off"
            )
        if self.manifests is not None and self.manifests.grace > self.window_retention:
            raise ValueError(
                f"manifests.grace ({self.manifests.grace:g}s) must not exceed "
                f"window_retention ({self.window_retention:g}s): a window is forgotten "
                "before its manifest may arrive; raise window_retention or lower the grace"
            )
        baseline = self.expected.baseline if self.expected is not None else None
        if baseline is not None:
            slots = baseline.period / self.window
            if abs(slots - round(slots)) > 1e-9 or round(slots) < 1:
                raise ValueError(
                    f"expected.baseline.period ({baseline.period:g}s) must be a whole "
                    f"multiple of window ({self.window:g}s)"
                )
            if round(slots) > _MAX_BASELINE_SLOTS:
                raise ValueError(
                    f"expected.baseline.period / window is {round(slots)} slots; at most "
                    f"{_MAX_BASELINE_SLOTS} are kept in memory: use a larger window"
                )
            if baseline.period <= self.window_retention:
                raise ValueError(
                    "expected.baseline.period must be longer than window_retention: a "
                    "window is learned when it leaves retention"
                )
        return self


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

    def observe(
        self, partition: int, event_time: float, producer_id: str | None, sequence: int | None
    ) -> None:
        """One valid event (hot path: O(1) amortised, no logging)."""
        if partition not in self._seen:
            self._first_event(partition, event_time)
        windows = self._windows
        if windows is not None:
            windows.count(event_time)
        seq = self._seq
        if seq is not None and self._seq_on:
            if producer_id is None or sequence is None:
                self._untracked += 1
            else:
                seq.observe(partition, producer_id, sequence, event_time)

    def advance(self, product_watermark: float | None, now: float) -> None:
        """After each batch: close windows and declare gaps the watermark has passed."""
        if product_watermark is None:
            return
        if self._windows is not None:
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
    ) -> None:
        """replay: read back after an assignment (counted by an earlier owner)."""
        if self._windows is None:
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
        closed = dict(w.closed_total) if w else dict.fromkeys(VERDICTS, 0)
        rejected = dict(w.manifests_rejected) if w else dict.fromkeys(REJECT_REASONS, 0)
        return CompletenessSnapshot(
            expected_events_total=w.expected_total if w else 0,
            observed_events_total=w.observed_total if w else 0,
            last_window_ratio=w.last_ratio if w else None,
            windows_closed_total=closed,
            windows_recovered_total=w.recovered if w else 0,
            windows_degraded_total=w.degraded if w else 0,
            windows_skipped_total=w.skipped if w else 0,
            window_surplus_events_total=w.surplus_total if w else 0,
            late_amendments_total=w.late_amendments if w else 0,
            late_events_dropped_total=w.late_dropped if w else 0,
            events_beyond_open_windows_total=w.beyond_open if w else 0,
            manifests_accepted_total=w.manifests_accepted if w else 0,
            manifests_duplicate_total=w.manifests_duplicate if w else 0,
            manifests_rejected_total=rejected,
            sequence_missing_total=s.missing if s else 0,
            sequence_duplicate_total=s.duplicate if s else 0,
            sequence_out_of_order_total=s.out_of_order if s else 0,
            sequence_late_total=s.late if s else 0,
            sequence_pre_baseline_total=s.pre_baseline if s else 0,
            sequence_resets_total=s.resets if s else 0,
            sequence_abandoned_total=s.abandoned if s else 0,
            sequence_overflowed_total=s.overflowed if s else 0,
            sequence_untracked_total=self._untracked,
            producers_tracked=s.producers_tracked if s else 0,
            producer_evictions_total=s.evictions if s else 0,
            pending_gaps=s.pending_gaps if s else 0,
            open_windows=w.open_windows if w else 0,
            retained_windows=w.retained_windows if w else 0,
            objective=self.config.objective,
        )

    # --- internals -----------------------------------------------------------------

    def _first_event(self, partition: int, event_time: float) -> None:
        """The previous owner may have counted events of windows up to here."""
        self._seen.add(partition)
        if self._owned is not None:
            self._owned.add(partition)  # its events prove we own it
        self._known.add(partition)
        self._update_ownership()
        if self._windows is not None:
            self._windows.raise_partial_boundary(event_time + self._ooo)

    def _moved(self, partitions: set[int]) -> None:
        self._seen -= partitions
        if self._windows is not None:
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
            self._windows.full_ownership = full
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
