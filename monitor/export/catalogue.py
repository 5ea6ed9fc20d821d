"""Every metric Tidemark exports, declared once.

The scrape-time collector, the README reference and the test that checks the
shipped rules and dashboards for dangling names all read this table, so a name
cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram", "info"]

PREFIX = "tidemark_"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # full name, without the _total suffix for counters
    type: MetricType
    labels: tuple[str, ...]
    help: str

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Series names as they appear in the exposition format and in PromQL."""
        if self.type == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


P = ("product", "topic")
PP = ("product", "topic", "partition")

METRICS: tuple[MetricSpec, ...] = (
    # --- per data product: contract ---------------------------------------
    MetricSpec(
        "tidemark_events", "counter", P, "Events consumed, excluding read-back after assignment."
    ),
    MetricSpec(
        "tidemark_events_conforming",
        "counter",
        P,
        "Events readable under the contract (writer identical or compatible).",
    ),
    MetricSpec(
        "tidemark_contract_violations",
        "counter",
        (*P, "reason"),
        "Events that break the contract, by reason; with events_conforming sums to events.",
    ),
    MetricSpec(
        "tidemark_schema_drift_events",
        "counter",
        (*P, "verdict"),
        "Events written with a schema other than the contract (verdict=compatible|incompatible).",
    ),
    MetricSpec(
        "tidemark_writer_schema_info",
        "gauge",
        (*P, "schema", "verdict"),
        "Writer schemas seen (schema id or fingerprint), bounded per product.",
    ),
    # --- per data product: time --------------------------------------------
    MetricSpec(
        "tidemark_events_fresh",
        "counter",
        P,
        "Events that became available within the freshness threshold.",
    ),
    MetricSpec(
        "tidemark_late_events", "counter", P, "Events older than their partition's watermark."
    ),
    MetricSpec(
        "tidemark_future_events",
        "counter",
        P,
        "Events further ahead of the wall clock than max_future_skew.",
    ),
    MetricSpec(
        "tidemark_event_latency_seconds",
        "histogram",
        P,
        "Time the event became available to Tidemark minus its event time.",
    ),
    MetricSpec(
        "tidemark_event_lateness_seconds",
        "histogram",
        P,
        "How far behind its partition's watermark a late event was.",
    ),
    MetricSpec(
        "tidemark_watermark_timestamp_seconds",
        "gauge",
        P,
        "Product watermark: min over active partitions (absent until known).",
    ),
    MetricSpec(
        "tidemark_freshness_seconds",
        "gauge",
        P,
        "Now minus the product watermark, computed at scrape time.",
    ),
    MetricSpec(
        "tidemark_data_product_info",
        "gauge",
        (*P, "owner", "tier"),
        "Static description of each monitored data product.",
    ),
    MetricSpec(
        "tidemark_slo_objective_ratio",
        "gauge",
        ("product", "sli"),
        "Objective of each SLI (fraction of good events).",
    ),
    MetricSpec(
        "tidemark_slo_threshold_seconds",
        "gauge",
        ("product", "sli"),
        "Threshold of each latency SLI.",
    ),
    # --- per partition -----------------------------------------------------
    MetricSpec(
        "tidemark_partition_watermark_timestamp_seconds",
        "gauge",
        PP,
        "Partition watermark: max event time minus max_out_of_orderness.",
    ),
    MetricSpec(
        "tidemark_partition_max_event_timestamp_seconds",
        "gauge",
        PP,
        "Largest event time seen on the partition.",
    ),
    MetricSpec(
        "tidemark_partition_idle",
        "gauge",
        PP,
        "1 when the partition had no event for idle_timeout and the consumer is "
        "at its high watermark.",
    ),
    MetricSpec(
        "tidemark_partition_stuck",
        "gauge",
        PP,
        "1 when the broker high watermark advances but Tidemark's position does not.",
    ),
    MetricSpec(
        "tidemark_partition_last_event_age_seconds",
        "gauge",
        PP,
        "Wall-clock seconds since the partition's last event was processed.",
    ),
    MetricSpec(
        "tidemark_consumer_lag_messages",
        "gauge",
        PP,
        "High watermark minus Tidemark's position (never negative), from the background snapshot.",
    ),
    MetricSpec(
        "tidemark_partition_high_watermark_offset",
        "gauge",
        PP,
        "Broker high watermark from the background snapshot.",
    ),
    # --- completeness (per product) ----------------------------------------
    MetricSpec(
        "tidemark_completeness_expected_events",
        "counter",
        P,
        "Events expected in closed, non-partial windows (counted at close).",
    ),
    MetricSpec(
        "tidemark_completeness_observed_events",
        "counter",
        P,
        "Events observed in closed, non-partial windows (counted at close).",
    ),
    MetricSpec(
        "tidemark_window_completeness_ratio",
        "gauge",
        P,
        "Observed / expected of the last closed window.",
    ),
    MetricSpec(
        "tidemark_windows_closed",
        "counter",
        (*P, "verdict"),
        "Closed windows by first verdict (complete|incomplete|partial|no_manifest|no_expectation).",
    ),
    MetricSpec(
        "tidemark_windows_recovered",
        "counter",
        P,
        "Closed incomplete windows that late events or manifests made complete.",
    ),
    MetricSpec(
        "tidemark_window_amended_events",
        "counter",
        P,
        "Late events that amended an already closed window within window_retention.",
    ),
    MetricSpec(
        "tidemark_manifests",
        "counter",
        (*P, "result"),
        "Producer manifests by result "
        "(accepted|duplicate|misaligned|late|beyond_open_windows|not_configured).",
    ),
    MetricSpec(
        "tidemark_manifest_errors",
        "counter",
        ("topic", "reason"),
        "Control-topic records that are not usable manifests (decode_error|unknown_product).",
    ),
    MetricSpec(
        "tidemark_sequence_late_events",
        "counter",
        P,
        "Sequence numbers that arrived after they had been declared missing.",
    ),
    MetricSpec(
        "tidemark_sequence_resets",
        "counter",
        P,
        "Producer restarts detected (sequence fell by more than restart_threshold).",
    ),
    MetricSpec(
        "tidemark_sequence_missing_events",
        "counter",
        P,
        "Sequence numbers declared missing once the watermark passed them.",
    ),
    MetricSpec(
        "tidemark_sequence_duplicate_events",
        "counter",
        P,
        "Events whose sequence number was already seen.",
    ),
    MetricSpec(
        "tidemark_sequence_out_of_order_events",
        "counter",
        P,
        "Events that filled a gap (arrived after a higher sequence number).",
    ),
    MetricSpec(
        "tidemark_producers_tracked",
        "gauge",
        P,
        "Producers whose sequence state is held in memory.",
    ),
    MetricSpec(
        "tidemark_producer_evictions",
        "counter",
        P,
        "Producers evicted from sequence tracking by the LRU bound.",
    ),
    # --- the monitor itself -------------------------------------------------
    MetricSpec(
        "tidemark_build_info",
        "gauge",
        ("version", "python", "librdkafka"),
        "Build and runtime versions.",
    ),
    MetricSpec(
        "tidemark_up",
        "gauge",
        (),
        "1 while the poll loop is alive (heartbeat newer than the liveness limit).",
    ),
    MetricSpec(
        "tidemark_ready", "gauge", (), "1 when connected and holding a partition assignment."
    ),
    MetricSpec(
        "tidemark_poll_loop_heartbeat_timestamp_seconds",
        "gauge",
        (),
        "Wall-clock time of the last poll loop iteration.",
    ),
    MetricSpec(
        "tidemark_assigned_partitions",
        "gauge",
        ("product", "topic"),
        "Partitions this instance owns.",
    ),
    MetricSpec(
        "tidemark_kafka_errors",
        "counter",
        ("code",),
        "Errors reported by librdkafka (consume, commit, client), by error code name.",
    ),
    MetricSpec(
        "tidemark_batch_processing_seconds", "histogram", (), "Time to process one consumed batch."
    ),
    MetricSpec("tidemark_batch_size_messages", "histogram", (), "Messages per consumed batch."),
    MetricSpec("tidemark_commits", "counter", ("result",), "Offset commits (result=ok|error)."),
    MetricSpec(
        "tidemark_cached_scrapes",
        "counter",
        (),
        "Scrapes served from the previous state copy because a batch held the state "
        "longer than a second (e.g. a hanging schema registry).",
    ),
    MetricSpec(
        "tidemark_lag_snapshot_timestamp_seconds",
        "gauge",
        (),
        "Wall-clock time of the newest background high-watermark snapshot.",
    ),
    MetricSpec(
        "tidemark_schema_registry_lookups",
        "counter",
        ("result",),
        "Schema registry look-ups by result (ok|not_found|error); cached ids "
        "are not looked up again.",
    ),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}


def all_sample_names() -> frozenset[str]:
    """Every series name a scrape of Tidemark can contain."""
    return frozenset(s for m in METRICS for s in m.sample_names)
