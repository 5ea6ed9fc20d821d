"""`tidemark demo`: the whole job on an embedded default, no Kafka to install.

Starts librdkafka's mock cluster (real brokers on 127.0.0.1 ports), an
in-process schema registry, a synthetic producer for two data products that
injects the faults Tidemark exists to catch, and a monitor serving /metrics.
"""

from __future__ import annotations

import io
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import (
    Metadata,
    MetadataProperties,
    Schema,
    SchemaRegistryClient,
)
from fastavro import parse_schema, schemaless_writer

from monitor.completeness.config import (
    CompletenessConfig,
    ManifestConfig,
    SequenceConfig,
)
from monitor.completeness.emitter import ManifestEmitter
from monitor.config import (
    DiscoverConfig,
    DiscoverDefaults,
    FreshnessObjective,
    KafkaConfig,
    LagConfig,
    LoggingConfig,
    ProductConfig,
    SchemaRegistryConfig,
    ServerConfig,
    Settings,
    SubjectRef,
)
from monitor.contract.model import Contract
from monitor.contract.registered import cel_rule_set
from monitor.contract.registry import ConfluentRegistryLookup
from monitor.demo.mockcluster import MockCluster
from monitor.logs import configure_logging

ORDERS_TOPIC = "demo.orders"
PAYMENTS_TOPIC = "demo.payments"
MANIFESTS_TOPIC = "demo.manifests"
# No products: block and no registered subject: discovered, watched topic-only.
CLICKS_TOPIC = "demo.clicks"
WINDOW = 10.0  # completeness window of the orders product, seconds
LOSS_AFTER = 30.0  # from then on the orders producer silently loses some events
PARTITIONS = 4
STALLED_PARTITION = 2  # payments stops writing here after STALL_AFTER seconds
STALL_AFTER = 20.0
ORDERS_SUBJECT = f"{ORDERS_TOPIC}-value"
# The orders contract as its team registers it: the schema with Confluent data-contract
# metadata and domain rules, which Tidemark evaluates on every conforming event.
ORDERS_RULES = (
    ("positive_amount", "message.amount_cents > 0"),
    ("known_currency", "message.currency in ['EUR', 'USD', 'GBP']"),
)


def orders_contract_schema() -> Schema:
    return Schema(
        contract_path("orders.avsc").read_text(),
        "AVRO",
        metadata=Metadata(
            tags=None,
            properties=MetadataProperties({"tidemark.correctness.target": "99.9%"}),
            sensitive=None,
        ),
        rule_set=cel_rule_set(ORDERS_RULES),
    )


def register_orders_contract(registry: SchemaRegistryClient) -> int:
    """Version 1 of the orders subject: the contract Tidemark reads, rules included."""
    return int(registry.register_schema(ORDERS_SUBJECT, orders_contract_schema()))


def contract_path(name: str) -> Path:
    """Contracts ship inside the package so the demo also runs from a wheel."""
    return Path(str(resources.files("monitor.demo") / "contracts" / name))


def demo_settings(bootstrap: str, port: int, bind: str) -> Settings:
    common: dict[str, Any] = {
        "max_out_of_orderness": 5.0,
        "idle_timeout": 15.0,
        "max_future_skew": 60.0,
    }
    return Settings(
        kafka=KafkaConfig(
            bootstrap_servers=bootstrap,
            group_id="tidemark-demo",
            commit_interval=2.0,
            poll_timeout=0.2,
        ),
        schema_registry=SchemaRegistryConfig(url="mock://tidemark-demo", retry_after=10.0),
        server=ServerConfig(bind_address=bind, port=port),
        logging=LoggingConfig(format="console", level="warning"),
        lag=LagConfig(refresh_interval=2.0, stuck_after=30.0),
        discover=DiscoverConfig(
            include=[r"demo\."],
            defaults=DiscoverDefaults(owner="team-web", idle_timeout=15.0),
            refresh_interval=5.0,
        ),
        products=[
            ProductConfig(
                name="orders",
                owner="team-checkout",
                tier="gold",
                topic=ORDERS_TOPIC,
                description="Orders from the demo shop (Confluent wire format).",
                # Pinned: the producer registers orders-v2 under the same subject later.
                contract=SubjectRef(subject=ORDERS_SUBJECT, version=1),
                encoding="confluent",
                event_time="occurred_at",
                freshness=FreshnessObjective(threshold=30, target=0.99),
                completeness=CompletenessConfig(
                    window=WINDOW,
                    window_retention=60.0,
                    allowed_lateness=5.0,
                    # One sequence per producer across the topic's partitions.
                    sequence=SequenceConfig(
                        producer_field="producer_id", sequence_field="sequence", scope="topic"
                    ),
                    manifests=ManifestConfig(topic=MANIFESTS_TOPIC, grace=30.0),
                    objective=0.99,
                ),
                **common,
            ),
            ProductConfig(
                name="payments",
                owner="team-payments",
                tier="silver",
                topic=PAYMENTS_TOPIC,
                description="Payments from the demo provider (Avro single-object encoding).",
                contract=contract_path("payments.avsc"),
                encoding="avro-single-object",
                event_time="header.event_time",
                freshness=FreshnessObjective(threshold=60, target=0.95),
                **common,
            ),
        ],
    )


