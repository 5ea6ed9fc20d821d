"""`discover:`: every topic matching a pattern becomes a product, without a block each."""

from __future__ import annotations

from pydantic import Field, field_validator

from monitor.completeness.config import CompletenessConfig
from monitor.config.products import ConformanceObjective, FreshnessObjective
from monitor.config.section import LABEL_VALUE, Section, valid_regex
from monitor.durations import Seconds


class OwnerRule(Section):
    """Topics matching `pattern` (from the start of the name) belong to `owner`."""

    pattern: str
    owner: str
    tier: str | None = None

    _pattern_ok = field_validator("pattern")(valid_regex)

    @field_validator("owner", "tier")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not LABEL_VALUE.match(value):
            raise ValueError(f"{value!r} must use only letters, digits, '_', '.' and '-'")
        return value


class DiscoverDefaults(Section):
    """Settings of every discovered product unless an owner rule or the registry says more."""

    owner: str = "unowned"
    tier: str = "standard"
    max_out_of_orderness: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_future_skew: Seconds = 60.0
    freshness: FreshnessObjective = Field(default_factory=FreshnessObjective)
    conformance: ConformanceObjective = Field(default_factory=ConformanceObjective)
    completeness: CompletenessConfig | None = None
    partition_series: bool = True

    @field_validator("owner", "tier")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        if not LABEL_VALUE.match(value):
            raise ValueError(f"{value!r} must use only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("completeness")
    @classmethod
    def _volume_only(cls, value: CompletenessConfig | None) -> CompletenessConfig | None:
        if value is not None and (value.sequence is not None or value.manifests is not None):
            raise ValueError(
                "discovered products can only use expected-volume completeness "
                "(sequence fields and manifest products are per-product settings)"
            )
        return value


# Never monitored by discovery unless a products: block names them: Kafka's internal
# topics (__consumer_offsets, __transaction_state), Connect/Streams/registry internals.
INTERNAL_TOPICS = (r"__.*", r"_schemas$", r"_confluent.*", r".*-changelog$", r".*-repartition$")


class DiscoverConfig(Section):
    """Watch every topic matching `include`, without a products: block per topic."""

    # Regular expressions matched from the start of the topic name; the consumer
    # subscribes to them as patterns, so topics created later are picked up.
    include: list[str] = Field(default_factory=lambda: [".*"], min_length=1, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    exclude_internal: bool = True
    defaults: DiscoverDefaults = Field(default_factory=DiscoverDefaults)
    owners: list[OwnerRule] = Field(default_factory=list, max_length=1000)  # first match wins
    # Look up <topic>-value (TopicNameStrategy) in schema_registry, when configured.
    use_registry: bool = True
    # Event time of a registered contract: the first of these it has as a timestamp
    # logical type (the subject's tidemark.event_time property comes first); else
    # the Kafka record timestamp.
    event_time_fields: list[str] = Field(
        default_factory=lambda: ["event_time", "occurred_at", "created_at", "timestamp", "ts"],
        max_length=100,
    )
    # Discovered topics matching these are dead-letter topics (dead_letter: true).
    dead_letter_patterns: list[str] = Field(
        default_factory=lambda: [r".*[._-](dlq|dead[._-]?letters?)$"], max_length=100
    )
    # Bound on discovered products; topics beyond it are counted and logged once.
    max_products: int = Field(default=2000, ge=1, le=100_000)
    # How soon a new (or deleted) topic is noticed: librdkafka re-reads the cluster's
    # topics this often (topic.metadata.refresh.interval.ms, 5 min by default).
    refresh_interval: Seconds = 30.0

    @field_validator("refresh_interval")
    @classmethod
    def _refresh_positive(cls, value: float) -> float:
        if not 0.1 <= value <= 3600:
            raise ValueError("must be between 0.1 s and 1 h")
        return value

    @field_validator("include", "exclude", "dead_letter_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [valid_regex(v) for v in value]
