"""Products for topics nobody wrote a block for: the `discover:` section.

A topic matching the include patterns (and no exclude pattern) becomes a
product when its first partition is assigned. If the schema registry has
`<topic>-value` (TopicNameStrategy) the product is checked against that
registered contract (Confluent wire format); otherwise it is watched in
topic-only mode. Explicit `products:` blocks win for their topics.

Where a discovered product's settings come from, first match wins:
owner/tier from the first `owners` rule matching the topic, then the
subject's metadata properties (owner, tier, objectives, tidemark.event_time),
then `defaults`. The event time of a registered contract is the subject's
`tidemark.event_time`, else the first of `event_time_fields` the schema
declares with a timestamp logical type, else the Kafka record timestamp.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from monitor.config import INTERNAL_TOPICS, DiscoverConfig, ProductConfig
from monitor.contract.eventtime import KAFKA_TIMESTAMP, timestamp_field
from monitor.contract.metadata import merge_settings
from monitor.contract.model import Contract
from monitor.contract.subject import SubjectContract, SubjectError, SubjectSource

log = structlog.get_logger("tidemark.discovery")

MAX_NAME = 100  # product names are label values: bounded, whatever the topic's length
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def product_name(topic: str) -> str:
    """A label-safe product name for `topic`: safe charset, bounded, still unique.

    Kafka topic names already use [A-Za-z0-9._-], up to 249 characters; anything
    else is replaced by '_', and a long name is cut with a hash of the whole so
    two long topics with one prefix stay two products.
    """
    name = _UNSAFE.sub("_", topic)
    if not name or not name[0].isalnum():
        name = "t" + name
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}-{digest}"
    return name


def subscription_patterns(config: DiscoverConfig) -> list[str]:
    """The include patterns as librdkafka regex subscriptions (a leading '^')."""
    return [p if p.startswith("^") else f"^{p}" for p in config.include]


@dataclass(frozen=True, slots=True)
class Planned:
    """A discovered product: its settings, and its registered contract if it has one."""

    config: ProductConfig
    contract: Contract | None  # None: topic-only
    subject: str | None = None
    version: int | None = None
    filled: tuple[str, ...] = ()  # settings the subject's metadata supplied


class Discoverer:
    """Decides which topics become products and builds their settings.

    `registry` is anything with `get_version(subject, version)` (confluent-kafka's
    SchemaRegistryClient); None: every discovered topic is topic-only.
    """

    def __init__(
        self,
        config: DiscoverConfig,
        *,
        explicit: set[str] | frozenset[str] = frozenset(),
        control_topics: set[str] | frozenset[str] = frozenset(),
        registry: Any = None,
        registry_describe: Any = None,
    ) -> None:
        self.config = config
        self.explicit = frozenset(explicit)
        self.control_topics = frozenset(control_topics)
        self.registry = registry if config.use_registry else None
        self._describe = registry_describe
        self._include = [re.compile(p) for p in config.include]
        excludes = [*config.exclude, *(INTERNAL_TOPICS if config.exclude_internal else ())]
        self._exclude = [re.compile(p) for p in excludes]
        self._owners = [(re.compile(r.pattern), r) for r in config.owners]
        self._dead_letter = [re.compile(p) for p in config.dead_letter_patterns]
        self.left_out: set[str] = set()  # topics beyond max_products, each logged once
        # After the registry failed to answer, topics are planned topic-only without
        # asking until this time: look-ups run in the rebalance callback, and 1,000
        # topics each waiting out the client's retries would stall the assignment.
        self.registry_skip_until = 0.0
        self.registry_retry_after = 30.0

    def wanted(self, topic: str) -> bool:
        """Whether discovery should make `topic` a product (explicit ones are not its)."""
        if topic in self.explicit or topic in self.control_topics:
            return False
        if not any(p.match(topic) for p in self._include):
            return False
        return not any(p.match(topic) for p in self._exclude)

    def admit(self, topic: str, discovered: int) -> bool:
        """Within max_products? A topic left out is counted and logged once."""
        if discovered < self.config.max_products:
            return True
        if topic not in self.left_out:
            self.left_out.add(topic)
            log.warning(
                "discovered_topic_left_out",
                topic=topic,
                max_products=self.config.max_products,
                left_out=len(self.left_out),
            )
        return False

    def plan(self, topic: str) -> Planned:
        """The product for `topic`: its `<topic>-value` contract if registered, else topic-only."""
        return self._settle(topic, self._registered(topic))

    def _settle(self, topic: str, registered: SubjectContract | None) -> Planned:
        defaults = self.config.defaults.model_dump(exclude_none=True)
        rule = next((r for pattern, r in self._owners if pattern.match(topic)), None)
        explicit: dict[str, Any] = {"name": product_name(topic), "topic": topic}
        if any(p.match(topic) for p in self._dead_letter):
            explicit["dead_letter"] = True
        if rule is not None:
            explicit["owner"] = rule.owner
            if rule.tier is not None:
                explicit["tier"] = rule.tier
        if registered is None:
            merged = merge_settings(explicit, defaults)
            return Planned(ProductConfig(**merged.settings, encoding="none"), None)
        metadata = dict(registered.settings)
        event_time = metadata.pop("event_time", None) or timestamp_field(
            registered.contract, self.config.event_time_fields
        )
        metadata.pop("owner_email", None)  # not a product setting (yet)
        explicit.update(
            encoding="confluent",
            contract=Path(str(registered.contract.path)),
            event_time=event_time or KAFKA_TIMESTAMP,
        )
        merged = merge_settings(explicit, metadata, defaults)
        filled = tuple(f for f in merged.filled if f.split(".")[0] in metadata)
        return Planned(
            ProductConfig(**merged.settings),
            registered.contract,
            registered.subject,
            registered.version,
            filled,
        )

    def plan_topic_only(self, topic: str) -> Planned:
        """The topic-only product for `topic`, whatever the registry holds."""
        return self._settle(topic, None)

    def _registered(self, topic: str) -> SubjectContract | None:
        if self.registry is None or time.monotonic() < self.registry_skip_until:
            return None
        subject = f"{topic}-value"
        try:
            return SubjectSource(self.registry, subject, "latest", describe=self._describe).fetch()
        except SubjectError as exc:
            if exc.kind == "unavailable":
                self.registry_skip_until = time.monotonic() + self.registry_retry_after
            if exc.kind != "not_found":
                # Unusable (not Avro, references, unreachable): watched topic-only, said once.
                log.warning(
                    "discovered_subject_unusable",
                    topic=topic,
                    subject=subject,
                    kind=exc.kind,
                    detail=exc.detail,
                )
            return None
