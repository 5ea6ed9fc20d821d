"""The harness itself, proven against the real parts it drives.

Brokers: both implementations over TCP (produce, read back, high watermarks, commits,
topic creation, a client in another process). Registry stand-in: confluent-kafka's own
SchemaRegistryClient and Avro serde. Scraping: a real prometheus_client HTTP server.
Daemon runner: a small stand-in process (the real daemon is tested elsewhere).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from harness import (
    Broker,
    DaemonError,
    RegistryServer,
    TidemarkProcess,
    free_port,
    scrape,
    wait_for,
    wait_for_port,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from monitor.demo.mockcluster import MockCluster
from monitor.errors import TidemarkError

ORDER_AVSC = (
    '{"type":"record","name":"Order","namespace":"shop","fields":['
    '{"name":"id","type":"string"},{"name":"ts","type":{"type":"long",'
    '"logicalType":"timestamp-millis"}}]}'
)


# --- brokers ---------------------------------------------------------------------------
def test_records_read_back_with_key_timestamp_and_headers(broker: Broker) -> None:
    topic = broker.new_topic(3)
    for i in range(5):
        broker.produce(
            topic,
            0,
            f"v{i}".encode(),
            key=b"k",
            timestamp_ms=1_700_000_000_000 + i,
            headers=[("trace", b"t%d" % i)],
        )
    broker.produce(topic, 2, None)  # a tombstone
    ends = broker.flush()

    assert ends == {(topic, 0): 5, (topic, 2): 1}
    assert broker.partitions(topic) == [0, 1, 2]
    got = broker.read(topic, 0)
    assert [m.value() for m in got] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert {m.key() for m in got} == {b"k"}
    assert [m.timestamp()[1] for m in got] == [1_700_000_000_000 + i for i in range(5)]
    assert got[3].headers() == [("trace", b"t3")]
    assert [m.value() for m in broker.read(topic, 2)] == [None]
    assert broker.read(topic, 1) == []


def test_create_topic_sets_the_partition_count(broker: Broker) -> None:
    assert broker.partitions(broker.new_topic(3)) == [0, 1, 2]
    assert broker.partitions(broker.new_topic(1)) == [0]


def test_high_watermarks_are_exact_after_a_harness_flush(broker: Broker) -> None:
    topic = broker.new_topic(3)
    for i in range(50):
        broker.produce(topic, 1, b"%d" % i)
    broker.produce(topic, 2, b"x")
    broker.flush()
    assert broker.high_watermarks(topic) == {0: 0, 1: 50, 2: 1}


def test_exact_high_watermark_flag_matches_the_server(broker: Broker) -> None:
    # A plain producer sends the 10 records as one batch; Tansu then reports the last
    # batch's base offset + 1 (1), the mock reports last offset + 1 (10). Fetch returns
    # all 10 on both, so on Tansu a consumer's position can pass the high watermark.
    topic = broker.new_topic(1)
    producer = Producer(broker.config(**{"linger.ms": 50}))
    for i in range(10):
        producer.produce(topic, b"%d" % i, partition=0)
    assert producer.flush(10) == 0
    assert broker.high_watermarks(topic) == {0: 10 if broker.exact_high_watermark else 1}
    assert [m.offset() for m in broker.read(topic, 0)] == list(range(10))


def test_committed_offsets_are_read_back_per_partition(broker: Broker) -> None:
    topic, group = broker.new_topic(2), f"g-{time.monotonic_ns()}"
    for i in range(4):
        broker.produce(topic, 0, b"%d" % i)
    broker.flush()
    consumer = Consumer(broker.config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msgs = consumer.consume(3, timeout=10)
        assert len(msgs) == 3
        consumer.commit(message=msgs[-1], asynchronous=False)
    finally:
        consumer.close()
    assert broker.committed(group, topic, [0, 1]) == {0: 3}
    assert broker.committed(f"{group}-other", topic, [0, 1]) == {}


def test_a_consumer_group_joins_quickly_with_group_settings(broker: Broker) -> None:
    topic, group = broker.new_topic(2), f"g-{time.monotonic_ns()}"
    broker.produce(topic, 0, b"a")
    broker.produce(topic, 1, b"b")
    broker.flush()
    settings = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(broker.config(**settings, **broker.group_settings))
    started, seen = time.monotonic(), list[Message]()
    try:
        consumer.subscribe([topic])
        while len(seen) < 2 and time.monotonic() - started < 10:
            seen += consumer.consume(10, timeout=0.1)
        joined_after = time.monotonic() - started
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(m.value() or b"" for m in seen) == [b"a", b"b"]
    assert joined_after < 5, f"{broker.name}: first assignment took {joined_after:.1f}s"
    assert broker.committed(group, topic, [0, 1]) == {0: 1, 1: 1}


def test_a_client_in_another_process_reaches_the_broker(broker: Broker) -> None:
    topic = broker.new_topic(1)
    script = textwrap.dedent(f"""
        from confluent_kafka import Producer
        p = Producer({{"bootstrap.servers": "{broker.bootstrap}"}})
        p.produce("{topic}", b"from-subprocess", partition=0)
        assert p.flush(10) == 0
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert [m.value() for m in broker.read(topic, 0)] == [b"from-subprocess"]


