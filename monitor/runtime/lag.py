"""Background high-watermark snapshots, so a scrape never waits on Kafka.

A dedicated client (no group membership) asks the brokers for every owned
partition's end offset every refresh_interval and publishes the answer as a new
dict that replaces the old one whole: readers always see one consistent
snapshot, and a slow or unreachable broker only makes the snapshot older.

End offsets are asked in batches (AdminClient.list_offsets, one ListOffsets
request per leader for up to _CHUNK partitions): at 1,000 topics x 4 one call
per partition meant 4,000 round trips a refresh. The admin client's calls do
not block (they return futures resolved on librdkafka's background thread), so
the consume loop's rebalance callback can ask it for an assignment's bounds
without waiting behind this thread.

The client's log lines reach structlog only when it is polled (see
monitor.logs.LibrdkafkaLogger), so the thread polls it between refreshes.
It also keeps each monitored topic's partition count for the consume loop's
rebalance callback, which must not ask Kafka itself (see ConsumeLoop): the
answer comes from this thread's metadata requests, so no other thread ever
calls this client (confluent-kafka serialises calls on one client, and a
rebalance would wait behind a slow watermark query).
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # admin re-exports it untyped

from monitor.logs import LibrdkafkaLogger, RepeatLimiter
from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState

log = structlog.get_logger("tidemark.lag")

_COUNTS_MAX_AGE = 60.0  # seconds; partitions are added to a topic rarely
_CHUNK = 1000  # partitions per list_offsets call: bounds one request's size
# Consumer-only properties the admin client would warn about and ignore.
_CONSUMER_ONLY = (
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "enable.auto.",
    "partition.assignment.strategy",
    "fetch.",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "queued.",
    "on_commit",
)

_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]

Offsets = dict[tuple[str, int], int]
Failures = dict[tuple[str, int], KafkaError]


def _admin_conf(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conf.items() if not k.startswith(_CONSUMER_ONLY)}


def list_offsets(
    admin: Any, partitions: Iterable[tuple[str, int]], spec: OffsetSpec, timeout: float
) -> tuple[Offsets, Failures]:
    """One offset per partition, asked _CHUNK partitions per call, all calls in flight at once.

    Per-partition errors come back per partition (both the mock cluster and
    Tansu answer a batch with an error for an unknown topic and offsets for
    the rest); a partition with no answer within `timeout` counts as timed out.
    """
    keys = list(partitions)
    futures: dict[concurrent.futures.Future[Any], tuple[str, int]] = {}
    for i in range(0, len(keys), _CHUNK):
        request = {TopicPartition(t, p): spec for t, p in keys[i : i + _CHUNK]}
        answer = admin.list_offsets(request, request_timeout=timeout)
        futures.update({f: (tp.topic, tp.partition) for tp, f in answer.items()})
    done, _ = concurrent.futures.wait(futures, timeout=timeout + 1.0)
    offsets: Offsets = {}
    failures: Failures = {}
    for future, key in futures.items():
        if future not in done:
            failures[key] = KafkaError(KafkaError._TIMED_OUT)
            continue
        exc = future.exception()
        if exc is None:
            offset = int(future.result().offset)
            if offset >= 0:
                offsets[key] = offset
            else:  # librdkafka 2.16 answers a timed-out request with -1001 and no error
                failures[key] = KafkaError(KafkaError._TIMED_OUT)
        elif isinstance(exc, KafkaException):
            failures[key] = exc.args[0]
        else:
            failures[key] = KafkaError(KafkaError._FAIL, str(exc))
    return offsets, failures


class LagTracker:
    def __init__(
        self,
        kafka_conf: dict[str, Any],
        pipeline: Pipeline,
        health: HealthState,
        interval: float,
        clock: Callable[[], float] = time.time,
        logger: LibrdkafkaLogger | None = None,
        counts_max_age: float = _COUNTS_MAX_AGE,
    ) -> None:
        conf = {k: v for k, v in kafka_conf.items() if k not in ("group.id", "on_commit")}
        conf["group.id"] = "tidemark-lag-probe"  # required by the client; never joins
        conf["enable.auto.commit"] = False
        self._client = Consumer(conf, logger=logger or LibrdkafkaLogger())
        self._admin: Any = AdminClient(_admin_conf(conf), logger=logger or LibrdkafkaLogger())
        self._pipeline = pipeline
        self._health = health
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tidemark-lag", daemon=True)
        self._counts: dict[str, int] = {}  # replaced whole, like high_watermarks
        self._counts_at = -math.inf
        self._counts_refreshed = threading.Event()  # replaced by each refresh, after set()
        self._error_log = RepeatLimiter()
        self._counts_max_age = counts_max_age
        self._missing: set[str] = set()  # discovered topics absent from the last metadata
        # Partition counts of every topic in the cluster's first answer: a partition
        # beyond them was created while this process watched (created_since_start).
        self._baseline: dict[str, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def refresh_soon(self) -> None:
        """Called after a rebalance: fetch ends for new partitions without waiting."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._client.close()
        self._admin.poll(0)  # the admin client has no close(); deliver its last lines

    def partition_count(self, topic: str, wait: float = 5.0) -> int | None:
        """How many partitions `topic` has (None: unknown), from this thread's metadata.

        A topic not known yet (start-up, or created since the last answer) makes
        this thread ask the cluster at once; the caller waits up to `wait` seconds.
        """
        if topic not in self._counts:
            refreshed = self._counts_refreshed
            self._wake.set()
            refreshed.wait(wait)
        return self._counts.get(topic)

    def created_since_start(self, topic: str, partition: int) -> bool:
        """Whether the partition did not exist when this process first asked the cluster.

        Every event of such a partition was produced while Tidemark watched, so
        a group with no committed offset starts it at its beginning, not at
        "latest": a topic created while running (discovery) or a partition
        added to a topic is counted from its first event. Unknown (no answer
        yet) counts as not new: the configured start applies.
        """
        baseline = self._baseline
        return baseline is not None and partition >= baseline.get(topic, 0)

    def _refresh_counts(self, timeout: float) -> bool:
        """Re-read the monitored topics' partition counts; False if the cluster did not answer.

        The same metadata request tells whether any broker answers at all, which
        is recorded for readiness and the Kafka-unreachable alert.
        """
        try:
            meta = self._client.list_topics(timeout=timeout)
        except KafkaException as exc:
            if self._health.kafka.failed(self._clock()):
                log.warning("kafka_unreachable", via="lag_probe", error=exc.args[0].str())
            return False
        self._answered()
        if self._baseline is None:
            self._baseline = {name: len(t.partitions) for name, t in meta.topics.items()}
        self._forget_deleted(set(meta.topics))
        self._counts = {
            topic: len(meta.topics[topic].partitions)
            for topic in self._pipeline.topics
            if topic in meta.topics and meta.topics[topic].partitions
        }
        self._counts_at = time.monotonic()
        refreshed, self._counts_refreshed = self._counts_refreshed, threading.Event()
        refreshed.set()
        return True

    def _forget_deleted(self, existing: set[str]) -> None:
        """Drop discovered products whose topic two metadata answers in a row lack.

        The consumer's pattern subscription may keep a deleted topic's partitions
        for as long as librdkafka's metadata cache does; the cluster's answer says
        at once that it is gone, so its series go with it. Twice, because one
        answer from a broker that has not caught up is not proof.
        """
        absent = {t for t in self._pipeline.discovered if t not in existing}
        gone, self._missing = absent & self._missing, absent
        if gone:
            with self._pipeline.lock:
                self._pipeline.forget_topics(gone)
            log.info("discovered_topics_deleted", topics=sorted(gone)[:20], count=len(gone))

    def _counts_stale(self) -> bool:
        missing = len(self._counts) < len(self._pipeline.topics)
        return missing or time.monotonic() - self._counts_at > self._counts_max_age

    def _owned(self) -> list[tuple[str, int]]:
        with self._pipeline.lock:
            return [
                (topic, p)
                for topic, product in self._pipeline.products.items()
                for p in product.clock.partitions
            ]

    def refresh(self) -> None:
        """Take one snapshot; publish it, and its time, only when every partition answered.

        A failed query keeps the partition's previous end (an old answer beats
        a wrong zero lag). When the first query fails before any answered, a
        metadata request tells a dead partition leader from a cluster that
        does not answer at all; in the latter case the refresh stops there:
        Kafka is marked unreachable and the old snapshot stays as it is.
        """
        timeout = max(1.0, min(self._interval, 10.0))
        owned = self._owned()
        if not owned or self._counts_stale():
            # With nothing assigned yet, the metadata answer still tells whether
            # the cluster answers, so /readyz can say which of the two is missing.
            if not self._refresh_counts(timeout):
                return  # nothing answers: keep the previous snapshot whole
            if not owned:
                self._pipeline.high_watermarks = {}
                self._health.lag_snapshot_at = self._clock()
                return
        if self._stop.is_set():
            return
        ends, failures = list_offsets(self._admin, owned, _LATEST, timeout)
        self._admin.poll(0)  # deliver the admin client's queued log lines
        if failures:
            self._failed(failures)
            if not ends and not self._refresh_counts(timeout):
                return  # nothing answers: keep the previous snapshot whole
            if ends:
                self._answered()
        elif ends:
            self._answered()
        snapshot: dict[str, dict[int, int]] = {}
        previous = self._pipeline.high_watermarks
        for topic, partition in owned:
            high = ends.get((topic, partition))
            if high is None:  # failed: an old answer beats a wrong zero lag
                high = previous.get(topic, {}).get(partition)
                if high is None:
                    continue
            snapshot.setdefault(topic, {})[partition] = high
        self._pipeline.high_watermarks = snapshot
        if not failures:
            self._health.lag_snapshot_at = self._clock()

    def _failed(self, failures: Failures) -> None:
        """Count every failed partition; log once per error code, not once per partition."""
        by_code: dict[str, list[tuple[str, int]]] = {}
        for key, err in failures.items():
            by_code.setdefault(err.name(), []).append(key)
        with self._pipeline.lock:
            for name, keys in by_code.items():
                self._health.loop.kafka_errors[name] += len(keys)
        for name, keys in by_code.items():
            suppressed = self._error_log.admit(name)
            if suppressed is not None:  # every partition fails alike in an outage
                topic, partition = keys[0]
                log.warning(
                    "high_watermark_query_failed",
                    topic=topic,
                    partition=partition,
                    partitions=len(keys),
                    error=failures[keys[0]].str(),
                    **({"suppressed": suppressed} if suppressed else {}),
                )

    def bounds(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) per partition in two batched requests; failed ones are left out.

        Called by the consume loop's rebalance callback (another thread): the
        admin client's calls return futures at once, so nothing waits behind a
        refresh in progress.
        """
        keys = [(tp.topic, tp.partition) for tp in partitions]
        timeout = 5.0
        try:
            lows, low_failed = list_offsets(self._admin, keys, _EARLIEST, timeout)
            highs, high_failed = list_offsets(self._admin, keys, _LATEST, timeout)
        except (KafkaException, ValueError, TypeError, RuntimeError):
            # Raised inside a rebalance callback it would stop the consume loop;
            # unanswered partitions start as if Kafka had not answered (0, 0).
            log.exception("partition_bounds_query_failed", partitions=len(keys))
            return {}
        if low_failed or high_failed:
            self._failed({**low_failed, **high_failed})
        return {k: (lows[k], highs[k]) for k in keys if k in lows and k in highs}

    def _answered(self) -> None:
        if self._health.kafka.answered(self._clock()):
            log.info("kafka_reachable", via="lag_probe")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a background probe must never die silently
                log.exception("lag_refresh_failed")
            self._idle()

    def _idle(self) -> None:
        """Wait for the next refresh or a wake-up, serving the client's queue meanwhile.

        The wait is on the event, not inside poll(), so refresh_soon() after a
        rebalance is answered at once; poll(0) between waits delivers log lines.
        """
        deadline = time.monotonic() + self._interval
        while (remaining := deadline - time.monotonic()) > 0:
            if self._wake.wait(min(remaining, 0.1)):
                break
            self._client.poll(0)
            self._admin.poll(0)
        self._wake.clear()
