"""One event through decode → contract → event time → watermark → completeness.

The consume loop hands whole batches here; nothing in this module talks to
Kafka. Per event the work is a decode, a field read and a handful of integer
additions: no label look-ups, no logging, no allocation beyond the decoder's.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby, repeat
from operator import sub, truediv
from typing import Any, Protocol, cast

import structlog

from monitor.completeness.manifests import ManifestError, decode_manifest
from monitor.completeness.tracker import CompletenessTracker
from monitor.config import ProductConfig
from monitor.contract.decoding import Decoder, HoldReason, InvalidEvent, Reason, SchemaPending
from monitor.contract.eventtime import EventTimeExtractor, kafka_timestamp
from monitor.contract.model import Verdict
from monitor.contract.rules import CompiledRules, RuleVerdict, Sampler
from monitor.stats import LATENCY_BUCKETS, Histogram, ProductStats
from monitor.watermarks import FUTURE, LATE, ClockSettings, PartitionClock, ProductClock

log = structlog.get_logger("tidemark.pipeline")

_COMPATIBLE = Verdict.COMPATIBLE
# Topic-only batches: a partition run at least this long is counted in C-level passes.
_MIN_RUN = 16


class Message(Protocol):
    """The part of confluent_kafka.Message the pipeline reads."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def error(self) -> Any: ...


FieldGetter = Callable[[dict[str, Any]], Any]


def _failed(msg: Message, exc: Exception, count: int, **where: str) -> None:
    """An event whose processing raised: counted, skipped and committed, never retried.

    Retrying could not help (the same bytes fail the same way) and would stall
    the partition; crashing would stop every product. The event is counted in
    processing_errors instead, so a defect is visible and alertable. Logged at
    the 1st, 2nd, 4th, 8th... failure so a systematic one cannot flood the log;
    the exception's type only, as its text may quote the payload.
    """
    if count & (count - 1) == 0:
        log.error(
            "event_processing_failed",
            **where,
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            error_type=type(exc).__name__,
            failures=count,
        )


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """The first event of a partition that cannot be decoded yet: the partition waits here.

    Nothing at or after `offset` was processed, so resuming at `offset` counts
    every event exactly once.
    """

    topic: str
    partition: int
    offset: int
    schema_id: int
    reason: HoldReason


def field_getter(path: str) -> FieldGetter:
    """Read a dotted path from a decoded record; None where any step is missing."""
    steps = tuple(path.split("."))

    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for step in steps:
            if not isinstance(value, dict):
                return None
            value = value.get(step)
        return value

    return get


@dataclass(frozen=True, slots=True)
class ViolationRecord:
    """Where one bad event is, for on-call to fetch it with their own tools; never its payload.

    `kind` is "contract" (its `names` hold the conformance reason) or "rule" (the
    rules it broke, and those that could not be evaluated on it in `errors`).
    """

    partition: int
    offset: int
    timestamp_ms: int  # the Kafka record timestamp
    kind: str
    names: tuple[str, ...]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContractVersion:
    """The registry subject version a product's contract came from, as exported."""

    subject: str
    version: int
    schema_id: int


