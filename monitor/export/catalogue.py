"""Every metric Tidemark exports, declared once, with where its values come from.

The scrape-time collector renders every family from this table (each spec's
`samples` reads a scrape snapshot); the README reference and the test that
checks the shipped rules and dashboards for dangling names read it too, so a
name cannot drift between them and adding a metric is one entry.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import confluent_kafka

from monitor import __version__
from monitor.completeness.window import REJECT_REASONS, VERDICTS
from monitor.contract.decoding import HoldReason, Reason
from monitor.pipeline import MANIFEST_ERRORS

if TYPE_CHECKING:
    from monitor.completeness.tracker import CompletenessSnapshot
    from monitor.export.snapshot import PartitionView, ProcessView, ProductView, Snapshot
    from monitor.stats import Histogram

MetricType = Literal["counter", "gauge", "histogram", "info"]
Sample = tuple[Sequence[str], "float | Histogram"]
Source = Callable[["Snapshot"], Iterable[Sample]]

PREFIX = "tidemark_"
DRIFT_VERDICTS = ("compatible", "incompatible")
COMMIT_RESULTS = ("ok", "error")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # full name, without the _total suffix for counters
    type: MetricType
    labels: tuple[str, ...]
    help: str
    samples: Source  # (label values, value) pairs of one scrape

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Series names as they appear in the exposition format and in PromQL."""
        if self.type == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


# --- where values come from -------------------------------------------------
# A value of None leaves the series out (e.g. a watermark not known yet).
# Reasons, verdicts and results are exported from the start at 0, so rate() and
# increase() see the first bad event instead of a new series.


@dataclass(frozen=True, slots=True)
class ProductSource:
    """A source whose series each belong to one product, read from its view alone.

    Why: /metrics caches each product's rendered lines of such a family and reuses
    them while the product's view is unchanged (most products, between two scrapes
    at 1,000 topics). `volatile` marks a family that reads a view field left out of
    the view's equality because it moves with the clock (`last_event_age`): it is
    rendered on every scrape.
    """

    of: Callable[[ProductView], Iterable[Sample]]
    volatile: bool = False

    def __call__(self, s: Snapshot) -> Iterator[Sample]:
        for v in s.products:
            yield from self.of(v)


def product(value: Callable[[ProductView], float | Histogram | None]) -> Source:
    """One series per product, labelled (product, topic)."""

    def of(v: ProductView) -> Iterator[Sample]:
        x = value(v)
        if x is not None:
            yield v.labels, x

    return ProductSource(of)


def product_by(
    values: Callable[[ProductView], Iterable[tuple[Sequence[str] | str, float]]],
) -> Source:
    """Several series per product: (product, topic) plus the labels `values` yields."""

    def of(v: ProductView) -> Iterator[Sample]:
        for extra, x in values(v):
            yield [*v.labels, *([extra] if isinstance(extra, str) else extra)], x

    return ProductSource(of)


def contract_product(value: Callable[[ProductView], float | None]) -> Source:
    """Like `product`, for products with a contract: topic-only ones have no such series."""
    return product(lambda v: None if v.config.topic_only else value(v))


def contract_product_by(
    values: Callable[[ProductView], Iterable[tuple[Sequence[str] | str, float]]],
) -> Source:
    """Like `product_by`, skipping topic-only products (nothing decoded, nothing to conform)."""

    def of(v: ProductView) -> Iterator[Sample]:
        if v.config.topic_only:
            return
        for extra, x in values(v):
            yield [*v.labels, *([extra] if isinstance(extra, str) else extra)], x

    return ProductSource(of)


def partition(value: Callable[[PartitionView], float | None], volatile: bool = False) -> Source:
    """One series per assigned or orphaned partition, labelled (product, topic, partition)."""

    def of(v: ProductView) -> Iterator[Sample]:
        if not v.config.partition_series:
            return
        for p in v.partitions:
            x = value(p)
            if x is not None:
                yield [*v.labels, p.partition], x

    return ProductSource(of, volatile)


