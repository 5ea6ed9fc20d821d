"""End-to-end throughput: Tidemark against three baselines, in the same run.

Produces N Avro events (Confluent wire format, schema ids from a registry) to a
real Kafka-protocol broker, then consumes all of them four ways and prints
events/s and ratios:

  bare      a confluent-kafka batch consume loop that touches each payload
  floor     the same loop plus fastavro's schemaless_reader with the parsed
            contract per event: the Python work no Avro monitor can avoid
  avro      the same loop plus confluent-kafka's own AvroDeserializer per event
  tidemark  the real Tidemark monitor (loop, decode, contract, watermark,
            latency histogram, commits) until its events counter reaches N
  rules     the same monitor, its contract read from a registry subject that
            carries 3 registered CEL rules, evaluated on every event
  topic-only  the same monitor with the product in topic-only mode
            (encoding: none): no decoding, Kafka timestamp as event time

Client settings: every contender runs with Tidemark's shipped consumer settings
(`KafkaConfig().librdkafka()`, i.e. librdkafka's defaults plus Tidemark's
CONSUMER_DEFAULTS), and Tidemark itself runs with no `kafka.properties` at all,
exactly as shipped. One set of settings for all, so a ratio measures the work
per event and not a client tuning; Tidemark's, because the question the bench
answers is how close Tidemark as shipped gets to the floor. With
--librdkafka-defaults every contender (Tidemark included, through its
`properties`) runs with librdkafka's own defaults instead, to show what
Tidemark's defaults buy.

Each contender runs in a process of its own, as a fresh group member reading
from the beginning; the broker runs in another process (the mock cluster in a
child process, or Tansu), and the schema registry is the test suite's HTTP
stand-in, so no contender shares an interpreter, a GIL or a cache with the
broker or with another contender. The clock starts at the first message, so
group-join time is not measured. Runs are interleaved and the median reported.
The mock cluster keeps about 63,000 such events per partition (it drops older
segments), so keep --events at or below 400,000 with its 8 partitions. Fewer events
made the fastest contenders' runs a few tenths of a second long, and their ratios
mostly noise (bare vs topic-only swung from 0.5x to 1.4x between runs).

    python bench/throughput.py --events 400000
    python bench/throughput.py --broker tansu
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader, schemaless_writer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.config import (  # noqa: E402
    CONSUMER_DEFAULTS,
    KafkaConfig,
    LagConfig,
    LoggingConfig,
    ProductConfig,
    SchemaRegistryConfig,
    ServerConfig,
    Settings,
    SubjectRef,
)
from monitor.logs import configure_logging  # noqa: E402
from monitor.runtime.app import Monitor  # noqa: E402

TOPIC = "bench.orders"
# The mock cluster lives as long as its owning process: one that waits for stdin to close.
MOCK_CHILD = """
import sys
from monitor.demo.mockcluster import MockCluster
with MockCluster(num_brokers=1) as cluster:
    cluster.create_topic(sys.argv[1], int(sys.argv[2]))
    print(cluster.bootstrap_servers, flush=True)
    sys.stdin.read()
"""
CONTRACT = REPO / "config" / "contracts" / "orders.avsc"
PARTITIONS = 8
# librdkafka's own defaults for what Tidemark ships differently (--librdkafka-defaults).
LIBRDKAFKA_DEFAULTS: dict[str, str | int | float | bool] = {"fetch.queue.backoff.ms": 1000}
assert set(LIBRDKAFKA_DEFAULTS) == set(CONSUMER_DEFAULTS), "keep the two in step"


def client_properties(librdkafka_defaults: bool) -> dict[str, str | int | float | bool]:
    """What every contender's client runs with on top of the shipped KafkaConfig."""
    return dict(LIBRDKAFKA_DEFAULTS) if librdkafka_defaults else {}


