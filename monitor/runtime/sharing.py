"""Completeness across replicas: the Kafka side of monitor/completeness/shared.py.

Why: replicas in one consumer group each own a share of a product's partitions; the
only thing they all reach is Kafka. Each replica publishes its observations to a
compacted topic before committing the offsets they cover, and reads the whole topic
back (its own consumer, assign mode, no group) into a bounded table: that seeds a
partition's counts when it is assigned (so nothing is counted twice after a crash),
and the owner of partition 0 of a product's topic reconciles the product's windows.

Threads: the consume loop calls assigned/revoked/publish (its own thread); the reader
runs in a thread of its own and takes the pipeline lock only to apply what it read.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from monitor.completeness.config import SharingConfig
from monitor.completeness.shared import (
    PartitionCounts,
    ProductTable,
    Reconciler,
    Record,
    decode_record,
    encode_record,
    record_key,
)
from monitor.logs import LibrdkafkaLogger
from monitor.pipeline import Pipeline, ProductPipeline

log = structlog.get_logger("tidemark.sharing")

_CONSUMER_ONLY = ("group.id", "on_commit", "fetch.queue.backoff.ms", "enable.auto.commit")


def shareable(pipeline: Pipeline) -> bool:
    """Some product judges windows (manifests or expected volume): worth sharing."""
    return any(
        p.completeness is not None and p.completeness.windows is not None
        for p in pipeline.products.values()
    )


@dataclass(slots=True)
class SharedProduct:
    """One product's shared-completeness state on this replica."""

    topic: str
    product: ProductPipeline
    counts: PartitionCounts
    table: ProductTable
    reconciler: Reconciler