@dataclass(slots=True)
class FaultPlan:
    """How often each fault is injected; the demo's story in numbers."""

    rate_per_product: float = 200.0  # events per second
    late_ratio: float = 0.01  # event time 90-300 s in the past
    garbage_ratio: float = 0.005  # random bytes instead of Avro
    compatible_drift_ratio: float = 0.2  # orders written with orders-v2 (adds a field)
    incompatible_ratio: float = 0.005  # orders written with a breaking schema
    loss_ratio: float = 0.03  # after LOSS_AFTER: orders counted, sequenced, never sent
    rule_breaking_ratio: float = 0.004  # conforming orders that break a registered rule


@dataclass(slots=True)
class DemoProducer:
    """Writes both products at a steady rate, with the faults of a FaultPlan."""

    bootstrap: str
    registry: SchemaRegistryClient
    plan: FaultPlan = field(default_factory=FaultPlan)
    stop: threading.Event = field(default_factory=threading.Event)
    produced: int = 0

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        writers = self._register_orders()
        payments = Contract.load(contract_path("payments.avsc"))
        payments_header = b"\xc3\x01" + payments.fingerprint
        rng = random.Random(7)
        started = time.time()
        manifests = ManifestEmitter(
            producer,
            topic=MANIFESTS_TOPIC,
            product="orders",
            window=WINDOW,
            now=started,
            producer_id="shop-web-1",
        )
        seq = {"orders": 0, "payments": 0}
        tick = 0.1
        while not self.stop.is_set():
            now = time.time()
            for _ in range(int(self.plan.rate_per_product * tick)):
                value, event_time = self._order(writers, rng, seq["orders"] + 1, now)
                lost = False
                if event_time is not None:  # a real order: sequenced and in the manifest
                    seq["orders"] += 1
                    manifests.record(event_time)
                    lost = now - started > LOSS_AFTER and rng.random() < self.plan.loss_ratio
                if not lost:
                    partition = rng.randrange(PARTITIONS)
                    producer.produce(ORDERS_TOPIC, value=value, partition=partition)
                seq["payments"] += 1
                partition = seq["payments"] % PARTITIONS
                if partition == STALLED_PARTITION and now - started > STALL_AFTER:
                    partition = (partition + 1) % PARTITIONS
                value = self._payment(payments, payments_header, rng, seq["payments"], now)
                producer.produce(PAYMENTS_TOPIC, value=value, partition=partition)
                producer.produce(CLICKS_TOPIC, value=b"click", partition=seq["payments"] % 2)
                self.produced += 3
            manifests.flush_closed(now)
            producer.poll(0)
            self.stop.wait(tick)
        producer.flush(5)

    def _register_orders(self) -> dict[str, tuple[int, Any]]:
        out = {}
        for name in ("orders.avsc", "orders-v2.avsc", "orders-breaking.avsc"):
            schema = json.loads(contract_path(name).read_text())
            if name == "orders.avsc":
                schema_id = register_orders_contract(self.registry)
            elif name == "orders-v2.avsc":
                schema_id = self.registry.register_schema(
                    ORDERS_SUBJECT, Schema(json.dumps(schema), "AVRO"), normalize_schemas=False
                )
            else:
                schema_id = self._register_unchecked(schema)
            out[name] = (schema_id, parse_schema(schema))
        return out

    def _register_unchecked(self, schema: dict[str, Any]) -> int:
        # A producer that bypassed the compatibility check, under another subject.
        return int(
            self.registry.register_schema("demo.rogue-value", Schema(json.dumps(schema), "AVRO"))
        )

    def _when(self, rng: random.Random, now: float) -> float:
        if rng.random() < self.plan.late_ratio:
            return now - rng.uniform(90, 300)
        return now - rng.uniform(0.0, 2.0)

    def _order(
        self, writers: dict[str, tuple[int, Any]], rng: random.Random, seq: int, now: float
    ) -> tuple[bytes, float | None]:
        """An encoded order and its event time; None for a broken one.

        Broken orders (garbage, breaking schema) are extra messages: they take
        no sequence number and no manifest count, so completeness shows loss only.
        """
        roll = rng.random()
        if roll < self.plan.garbage_ratio:
            return rng.randbytes(rng.randint(1, 40)), None
        event_time = self._when(rng, now)
        record: dict[str, Any] = {
            "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "customer_id": f"c-{rng.randint(1, 5000)}",
            "amount_cents": rng.randint(100, 50_000),
            "currency": "EUR",
            "occurred_at": int(event_time * 1000),
            "producer_id": "shop-web-1",
            "sequence": seq,
        }
        roll -= self.plan.garbage_ratio
        if rng.random() < self.plan.rule_breaking_ratio:  # conforming, but wrong
            if rng.random() < 0.5:
                record["amount_cents"] = -record["amount_cents"]
            else:
                record["currency"] = "XXX"
        if roll < self.plan.incompatible_ratio:
            name = "orders-breaking.avsc"
            record["amount_cents"] = str(record["amount_cents"])
        elif roll < self.plan.incompatible_ratio + self.plan.compatible_drift_ratio:
            name = "orders-v2.avsc"
            record["channel"] = "web"
        else:
            name = "orders.avsc"
        schema_id, parsed = writers[name]
        buf = io.BytesIO()
        buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
        schemaless_writer(buf, parsed, record)
        return buf.getvalue(), None if name == "orders-breaking.avsc" else event_time

    def _payment(
        self, contract: Contract, header: bytes, rng: random.Random, seq: int, now: float
    ) -> bytes:
        if rng.random() < self.plan.garbage_ratio:
            return header + rng.randbytes(rng.randint(1, 30))
        record = {
            "header": {
                "event_time": int(self._when(rng, now) * 1_000_000),
                "producer": "psp-gateway",
                "seq": seq,
            },
            "payment_id": f"p-{seq}",
            "amount_cents": rng.randint(100, 90_000),
            "status": rng.choice(("AUTHORIZED", "CAPTURED", "REFUNDED")),
        }
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(buf, contract.parsed, record)
        return buf.getvalue()


