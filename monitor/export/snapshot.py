"""What one scrape renders: plain copies of the state, taken under the pipeline lock.

Why: the catalogue's sample sources read these views, never the live pipeline,
so rendering happens outside the lock and a value cannot change mid-scrape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.completeness.tracker import CompletenessSnapshot
    from monitor.config import ProductConfig
    from monitor.pipeline import ContractVersion
    from monitor.stats import LoopStats, ProductStats


@dataclass(slots=True)
class PartitionView:
    partition: str
    watermark: float | None
    max_event_time: float | None
    idle: bool
    stuck: bool
    # Moves with the clock on every scrape: left out of equality so an unchanged
    # product's cached /metrics lines are reused (its family is `volatile`).
    last_event_age: float | None = field(compare=False)
    lag: int | None
    high_watermark: int | None
    orphaned: bool = False  # lost in an outage: its last known state, no longer read


@dataclass(slots=True)
class ProductView:
    config: ProductConfig
    stats: ProductStats
    watermark: float | None
    partitions: list[PartitionView]
    writers: list[tuple[str, str]]  # (schema key, verdict)
    completeness: CompletenessSnapshot | None
    held: dict[str, int]  # partitions waiting for a schema look-up, by reason
    # Names of the product's evaluated rules (series exist at 0 from the start);
    # empty when the product has no rules, and then no correctness series at all.
    rules: tuple[str, ...] = ()
    contract_version: ContractVersion | None = None  # a registry subject's version in use

    @property
    def labels(self) -> list[str]:
        return [self.config.name, self.config.topic]


@dataclass(slots=True)
class ProcessView:
    """The monitor's own state, as of the scrape."""

    loop: LoopStats
    alive: bool
    ready: bool
    kafka_reachable: bool
    lag_snapshot_at: float
    cached_scrapes: int
    registry_lookups: dict[str, int] | None  # None: no registry configured
    registry_up: bool | None  # None: no registry configured, or not asked yet
    # `run --workers N` only (None otherwise): partitions each running worker owns,
    # by worker index, and restarts of exited workers since start.
    workers: dict[str, int] | None = None
    worker_restarts: int | None = None
    discovered_products: int | None = None  # None: no discover: section
    discovery_left_out: int | None = None  # topics beyond discover.max_products


@dataclass(slots=True)
class Snapshot:
    """Everything a scrape renders."""

    now: float
    products: list[ProductView]
    manifest_errors: list[tuple[str, dict[str, int]]]  # (control topic, reason counts)
    process: ProcessView