def completeness(value: Callable[[CompletenessSnapshot], float | None]) -> Source:
    """One series per product that tracks completeness."""

    def of(v: ProductView) -> Iterator[Sample]:
        if v.completeness is not None:
            x = value(v.completeness)
            if x is not None:
                yield v.labels, x

    return ProductSource(of)


def completeness_by(
    values: Callable[[ProductView, CompletenessSnapshot], Iterable[tuple[str, float]]],
) -> Source:
    def of(v: ProductView) -> Iterator[Sample]:
        if v.completeness is not None:
            for extra, x in values(v, v.completeness):
                yield [*v.labels, extra], x

    return ProductSource(of)


def process(value: Callable[[ProcessView], float | Histogram | None]) -> Source:
    """One unlabelled series about the monitor itself."""

    def samples(s: Snapshot) -> Iterator[Sample]:
        x = value(s.process)
        if x is not None:
            yield [], x

    return samples


def process_by(values: Callable[[ProcessView], Iterable[tuple[str, float]]]) -> Source:
    def samples(s: Snapshot) -> Iterator[Sample]:
        for label, x in values(s.process):
            yield [label], x

    return samples


def from_snapshot(values: Callable[[Snapshot], Iterable[Sample]]) -> Source:
    return values


def _freshness(s: Snapshot) -> Iterator[Sample]:
    for v in s.products:
        if v.watermark is not None:
            yield v.labels, max(0.0, s.now - v.watermark)


def _objectives(v: ProductView) -> Iterator[Sample]:
    cfg = v.config
    yield [cfg.name, "freshness"], cfg.freshness.target
    if not cfg.topic_only:
        yield [cfg.name, "conformance"], cfg.conformance.target
    if v.rules:
        yield [cfg.name, "correctness"], cfg.correctness.target
    if cfg.completeness is not None:
        yield [cfg.name, "completeness"], cfg.completeness.objective


def _thresholds(v: ProductView) -> Iterator[Sample]:
    yield [v.config.name, "freshness"], v.config.freshness.threshold


def _manifest_results(v: ProductView, c: CompletenessSnapshot) -> Iterator[tuple[str, float]]:
    if v.config.completeness is None or not v.config.completeness.manifests:
        return
    yield "accepted", c.manifests_accepted_total
    yield "duplicate", c.manifests_duplicate_total
    yield "superseded", c.manifests_superseded_total
    for reason in REJECT_REASONS:
        yield reason, c.manifests_rejected_total.get(reason, 0)


def _manifest_errors(s: Snapshot) -> Iterator[Sample]:
    for topic, counts in s.manifest_errors:
        for reason in MANIFEST_ERRORS:
            yield [topic, reason], counts.get(reason, 0)


def _build_info(s: Snapshot) -> Iterator[Sample]:
    yield [__version__, platform.python_version(), confluent_kafka.libversion()[0]], 1


P = ("product", "topic")
PP = ("product", "topic", "partition")

