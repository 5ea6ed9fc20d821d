"""Merge the scrape snapshots of several worker processes into one.

Why: `tidemark run --workers N` runs N consumers in one group behind one
/metrics. Workers own disjoint partitions, so the merged snapshot is what one
process owning all of them would export: counters and histograms add,
partitions are concatenated, and the product watermark is recomputed from the
partitions the way `ProductClock.watermark` does. The catalogue then renders it
unchanged, so rules and dashboards see the same names and labels.

Not additive, and merged as stated: a completeness window is judged by each
worker on the partitions it owns, so with N > 1 windows come out `partial`
(the same limitation as N replicas) unless completeness_sharing is on (then one
worker reconciles and the others export zeros); `last_window_ratio` is kept only when one
worker reports it; `producers_tracked` is a sum (exact with per-partition
sequence scope, an over-count with global scope).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from monitor.export.snapshot import PartitionView, ProcessView, ProductView, Snapshot
from monitor.stats import Histogram, LoopStats, ProductStats
from monitor.watermarks import product_watermark

if TYPE_CHECKING:
    from monitor.completeness.tracker import CompletenessSnapshot


def merge_histograms(parts: Sequence[Histogram]) -> Histogram:
    """Bucket-wise sum; every part has the same bounds (one catalogue, one config)."""
    out = parts[0].copy()
    for h in parts[1:]:
        if h.bounds != out.bounds:
            raise ValueError("histograms with different buckets cannot be merged")
        out.counts = [a + b for a, b in zip(out.counts, h.counts, strict=True)]
        out.total += h.total
    return out


def _sum_fields(parts: Sequence[Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Field-wise sum of dataclasses: numbers add, Counters/dicts add, histograms add."""
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(parts[0]):
        if f.name in skip:
            continue
        values = [getattr(p, f.name) for p in parts]
        first = values[0]
        if isinstance(first, Histogram):
            merged[f.name] = merge_histograms(values)
        elif isinstance(first, Counter):
            total: Counter[Any] = Counter()
            for v in values:
                total.update(v)
            merged[f.name] = total
        elif isinstance(first, dict):
            summed: dict[Any, Any] = {}
            for v in values:
                for k, x in v.items():
                    summed[k] = summed.get(k, 0) + x
            merged[f.name] = summed
        else:
            merged[f.name] = sum(values)
    return merged


def merge_product_stats(parts: Sequence[ProductStats]) -> ProductStats:
    return ProductStats(**_sum_fields(parts))


def merge_loop_stats(parts: Sequence[LoopStats], live: int | None = None) -> LoopStats:
    """Sums, except the heartbeat: the oldest of the first `live` (default all) parts.

    The oldest, so one stalled worker shows; a retired worker's is not live.
    """
    merged = _sum_fields(parts, frozenset({"heartbeat"}))
    merged["heartbeat"] = min(p.heartbeat for p in parts[: live or len(parts)])
    return LoopStats(**merged)


def _add_counts(a: dict[str, int] | None, b: dict[str, int] | None) -> dict[str, int] | None:
    if a is None or b is None:
        return a if b is None else dict(b)
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


def merge_completeness(parts: Sequence[CompletenessSnapshot]) -> CompletenessSnapshot:
    merged = _sum_fields(parts, frozenset({"last_window_ratio", "objective"}))
    ratios = [p.last_window_ratio for p in parts if p.last_window_ratio is not None]
    merged["last_window_ratio"] = ratios[0] if len(ratios) == 1 else None
    merged["objective"] = parts[0].objective
    return type(parts[0])(**merged)


def partitions_watermark(partitions: Iterable[PartitionView]) -> tuple[bool, float | None]:
    """(hold, value) from exported partition views, as `ProductClock.watermark` does.

    A partition exported without a watermark is either settling or has no event
    yet; unless it is idle it holds the product watermark at its last value
    (hold=True). Otherwise the value combines (watermark, idle) pairs, orphans
    included.
    """
    known: list[tuple[float, bool]] = []
    for p in partitions:
        if p.watermark is None:
            if p.orphaned or p.idle:
                continue
            return True, None
        known.append((p.watermark, p.idle))
    return False, product_watermark(known)


# Completeness fields that are levels, not counts: a retired worker contributes none.
_COMPLETENESS_GAUGES: dict[str, Any] = {
    "producers_tracked": 0,
    "pending_gaps": 0,
    "open_windows": 0,
    "retained_windows": 0,
    "last_window_ratio": None,
    "reconciling": 0,
}