def run_demo(*, port: int, bind: str, duration: float, summary_interval: float) -> int:
    from monitor.demo.summary import Summary
    from monitor.runtime.app import Monitor

    configure_logging("console", "warning")
    with MockCluster(num_brokers=3) as cluster:
        if cluster.native:  # otherwise topics auto-create with the mock's 4 partitions
            for topic in (ORDERS_TOPIC, PAYMENTS_TOPIC):
                cluster.create_topic(topic, PARTITIONS)
            cluster.create_topic(CLICKS_TOPIC, 2)
            cluster.create_topic(MANIFESTS_TOPIC, 1)
        settings = demo_settings(cluster.bootstrap_servers, port, bind)
        registry = SchemaRegistryClient.new_client({"url": settings.schema_registry.url})
        register_orders_contract(registry)  # Tidemark reads its contract from the registry
        monitor = Monitor(settings, lookup=ConfluentRegistryLookup(client=registry))
        producer = DemoProducer(cluster.bootstrap_servers, registry)
        summary = Summary(monitor.registry, [*(p.name for p in settings.products), CLICKS_TOPIC])
        stop = threading.Event()

        def summarise_then_stop() -> None:
            # The last summary is printed while partitions are still assigned.
            try:
                summary.print_every(summary_interval, stop, sys.stdout)
                summary.print_once(sys.stdout)
            finally:
                producer.stop.set()
                monitor.stop()

        threads = [
            threading.Thread(target=producer.run, name="demo-producer", daemon=True),
            threading.Thread(target=summarise_then_stop, name="demo-summary", daemon=True),
        ]

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if duration > 0:
            timer = threading.Timer(duration, stop.set)
            timer.daemon = True
            timer.start()
        print(
            f"Tidemark demo: mock Kafka cluster at {cluster.bootstrap_servers}\n"
            f"  metrics  {monitor.metrics_url}\n"
            f"  health   {monitor.metrics_url.replace('/metrics', '/healthz')}, /readyz\n"
            "  products orders (Confluent wire format, schema drift, garbage) and payments\n"
            f"           (single-object encoding; partition {STALLED_PARTITION} stalls after "
            f"{STALL_AFTER:.0f} s)\n"
            "  late events (1%) and garbage bytes (0.5%) are injected; 0.4% of orders break a\n"
            "  rule registered with the orders contract (see /violations). Ctrl-C to stop.\n",
            flush=True,
        )
        for thread in threads:
            thread.start()
        monitor.run()
        for thread in threads:
            thread.join(timeout=10)
    return 0


def produce_demo(bootstrap: str, registry_url: str, rate: float) -> int:
    """`tidemark produce-demo`: the demo's producer against a real cluster (compose)."""
    configure_logging("auto", "info")
    registry = SchemaRegistryClient.new_client({"url": registry_url})
    producer = DemoProducer(bootstrap, registry, FaultPlan(rate_per_product=rate))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        producer.stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"producing demo data to {bootstrap} (registry {registry_url}); Ctrl-C to stop")
    producer.run()
    return 0
