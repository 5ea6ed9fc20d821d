"""Completeness configuration: sequences, manifests and expected volume.

Why apart from the tracker: the daemon's config loads and validates these at
start-up; the tracker only reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.completeness.baseline import Statistic
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


class SharingConfig(_Model):
    """Completeness across replicas: observations on a compacted topic, one reconciler.

    Top-level section `completeness_sharing:`; see the README section "Completeness
    across replicas". Off by default so a single instance needs no extra topic; the
    shipped Kubernetes Deployment (several replicas) turns it on.
    """

    enabled: bool = False
    topic: str = Field(default="__tidemark-completeness", min_length=1)
    partitions: int = Field(default=1, ge=1, le=1000)  # when Tidemark creates the topic
    replication_factor: int = Field(default=-1, ge=-1, le=100)  # -1: the broker's default
    # Compaction keeps one record per key, but every window adds keys: records older
    # than this are deleted too (cleanup.policy compact,delete), so the topic stays the
    # size of the windows still amendable. Keep it above window_retention and grace.
    retention: Seconds = Field(default=7 * 86_400.0, ge=3600)
    # Observations kept per product (windows x partitions + manifests + verdicts).
    max_entries: int = Field(default=1_000_000, ge=100, le=100_000_000)
    # How long an assignment waits to read the topic to its end before counting.
    catch_up_timeout: Seconds = Field(default=15.0, gt=0, le=300)
    # How long a commit waits for its observations to be acknowledged (else no commit);
    # while the broker is away the loop turns at most this often (keep < liveness_limit).
    publish_timeout: Seconds = Field(default=5.0, gt=0, le=30)
