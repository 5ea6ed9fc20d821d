"""SIGKILL mid-stream: nothing is lost, and at most about a second of traffic counts twice.

Tidemark is at-least-once. A killed daemon cannot commit what it counted since its
last confirmed commit, so the next owner counts those events again. This test runs
the real daemon with the default commit settings against a real broker, while a
producer writes a steady RATE events/s; it SIGKILLs the daemon mid-stream, restarts
it, finishes the stream and compares what the two processes counted
(tidemark_events_total) with what was delivered.

The kill is timed against the commits the broker actually received (polled with
OffsetFetch): `phase` seconds after one lands, so runs sample the commit cycle
instead of whatever instant the scheduler picks. The count before the kill is the
last scrape, taken just before SIGKILL (the gap is measured and reported): events
counted in that gap would only look lost if a commit covering them landed in it too,
which the phase keeps away from.
"""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from daemon_support import MOCK_REJOIN, order_bytes, product
from harness import Broker, Samples, TidemarkProcess, scrape, wait_for

from monitor.config import KafkaConfig

RATE = 2000  # events per second, spread over the partitions
PARTITIONS = 3
BEFORE_KILL = 3.0  # seconds of steady counting before the kill is timed
AFTER_RESTART = 2.0  # seconds of traffic the restarted daemon sees live
COMMIT_INTERVAL = KafkaConfig().commit_interval  # the shipped default is under test
# The README's promise, "about one second" of traffic: measured up to ~0.97 s at 2k/s
# with the 1 s default (commits are checked once per consumed batch, so the gap between
# two commits is one interval plus at most one loop turn); 0.5 s slack for load.
MAX_DUPLICATE_SECONDS = 1.5


@dataclass
class SteadyProducer:
    """Writes `rate` orders/s round-robin over the partitions until stopped."""

    bootstrap: str
    topic: str
    rate: int
    delivered: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop, deliver everything queued, and return how many events the broker took."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        assert not self._thread.is_alive(), "producer did not finish"
        assert not self.errors, self.errors[:5]
        return self.delivered

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors.append(str(err))

    def _run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                "acks": "all",
                "enable.idempotence": True,  # a retried batch must not duplicate events
            }
        )
        sent = 0
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            if due > sent:
                payload = order_bytes(time.time(), sent)
                while sent < due:
                    try:
                        producer.produce(
                            self.topic,
                            payload,
                            partition=sent % PARTITIONS,
                            on_delivery=self._delivered,
                        )
                        sent += 1
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            time.sleep(0.002)
        remaining = producer.flush(20)
        if remaining:
            self.errors.append(f"{remaining} event(s) undelivered at the end")


class CommitWatch:
    """Reads the group's committed offsets (OffsetFetch, without joining the group)."""

    def __init__(self, broker: Broker, group: str, topic: str) -> None:
        self.consumer = Consumer(broker.config(**{"group.id": group, "enable.auto.commit": False}))
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def offsets(self) -> dict[int, int]:
        got = self.consumer.committed(self.tps, timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in got}

    def next_commit(self, timeout: float = 10.0) -> float:
        """Wait until the committed offsets move; monotonic time it was seen."""
        before = self.offsets()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.offsets() != before:
                return time.monotonic()
            time.sleep(0.01)
        raise AssertionError(f"no commit within {timeout}s (committed: {before})")

    def close(self) -> None:
        self.consumer.close()


def _config(path: Path, broker: Broker, topic: str) -> Path:
    # Only what the test needs; commit_interval, poll_timeout and batch_size are defaults.
    properties: dict[str, Any] = dict(broker.group_settings)
    if broker.name == "mock":
        properties.update(MOCK_REJOIN)  # the killed member never sends LeaveGroup
    config = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"tidemark-kill-{uuid.uuid4().hex[:10]}",
            "start_from": "earliest",
            "properties": properties,
        },
        "logging": {"format": "json", "level": "info"},
        "products": [product("orders", topic, max_out_of_orderness=5, idle_timeout=300)],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _events(samples: Samples) -> int:
    return int(samples.value("tidemark_events_total", product="orders"))