@dataclass(slots=True)
class ProductPipeline:
    """All per-event state of one data product on this instance."""

    config: ProductConfig
    decoder: Decoder | None  # None: topic-only mode, nothing is decoded
    extract_event_time: EventTimeExtractor | None  # None: topic-only, the Kafka timestamp
    clock: ProductClock
    completeness: CompletenessTracker | None = None
    producer_of: FieldGetter | None = None
    sequence_of: FieldGetter | None = None
    stats: ProductStats = field(default_factory=ProductStats)
    # Correctness: None when the product has no rules (the hot path's one check).
    rules: CompiledRules | None = None
    sampler: Sampler | None = None  # None: every conforming event is checked
    # The most recent violations for /violations; bounded (server.violations_per_product).
    recent: deque[ViolationRecord] = field(default_factory=lambda: deque(maxlen=100))
    contract_version: ContractVersion | None = None

    @classmethod
    def build(
        cls,
        config: ProductConfig,
        decoder: Decoder | None,
        extractor: EventTimeExtractor | None,
        stuck_after: float,
        *,
        rules: CompiledRules | None = None,
        violations_kept: int = 100,
        contract_version: ContractVersion | None = None,
    ) -> ProductPipeline:
        settings = ClockSettings(
            max_out_of_orderness=config.max_out_of_orderness,
            idle_timeout=config.idle_timeout,
            max_future_skew=config.max_future_skew,
            stuck_after=stuck_after,
        )
        stats = ProductStats(
            latency=Histogram.with_edge(LATENCY_BUCKETS, config.freshness.threshold)
        )
        tracker = None
        producer_of = sequence_of = None
        if config.completeness is not None:
            tracker = CompletenessTracker(
                config.completeness, max_out_of_orderness=config.max_out_of_orderness
            )
            sequence = config.completeness.sequence
            if sequence is not None:
                producer_of = field_getter(sequence.producer_field)
                sequence_of = field_getter(sequence.sequence_field)
        return cls(
            config=config,
            decoder=decoder,
            extract_event_time=extractor,
            clock=ProductClock(settings),
            completeness=tracker,
            producer_of=producer_of,
            sequence_of=sequence_of,
            stats=stats,
            rules=rules if rules else None,
            sampler=Sampler(config.rules_sample_ratio) if config.rules_sample_ratio < 1.0 else None,
            recent=deque(maxlen=violations_kept),
            contract_version=contract_version,
        )

    def switch_contract(
        self,
        decoder: Decoder,
        extractor: EventTimeExtractor,
        rules: CompiledRules | None,
        version: ContractVersion | None,
    ) -> None:
        """A new contract version, between batches: counters, clocks and windows continue."""
        self.decoder = decoder
        self.extract_event_time = extractor
        self.rules = rules if rules else None
        self.contract_version = version

    def assign(
        self,
        partition: int,
        now: float,
        start: int,
        warmup_until: int,
        topic_partitions: int | None = None,
    ) -> None:
        # Offsets below warmup_until were counted by an earlier owner: they only warm the clock.
        self.clock.assign(partition, now, position=start, warm_until=warmup_until)
        if self.completeness is not None:
            self.completeness.on_partitions_assigned(
                {partition}, now, topic_partitions=topic_partitions
            )

    def revoke(self, partition: int) -> None:
        self.clock.revoke(partition)
        if self.completeness is not None:
            self.completeness.on_partitions_revoked({partition})

    def lose(self, partition: int, now: float, high_watermark: int | None) -> None:
        """Like revoke, but the clock keeps the partition's last watermark as an orphan."""
        self.clock.lose(partition, now, high_watermark)
        if self.completeness is not None:
            self.completeness.on_partitions_revoked({partition})

    def _violation(self, reason: str, msg: Message, partition: int, offset: int) -> None:
        """A counted event that breaks the contract (the bad path only)."""
        self.stats.events += 1
        self.stats.violations[reason] += 1
        self.recent.append(
            ViolationRecord(partition, offset, msg.timestamp()[1], "contract", (str(reason),))
        )

    def _check_rules(
        self, rules: CompiledRules, record: Any, msg: Message, partition: int, offset: int
    ) -> None:
        """Correctness of one conforming, counted event (if the sampler admits it)."""
        if self.sampler is not None and not self.sampler(partition, offset):
            return
        outcome = rules.evaluate(record)  # never raises
        stats = self.stats
        stats.rule_checked += 1
        if outcome.all_passed:
            stats.correct += 1
            return
        broken, failed = [], []
        for name, verdict in outcome:
            if verdict is RuleVerdict.VIOLATION:
                stats.rule_violations[name] += 1
                broken.append(name)
            elif verdict is RuleVerdict.ERROR:
                stats.rule_errors[name] += 1
                failed.append(name)
        self.recent.append(
            ViolationRecord(
                partition, offset, msg.timestamp()[1], "rule", tuple(broken), tuple(failed)
            )
        )

    def prefetch(self, msg: Message) -> None:
        """An event that waits behind a held one: start looking up its schema already."""
        prefetch = getattr(self.decoder, "prefetch", None) if self.decoder is not None else None
        if prefetch is not None:
            prefetch(msg.value())

    def process(self, msg: Message, now: float) -> None:
        """Count one event; raises SchemaPending, with nothing changed, if it must wait."""
        partition = msg.partition() or 0
        offset = msg.offset() or 0
        product_clock = self.clock
        clock = product_clock.partitions.get(partition)
        if clock is None:  # a message for a partition we were never told about
            clock = product_clock.assign(partition, now, position=offset)
        try:
            self._count(msg, clock, partition, offset, now)
        except SchemaPending:
            # Nothing changed: the position stays at this event, so commits never
            # pass it and it is read again when the partition resumes.
            raise
        except Exception as exc:  # a defect in Tidemark, not in the data: see _failed
            self.stats.processing_errors += 1
            _failed(msg, exc, self.stats.processing_errors, product=self.config.name)
        # Only once the event is counted (or its failure is) may its offset be committed.
        # (PartitionClock.advance_position, inline: this runs once per event.)
        offset += 1
        if clock.position != offset:
            clock.position = offset
            clock.position_changed_at = now
        product_clock.dirty = True

    def _count(
        self, msg: Message, clock: PartitionClock, partition: int, offset: int, now: float
    ) -> None:
        """The hot path: one call per event here, with _observe's common part inline."""
        decoder, extract = self.decoder, self.extract_event_time
        if decoder is None or extract is None:
            self._count_topic_only(msg, clock, partition, now)
            return
        warm = offset < clock.warm_until
        try:
            record, writer = decoder.decode(msg.value())
        except InvalidEvent as invalid:
            if not warm:
                self._violation(invalid.reason, msg, partition, offset)
                if invalid.writer is not None:
                    self.stats.drift[Verdict.INCOMPATIBLE] += 1
            return
        try:
            # Only the kafka-timestamp extractor reads the timestamp: skip building it.
            event_time = extract(record, msg.timestamp()[1] if extract is kafka_timestamp else -1)
        except (ValueError, TypeError, OverflowError):
            if not warm:
                self._violation(Reason.BAD_EVENT_TIME, msg, partition, offset)
            return
        if event_time is None:
            if not warm:
                self._violation(Reason.MISSING_EVENT_TIME, msg, partition, offset)
            return
        if warm:
            clock.warm(event_time, now)
            return
        stats = self.stats
        stats.events += 1
        stats.conforming += 1
        if writer.verdict is _COMPATIBLE:
            stats.drift[_COMPATIBLE] += 1
        if self.rules is not None:
            self._check_rules(self.rules, record, msg, partition, offset)
        if self.completeness is not None:
            self._observe(clock, partition, event_time, now, record)
            return
        # _observe without completeness, and PartitionClock.observe, inline.
        clock.last_event_at = now
        settings = clock.settings
        if event_time > now + settings.max_future_skew:
            stats.future += 1
            return
        if event_time > clock.max_event_time:
            clock.max_event_time = event_time
        elif event_time < clock.max_event_time - settings.max_out_of_orderness:
            stats.late += 1
            stats.lateness.observe(clock.watermark - event_time)
        latency = now - event_time
        if latency < 0.0:
            latency = 0.0
        histogram = stats.latency
        histogram.counts[bisect_left(histogram.bounds, latency)] += 1  # Histogram.observe
        histogram.total += latency
        if now - event_time <= self.config.freshness.threshold:
            stats.fresh += 1

    def _count_topic_only(
        self, msg: Message, clock: PartitionClock, partition: int, now: float
    ) -> None:
        """Topic-only mode: the payload is never read; the Kafka timestamp is the event time.

        An event without a timestamp (pre-0.10 message format) is counted in events
        only: there is no contract for it to break and no time to watermark.
        """
        timestamp_ms = msg.timestamp()[1]
        if (msg.offset() or 0) < clock.warm_until:
            if timestamp_ms >= 0:
                clock.warm(timestamp_ms / 1000.0, now)
            return
        self.stats.events += 1
        if timestamp_ms >= 0:
            self._observe(clock, partition, timestamp_ms / 1000.0, now, None)

    @property
    def batchable(self) -> bool:
        """Topic-only without completeness: a batch's events go through count_topic_only."""
        return (self.decoder is None or self.extract_event_time is None) and (
            self.completeness is None
        )

    def count_topic_only(self, messages: list[Message], now: float) -> None:
        """process() for a batch's events of a topic-only product, in order, per partition run.

        A consumer batch comes in runs of one partition (librdkafka hands over
        a fetch at a time), so a long run is counted with a few C-level passes
        over its offsets and timestamps (_count_run) instead of Python work per
        event; a short run, or one _count_run does not take, goes through the
        per-event loop (_count_events). Topic-only mode should cost little more
        than the bare consume loop (bench/throughput.py). test_topic_only_batch
        checks both leave exactly the state of process() one event at a time.
        """
        if len(messages) < _MIN_RUN:
            self._count_events(messages, now)
            return
        try:
            read_partitions = [msg.partition() for msg in messages]
            read_offsets = [msg.offset() for msg in messages]
            stamps = [msg.timestamp()[1] for msg in messages]
        except Exception:  # not a broker's message: the per-event path counts the failure
            self._count_events(messages, now)
            return
        if None in read_partitions or None in read_offsets:  # never from a broker
            partitions = [p or 0 for p in read_partitions]  # as process() reads them
            offsets = [o or 0 for o in read_offsets]
        else:
            partitions = cast(list[int], read_partitions)
            offsets = cast(list[int], read_offsets)
        start = pending = 0  # messages[pending:start] wait for the per-event loop
        for partition, group in groupby(partitions):
            end = start + len(list(group))
            if end - start >= _MIN_RUN:
                if pending < start:
                    self._count_events(messages[pending:start], now)
                    pending = start
                if self._count_run(partition, offsets[start:end], stamps[start:end], now):
                    pending = end
            start = end
        if pending < start:
            self._count_events(messages[pending:start], now)
        self.clock.dirty = True

    def _count_run(self, partition: int, offsets: list[int], stamps: list[int], now: float) -> bool:
        """A run of one partition's events, counted as the per-event path would; False
        (nothing changed) where it cannot be done here.

        Taken when the run is all read-back (warm) or all counted, every event has
        a timestamp, and (if counted) the timestamps never decrease, as with one
        producer per partition. Then, in one sorted list: the late events are a
        prefix (below the watermark before the run), the future ones a suffix,
        and each histogram bucket and the fresh count is one bisect.
        """
        try:
            clock = self.clock.partitions.get(partition)
            settings = (clock or self.clock).settings
            skew, ooo = settings.max_future_skew, settings.max_out_of_orderness
            warm_until = -1 if clock is None else clock.warm_until
            if min(stamps) < 0 or ooo < 0:
                return False
            limit = now + skew
            times = list(map(truediv, stamps, repeat(1000.0)))
            if max(offsets) < warm_until:  # read-back only: warms the clock, counts nothing
                highest = max(times)
                if highest > limit:
                    return False
                if clock is None:
                    return False  # never: warm_until is -1 without a clock
                if highest > clock.max_event_time:
                    clock.max_event_time = highest
                self._run_position(clock, offsets, now)
                return True
            if min(offsets) < warm_until or sorted(times) != times:
                return False
            n = len(times)
            counted = bisect_right(times, limit)  # the rest lie beyond max_future_skew
            on_time = times[:counted]
            if clock is None:  # a message for a partition we were never told about
                clock = self.clock.assign(partition, now, position=offsets[0])
            highest = clock.max_event_time
            late = bisect_left(on_time, highest - ooo)
            ages = list(map(sub, repeat(now), on_time))  # never increasing
            ages.reverse()
            stats = self.stats
            latency = stats.latency
            lows = [bisect_right(ages, bound) if bound >= 0 else 0 for bound in latency.bounds]
            fresh = bisect_right(ages, self.config.freshness.threshold)
            positive = counted - bisect_right(ages, 0.0)
        except Exception:  # a defect: the per-event path counts it per event
            return False
        for t in on_time[:late]:
            stats.lateness.observe(highest - ooo - t)
        if counted and on_time[-1] > highest:
            clock.max_event_time = on_time[-1]
        clock.last_event_at = now
        counts, below = latency.counts, 0
        for i, at_most in enumerate(lows):
            counts[i] += at_most - below
            below = at_most
        counts[-1] += counted - below
        ages.reverse()
        latency.total = sum(ages[:positive], latency.total)  # in event order, as observe()
        stats.events += n
        stats.fresh += fresh
        stats.future += n - counted
        stats.late += late
        self._run_position(clock, offsets, now)
        return True

    @staticmethod
    def _run_position(clock: PartitionClock, offsets: list[int], now: float) -> None:
        """advance_position per event, at once: moved unless every offset was the position's."""
        last = offsets[-1] + 1
        if not (last == clock.position and min(offsets) == max(offsets)):
            clock.position = last
            clock.position_changed_at = now

    def _count_events(self, messages: list[Message], now: float) -> None:
        """process() per event, inlined, the counters summed in locals and written once."""
        if not messages:
            return
        stats = self.stats
        latency = stats.latency
        bounds, counts = latency.bounds, latency.counts
        threshold = self.config.freshness.threshold
        partitions = self.clock.partitions
        events = fresh = future = late = 0
        latency_total = 0.0
        last_partition: int | None = None
        clock: PartitionClock | None = None
        skew = ooo = 0.0
        for msg in messages:
            partition = msg.partition() or 0
            offset = msg.offset() or 0
            if partition != last_partition or clock is None:
                clock = partitions.get(partition)
                if clock is None:  # a message for a partition we were never told about
                    clock = self.clock.assign(partition, now, position=offset)
                last_partition = partition
                skew = clock.settings.max_future_skew
                ooo = clock.settings.max_out_of_orderness
            try:
                timestamp_ms = msg.timestamp()[1]
                if offset < clock.warm_until:
                    if timestamp_ms >= 0:
                        clock.warm(timestamp_ms / 1000.0, now)
                else:
                    events += 1
                    if timestamp_ms >= 0:
                        event_time = timestamp_ms / 1000.0
                        clock.last_event_at = now
                        if event_time > now + skew:
                            future += 1
                        else:
                            highest = clock.max_event_time
                            if event_time > highest:
                                clock.max_event_time = event_time
                            elif event_time < highest - ooo:
                                late += 1
                                stats.lateness.observe(highest - ooo - event_time)
                            age = now - event_time
                            observed = age if age > 0.0 else 0.0
                            counts[bisect_left(bounds, observed)] += 1
                            latency_total += observed
                            if age <= threshold:
                                fresh += 1
            except Exception as exc:  # a defect in Tidemark, not in the data: see _failed
                stats.processing_errors += 1
                _failed(msg, exc, stats.processing_errors, product=self.config.name)
            if offset + 1 != clock.position:
                clock.position = offset + 1
                clock.position_changed_at = now
        stats.events += events
        stats.fresh += fresh
        stats.future += future
        stats.late += late
        latency.total += latency_total
        self.clock.dirty = True

    def _observe(
        self,
        clock: PartitionClock,
        partition: int,
        event_time: float,
        now: float,
        record: dict[str, Any] | None,
    ) -> None:
        """A counted event with a usable event time: watermark, latency, completeness."""
        stats = self.stats
        kind = clock.observe(event_time, now)
        if kind == FUTURE:
            stats.future += 1
            if self.completeness is not None and self.sequence_of is not None:
                # Delivered, so its sequence number arrived; its date says nothing about
                # when, so it counts in no window and its arrival time stands in for it.
                self.completeness.observe_future(partition, now, *self._producer_sequence(record))
            return
        if kind == LATE:
            stats.late += 1
            stats.lateness.observe(clock.watermark - event_time)
        latency = now - event_time
        stats.latency.observe(latency if latency > 0.0 else 0.0)
        if latency <= self.config.freshness.threshold:
            stats.fresh += 1
        if self.completeness is not None:
            self.completeness.observe(partition, event_time, *self._producer_sequence(record))

    def _producer_sequence(self, record: dict[str, Any] | None) -> tuple[str | None, int | None]:
        if record is None:
            return None, None
        producer = self.producer_of(record) if self.producer_of else None
        sequence = self.sequence_of(record) if self.sequence_of else None
        return (
            None if producer is None else str(producer),
            sequence if isinstance(sequence, int) else None,
        )