class Sharing:
    """Publishes observations, reads them back, and runs this replica's reconcilers."""

    def __init__(
        self,
        config: SharingConfig,
        kafka_conf: dict[str, Any],
        pipeline: Pipeline,
        *,
        logger: LibrdkafkaLogger | None = None,
        discovers_windows: bool = False,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.topic = config.topic
        # Replaced, never changed in place: the reader iterates them without the lock.
        self.by_name: dict[str, SharedProduct] = {}
        self.by_topic: dict[str, SharedProduct] = {}
        # Discovery may add products that judge windows while running (see _follow).
        self.discovers_windows = discovers_windows
        self._followed: dict[str, ProductPipeline] | None = None
        self._follow()
        base = {k: v for k, v in kafka_conf.items() if k not in _CONSUMER_ONLY}
        librdkafka_log = logger or LibrdkafkaLogger()
        self._admin_conf = base
        self._producer = Producer(
            {**base, "enable.idempotence": True, "linger.ms": 5}, logger=librdkafka_log
        )
        self._reader = Consumer(
            {
                **base,
                "group.id": "tidemark-completeness-reader",  # required; never joins
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            },
            logger=librdkafka_log,
        )
        self._partitions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # catch-up and rewind requests
        self._requests: list[threading.Event] = []
        self._rewind: set[int] = set()  # shared-topic partitions to read again

    def _shared(self, topic: str, product: ProductPipeline) -> SharedProduct | None:
        """The shared state of one product's windows; None when it judges none
        (sequences only: judged per partition, nothing to share)."""
        tracker = product.completeness
        windows = tracker.windows if tracker is not None else None
        if tracker is None or windows is None:
            return None
        c = tracker.config
        keep = c.max_open_windows + c.max_retained_windows
        shared = SharedProduct(
            topic,
            product,
            PartitionCounts(product.config.name, c.window, max_windows=keep),
            ProductTable(window=c.window, max_entries=self.config.max_entries, keep_windows=keep),
            Reconciler(
                product.config.name,
                windows,
                c.window,
                product.config.max_out_of_orderness,
            ),
        )
        tracker.share(shared.counts, shared.table, shared.reconciler)
        return shared

    def _follow(self) -> list[SharedProduct]:
        """Share what the pipeline has now; call under the pipeline lock (or before
        the reader starts). Returns the products newly shared.

        Discovery adds and drops products while running; the pipeline replaces its
        `products` dict when it does, so an unchanged one costs a single test. A
        product dropped (topic deleted, no partitions left here) stops being shared;
        one built again for the same topic replaces the old one.
        """
        products = self.pipeline.products
        if products is self._followed:
            return []
        self._followed = products
        by_topic = {t: s for t, s in self.by_topic.items() if products.get(t) is s.product}
        added = []
        for topic, product in products.items():
            if topic not in by_topic and (shared := self._shared(topic, product)) is not None:
                by_topic[topic] = shared
                added.append(shared)
        self.by_topic = by_topic
        self.by_name = {s.counts.product: s for s in by_topic.values()}
        return added

    def _read_again(self, added: list[SharedProduct]) -> None:
        """Products shared while running: the reader skipped their records until now,
        so the shared-topic partitions holding them are read again from the beginning
        before the next catch-up completes (records are idempotent: the others' records
        change nothing)."""
        if added:
            with self._lock:
                self._rewind.update(self._partition_of(s.counts.product) for s in added)

    # --- set-up -------------------------------------------------------------------
    def start(self) -> None:
        """Create the topic if missing (compacted), learn its partitions, start reading."""
        if not self.by_topic and not self.discovers_windows:
            return
        self._ensure_topic()
        self._thread = threading.Thread(target=self._run, name="tidemark-sharing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._producer.flush(self.config.publish_timeout)
        self._reader.close()

    def _ensure_topic(self) -> None:
        """Use the topic if it exists, else create it compacted; learn its partitions."""
        topic = self.topic
        admin = AdminClient(self._admin_conf)
        if self._learn_partitions(admin):
            return
        try:
            futures = admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=self.config.partitions,
                        replication_factor=self.config.replication_factor,
                        config={
                            "cleanup.policy": "compact,delete",
                            "retention.ms": str(round(self.config.retention * 1000)),
                        },
                    )
                ],
                operation_timeout=10,
                request_timeout=10,
            )
            futures[topic].result(timeout=15)
            log.info("completeness_topic_created", topic=topic, partitions=self.config.partitions)
        except Exception as exc:  # exists already (a race), or no CreateTopics on the broker
            log.warning(
                "completeness_topic_not_created",
                topic=topic,
                error=type(exc).__name__,
                then="using it if the broker creates it",
            )
        for _ in range(20):
            if self._learn_partitions(admin):
                return
            self._stop.wait(0.5)
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"{topic} missing"))

    def _learn_partitions(self, admin: AdminClient) -> bool:
        """Metadata of every topic (asking for one by name could auto-create it)."""
        found = admin.list_topics(timeout=10).topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return False
        self._partitions = len(found.partitions)
        return True

    def _partition_of(self, product: str) -> int:
        """Every record of a product on one partition: read back in the order written."""
        return zlib.crc32(product.encode()) % max(1, self._partitions)

    # --- hooks of the consume loop ----------------------------------------------------
    def assigned(
        self, partitions: Iterable[tuple[str, int]], counts: dict[str, int]
    ) -> dict[tuple[str, int], int]:
        """Before counting: read the topic to its end, seed each new partition's counts
        and say up to which offset they are already covered (the resume offset)."""
        with self.pipeline.lock:  # discovery may have added products for these
            self._read_again(self._follow())
        mine = [(t, p) for t, p in partitions if t in self.by_topic]
        if not mine:
            return {}
        started = time.monotonic()
        if not self.catch_up(self.config.catch_up_timeout):
            log.warning(
                "completeness_catch_up_timeout",
                topic=self.topic,
                timeout=self.config.catch_up_timeout,
                then="counting from the committed offsets",
            )
        else:
            log.info(
                "completeness_caught_up",
                topic=self.topic,
                seconds=round(time.monotonic() - started, 3),
            )
        covered: dict[tuple[str, int], int] = {}
        with self.pipeline.lock:
            for topic, partition in mine:
                shared = self.by_topic[topic]
                if topic in counts:
                    shared.reconciler.partitions = counts[topic]
                progress = shared.table.progress.get(partition)
                shared.counts.seed(
                    partition,
                    shared.table.counted(partition),
                    progress.origin if progress is not None else None,
                    progress.seq if progress is not None else 0,
                )
                if progress is not None:
                    covered[(topic, partition)] = progress.offset
        return covered

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        """After the last publish and commit of these partitions (or their loss)."""
        for topic, partition in partitions:
            shared = self.by_topic.get(topic)
            if shared is not None:
                shared.counts.forget(partition)

    def publish(self, now: float) -> bool:
        """Publish what changed and wait for the broker; False: do not commit yet.

        Offsets are committed only after the observations covering them are stored,
        so a replica killed between the two leaves observations that reach past the
        commit, never a commit past the observations.
        """
        records: list[Record] = []
        with self.pipeline.lock:
            self._read_again(self._follow())  # e.g. a discovered topic deleted meanwhile
            hws = self.pipeline.high_watermarks
            for topic, shared in self.by_topic.items():
                clocks = shared.product.clock.partitions
                positions = []
                for partition in sorted(shared.counts.counts):
                    clock = clocks.get(partition)
                    if clock is None:
                        continue
                    positions.append(
                        (
                            partition,
                            max(clock.position, clock.warm_until),
                            clock.watermark if clock.has_watermark else None,
                            clock.is_idle(now, hws.get(topic, {}).get(partition)),
                        )
                    )
                records.extend(shared.counts.drain(positions))
        if not records:
            return True
        if self._send(records):
            return True
        with self.pipeline.lock:  # sent again next round (records are idempotent)
            for shared in self.by_topic.values():
                shared.counts.unsent([r for r in records if r.product == shared.counts.product])
        return False

    def _send(self, records: list[Record]) -> bool:
        """Produce and wait; both threads send (observations, verdicts), each its own."""
        failed: list[KafkaError | None] = []  # None: never queued (local queue full)

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                failed.append(err)

        for record in records:
            key = record_key(record, self.by_name[record.product].table.window)
            value = encode_record(record)
            for _ in range(2):
                try:
                    self._producer.produce(
                        self.topic,
                        value=value,
                        key=key,
                        partition=self._partition_of(record.product),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    self._producer.poll(1.0)
            else:
                failed.append(None)
        left = self._producer.flush(self.config.publish_timeout)
        ok = left == 0 and not failed
        if not ok:
            log.warning(
                "completeness_publish_failed",
                topic=self.topic,
                records=len(records),
                undelivered=left,
                then="offsets stay owed until a later round succeeds",
            )
        return ok

    # --- the reader -----------------------------------------------------------------
    def catch_up(self, timeout: float) -> bool:
        """Wait until the reader has read the topic to its current end."""
        if self._thread is None:
            return True
        done = threading.Event()
        with self._lock:
            self._requests.append(done)
        return done.wait(timeout)

    def _run(self) -> None:
        parts = range(self._partitions)
        self._reader.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        position = dict.fromkeys(parts, 0)
        waiting: list[threading.Event] = []
        targets: dict[int, int] | None = None
        while not self._stop.is_set():
            try:
                targets, waiting = self._turn(parts, position, targets, waiting)
            except Exception as exc:  # a defect must not end the reader (nor block assigns)
                log.error("completeness_reader_failed", error_type=type(exc).__name__)
                self._stop.wait(1.0)

    def _turn(
        self,
        parts: range,
        position: dict[int, int],
        targets: dict[int, int] | None,
        waiting: list[threading.Event],
    ) -> tuple[dict[int, int] | None, list[threading.Event]]:
        """One read: take catch-up requests, apply records, release caught-up waiters."""
        with self._lock:
            rewind, self._rewind = self._rewind, set()
        if rewind:  # before any catch-up completes: a waiter must see those records
            for p in rewind:
                position[p] = 0
            # A new assignment: librdkafka drops what it fetched for the old positions.
            self._reader.assign(
                [TopicPartition(self.topic, p, position[p] or OFFSET_BEGINNING) for p in parts]
            )
        if targets is None:
            with self._lock:
                waiting, self._requests = self._requests, []
            if waiting:
                targets = self._ends(parts)
        try:  # short polls while an assignment waits to catch up
            messages = self._reader.consume(500, 0.2 if targets is None else 0.02)
        except KafkaException:
            return targets, waiting
        self._apply(messages, position)
        # Caught up: at the reported end and nothing more came (Tansu reports the last
        # batch's base offset as the end, so an empty read confirms it).
        if (
            targets is not None
            and not messages
            and all(position[p] >= end for p, end in targets.items())
        ):
            for event in waiting:
                event.set()
            waiting, targets = [], None
        if targets is None:
            self._roles()
        return targets, waiting

    def _topic_partitions(self, topic: str) -> int | None:
        """The product topic's partition count, when the loop could not say at assignment."""
        try:
            found = self._reader.list_topics(topic, timeout=5).topics.get(topic)
        except KafkaException:
            return None
        if found is None or found.error is not None or not found.partitions:
            return None
        return len(found.partitions)

    def _ends(self, parts: Iterable[int]) -> dict[int, int]:
        ends = {}
        for p in parts:
            try:
                _, high = self._reader.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=5, cached=False
                )
                ends[p] = int(high)
            except KafkaException:
                ends[p] = 0
        return ends

    def _apply(self, messages: list[Any], position: dict[int, int]) -> None:
        if not messages:
            return
        by_name = self.by_name
        with self.pipeline.lock:
            for msg in messages:
                if msg.error() is not None:
                    continue
                position[msg.partition()] = msg.offset() + 1
                record = decode_record(msg.value())
                if record is None:  # a tombstone, a newer version, not ours: skipped
                    continue
                shared = by_name.get(record.product)
                if shared is not None and shared.table.apply(record):
                    shared.reconciler.apply(record, shared.table)

    def _roles(self) -> None:
        """The owner of partition 0 of a product's topic reconciles it (after catching up)."""
        judged: list[Record] = []
        for shared in self.by_topic.values():
            # (a dict membership test: safe without the lock, re-checked under it)
            if shared.reconciler.partitions is None and 0 in shared.product.clock.partitions:
                shared.reconciler.partitions = self._topic_partitions(shared.topic)
        with self.pipeline.lock:
            for shared in self.by_topic.values():
                rec = shared.reconciler
                owner = 0 in shared.product.clock.partitions
                if owner and not rec.active and rec.partitions is not None:
                    rec.activate(shared.table)
                    log.info("completeness_reconciler_started", product=rec.product)
                elif not owner and rec.active:
                    rec.deactivate()
                    log.info("completeness_reconciler_stopped", product=rec.product)
                if rec.active:
                    judged.extend(rec.changes())
        if judged:
            self._send(judged)
