"""One data product per topic: owner, contract, encoding, event time and objectives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from monitor.completeness.config import CompletenessConfig
from monitor.config.section import LABEL_VALUE, Section
from monitor.contract.ruleconfig import RuleList, SampleRatio
from monitor.durations import Seconds
from monitor.sizes import ByteSize


class FreshnessObjective(Section):
    threshold: Seconds = 300.0
    target: float = Field(default=0.99, gt=0.0, lt=1.0)

    @field_validator("threshold")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("threshold must be more than 0 seconds")
        return value


class ConformanceObjective(Section):
    target: float = Field(default=0.999, gt=0.0, lt=1.0)


class CorrectnessObjective(Section):
    """Share of rule-checked events that pass every rule of the contract."""

    target: float = Field(default=0.999, gt=0.0, lt=1.0)


Encoding = Literal["avro-raw", "confluent", "avro-single-object", "none"]
# Topic-only mode: no decoding and no contract; the Kafka record timestamp is the event time.
TOPIC_ONLY: Encoding = "none"


class SubjectRef(Section):
    """A contract registered in the schema registry: `{subject: ..., version: latest | N}`."""

    subject: str = Field(min_length=1, max_length=500)
    version: Literal["latest"] | Annotated[int, Field(ge=1)] = "latest"
    # How often a `latest` subject is asked for a newer version (off the hot path).
    check_interval: Seconds = 60.0

    @field_validator("check_interval")
    @classmethod
    def _interval_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value


class ProductConfig(Section):
    """One data product: a topic with an owner, a contract and objectives."""

    name: str
    # owner and event_time may come from the contract's metadata or ODCS file instead
    # (monitor.contract.metadata.merge_settings at build time; the config wins).
    owner: str | None = None
    owner_email: str | None = None
    tier: str = "standard"
    description: str = ""
    topic: str
    encoding: Encoding
    # A file or a registry subject; required unless encoding is "none" (topic-only:
    # no contract, the Kafka timestamp as event time).
    contract: Path | SubjectRef | None = None
    odcs: Path | None = None
    writer_schemas: list[Path] = Field(default_factory=list)
    event_time: str | None = None
    rules: RuleList = Field(default_factory=list)
    rules_sample_ratio: SampleRatio = 1.0
    max_out_of_orderness: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_future_skew: Seconds = 60.0
    max_writer_schemas: int = Field(default=32, ge=1, le=1000)
    # Larger events are counted as payload_too_large without being decoded: a decoded
    # event can take ~200x its size in memory. 64 MiB is beyond any sane event.
    max_payload_bytes: ByteSize = Field(default=1024 * 1024, ge=16, le=64 * 1024 * 1024)
    freshness: FreshnessObjective = Field(default_factory=FreshnessObjective)
    conformance: ConformanceObjective = Field(default_factory=ConformanceObjective)
    correctness: CorrectnessObjective = Field(default_factory=CorrectnessObjective)
    completeness: CompletenessConfig | None = None
    # False: product-level series only (large topics, many discovered products).
    partition_series: bool = True
    # A dead-letter topic: any event arriving is worth an alert (TidemarkDeadLetterEvents).
    dead_letter: bool = False

    @field_validator("name", "tier", "owner")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not LABEL_VALUE.match(value):
            raise ValueError(
                f"{value!r} must start with a letter or digit and use only letters, digits, "
                "'_', '.' and '-' (it becomes a metric label)"
            )
        return value

    @property
    def topic_only(self) -> bool:
        """No decoding, no contract: only the record's Kafka timestamp is read."""
        return self.encoding == TOPIC_ONLY

    @model_validator(mode="after")
    def _contract_unless_topic_only(self) -> ProductConfig:
        if self.topic_only:
            if self.contract is not None:
                raise ValueError(
                    "encoding 'none' (topic-only) decodes nothing: remove 'contract' or "
                    "choose the encoding the topic is written in"
                )
            if self.event_time not in (None, "kafka-timestamp"):
                raise ValueError(
                    "encoding 'none' (topic-only) reads no field: its event time is the "
                    "Kafka record timestamp ('kafka-timestamp' or leave event_time out)"
                )
            if self.completeness is not None and self.completeness.sequence is not None:
                raise ValueError(
                    "completeness.sequence reads fields of the event, which encoding 'none' "
                    "(topic-only) does not decode: use expected-volume completeness"
                )
            if self.rules or self.odcs is not None:
                raise ValueError(
                    "rules and odcs check decoded fields, which encoding 'none' (topic-only) "
                    "does not decode: choose the encoding the topic is written in"
                )
            if self.owner is None:
                raise ValidationError.from_exception_data(
                    "ProductConfig",
                    [InitErrorDetails(type="missing", loc=("owner",), input=None)],
                )
            return self
        if self.contract is None:
            raise ValueError(
                f"contract required for encoding {self.encoding!r} "
                "(only encoding 'none', topic-only mode, needs none)"
            )
        return self

    @model_validator(mode="after")
    def _owner_and_event_time_known(self) -> ProductConfig:
        """Without a contract that could say them (subject metadata, ODCS), they are required."""
        if isinstance(self.contract, Path) and self.odcs is None:
            missing = [k for k in ("owner", "event_time") if getattr(self, k) is None]
            if missing:
                raise ValidationError.from_exception_data(
                    "ProductConfig",
                    [InitErrorDetails(type="missing", loc=(k,), input=None) for k in missing],
                )
        return self

    @model_validator(mode="after")
    def _writer_schemas_need_single_object(self) -> ProductConfig:
        if self.writer_schemas and self.encoding != "avro-single-object":
            raise ValueError(
                "writer_schemas lists writer schemas by fingerprint and only applies to "
                f"encoding 'avro-single-object', not {self.encoding!r}"
            )
        return self