MANIFEST_DECODE_ERROR = "decode_error"
MANIFEST_UNKNOWN_PRODUCT = "unknown_product"
MANIFEST_PROCESSING_ERROR = "processing_error"  # raised inside Tidemark: see _failed
MANIFEST_ERRORS = (MANIFEST_DECODE_ERROR, MANIFEST_UNKNOWN_PRODUCT, MANIFEST_PROCESSING_ERROR)


@dataclass(slots=True)
class ManifestTopic:
    """A control topic of producer manifests, shared by one or more products."""

    topic: str
    products: dict[str, ProductPipeline]  # by product name
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    errors: Counter[str] = field(default_factory=Counter)  # decode_error, unknown_product
    # Offsets below these were counted by an earlier owner: replayed, never counted again.
    warmup_until: dict[int, int] = field(default_factory=dict)
    # Highest offset applied per partition by this process, kept across revoke/assign:
    # a record read again (replayed or not) already changed its window; anonymous
    # manifests add up, so applying one twice would double the expectation.
    applied: dict[int, int] = field(default_factory=dict)

    def process(self, msg: Message) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            self._apply(msg, partition, offset)
        except Exception as exc:
            self.errors[MANIFEST_PROCESSING_ERROR] += 1
            _failed(msg, exc, self.errors[MANIFEST_PROCESSING_ERROR], control_topic=self.topic)
        self.positions[partition] = offset + 1  # applied (or counted as failed): committable

    def _apply(self, msg: Message, partition: int, offset: int) -> None:
        if offset <= self.applied.get(partition, -1):
            return
        self.applied[partition] = offset
        replay = offset < self.warmup_until.get(partition, -1)
        try:
            manifest = decode_manifest(msg.value() or b"")
        except ManifestError:
            if not replay:
                self.errors[MANIFEST_DECODE_ERROR] += 1
            return
        product = self.products.get(manifest.product)
        if product is None or product.completeness is None:
            if not replay:
                self.errors[MANIFEST_UNKNOWN_PRODUCT] += 1
            return
        product.completeness.on_manifest(
            manifest.window_start,
            manifest.window_end,
            manifest.event_count,
            manifest.producer_id,
            replay=replay,
            source=(self.topic, partition, offset),
        )


