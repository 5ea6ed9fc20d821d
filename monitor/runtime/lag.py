"""Background high-watermark snapshots, so a scrape never waits on Kafka.

A dedicated client (no group membership) asks the brokers for each owned
partition's end offset every refresh_interval and publishes the answer as a new
dict that replaces the old one whole: readers always see one consistent
snapshot, and a slow or unreachable broker only makes the snapshot older.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState

log = structlog.get_logger("tidemark.lag")


class LagTracker:
    def __init__(
        self,
        kafka_conf: dict[str, Any],
        pipeline: Pipeline,
        health: HealthState,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        conf = {k: v for k, v in kafka_conf.items() if k not in ("group.id", "on_commit")}
        conf["group.id"] = "tidemark-lag-probe"  # required by the client; never joins
        conf["enable.auto.commit"] = False
        # Its connection errors are logged like the main consumer's, not to stderr.
        self._client = Consumer(conf, logger=logging.getLogger("tidemark.librdkafka"))
        self._pipeline = pipeline
        self._health = health
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tidemark-lag", daemon=True)

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
        if not owned:
            # Nothing assigned: a metadata request still tells whether the cluster
            # answers, so /readyz can say which of the two is missing.
            if self._probe(timeout):
                self._pipeline.high_watermarks = {}
                self._health.lag_snapshot_at = self._clock()
            return
        snapshot: dict[str, dict[int, int]] = {}
        answered, complete = False, True
        for topic, partition in owned:
            if self._stop.is_set():
                return
            try:
                _, high = self._client.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout, cached=False
                )
            except KafkaException as exc:
                complete = False
                err = exc.args[0]
                with self._pipeline.lock:
                    self._health.loop.kafka_errors[err.name()] += 1
                log.warning(
                    "high_watermark_query_failed",
                    topic=topic,
                    partition=partition,
                    error=err.str(),
                )
                if not answered and not self._probe(timeout):
                    return  # nothing answers: keep the previous snapshot whole
                answered = True  # the probe answered
                previous = self._pipeline.high_watermarks.get(topic, {}).get(partition)
                if previous is not None:
                    snapshot.setdefault(topic, {})[partition] = previous
                continue
            snapshot.setdefault(topic, {})[partition] = high
            if not answered:
                answered = True
                self._answered()
        self._pipeline.high_watermarks = snapshot
        if complete:
            self._health.lag_snapshot_at = self._clock()

    def _probe(self, timeout: float) -> bool:
        """Ask the cluster for metadata; record whether any broker answered."""
        try:
            self._client.list_topics(timeout=timeout)
        except KafkaException as exc:
            if self._health.kafka.failed(self._clock()):
                log.warning("kafka_unreachable", via="lag_probe", error=exc.args[0].str())
            return False
        self._answered()
        return True

    def _answered(self) -> None:
        if self._health.kafka.answered(self._clock()):
            log.info("kafka_reachable", via="lag_probe")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a background probe must never die silently
                log.exception("lag_refresh_failed")
            self._wake.wait(self._interval)
            self._wake.clear()