def produce(
    bootstrap: str, registry: SchemaRegistryClient, n: int, partitions: int = PARTITIONS
) -> None:
    schema = json.loads(CONTRACT.read_text())
    schema_id = registry.register_schema(f"{TOPIC}-value", Schema(json.dumps(schema), "AVRO"))
    parsed = parse_schema(schema)
    header = b"\x00" + int(schema_id).to_bytes(4, "big")
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    rng = random.Random(1)
    now_ms = int(time.time() * 1000)
    for i in range(n):
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(
            buf,
            parsed,
            {
                "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "customer_id": f"c-{rng.randint(1, 5000)}",
                "amount_cents": rng.randint(100, 50_000),
                "currency": "EUR",
                "occurred_at": now_ms - rng.randint(0, 5000),
                "producer_id": "bench",
                "sequence": i,
            },
        )
        producer.produce(TOPIC, buf.getvalue(), partition=i % partitions)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(60)


Rates = tuple[float, float]  # events/s (wall clock), events per CPU-second of the process


def consume_loop(
    bootstrap: str, n: int, props: dict[str, Any], handle: Callable[[Any], None]
) -> Rates:
    """Rates of a plain batch consume loop calling handle(msg) per event."""
    shipped = KafkaConfig(bootstrap_servers=bootstrap, properties=props).librdkafka()
    consumer = Consumer(
        {
            **shipped,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    seen, started, cpu = 0, 0.0, 0.0
    deadline = time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        batch = consumer.consume(1000, 0.5)
        if batch and not started:
            started, cpu = time.perf_counter(), time.process_time()
        for msg in batch:
            if msg.error() is None:
                handle(msg)
                seen += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    if seen < n:
        raise RuntimeError(f"consumed {seen} of {n}")
    return n / elapsed, n / cpu


def bare(bootstrap: str, n: int, props: dict[str, Any]) -> Rates:
    sink = []

    def handle(msg: Any) -> None:
        sink.append(len(msg.value()))
        if len(sink) > 1000:
            sink.clear()

    return consume_loop(bootstrap, n, props, handle)


def floor_work() -> Callable[[Any], None]:
    """The unavoidable work per event: skip the 5-byte Confluent header, decode with the
    contract (bench/workers.py runs the same in its floor processes)."""
    parsed = parse_schema(json.loads(CONTRACT.read_text()))

    def handle(msg: Any) -> None:
        fo = io.BytesIO(msg.value())
        fo.seek(5)
        schemaless_reader(fo, parsed, None)

    return handle


def floor(bootstrap: str, n: int, props: dict[str, Any]) -> Rates:
    return consume_loop(bootstrap, n, props, floor_work())


def avro(bootstrap: str, registry: SchemaRegistryClient, n: int, props: dict[str, Any]) -> Rates:
    deserializer = AvroDeserializer(registry)
    ctx = SerializationContext(TOPIC, MessageField.VALUE)

    def handle(msg: Any) -> None:
        deserializer(msg.value(), ctx)

    return consume_loop(bootstrap, n, props, handle)


RULES_SUBJECT = "bench.orders-rules"
# Three registered rules, every bench event passes them: the cost of checking, not of failing.
BENCH_RULES = (
    ("positive_amount", "message.amount_cents > 0"),
    ("known_currency", "message.currency in ['EUR', 'USD', 'GBP']"),
    ("has_customer", "message.customer_id.startsWith('c-')"),
)


def register_rules_contract(registry: SchemaRegistryClient) -> int:
    from monitor.contract.registered import cel_rule_set

    schema = Schema(CONTRACT.read_text(), "AVRO", rule_set=cel_rule_set(BENCH_RULES))
    return int(registry.register_schema(RULES_SUBJECT, schema))


def tidemark(
    bootstrap: str,
    registry_url: str,
    n: int,
    props: dict[str, Any],
    *,
    rules: bool = False,
    topic_only: bool = False,
) -> Rates:
    product = (
        ProductConfig(name="orders", owner="bench", topic=TOPIC, encoding="none")
        if topic_only
        else ProductConfig(
            name="orders",
            owner="bench",
            topic=TOPIC,
            contract=(SubjectRef(subject=RULES_SUBJECT, version=1) if rules else CONTRACT),
            encoding="confluent",
            event_time="occurred_at",
        )
    )
    settings = Settings(
        kafka=KafkaConfig(
            bootstrap_servers=bootstrap,
            group_id=f"bench-tm-{uuid.uuid4()}",
            start_from="earliest",
            batch_size=1000,
            properties=props,
        ),
        schema_registry=SchemaRegistryConfig(url=registry_url),
        server=ServerConfig(bind_address="127.0.0.1", port=0),
        logging=LoggingConfig(format="json", level="warning"),
        lag=LagConfig(refresh_interval=5.0),
        products=[product],
    )
    monitor = Monitor(settings)
    compiled = monitor.pipeline.products[TOPIC].rules
    if rules and (compiled is None or len(compiled.names) != len(BENCH_RULES)):
        raise RuntimeError(f"expected {len(BENCH_RULES)} rules evaluated, got {compiled}")
    stats = monitor.pipeline.products[TOPIC].stats
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    started, cpu = 0.0, 0.0
    deadline = time.monotonic() + 300
    while stats.events < n and time.monotonic() < deadline:
        if not started and stats.events:
            started, cpu = time.perf_counter(), time.process_time()
        time.sleep(0.01)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    seen = stats.events
    monitor.stop()
    thread.join(30)
    if seen < n:
        raise RuntimeError(f"tidemark processed {seen} of {n}")
    if not topic_only and stats.conforming != stats.events:
        raise RuntimeError(
            f"expected every event conforming, got {stats.conforming}/{stats.events}"
        )
    if rules and not stats.rule_checked == stats.correct >= n:
        raise RuntimeError(f"expected {n} events checked and correct, got {stats}")
    return n / elapsed, n / cpu


def contender(kind: str, bootstrap: str, registry_url: str, n: int, props: dict[str, Any]) -> Rates:
    """One measurement, in this (fresh) process."""
    if kind == "bare":
        return bare(bootstrap, n, props)
    if kind == "floor":
        return floor(bootstrap, n, props)
    if kind == "avro":
        return avro(bootstrap, SchemaRegistryClient({"url": registry_url}), n, props)
    return tidemark(
        bootstrap,
        registry_url,
        n,
        props,
        rules=kind == "rules",
        topic_only=kind == "topic-only",
    )


def measure(kind: str, bootstrap: str, registry_url: str, n: int, lib_defaults: bool) -> Rates:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--contender",
            kind,
            "--bootstrap",
            bootstrap,
            "--registry",
            registry_url,
            "--events",
            str(n),
            *(["--librdkafka-defaults"] if lib_defaults else []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-2000:]}")
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--broker", choices=("mock", "tansu"), default="mock")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated contenders to run besides floor and tidemark (default: all)",
    )
    parser.add_argument(
        "--librdkafka-defaults",
        action="store_true",
        help="run every contender with librdkafka's defaults instead of Tidemark's",
    )
    parser.add_argument(
        "--contender",
        choices=("bare", "floor", "avro", "tidemark", "rules", "topic-only"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("json", "warning")
    if args.contender:
        props = client_properties(args.librdkafka_defaults)
        print(*contender(args.contender, args.bootstrap, args.registry, args.events, props))
        return 0

    with BrokerUnderTest(args.broker) as bootstrap, registry_stand_in() as registry_url:
        t0 = time.perf_counter()
        produce(bootstrap, SchemaRegistryClient({"url": registry_url}), args.events)
        register_rules_contract(SchemaRegistryClient({"url": registry_url}))
        print(
            f"broker {args.broker} at {bootstrap}: produced {args.events} events "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        results: dict[str, list[Rates]] = {
            "bare": [],
            "floor": [],
            "avro": [],
            "tidemark": [],
            "rules": [],
            "topic-only": [],
        }
        if args.only:
            keep = {"floor", "tidemark", *args.only.split(",")}
            results = {k: v for k, v in results.items() if k in keep}
        for _ in range(args.repeat):  # interleaved, so drift in the machine hits all of them
            for kind in results:
                results[kind].append(
                    measure(kind, bootstrap, registry_url, args.events, args.librdkafka_defaults)
                )
    settings = "librdkafka defaults" if args.librdkafka_defaults else "Tidemark's defaults"
    print(
        f"\nbroker {args.broker}, {args.events} events, client settings: {settings}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for column, label in ((0, "events/s (wall clock)"), (1, "events per CPU-second")):
        # Wall clock is what a user waits; CPU time of the consuming process (every
        # thread: the client's included) is what the work costs, and holds up much
        # better than wall clock when other jobs share the machine.
        values = {k: [r[column] for r in v] for k, v in results.items()}
        report(label, values)
    return 0


def report(label: str, results: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{label}\n{'contender':<10} {'median':>10} {'spread':>8}   runs")
    for name, values in results.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        spread = (max(values) - min(values)) / med[name]
        print(f"{name:<10} {med[name]:>10,.0f} {spread:>8.0%}   {runs}")
    tm = med["tidemark"]
    print(f"tidemark / floor (consume + schemaless_reader) = {tm / med['floor']:.3f}")
    if "bare" in med:
        print(f"tidemark / bare consume loop                   = {tm / med['bare']:.3f}")
    if "avro" in med:
        print(f"tidemark / AvroDeserializer loop               = {tm / med['avro']:.3f}")
    if "rules" in med:
        added = 1e6 / med["rules"] - 1e6 / tm
        print(
            f"with 3 registered rules / without             = {med['rules'] / tm:.3f} "
            f"({added:+.1f} µs per event)"
        )
    if "topic-only" in med and "bare" in med:
        ratio = med["topic-only"] / med["bare"]
        print(f"topic-only / bare consume loop                 = {ratio:.3f}")


@contextlib.contextmanager
def registry_stand_in() -> Iterator[str]:
    """The test suite's Confluent-compatible registry over HTTP, on loopback."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from harness.registry_server import RegistryServer  # type: ignore[import-not-found]

    server = RegistryServer().start()
    try:
        yield str(server.url)
    finally:
        server.stop()


class BrokerUnderTest:
    """Context manager yielding a bootstrap address for the chosen broker."""

    def __init__(self, kind: str, partitions: int = PARTITIONS) -> None:
        self.kind = kind
        self.partitions = partitions
        self.pid = 0  # the broker's process, for its CPU time
        self.bootstrap = ""
        self._cleanup: Callable[[], None] = lambda: None

    def __enter__(self) -> str:
        if self.kind == "mock":
            child = subprocess.Popen(
                [sys.executable, "-c", MOCK_CHILD, TOPIC, str(self.partitions)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None and child.stdin is not None
            bootstrap = child.stdout.readline().strip()
            stdin = child.stdin
            self.pid = child.pid
            self.bootstrap = bootstrap

            def stop() -> None:
                stdin.close()
                child.wait(30)

            self._cleanup = stop
            return bootstrap
        sys.path.insert(0, str(REPO / "tests" / "integration"))
        from harness.brokers import tansu_broker  # type: ignore[import-not-found]

        stack = contextlib.ExitStack()
        log_dir = stack.enter_context(tempfile.TemporaryDirectory())
        broker = stack.enter_context(tansu_broker(Path(log_dir)))
        broker.create_topic(TOPIC, self.partitions)
        self.pid = broker.process.pid
        self._cleanup = stack.close
        self.bootstrap = str(broker.bootstrap)
        return self.bootstrap

    def __exit__(self, *exc: object) -> None:
        self._cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
