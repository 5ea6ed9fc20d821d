"""The scrape-time collector: every Tidemark metric is rendered here.

Values that must be current when Prometheus asks (freshness = now − watermark,
idleness, lag) are computed at scrape time from in-memory state; nothing here
calls Kafka, so a scrape never waits on a broker. Names, types, labels and help
come from monitor.catalogue.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from monitor import __version__
from monitor.completeness.window import REJECT_REASONS, VERDICTS
from monitor.contract.decoding import Reason
from monitor.export.catalogue import BY_NAME
from monitor.pipeline import MANIFEST_ERRORS, Pipeline, ProductPipeline
from monitor.runtime.health import HealthState
from monitor.stats import Histogram, LoopStats, ProductStats


def _family(name: str, labels: tuple[str, ...] | None = None) -> Any:
    spec = BY_NAME[name]
    names = list(spec.labels if labels is None else labels)
    if spec.type == "counter":
        return CounterMetricFamily(name, spec.help, labels=names)
    if spec.type == "histogram":
        return HistogramMetricFamily(name, spec.help, labels=names)
    return GaugeMetricFamily(name, spec.help, labels=names)


@dataclass(slots=True)
class _PartitionView:
    partition: str
    watermark: float | None
    max_event_time: float | None
    idle: bool
    stuck: bool
    last_event_age: float | None
    lag: int | None
    high_watermark: int | None


@dataclass(slots=True)
class _ProductView:
    product: ProductPipeline
    stats: ProductStats
    watermark: float | None
    partitions: list[_PartitionView]
    writers: list[tuple[str, str]]
    completeness: Any


@dataclass(slots=True)
class _Snapshot:
    """Everything a scrape renders, copied under the pipeline lock."""

    products: list[_ProductView]
    manifest_errors: list[tuple[str, dict[str, int]]]  # (control topic, reason counts)
    loop: LoopStats


class TidemarkCollector(Collector):
    """Reads the pipeline under its lock, then renders outside it."""

    def __init__(
        self,
        pipeline: Pipeline,
        health: HealthState,
        clock: Callable[[], float] = time.time,
        registry_lookups: Callable[[], dict[str, int]] | None = None,
        lock_timeout: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.health = health
        self.clock = clock
        self.registry_lookups = registry_lookups
        self.lock_timeout = lock_timeout
        self.cached_scrapes = 0
        self._last: _Snapshot | None = None

    def _snapshot(self, now: float) -> _Snapshot:
        """Copy the state under the pipeline lock, waiting at most lock_timeout.

        The loop holds the lock for one batch; a batch can be slow when a schema
        registry hangs. Rather than make Prometheus wait, a scrape then serves
        the previous copy (freshness is still computed against the current
        clock) and counts it.
        """
        if self.pipeline.lock.acquire(timeout=self.lock_timeout):
            try:
                self._last = self._copy(now)
            finally:
                self.pipeline.lock.release()
        elif self._last is None:
            with self.pipeline.lock:
                self._last = self._copy(now)
        else:
            self.cached_scrapes += 1
        return self._last

    def _copy(self, now: float) -> _Snapshot:
        views = []
        manifest_errors = [
            (topic, dict(control.errors)) for topic, control in self.pipeline.manifests.items()
        ]
        for topic, product in self.pipeline.products.items():
            hws = self.pipeline.high_watermarks.get(topic, {})
            parts = []
            for p, c in sorted(product.clock.partitions.items()):
                hw = hws.get(p)
                parts.append(
                    _PartitionView(
                        partition=str(p),
                        # A partly read-back watermark is not exported: the
                        # cross-instance rules would read it as staleness.
                        watermark=(
                            c.watermark if c.has_watermark and not c.is_settling(hw) else None
                        ),
                        max_event_time=c.max_event_time if c.has_watermark else None,
                        idle=c.is_idle(now, hw),
                        stuck=c.is_stuck(now, hw),
                        last_event_age=(now - c.last_event_at) if c.last_event_at > 0 else None,
                        lag=c.lag(hw),
                        high_watermark=hw,
                    )
                )
            writers = [(w.key, str(w.verdict)) for w in product.decoder.writers.values()]
            views.append(
                _ProductView(
                    product=product,
                    stats=product.stats.copy(),
                    watermark=product.clock.watermark(now, hws),
                    partitions=parts,
                    writers=writers,
                    completeness=(
                        product.completeness.snapshot() if product.completeness else None
                    ),
                )
            )
        return _Snapshot(views, manifest_errors, self.health.loop.copy())

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        snapshot = self._snapshot(now)
        yield from self._product_families(snapshot.products, now)
        yield from self._partition_families(snapshot.products)
        yield from self._completeness_families(snapshot.products, snapshot.manifest_errors)
        yield from self._self_families(snapshot.loop, now)

    def _product_families(self, views: list[_ProductView], now: float) -> Iterator[Metric]:
        events = _family("tidemark_events")
        conforming = _family("tidemark_events_conforming")
        fresh = _family("tidemark_events_fresh")
        late = _family("tidemark_late_events")
        future = _family("tidemark_future_events")
        violations = _family("tidemark_contract_violations")
        drift = _family("tidemark_schema_drift_events")
        writers = _family("tidemark_writer_schema_info")
        latency = _family("tidemark_event_latency_seconds")
        lateness = _family("tidemark_event_lateness_seconds")
        watermark = _family("tidemark_watermark_timestamp_seconds")
        freshness = _family("tidemark_freshness_seconds")
        info = _family("tidemark_data_product_info")
        objective = _family("tidemark_slo_objective_ratio")
        threshold = _family("tidemark_slo_threshold_seconds")
        for v in views:
            cfg, s = v.product.config, v.stats
            pl = [cfg.name, cfg.topic]
            events.add_metric(pl, s.events)
            conforming.add_metric(pl, s.conforming)
            fresh.add_metric(pl, s.fresh)
            late.add_metric(pl, s.late)
            future.add_metric(pl, s.future)
            # Every reason and verdict is exported from the start at 0, so rate()
            # and increase() see the first bad event instead of a new series.
            for reason in Reason:
                violations.add_metric([*pl, reason.value], s.violations.get(reason, 0))
            for verdict in ("compatible", "incompatible"):
                drift.add_metric([*pl, verdict], s.drift.get(verdict, 0))
            for key, verdict in v.writers:
                writers.add_metric([*pl, key, verdict], 1)
            _add_histogram(latency, pl, s.latency)
            _add_histogram(lateness, pl, s.lateness)
            if v.watermark is not None:
                watermark.add_metric(pl, v.watermark)
                freshness.add_metric(pl, max(0.0, now - v.watermark))
            info.add_metric([*pl, cfg.owner, cfg.tier], 1)
            objective.add_metric([cfg.name, "freshness"], cfg.freshness.target)
            objective.add_metric([cfg.name, "conformance"], cfg.conformance.target)
            if cfg.completeness is not None:
                objective.add_metric([cfg.name, "completeness"], cfg.completeness.objective)
            threshold.add_metric([cfg.name, "freshness"], cfg.freshness.threshold)
        yield from (events, conforming, fresh, late, future, violations, drift, writers)
        yield from (latency, lateness, watermark, freshness, info, objective, threshold)

    def _partition_families(self, views: list[_ProductView]) -> Iterator[Metric]:
        wm = _family("tidemark_partition_watermark_timestamp_seconds")
        max_et = _family("tidemark_partition_max_event_timestamp_seconds")
        idle = _family("tidemark_partition_idle")
        stuck = _family("tidemark_partition_stuck")
        age = _family("tidemark_partition_last_event_age_seconds")
        lag = _family("tidemark_consumer_lag_messages")
        hwm = _family("tidemark_partition_high_watermark_offset")
        assigned = _family("tidemark_assigned_partitions")
        for v in views:
            cfg = v.product.config
            assigned.add_metric([cfg.name, cfg.topic], len(v.partitions))
            for p in v.partitions:
                labels = [cfg.name, cfg.topic, p.partition]
                if p.watermark is not None and p.max_event_time is not None:
                    wm.add_metric(labels, p.watermark)
                    max_et.add_metric(labels, p.max_event_time)
                idle.add_metric(labels, 1 if p.idle else 0)
                stuck.add_metric(labels, 1 if p.stuck else 0)
                if p.last_event_age is not None:
                    age.add_metric(labels, p.last_event_age)
                if p.lag is not None:
                    lag.add_metric(labels, p.lag)
                if p.high_watermark is not None:
                    hwm.add_metric(labels, p.high_watermark)
        yield from (wm, max_et, idle, stuck, age, lag, hwm, assigned)

    def _completeness_families(
        self, views: list[_ProductView], manifest_errors: list[tuple[str, dict[str, int]]]
    ) -> Iterator[Metric]:
        expected = _family("tidemark_completeness_expected_events")
        observed = _family("tidemark_completeness_observed_events")
        ratio = _family("tidemark_window_completeness_ratio")
        closed = _family("tidemark_windows_closed")
        missing = _family("tidemark_sequence_missing_events")
        duplicate = _family("tidemark_sequence_duplicate_events")
        out_of_order = _family("tidemark_sequence_out_of_order_events")
        tracked = _family("tidemark_producers_tracked")
        evictions = _family("tidemark_producer_evictions")
        recovered = _family("tidemark_windows_recovered")
        amended = _family("tidemark_window_amended_events")
        manifests = _family("tidemark_manifests")
        seq_late = _family("tidemark_sequence_late_events")
        resets = _family("tidemark_sequence_resets")
        for v in views:
            c = v.completeness
            if c is None:
                continue
            pl = [v.product.config.name, v.product.config.topic]
            expected.add_metric(pl, c.expected_events_total)
            observed.add_metric(pl, c.observed_events_total)
            if c.last_window_ratio is not None:
                ratio.add_metric(pl, c.last_window_ratio)
            for verdict in VERDICTS:
                closed.add_metric([*pl, verdict], c.windows_closed_total.get(verdict, 0))
            recovered.add_metric(pl, c.windows_recovered_total)
            amended.add_metric(pl, c.late_amendments_total)
            if v.product.config.completeness and v.product.config.completeness.manifests:
                manifests.add_metric([*pl, "accepted"], c.manifests_accepted_total)
                manifests.add_metric([*pl, "duplicate"], c.manifests_duplicate_total)
                for reason in REJECT_REASONS:
                    manifests.add_metric([*pl, reason], c.manifests_rejected_total.get(reason, 0))
            seq_late.add_metric(pl, c.sequence_late_total)
            resets.add_metric(pl, c.sequence_resets_total)
            missing.add_metric(pl, c.sequence_missing_total)
            duplicate.add_metric(pl, c.sequence_duplicate_total)
            out_of_order.add_metric(pl, c.sequence_out_of_order_total)
            tracked.add_metric(pl, c.producers_tracked)
            evictions.add_metric(pl, c.producer_evictions_total)
        yield from (expected, observed, ratio, closed, missing, duplicate, out_of_order)
        yield from (tracked, evictions, recovered, amended, manifests, seq_late, resets)
        errors = _family("tidemark_manifest_errors")
        for topic, control in manifest_errors:
            for reason in MANIFEST_ERRORS:
                errors.add_metric([topic, reason], control.get(reason, 0))
        yield errors

    def _self_families(self, loop: LoopStats, now: float) -> Iterator[Metric]:
        h = self.health
        build = _family("tidemark_build_info")
        build.add_metric(
            [__version__, platform.python_version(), confluent_kafka.libversion()[0]], 1
        )
        up = _family("tidemark_up")
        up.add_metric([], 1 if h.alive(now) else 0)
        ready = _family("tidemark_ready")
        ready.add_metric([], 1 if h.ready(now) else 0)
        heartbeat = _family("tidemark_poll_loop_heartbeat_timestamp_seconds")
        heartbeat.add_metric([], loop.heartbeat)
        errors = _family("tidemark_kafka_errors")
        for code, n in sorted(loop.kafka_errors.items()):
            errors.add_metric([code], n)
        commits = _family("tidemark_commits")
        for result in ("ok", "error"):
            commits.add_metric([result], loop.commits.get(result, 0))
        batch_seconds = _family("tidemark_batch_processing_seconds")
        _add_histogram(batch_seconds, [], loop.batch_seconds)
        batch_size = _family("tidemark_batch_size_messages")
        _add_histogram(batch_size, [], loop.batch_size)
        lag_at = _family("tidemark_lag_snapshot_timestamp_seconds")
        if h.lag_snapshot_at > 0:
            lag_at.add_metric([], h.lag_snapshot_at)
        cached = _family("tidemark_cached_scrapes")
        cached.add_metric([], self.cached_scrapes)
        yield from (build, up, ready, heartbeat, errors, commits, batch_seconds, batch_size, lag_at)
        yield cached
        if self.registry_lookups is not None:
            lookups = _family("tidemark_schema_registry_lookups")
            for result, n in sorted(self.registry_lookups().items()):
                lookups.add_metric([result], n)
            yield lookups


def _add_histogram(family: Any, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, hist.cumulative(), hist.total)


def build_registry(collector: TidemarkCollector) -> CollectorRegistry:
    """A registry of our own: Tidemark's metrics plus the process collector."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
