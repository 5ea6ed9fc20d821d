"""The scrape-time collector: every Tidemark metric is rendered here.

Values that must be current when Prometheus asks (freshness = now − watermark,
idleness, lag) are computed at scrape time from in-memory state; nothing here
calls Kafka, so a scrape never waits on a broker. Which families exist, their
labels and where their values come from is the catalogue's business: this
module copies the state and renders the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from monitor.export.catalogue import METRICS, MetricSpec
from monitor.export.exposition import SnapshotCollector, TidemarkRegistry
from monitor.export.snapshot import PartitionView, ProcessView, ProductView, Snapshot
from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState
from monitor.stats import Histogram


def _family(spec: MetricSpec) -> Any:
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    if spec.type == "histogram":
        return HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))


class TidemarkCollector(SnapshotCollector):
    """Reads the pipeline under its lock, then renders outside it."""

    def __init__(
        self,
        pipeline: Pipeline,
        health: HealthState,
        clock: Callable[[], float] = time.time,
        registry_lookups: Callable[[], dict[str, int]] | None = None,
        lock_timeout: float = 1.0,
        registry_up: Callable[[], bool | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.health = health
        self.clock = clock
        self.registry_lookups = registry_lookups
        self.registry_up = registry_up
        self.lock_timeout = lock_timeout
        self.cached_scrapes = 0
        self._last: Snapshot | None = None

    def _snapshot(self, now: float) -> Snapshot:
        """Copy the state under the pipeline lock, waiting at most lock_timeout.

        The loop holds the lock for one batch; a batch can be slow on a starved
        CPU (schema look-ups no longer run under it). Rather than make Prometheus
        wait, a scrape then serves
        the previous copy and counts it. Freshness and the monitor's own health
        are still computed against the current clock.
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
        h = self.health
        process = ProcessView(
            loop=self._last.process.loop,
            alive=h.alive(now),
            ready=h.ready(now),
            kafka_reachable=h.kafka.reachable,
            lag_snapshot_at=h.lag_snapshot_at,
            cached_scrapes=self.cached_scrapes,
            registry_lookups=self.registry_lookups() if self.registry_lookups else None,
            registry_up=self.registry_up() if self.registry_up else None,
            discovered_products=self._last.process.discovered_products,
            discovery_left_out=self._last.process.discovery_left_out,
        )
        return replace(self._last, now=now, process=process)

    def _copy(self, now: float) -> Snapshot:
        views = []
        manifest_errors = [
            (topic, dict(control.errors)) for topic, control in self.pipeline.manifests.items()
        ]
        held: dict[str, dict[str, int]] = {}
        for (topic, reason), count in self.health.held.items():
            held.setdefault(topic, {})[reason] = count
        for topic, product in self.pipeline.products.items():
            hws = self.pipeline.high_watermarks.get(topic, {})
            parts = []
            for p, c in sorted(product.clock.partitions.items()):
                hw = hws.get(p)
                parts.append(
                    PartitionView(
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
            for p, o in product.clock.orphans.items():
                parts.append(
                    PartitionView(
                        partition=str(p),
                        watermark=o.watermark,
                        max_event_time=o.max_event_time,
                        idle=o.idle,
                        stuck=False,
                        last_event_age=(now - o.last_event_at) if o.last_event_at > 0 else None,
                        lag=None,
                        high_watermark=None,
                        orphaned=True,
                    )
                )
            if product.clock.orphans:  # assigned ones are in order already
                parts.sort(key=lambda v: int(v.partition))
            decoder = product.decoder
            writers = [(w.key, str(w.verdict)) for w in decoder.writers.values()] if decoder else []
            views.append(
                ProductView(
                    config=product.config,
                    stats=product.stats.copy(),
                    watermark=product.clock.watermark(now, hws),
                    partitions=parts,
                    writers=writers,
                    completeness=(
                        product.completeness.snapshot() if product.completeness else None
                    ),
                    held=held.get(topic, {}),
                    rules=product.rules.names if product.rules is not None else (),
                    contract_version=product.contract_version,
                )
            )
        # The rest of the process view is filled in per scrape by _snapshot().
        process = ProcessView(self.health.loop.copy(), False, False, False, 0.0, 0, None, None)
        if self.pipeline.patterns:
            process.discovered_products = len(self.pipeline.discovered)
            process.discovery_left_out = self.pipeline.left_out
        return Snapshot(now, views, manifest_errors, process)

    def describe(self) -> Iterator[Metric]:
        """Families without samples, so the registry catches a name clash at start-up."""
        for spec in METRICS:
            yield _family(spec)

    def snapshot(self) -> Snapshot:
        return self._snapshot(self.clock())

    def collect(self) -> Iterator[Metric]:
        return render(self.snapshot())


def render(snapshot: Snapshot) -> Iterator[Metric]:
    """Every catalogue family with its samples from one snapshot."""
    for spec in METRICS:
        family = _family(spec)
        for labels, value in spec.samples(snapshot):
            if isinstance(value, Histogram):
                family.add_metric(labels, value.cumulative(), value.total)
            else:
                family.add_metric(labels, value)
        yield family


def build_registry(collector: SnapshotCollector) -> TidemarkRegistry:
    """A registry of our own: Tidemark's metrics plus the process collector."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = TidemarkRegistry(collector)
    registry.register_other(ProcessCollector(registry=None))
    registry.register_other(PlatformCollector(registry=None))
    return registry
