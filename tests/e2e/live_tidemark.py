"""A live Tidemark for end-to-end tests: broker, producer thread, daemon config.

The broker and the daemon runner come from the integration harness
(tests/integration/harness), which this module puts on sys.path so e2e tests can be
run alone. The producer writes valid `orders` events (config/contracts/orders.avsc,
schemaless Avro as with encoding `avro-raw`) stamped with the current time, to every
partition of every product's topic, and can pause one product to simulate a stalled
upstream producer while the others keep flowing.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from alerting_stack import Alertmanager, Prometheus
from confluent_kafka import KafkaError, Message, Producer
from fastavro import parse_schema, schemaless_writer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))  # the harness package

from harness import MockBroker, TansuBroker, TidemarkProcess  # noqa: E402

__all__ = [
    "ORDERS_AVSC",
    "MockBroker",
    "Product",
    "StallableProducer",
    "TansuBroker",
    "TidemarkProcess",
    "dump_stack",
    "live_stack",
    "order",
    "write_config",
]

ORDERS_AVSC = REPO / "config" / "contracts" / "orders.avsc"


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    owner: str
    tier: str
    topic: str
    partitions: int


def write_config(
    path: Path,
    bootstrap: str,
    products: list[Product],
    *,
    threshold: float,
    idle_timeout: float,
    out_of_orderness: float,
) -> Path:
    """A daemon config with test timings; every product uses the orders contract."""
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"tidemark-e2e-{uuid.uuid4().hex[:8]}",
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
        },
        "lag": {"refresh_interval": 0.5, "stuck_after": 30},
        "logging": {"format": "json", "level": "info"},
        "products": [
            {
                "name": p.name,
                "owner": p.owner,
                "tier": p.tier,
                "topic": p.topic,
                "contract": str(ORDERS_AVSC),
                "encoding": "avro-raw",
                "event_time": "occurred_at",
                "max_out_of_orderness": out_of_orderness,
                "idle_timeout": idle_timeout,
                "freshness": {"threshold": threshold, "target": 0.99},
            }
            for p in products
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(slots=True)
class StallableProducer:
    """Writes one current event per partition of every product every `interval` seconds.

    Partition p's events are stamped `p * skew` seconds in the past, so a product's
    partition watermarks differ and a test can tell the newest from the oldest.
    """

    bootstrap: str
    products: list[Product]
    interval: float = 0.1
    skew: float = 0.5
    sent: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _paused: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def pause(self, product: str) -> None:
        with self._lock:
            self._paused.add(product)

    def resume(self, product: str) -> None:
        with self._lock:
            self._paused.discard(product)

    def start(self) -> StallableProducer:
        self._thread = threading.Thread(target=self._run, name="e2e-producer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def value(self, schema: Any, product: str, n: int, event_time: float) -> bytes:
        """Event n of `product`; a subclass may break some (tests of rules)."""
        return order(schema, product, n, event_time)

    def _run(self) -> None:
        schema = parse_schema(json.loads(ORDERS_AVSC.read_text()))
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        seq = dict.fromkeys((p.name for p in self.products), 0)  # per producer_id
        while not self._stop.is_set():
            with self._lock:
                active = [p for p in self.products if p.name not in self._paused]
            now = time.time()
            for p in active:
                for partition in range(p.partitions):
                    n = seq[p.name]
                    event_time = now - partition * self.skew
                    value = self.value(schema, p.name, n, event_time)
                    producer.produce(
                        p.topic, value, partition=partition, on_delivery=self._on_delivery
                    )
                    seq[p.name] = self.sent[p.name] = n + 1
            producer.poll(0)
            self._stop.wait(self.interval)
        producer.flush(5)


def order(schema: Any, product: str, n: int, event_time: float, amount: int | None = None) -> bytes:
    """One valid orders event, schemaless Avro (what encoding `avro-raw` expects)."""
    record = {
        "order_id": f"{product}-{n}",
        "customer_id": f"customer-{n % 97}",
        "amount_cents": 100 + n % 1000 if amount is None else amount,
        "currency": "EUR",
        "occurred_at": datetime.fromtimestamp(event_time, UTC),
        "producer_id": f"e2e-{product}",
        "sequence": n,
    }
    body = io.BytesIO()
    schemaless_writer(body, schema, record)
    return body.getvalue()


@contextmanager
def live_stack(
    config: Path,
    tmp_path: Path,
    producer: StallableProducer,
    start_prometheus: Callable[..., Prometheus],
    dump: Callable[[Prometheus, TidemarkProcess], str],
    max_for: str = "2s",
) -> Iterator[tuple[TidemarkProcess, Prometheus]]:
    """The producer, the daemon (ready) and Prometheus scraping it, for one scenario.

    An AssertionError inside gets `dump(prom, daemon)` appended; everything stops at
    the end, and a producer that saw delivery errors fails the test.
    """
    producer.start()
    try:
        with TidemarkProcess(config, tmp_path) as daemon:  # started: /readyz answered 200
            prom = start_prometheus(max_for=max_for)
            prom.set_targets([f"127.0.0.1:{daemon.port}"])
            try:
                yield daemon, prom
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n\n{dump(prom, daemon)}") from exc
    finally:
        producer.stop()
    assert producer.errors == [], producer.errors[:5]


def dump_stack(
    prom: Prometheus,
    am: Alertmanager,
    daemon: TidemarkProcess | None,
    exprs: Iterable[str],
    tail: int = 20,
) -> str:
    """What Prometheus, Alertmanager and Tidemark (its log's tail) saw, for a failure."""
    lines = []
    for expr in exprs:
        try:
            lines.append(f"{expr}: {[(r['metric'], r['value'][1]) for r in prom.query(expr)]}")
        except Exception as exc:  # keep dumping the rest
            lines.append(f"{expr}: query failed: {exc}")
    try:
        lines.append(f"Prometheus /api/v1/alerts: {prom.alerts()}")
        targets = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in prom.targets()]
        lines.append(f"Prometheus targets: {targets}")
        lines.append(
            f"Alertmanager active alerts: {[(a['labels'], a['status']) for a in am.alerts()]}"
        )
    except Exception as exc:
        lines.append(f"could not read alerts: {exc}")
    notes = [
        (n["receiver"], a["status"], a["labels"]) for n in am.notifications for a in n["alerts"]
    ]
    lines.append(f"webhook notifications (receiver, status, labels): {notes}")
    if daemon is not None:
        lines.append(daemon.log_tail(tail))
    return "\n".join(lines)