# --- the mock cluster class used by the demo --------------------------------------------
@pytest.mark.parametrize("native", [True, False], ids=["ctypes", "client-owned"])
def test_mock_cluster_serves_kafka_and_stays_quiet(
    native: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    with MockCluster(2, native=native) as cluster:
        hosts = cluster.bootstrap_servers.split(",")
        assert len(hosts) == 2 and all(h.startswith("127.0.0.1:") for h in hosts)
        assert cluster.native is native
        port = int(hosts[0].rsplit(":", 1)[1])
        assert wait_for_port(port, timeout=2)
    assert not wait_for_port(port, timeout=0.2), "brokers must stop listening on close"
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_mock_cluster_topic_creation_needs_ctypes_and_a_new_name() -> None:
    with MockCluster(1) as cluster:
        cluster.create_topic("orders", 2)
        with pytest.raises(TidemarkError, match="already exists"):
            cluster.create_topic("orders", 2)
    with MockCluster(1, native=False) as cluster, pytest.raises(TidemarkError, match="ctypes"):
        cluster.create_topic("orders", 2)


def test_mock_cluster_brokers_can_be_taken_down_and_back() -> None:
    cluster = MockCluster(1)
    try:
        client = Producer({"bootstrap.servers": cluster.bootstrap_servers})
        cluster.set_broker_up(1, False)
        client.produce("outage", b"x")
        assert client.flush(1.0) == 1, "a record must stay queued while the broker is down"
        cluster.set_broker_up(1, True)
        assert client.flush(15) == 0
    finally:
        cluster.close()


# --- schema registry stand-in ------------------------------------------------------------
def test_registry_registers_and_serves_schemas_to_the_real_client(
    registry: RegistryServer,
) -> None:
    writer = SchemaRegistryClient(registry.client_config())
    schema_id = writer.register_schema("orders-value", Schema(ORDER_AVSC, "AVRO"))
    assert writer.register_schema("audit-value", Schema(ORDER_AVSC, "AVRO")) == schema_id

    reader = SchemaRegistryClient(registry.client_config())
    registry.clear_log()
    assert reader.get_schema(schema_id).schema_str == ORDER_AVSC
    assert reader.get_schema(schema_id).schema_str == ORDER_AVSC  # served from its cache
    assert registry.count("GET", f"/schemas/ids/{schema_id}") == 1
    assert reader.get_latest_version("orders-value").schema_id == schema_id

    with pytest.raises(SchemaRegistryError) as err:
        reader.get_schema(schema_id + 41)
    assert (err.value.http_status_code, err.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as err:
        writer.register_schema("bad-value", Schema('{"type": "nope"}', "AVRO"))
    assert err.value.http_status_code == 422


def test_registry_serves_confluent_avro_serde(registry: RegistryServer) -> None:
    ctx = SerializationContext("orders", MessageField.VALUE)
    serialize = AvroSerializer(SchemaRegistryClient(registry.client_config()), ORDER_AVSC)
    payload = serialize({"id": "o-1", "ts": 1_700_000_000_000}, ctx)
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == 1

    deserialize = AvroDeserializer(SchemaRegistryClient(registry.client_config()))
    assert deserialize(payload, ctx)["id"] == "o-1"


def test_registry_basic_auth_accepts_only_the_right_secret() -> None:
    with RegistryServer(credentials=("svc", "s3cret-pw")) as server:
        schema_id = SchemaRegistryClient(server.client_config()).register_schema(
            "orders-value", Schema(ORDER_AVSC, "AVRO")
        )
        wrong = SchemaRegistryClient({"url": server.url, "basic.auth.user.info": "svc:guess"})
        anonymous = SchemaRegistryClient({"url": server.url})
        for client in (wrong, anonymous):
            with pytest.raises(SchemaRegistryError) as err:
                client.get_schema(schema_id)
            assert err.value.http_status_code == 401
        assert [(r.user, r.status) for r in server.requests] == [
            ("svc", 200),
            ("svc", 401),
            (None, 401),
        ]
        assert "s3cret-pw" not in repr(server.requests)


def test_registry_outages_by_status_and_by_refused_connection(registry: RegistryServer) -> None:
    schema_id = registry.register("orders-value", ORDER_AVSC)

    def fresh_client() -> SchemaRegistryClient:
        return SchemaRegistryClient({"url": registry.url, "max.retries": 0})

    registry.fail_with(500)
    with pytest.raises(SchemaRegistryError) as err:
        fresh_client().get_schema(schema_id)
    assert err.value.http_status_code == 500
    registry.fail_with(None)
    assert fresh_client().get_schema(schema_id).schema_str == ORDER_AVSC

    registry.stop()
    with pytest.raises(Exception, match="Connection refused") as refused:
        fresh_client().get_schema(schema_id)
    assert type(refused.value).__name__ == "ConnectError"  # httpx's, raised through the client
    registry.start()  # same port, same schemas
    assert fresh_client().get_schema(schema_id).schema_str == ORDER_AVSC


# --- scraping ------------------------------------------------------------------------------
@pytest.fixture
def exporter() -> Iterator[tuple[str, CollectorRegistry]]:
    reg = CollectorRegistry()
    server, thread = start_http_server(free_port(), addr="127.0.0.1", registry=reg)
    yield f"http://127.0.0.1:{server.server_port}/metrics", reg
    server.shutdown()
    thread.join(5)


def test_scrape_reads_counters_gauges_and_histograms(
    exporter: tuple[str, CollectorRegistry],
) -> None:
    url, reg = exporter
    events = Counter("tm_events", "e", ["product", "partition"], registry=reg)
    events.labels("orders", "0").inc(3)
    events.labels("orders", "1").inc(4)
    Gauge("tm_freshness_seconds", "f", ["product"], registry=reg).labels("orders").set(12.5)
    Histogram("tm_latency_seconds", "l", buckets=(1, 300), registry=reg).observe(2)

    s = scrape(url)
    assert s.value("tm_events_total", product="orders", partition=1) == 4
    assert s.total("tm_events_total", product="orders") == 7
    assert s.values("tm_freshness_seconds") == {frozenset({("product", "orders")}): 12.5}
    assert s.value("tm_latency_seconds_bucket", le="1.0") == 0
    assert s.value("tm_latency_seconds_bucket", le="300.0") == 1
    assert s.value("tm_latency_seconds_count") == 1
    assert s.has("tm_events_total", partition="0")
    assert not s.has("tm_events_total", partition="7")
    with pytest.raises(AssertionError, match=r'available label sets: .*partition="0"'):
        s.value("tm_events_total", product="orders", partition=7)
    with pytest.raises(AssertionError, match="ambiguous"):
        s.value("tm_events_total", product="orders")


def test_wait_for_polls_until_true_and_shows_the_last_scrape_on_timeout(
    exporter: tuple[str, CollectorRegistry],
) -> None:
    url, reg = exporter
    ready = Gauge("tm_ready", "r", registry=reg)
    Gauge("tm_unrelated", "u", registry=reg).set(1)
    threading.Timer(0.3, ready.set, args=(1,)).start()

    started = time.monotonic()
    wait_for(url, lambda s: s.value("tm_ready") == 1, timeout=5)
    assert 0.25 < time.monotonic() - started < 3

    with pytest.raises(AssertionError) as err:
        wait_for(url, lambda s: s.value("tm_ready") == 2, timeout=0.3)
    assert "tm_ready 1.0" in str(err.value) and "tm_unrelated" not in str(err.value)


# --- daemon runner (with a stand-in; the real daemon is tested in its own files) ------------
STAND_IN = textwrap.dedent("""
    import http.server, os, signal, sys, threading, time
    ready_at = time.monotonic() + 0.3
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path != "/readyz" or time.monotonic() >= ready_at
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"warming up")
        def log_message(self, *args):
            pass
    port = int(os.environ["TIDEMARK_SERVER__PORT"])
    assert os.environ["TIDEMARK_SERVER__BIND_ADDRESS"] == "127.0.0.1"
    srv = http.server.HTTPServer(("127.0.0.1", port), H)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    print('{"event": "started", "leaked": "%s"}' % os.environ.get("TIDEMARK_LEAK", "no"))
    srv.serve_forever()
    print('{"event": "stopped"}')
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
""")


def test_daemon_runner_waits_for_readiness_and_returns_the_exit_code(
    tidemark: Callable[..., TidemarkProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDEMARK_LEAK", "yes")  # the caller's TIDEMARK_* must not leak in
    started = time.monotonic()
    proc = tidemark(None, env={"EXIT_CODE": "7"}, argv=[sys.executable, "-c", STAND_IN])
    assert time.monotonic() - started >= 0.3
    assert proc.get("/readyz") == (200, "ok")
    assert proc.stop() == 7
    assert [r["event"] for r in proc.log_records()] == ["started", "stopped"]
    assert proc.log_records()[0]["leaked"] == "no"


def test_daemon_runner_reports_an_early_exit_with_the_log_tail(tmp_path: Path) -> None:
    crash = "import sys; print('config: products[0].topic missing', file=sys.stderr); sys.exit(2)"
    proc = TidemarkProcess(None, tmp_path, argv=[sys.executable, "-c", crash])
    with pytest.raises(DaemonError, match=r"exited with 2 before ready(.|\n)*topic missing"):
        proc.start(ready_timeout=10)