METRICS: tuple[MetricSpec, ...] = (
    # --- per data product: contract ---------------------------------------
    MetricSpec(
        "tidemark_events",
        "counter",
        P,
        "Events consumed, excluding read-back after assignment.",
        product(lambda v: v.stats.events),
    ),
    MetricSpec(
        "tidemark_events_conforming",
        "counter",
        P,
        "Events readable under the contract (writer identical or compatible).",
        contract_product(lambda v: v.stats.conforming),
    ),
    MetricSpec(
        "tidemark_rule_checked_events",
        "counter",
        P,
        "Conforming events whose contract rules were evaluated (all of them unless "
        "rules_sample_ratio samples); the correctness SLI's denominator.",
        product(lambda v: v.stats.rule_checked if v.rules else None),
    ),
    MetricSpec(
        "tidemark_events_correct",
        "counter",
        P,
        "Rule-checked events that passed every rule of the contract (correctness SLI).",
        product(lambda v: v.stats.correct if v.rules else None),
    ),
    MetricSpec(
        "tidemark_rule_violations",
        "counter",
        (*P, "rule"),
        "Rule-checked events that broke a rule, by rule name (from the contract or config, "
        "never from event data).",
        product_by(lambda v: ((r, v.stats.rule_violations.get(r, 0)) for r in v.rules)),
    ),
    MetricSpec(
        "tidemark_rule_errors",
        "counter",
        (*P, "rule"),
        "Rule evaluations that failed (missing field, wrong type, engine error), by rule; "
        "such an event is not counted correct.",
        product_by(lambda v: ((r, v.stats.rule_errors.get(r, 0)) for r in v.rules)),
    ),
    MetricSpec(
        "tidemark_contract_violations",
        "counter",
        (*P, "reason"),
        "Events that break the contract, by reason; with events_conforming sums to events.",
        contract_product_by(lambda v: ((r.value, v.stats.violations.get(r, 0)) for r in Reason)),
    ),
    MetricSpec(
        "tidemark_processing_errors",
        "counter",
        P,
        "Events whose processing raised inside Tidemark (a defect in Tidemark, not in the "
        "data): logged, skipped and committed, never retried; should stay 0.",
        product(lambda v: v.stats.processing_errors),
    ),
    MetricSpec(
        "tidemark_schema_drift_events",
        "counter",
        (*P, "verdict"),
        "Events written with a schema other than the contract (verdict=compatible|incompatible).",
        contract_product_by(lambda v: ((d, v.stats.drift.get(d, 0)) for d in DRIFT_VERDICTS)),
    ),
    MetricSpec(
        "tidemark_writer_schema_info",
        "gauge",
        (*P, "schema", "verdict"),
        "Writer schemas seen (schema id or fingerprint), bounded per product.",
        product_by(lambda v: (((key, verdict), 1) for key, verdict in v.writers)),
    ),
    # --- per data product: time --------------------------------------------
    MetricSpec(
        "tidemark_events_fresh",
        "counter",
        P,
        "Events that became available within the freshness threshold.",
        product(lambda v: v.stats.fresh),
    ),
    MetricSpec(
        "tidemark_late_events",
        "counter",
        P,
        "Events older than their partition's watermark.",
        product(lambda v: v.stats.late),
    ),
    MetricSpec(
        "tidemark_future_events",
        "counter",
        P,
        "Events further ahead of the wall clock than max_future_skew.",
        product(lambda v: v.stats.future),
    ),
    MetricSpec(
        "tidemark_event_latency_seconds",
        "histogram",
        P,
        "Time the event became available to Tidemark minus its event time.",
        product(lambda v: v.stats.latency),
    ),
    MetricSpec(
        "tidemark_event_lateness_seconds",
        "histogram",
        P,
        "How far behind its partition's watermark a late event was.",
        product(lambda v: v.stats.lateness),
    ),
    MetricSpec(
        "tidemark_watermark_timestamp_seconds",
        "gauge",
        P,
        "Product watermark: min over active partitions (absent until known).",
        product(lambda v: v.watermark),
    ),
    MetricSpec(
        "tidemark_freshness_seconds",
        "gauge",
        P,
        "Now minus the product watermark, computed at scrape time.",
        from_snapshot(_freshness),
    ),
    MetricSpec(
        "tidemark_data_product_info",
        "gauge",
        (*P, "owner", "tier"),
        "Static description of each monitored data product.",
        product_by(lambda v: (((v.config.owner or "", v.config.tier), 1),)),
    ),
    MetricSpec(
        "tidemark_contract_version_info",
        "gauge",
        (*P, "subject", "version", "schema_id"),
        "The registry subject version whose schema and rules are in use (1); only for "
        "products whose contract is a subject. Changes when a newer version is taken.",
        product_by(
            lambda v: (
                ((c.subject, str(c.version), str(c.schema_id)), 1)
                for c in (v.contract_version,)
                if c
            )
        ),
    ),
    MetricSpec(
        "tidemark_slo_objective_ratio",
        "gauge",
        ("product", "sli"),
        "Objective of each SLI (fraction of good events).",
        ProductSource(_objectives),
    ),
    MetricSpec(
        "tidemark_slo_threshold_seconds",
        "gauge",
        ("product", "sli"),
        "Threshold of each latency SLI.",
        ProductSource(_thresholds),
    ),
    # --- per partition -----------------------------------------------------
    MetricSpec(
        "tidemark_partition_watermark_timestamp_seconds",
        "gauge",
        PP,
        "Partition watermark: max event time minus max_out_of_orderness.",
        partition(lambda p: p.watermark if p.max_event_time is not None else None),
    ),
    MetricSpec(
        "tidemark_partition_max_event_timestamp_seconds",
        "gauge",
        PP,
        "Largest event time seen on the partition.",
        partition(lambda p: p.max_event_time if p.watermark is not None else None),
    ),
    MetricSpec(
        "tidemark_partition_idle",
        "gauge",
        PP,
        "1 when the partition had no event for idle_timeout and the consumer is "
        "at its high watermark.",
        partition(lambda p: 1 if p.idle else 0),
    ),
    MetricSpec(
        "tidemark_partition_stuck",
        "gauge",
        PP,
        "1 when the broker high watermark advances but Tidemark's position does not.",
        partition(lambda p: 1 if p.stuck else 0),
    ),
    MetricSpec(
        "tidemark_partition_last_event_age_seconds",
        "gauge",
        PP,
        "Wall-clock seconds since the partition's last event was processed.",
        partition(lambda p: p.last_event_age, volatile=True),
    ),
    MetricSpec(
        "tidemark_partition_orphaned",
        "gauge",
        PP,
        "1 for a partition whose assignment was lost (e.g. in a broker outage): its last "
        "watermark stays exported until this instance's next assignment.",
        partition(lambda p: 1 if p.orphaned else 0),
    ),
    MetricSpec(
        "tidemark_consumer_lag_messages",
        "gauge",
        PP,
        "High watermark minus Tidemark's position (never negative), from the background snapshot.",
        partition(lambda p: p.lag),
    ),
    MetricSpec(
        "tidemark_partition_high_watermark_offset",
        "gauge",
        PP,
        "Broker high watermark from the background snapshot.",
        partition(lambda p: p.high_watermark),
    ),
    # --- completeness (per product) ----------------------------------------
    MetricSpec(
        "tidemark_completeness_expected_events",
        "counter",
        P,
        "Events expected in closed, non-partial windows (counted at close).",
        completeness(lambda c: c.expected_events_total),
    ),
    MetricSpec(
        "tidemark_completeness_observed_events",
        "counter",
        P,
        "Events observed in closed, non-partial windows (counted at close).",
        completeness(lambda c: c.observed_events_total),
    ),
    MetricSpec(
        "tidemark_window_completeness_ratio",
        "gauge",
        P,
        "Observed / expected of the last closed window.",
        completeness(lambda c: c.last_window_ratio),
    ),
    MetricSpec(
        "tidemark_windows_closed",
        "counter",
        (*P, "verdict"),
        "Closed windows by first verdict (complete|incomplete|partial|no_manifest|no_expectation).",
        completeness_by(lambda v, c: ((x, c.windows_closed_total.get(x, 0)) for x in VERDICTS)),
    ),
    MetricSpec(
        "tidemark_windows_recovered",
        "counter",
        P,
        "Closed incomplete windows that late events or manifests made complete.",
        completeness(lambda c: c.windows_recovered_total),
    ),
    MetricSpec(
        "tidemark_completeness_reconciler",
        "gauge",
        P,
        "1 on the replica that judges the product's windows (completeness_sharing), else 0.",
        completeness(lambda c: c.reconciling if c.shared else None),
    ),
    MetricSpec(
        "tidemark_completeness_observations_dropped",
        "counter",
        P,
        "Shared-completeness observations dropped by the bounded table (max_entries).",
        completeness(lambda c: c.observations_dropped_total if c.shared else None),
    ),
    MetricSpec(
        "tidemark_window_amended_events",
        "counter",
        P,
        "Late events that amended an already closed window within window_retention.",
        completeness(lambda c: c.late_amendments_total),
    ),
    MetricSpec(
        "tidemark_manifests",
        "counter",
        (*P, "result"),
        "Producer manifests by result, each counted once: accepted (first of its producer "
        "for the window; anonymous ones add up), superseded (a larger count from the same "
        "producer replaced its earlier one), duplicate (a retry that changed nothing), or "
        "rejected as misaligned|late|beyond_open_windows|not_configured.",
        completeness_by(_manifest_results),
    ),
    MetricSpec(
        "tidemark_manifest_errors",
        "counter",
        ("topic", "reason"),
        "Control-topic records that are not usable manifests "
        "(decode_error|unknown_product|processing_error).",
        from_snapshot(_manifest_errors),
    ),
    MetricSpec(
        "tidemark_sequence_late_events",
        "counter",
        P,
        "Sequence numbers that arrived after they had been declared missing.",
        completeness(lambda c: c.sequence_late_total),
    ),
    MetricSpec(
        "tidemark_sequence_resets",
        "counter",
        P,
        "Producer restarts detected (sequence fell by more than restart_threshold).",
        completeness(lambda c: c.sequence_resets_total),
    ),
    MetricSpec(
        "tidemark_sequence_missing_events",
        "counter",
        P,
        "Sequence numbers declared missing once the watermark passed them.",
        completeness(lambda c: c.sequence_missing_total),
    ),
    MetricSpec(
        "tidemark_sequence_duplicate_events",
        "counter",
        P,
        "Events whose sequence number was already seen.",
        completeness(lambda c: c.sequence_duplicate_total),
    ),
    MetricSpec(
        "tidemark_sequence_out_of_order_events",
        "counter",
        P,
        "Events that filled a gap (arrived after a higher sequence number).",
        completeness(lambda c: c.sequence_out_of_order_total),
    ),
    MetricSpec(
        "tidemark_producers_tracked",
        "gauge",
        P,
        "Producers whose sequence state is held in memory.",
        completeness(lambda c: c.producers_tracked),
    ),
    MetricSpec(
        "tidemark_producer_evictions",
        "counter",
        P,
        "Producers evicted from sequence tracking by the LRU bound.",
        completeness(lambda c: c.producer_evictions_total),
    ),
    # --- the monitor itself -------------------------------------------------
    MetricSpec(
        "tidemark_build_info",
        "gauge",
        ("version", "python", "librdkafka"),
        "Build and runtime versions.",
        from_snapshot(_build_info),
    ),
    MetricSpec(
        "tidemark_up",
        "gauge",
        (),
        "1 while the poll loop is alive (heartbeat newer than the liveness limit).",
        process(lambda s: 1 if s.alive else 0),
    ),
    MetricSpec(
        "tidemark_ready",
        "gauge",
        (),
        "1 when Kafka answers and the instance holds a partition assignment.",
        process(lambda s: 1 if s.ready else 0),
    ),
    MetricSpec(
        "tidemark_kafka_reachable",
        "gauge",
        (),
        "1 while a Kafka broker answers Tidemark (metadata, high watermarks, assignments); "
        "0 from _ALL_BROKERS_DOWN or a lag snapshot nothing answered until the next answer.",
        process(lambda s: 1 if s.kafka_reachable else 0),
    ),
    MetricSpec(
        "tidemark_poll_loop_heartbeat_timestamp_seconds",
        "gauge",
        (),
        "Wall-clock time of the last poll loop iteration.",
        process(lambda s: s.loop.heartbeat),
    ),
    MetricSpec(
        "tidemark_assigned_partitions",
        "gauge",
        ("product", "topic"),
        "Partitions this instance owns (orphaned ones not counted).",
        product(lambda v: sum(1 for p in v.partitions if not p.orphaned)),
    ),
    MetricSpec(
        "tidemark_kafka_errors",
        "counter",
        ("code",),
        "Errors reported by librdkafka (consume, commit, client), by error code name.",
        process_by(lambda s: sorted(s.loop.kafka_errors.items())),
    ),
    MetricSpec(
        "tidemark_batch_processing_seconds",
        "histogram",
        (),
        "Time to process one consumed batch.",
        process(lambda s: s.loop.batch_seconds),
    ),
    MetricSpec(
        "tidemark_batch_size_messages",
        "histogram",
        (),
        "Messages per consumed batch.",
        process(lambda s: s.loop.batch_size),
    ),
    MetricSpec(
        "tidemark_commits",
        "counter",
        ("result",),
        "Offset commits (result=ok|error).",
        process_by(lambda s: ((r, s.loop.commits.get(r, 0)) for r in COMMIT_RESULTS)),
    ),
    MetricSpec(
        "tidemark_cached_scrapes",
        "counter",
        (),
        "Scrapes served from the previous state copy because a batch held the state "
        "longer than a second (e.g. a very slow batch on a starved CPU).",
        process(lambda s: s.cached_scrapes),
    ),
    MetricSpec(
        "tidemark_lag_snapshot_timestamp_seconds",
        "gauge",
        (),
        "Wall-clock time of the newest background high-watermark snapshot in which every "
        "owned partition answered.",
        process(lambda s: s.lag_snapshot_at or None),
    ),
    MetricSpec(
        "tidemark_schema_registry_lookups",
        "counter",
        ("result",),
        "Schema registry look-ups by result (ok|not_found|error); cached ids "
        "are not looked up again.",
        process_by(lambda s: sorted((s.registry_lookups or {}).items())),
    ),
    MetricSpec(
        "tidemark_schema_registry_up",
        "gauge",
        (),
        "1 if the last schema registry look-up got an answer (found or not found), 0 if "
        "the registry could not be reached; absent until the registry is first asked.",
        process(lambda s: None if s.registry_up is None else float(s.registry_up)),
    ),
    MetricSpec(
        "tidemark_worker_assigned_partitions",
        "gauge",
        ("worker",),
        "With run --workers N: partitions each running worker process owns (a worker that "
        "is down or restarting has no series).",
        process_by(lambda s: sorted((s.workers or {}).items())),
    ),
    MetricSpec(
        "tidemark_worker_restarts",
        "counter",
        (),
        "With run --workers N: worker processes restarted after they exited.",
        process(lambda s: s.worker_restarts),
    ),
    MetricSpec(
        "tidemark_dead_letter_topic_info",
        "gauge",
        P,
        "1 for products that are dead-letter topics (dead_letter: true, or a discovered "
        "topic matching discover.dead_letter_patterns); absent for the others.",
        product(lambda v: 1 if v.config.dead_letter else None),
    ),
    MetricSpec(
        "tidemark_discovered_products",
        "gauge",
        (),
        "Products the discover: section made for topics without a products: block "
        "(absent without one).",
        process(lambda s: s.discovered_products),
    ),
    MetricSpec(
        "tidemark_discovery_left_out_topics",
        "gauge",
        (),
        "Topics discovery matched beyond discover.max_products: not monitored (each logged once).",
        process(lambda s: s.discovery_left_out),
    ),
    MetricSpec(
        "tidemark_partitions_held",
        "gauge",
        ("product", "topic", "reason"),
        "Partitions paused at an event whose writer schema is not known yet, by reason "
        "(schema_lookup|registry_unreachable); their events are counted once it is.",
        contract_product_by(
            lambda v: [(r.value, float(v.held.get(r.value, 0))) for r in HoldReason]
        ),
    ),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}


def all_sample_names() -> frozenset[str]:
    """Every series name a scrape of Tidemark can contain."""
    return frozenset(s for m in METRICS for s in m.sample_names)