@dataclass(slots=True)
class SnapshotMerger:
    """Merges worker snapshots; keeps watermarks and counters monotone across restarts.

    A worker that exits takes its counters with it; summed, the daemon's
    counters would fall, and Prometheus would read the fall as a reset and
    count the survivors' totals again. So the last counts the parent saw of an
    exited worker are kept (`retire`) and added to every later merge: one
    product view and one process view, bounded by the products.
    """

    emitted: dict[str, float] = field(default_factory=dict)  # by topic; bounded by products
    retired: dict[str, ProductView] = field(default_factory=dict)  # counts only, by topic
    retired_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    retired_process: ProcessView | None = None

    def retire(self, last: Snapshot) -> None:
        """Keep the counters of an exited worker's last snapshot."""
        for view in last.products:
            counts = ProductView(
                config=view.config,
                stats=view.stats,
                watermark=None,
                partitions=[],
                writers=[],
                completeness=(
                    dataclasses.replace(view.completeness, **_COMPLETENESS_GAUGES)
                    if view.completeness is not None
                    else None
                ),
                held={},
                rules=view.rules,
            )
            before = self.retired.get(view.config.topic)
            self.retired[view.config.topic] = (
                self._product([before, counts]) if before is not None else counts
            )
        for topic, reasons in last.manifest_errors:
            into = self.retired_errors.setdefault(topic, {})
            for reason, n in reasons.items():
                into[reason] = into.get(reason, 0) + n
        before_process = self.retired_process
        self.retired_process = dataclasses.replace(
            last.process,
            loop=(
                merge_loop_stats([before_process.loop, last.process.loop])
                if before_process is not None
                else last.process.loop
            ),
            registry_lookups=_add_counts(
                before_process.registry_lookups if before_process else None,
                last.process.registry_lookups,
            ),
        )

    def merge(self, now: float, parts: Sequence[Snapshot], process: ProcessView) -> Snapshot:
        by_topic: dict[str, list[ProductView]] = {}
        for snap in parts:
            for view in snap.products:
                by_topic.setdefault(view.config.topic, []).append(view)
        products = []
        for topic, views in by_topic.items():
            retired = self.retired.get(topic)
            products.append(self._product([*views, retired] if retired is not None else views))
        retired_process = self.retired_process
        if retired_process is not None and parts:
            process = dataclasses.replace(
                process,
                loop=merge_loop_stats([process.loop, retired_process.loop], live=1),
                registry_lookups=_add_counts(
                    process.registry_lookups, retired_process.registry_lookups
                ),
            )
        errors: dict[str, dict[str, int]] = {
            topic: dict(counts) for topic, counts in self.retired_errors.items()
        }
        for snap in parts:
            for topic, counts in snap.manifest_errors:
                into = errors.setdefault(topic, {})
                for reason, n in counts.items():
                    into[reason] = into.get(reason, 0) + n
        return Snapshot(now, products, sorted(errors.items()), process)

    def _product(self, views: list[ProductView]) -> ProductView:
        first = views[0]
        topic = first.config.topic
        partitions = sorted(
            (p for v in views for p in v.partitions), key=lambda p: int(p.partition)
        )
        writers = sorted({w for v in views for w in v.writers})
        held: dict[str, int] = {}
        for v in views:
            for reason, n in v.held.items():
                held[reason] = held.get(reason, 0) + n
        done = [v.completeness for v in views if v.completeness is not None]
        return ProductView(
            config=first.config,
            stats=merge_product_stats([v.stats for v in views]),
            watermark=self._watermark(topic, partitions),
            partitions=partitions,
            writers=writers,
            completeness=merge_completeness(done) if done else None,
            held=held,
            rules=first.rules,
        )

    def _watermark(self, topic: str, partitions: list[PartitionView]) -> float | None:
        if not partitions:
            self.emitted.pop(topic, None)
            return None
        hold, current = partitions_watermark(partitions)
        last = self.emitted.get(topic)
        if hold or current is None:
            return last
        if last is None or current > last:
            self.emitted[topic] = current
            return current
        return last


def merge_process(
    parts: Sequence[ProcessView], *, expected: int, cached_scrapes: int
) -> ProcessView:
    """The monitor's own state across workers: healthy only if every worker is."""
    complete = len(parts) == expected and expected > 0
    lookups: dict[str, int] | None = None
    for p in parts:
        lookups = _add_counts(lookups, p.registry_lookups)
    ups = [p.registry_up for p in parts if p.registry_up is not None]
    return ProcessView(
        loop=merge_loop_stats([p.loop for p in parts]) if parts else LoopStats(),
        alive=complete and all(p.alive for p in parts),
        ready=complete and all(p.ready for p in parts),
        kafka_reachable=bool(parts) and all(p.kafka_reachable for p in parts),
        lag_snapshot_at=min((p.lag_snapshot_at for p in parts), default=0.0),
        cached_scrapes=cached_scrapes,
        registry_lookups=lookups,
        registry_up=all(ups) if ups else None,
    )