@dataclass(slots=True)
class Pipeline:
    """Routes messages to their product; the one object the loop and collector share.

    `lock` is taken once per batch by the loop and once per scrape by the
    collector, so a scrape always sees whole batches.
    """

    products: dict[str, ProductPipeline]  # by topic; replaced whole when one is added
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Regex subscriptions (librdkafka '^...') of the discover: section, if any.
    patterns: list[str] = field(default_factory=list)
    discovered: set[str] = field(default_factory=set)  # topics whose product discovery made
    left_out: int = 0  # topics discovery matched beyond its max_products
    # Replaced whole by the lag tracker's thread, never mutated: topic -> partition -> end.
    high_watermarks: dict[str, dict[int, int]] = field(default_factory=dict)
    manifests: dict[str, ManifestTopic] = field(default_factory=dict)
    _advanced_hws: dict[str, dict[int, int]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for product in self.products.values():
            manifests = product.config.completeness and product.config.completeness.manifests
            if manifests:
                control = self.manifests.setdefault(
                    manifests.topic, ManifestTopic(manifests.topic, {})
                )
                control.products[product.config.name] = product

    @property
    def topics(self) -> list[str]:
        return [*self.products, *self.manifests]

    @property
    def subscription(self) -> list[str]:
        """What the consumer subscribes to: the known topics and the discovery patterns."""
        return [*self.topics, *self.patterns]

    def add_discovered(self, new: dict[str, ProductPipeline]) -> None:
        """Products discovery made for newly assigned topics; call under `lock`.

        The dict is replaced, not changed in place, so a reader that took
        `products` without the lock (the lag thread's topic list) keeps a whole one.
        """
        if new:
            self.products = {**self.products, **new}
            self.discovered.update(new)

    def forget_discovered(self, assigned: Iterable[tuple[str, int]]) -> list[str]:
        """Drop discovered products this assignment does not include; call under `lock`.

        With the eager protocol an assignment is this member's whole share: a
        discovered topic outside it was deleted (or is another member's now), so
        its series go. Orphans (an outage's last known state) keep theirs.
        """
        topics = {topic for topic, _ in assigned}
        gone = [
            t
            for t in self.discovered
            if t not in topics
            and not self.products[t].clock.partitions
            and not self.products[t].clock.orphans
        ]
        self.forget_topics(gone)
        return gone

    def forget_topics(self, topics: Collection[str]) -> None:
        """Drop these discovered products and their series; call under `lock`."""
        gone = {t for t in topics if t in self.discovered}
        if gone:
            self.products = {t: p for t, p in self.products.items() if t not in gone}
            self.discovered.difference_update(gone)

    def assign(
        self,
        topic: str,
        partition: int,
        now: float,
        *,
        start: int,
        warmup_until: int,
        topic_partitions: int | None = None,
    ) -> None:
        product = self.products.get(topic)
        if product is not None:
            product.assign(partition, now, start, warmup_until, topic_partitions)
        elif topic in self.manifests:
            # Manifests are replayed from the read-back too: they feed the windows'
            # expectations but no counter, and ManifestTopic.applied skips records
            # this process has already applied (anonymous manifests are summed).
            self.manifests[topic].positions[partition] = start
            self.manifests[topic].warmup_until[partition] = warmup_until

    def revoke(self, topic: str, partition: int) -> None:
        product = self.products.get(topic)
        if product is not None:
            product.revoke(partition)
        elif topic in self.manifests:
            self.manifests[topic].positions.pop(partition, None)
            self.manifests[topic].warmup_until.pop(partition, None)

    def lose(self, topic: str, partition: int, now: float) -> None:
        """The assignment was lost (no hand-over): orphan the partition's watermark."""
        product = self.products.get(topic)
        if product is not None:
            product.lose(partition, now, self.high_watermarks.get(topic, {}).get(partition))
        else:
            self.revoke(topic, partition)

    def keep_orphans(self, assigned: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """Drop orphans that a new assignment does not include; returns them.

        With the eager protocol the loop uses, an assignment is this member's
        whole share: a lost partition missing from it is another member's now,
        whose series are the true ones.
        """
        by_topic: dict[str, set[int]] = {}
        for topic, partition in assigned:
            by_topic.setdefault(topic, set()).add(partition)
        dropped = []
        for topic, product in self.products.items():
            for p in product.clock.keep_orphans(by_topic.get(topic, set())):
                dropped.append((topic, p))
        return dropped

    def owns_partitions(self) -> bool:
        return any(p.clock.partitions for p in self.products.values()) or any(
            m.positions for m in self.manifests.values()
        )

    def process_batch(
        self,
        messages: Sequence[Message],
        now: float,
        held: Collection[tuple[str, int]] = (),
    ) -> list[HeldEvent]:
        """Process a batch; returns the partitions that must now wait, and where.

        Messages of a partition in `held`, or held earlier in this batch, are not
        processed (they are read again when it resumes); their schema look-ups
        are started meanwhile.
        """
        products = self.products
        if messages and (whole := self._one_topic_only_product(messages)) is not None:
            whole.count_topic_only(list(messages), now)  # the usual batch of one such product
            return []
        new: list[HeldEvent] = []
        waiting: set[tuple[str, int]] = set()
        # Topic-only products' events, counted per product after the loop (never held:
        # holds wait for schema look-ups, and these decode nothing).
        topic_only: dict[str, list[Message]] = {}
        last_topic, product = None, None  # a batch is mostly one topic: look it up once
        for msg in messages:
            topic = msg.topic() or ""
            run = topic_only.get(topic)
            if run is not None:
                run.append(msg)
                continue
            if topic != last_topic:
                last_topic, product = topic, products.get(topic)
            if product is not None:
                if product.batchable:
                    topic_only[topic] = [msg]
                    continue
                if held or waiting:
                    key = (topic, msg.partition() or 0)
                    if key in held or key in waiting:
                        product.prefetch(msg)
                        continue
                try:
                    product.process(msg, now)
                except SchemaPending as pending:
                    partition = msg.partition() or 0
                    waiting.add((topic, partition))
                    new.append(
                        HeldEvent(
                            topic, partition, msg.offset() or 0, pending.schema_id, pending.reason
                        )
                    )
            elif topic in self.manifests:
                self.manifests[topic].process(msg)
        for topic, run in topic_only.items():
            products[topic].count_topic_only(run, now)
        return new

    def _one_topic_only_product(self, messages: Sequence[Message]) -> ProductPipeline | None:
        """The topic-only product all of a batch is for, if one is: then no routing per event."""
        topic = messages[0].topic()
        product = self.products.get(topic or "")
        if product is None or not product.batchable or messages[-1].topic() != topic:
            return None
        topics = [msg.topic() for msg in messages]
        return product if topics.count(topic) == len(topics) else None

    def advance(self, now: float) -> None:
        """After a batch: let windows close and gaps be declared on the new watermark.

        Products whose watermark cannot have moved are skipped (completeness only
        acts on a higher watermark): no event, no assignment change, the same end
        offsets, and no partition that may have turned idle since the last look.
        """
        all_hws = self.high_watermarks
        new_hws = all_hws is not self._advanced_hws
        self._advanced_hws = all_hws
        for topic, product in self.products.items():
            if product.completeness is None:
                continue
            clock = product.clock
            if not (clock.dirty or new_hws or now >= clock.recheck_at):
                continue
            clock.dirty = False
            product.completeness.advance(clock.watermark(now, all_hws.get(topic, {})), now)
            clock.recheck_at = clock.next_idle_at(now)

    def positions(self) -> Iterable[tuple[str, int, int]]:
        """(topic, partition, next offset) for every partition with progress to commit.

        A position moves past an event only once that event is counted (or its
        failure is), so what is committed from here was counted.

        Partitions still reading back data below their committed offset are left
        out: committing there would move the group's offset backwards and make
        the next owner count those events twice.
        """
        for topic, product in self.products.items():
            for partition, clock in product.clock.partitions.items():
                if clock.position >= 0 and clock.position > clock.warm_until:
                    yield topic, partition, clock.position
        for topic, control in self.manifests.items():
            for partition, offset in control.positions.items():
                yield topic, partition, offset
