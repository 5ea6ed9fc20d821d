"""Plain in-memory counters the pipeline bumps per event and the collector reads.

prometheus-client metric children take a lock on every increment; at tens of
thousands of events per second that is a measurable cost. Here the loop bumps
plain integers and the scrape-time collector copies them under one lock per
batch, which also gives every scrape a consistent view.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Seconds; the product's freshness threshold is always added as a bucket edge so
# "events within the threshold" can also be read off the histogram.
# fmt: off
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)
LATENESS_BUCKETS: tuple[float, ...] = (
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)
BATCH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# fmt: on


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-read histogram: observe() is one bisect and two adds."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.bounds = tuple(sorted(set(self.bounds)))
        self.counts = [0] * (len(self.bounds) + 1)

    @classmethod
    def with_edge(cls, bounds: tuple[float, ...], edge: float) -> Histogram:
        return cls((*bounds, edge))

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs in exposition order, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_fmt(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out

    def copy(self) -> Histogram:
        """Without __post_init__: the bounds are sorted already, and a scrape copies
        two histograms per product under the pipeline lock (2,000 at 1,000 topics)."""
        clone = Histogram.__new__(Histogram)
        clone.bounds = self.bounds
        clone.counts = list(self.counts)
        clone.total = self.total
        return clone


def _counter(counts: Counter[str]) -> Counter[str]:
    """A copy without Counter's constructor (its Mapping check): a scrape copies four
    per product under the pipeline lock, 4,000 at 1,000 topics (~18 ms -> ~3 ms)."""
    clone: Counter[str] = Counter.__new__(Counter)
    dict.update(clone, counts)
    return clone


def _fmt(bound: float) -> str:
    return str(float(bound))


@dataclass(slots=True)
class ProductStats:
    """Everything counted for one data product since start."""

    events: int = 0
    conforming: int = 0
    fresh: int = 0
    late: int = 0
    future: int = 0
    processing_errors: int = 0  # raised inside Tidemark; skipped and committed
    # Correctness: conforming events whose rules were evaluated (all, or a sample),
    # those that passed every rule, and per-rule violations and evaluation errors.
    rule_checked: int = 0
    correct: int = 0
    rule_violations: Counter[str] = field(default_factory=Counter)
    rule_errors: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    lateness: Histogram = field(default_factory=lambda: Histogram(LATENESS_BUCKETS))

    def copy(self) -> ProductStats:
        return ProductStats(
            events=self.events,
            conforming=self.conforming,
            fresh=self.fresh,
            late=self.late,
            future=self.future,
            processing_errors=self.processing_errors,
            rule_checked=self.rule_checked,
            correct=self.correct,
            rule_violations=_counter(self.rule_violations),
            rule_errors=_counter(self.rule_errors),
            violations=_counter(self.violations),
            drift=_counter(self.drift),
            latency=self.latency.copy(),
            lateness=self.lateness.copy(),
        )


@dataclass(slots=True)
class LoopStats:
    """The monitor's own health: heartbeat, errors, batch timings."""

    heartbeat: float = 0.0
    kafka_errors: Counter[str] = field(default_factory=Counter)
    commits: Counter[str] = field(default_factory=Counter)
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_SECONDS_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))

    def copy(self) -> LoopStats:
        return LoopStats(
            heartbeat=self.heartbeat,
            kafka_errors=Counter(self.kafka_errors),
            commits=Counter(self.commits),
            batch_seconds=self.batch_seconds.copy(),
            batch_size=self.batch_size.copy(),
        )