@dataclass
class Outcome:
    produced: int
    counted_before_kill: int
    counted_after_restart: int
    committed_at_kill: int
    scrape_to_kill: float

    @property
    def duplicates(self) -> int:
        return self.counted_before_kill + self.counted_after_restart - self.produced


def _kill_and_restart(
    broker: Broker,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
    phase: float,
) -> Outcome:
    topic = broker.new_topic(PARTITIONS)
    config = _config(tmp_path / "tidemark.yaml", broker, topic)
    group = yaml.safe_load(config.read_text())["kafka"]["group_id"]
    first = tidemark(config)
    producer = SteadyProducer(broker.bootstrap, topic, RATE)
    producer.start()
    watch = CommitWatch(broker, group, topic)
    try:
        wait_for(first.metrics_url, lambda s: _events(s) >= RATE * BEFORE_KILL, timeout=20)
        landed = watch.next_commit()
        time.sleep(max(0.0, landed + phase - time.monotonic()))
        # Scrape, then kill at once; the text is parsed afterwards.
        with urllib.request.urlopen(first.metrics_url, timeout=5) as response:
            text = response.read().decode()
        scraped = time.monotonic()
        assert first.process is not None
        first.process.kill()
        killed = time.monotonic()
        first.process.wait(5)
        counted_before = _events(Samples(text))
        time.sleep(0.3)  # a commit request written just before the kill may still land
        committed = watch.offsets()

        second = tidemark(config, ready_timeout=40)
        resumed: dict[int, int] = {}
        for r in second.log_records():  # the first assignment of each partition
            if r.get("event") == "partition_assigned":
                resumed.setdefault(r["partition"], r["resume_offset"])
        assert resumed == committed, (resumed, committed)  # nothing moved it meanwhile
        time.sleep(AFTER_RESTART)
        produced = producer.stop()
        # The restarted daemon counts exactly what lies beyond the committed offsets.
        expected = produced - sum(committed.values())
        s = wait_for(second.metrics_url, lambda s: _events(s) >= expected, timeout=30)
        time.sleep(1.0)  # and nothing more arrives
        s = scrape(second.metrics_url)
        assert _events(s) == expected, (_events(s), expected)
        assert s.value("tidemark_processing_errors_total", product="orders") == 0
    finally:
        watch.close()
        if not producer._stop.is_set():
            producer._stop.set()
    return Outcome(
        produced=produced,
        counted_before_kill=counted_before,
        counted_after_restart=_events(s),
        committed_at_kill=sum(committed.values()),
        scrape_to_kill=killed - scraped,
    )


@pytest.mark.parametrize("phase", [0.25, 0.75], ids=["early-in-cycle", "late-in-cycle"])
def test_sigkill_mid_stream_loses_nothing_and_double_counts_about_a_second(
    mock_only: Broker,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
    phase: float,
) -> None:
    _check(_kill_and_restart(mock_only, tidemark, tmp_path, phase * COMMIT_INTERVAL))


def test_sigkill_mid_stream_on_tansu(
    tansu_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    _check(_kill_and_restart(tansu_only, tidemark, tmp_path, 0.5 * COMMIT_INTERVAL))


def _check(outcome: Outcome) -> None:
    dup = outcome.duplicates
    print(
        f"\nproduced={outcome.produced} counted_before_kill={outcome.counted_before_kill} "
        f"committed_at_kill={outcome.committed_at_kill} "
        f"counted_after_restart={outcome.counted_after_restart} duplicates={dup} "
        f"({dup / RATE:.2f}s of traffic) scrape_to_kill={outcome.scrape_to_kill * 1000:.1f}ms"
    )
    assert dup >= 0, f"{-dup} event(s) lost: {outcome}"
    assert dup <= RATE * MAX_DUPLICATE_SECONDS, (
        f"{dup} events ({dup / RATE:.2f}s) counted twice, more than "
        f"{MAX_DUPLICATE_SECONDS}s of traffic: {outcome}"
    )
