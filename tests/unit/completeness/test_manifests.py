"""Manifest schema, encoding and the producer-side ManifestEmitter."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from monitor.completeness.config import CompletenessConfig
from monitor.completeness.emitter import (
    Manifest,
    ManifestEmitter,
    ManifestError,
    decode_manifest,
    encode_manifest,
)
from monitor.completeness.manifests import manifest_schema
from monitor.completeness.tracker import CompletenessTracker
from monitor.config import ProductConfig
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline
from tests.unit.fakes import Msg

W = 60.0
T0 = 1_700_000_040.0  # a window boundary
CONTRACT = Path(__file__).resolve().parents[3] / "config" / "contracts" / "orders.avsc"
CONTROL = "manifests"


class Sent:
    """Collects what the emitter hands to a producer: a real producer's interface."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        self.messages.append((topic, value, key))

    def manifests(self) -> list[Manifest]:
        return [decode_manifest(v) for _, v, _ in self.messages if v is not None]


def emitter(sent: Sent, **kwargs: Any) -> ManifestEmitter:
    options: dict[str, Any] = {
        "topic": "manifests",
        "product": "orders",
        "window": W,
        "now": T0,
        "producer_id": "p1",
        **kwargs,
    }
    return ManifestEmitter(sent, **options)


# --- schema and encoding ------------------------------------------------------------


def test_schema_has_the_documented_fields() -> None:
    schema = manifest_schema()
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    assert list(fields) == ["product", "window_start", "window_end", "event_count", "producer_id"]
    assert fields["window_start"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["window_end"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["producer_id"] == ["null", "string"]
    parse_schema(schema)


@given(
    product=st.text(min_size=1, max_size=40),
    start_ms=st.integers(-(10**12), 10**13),
    length_ms=st.integers(1, 10**9),
    count=st.integers(0, 2**62),
    producer=st.none() | st.text(max_size=40),
)
def test_encode_decode_round_trip(
    product: str, start_ms: int, length_ms: int, count: int, producer: str | None
) -> None:
    m = Manifest(product, start_ms / 1000, (start_ms + length_ms) / 1000, count, producer)
    assert decode_manifest(encode_manifest(m)) == m


def test_a_manifest_written_by_any_avro_writer_decodes() -> None:
    """Producers in other languages write datetimes through the logical type."""
    out = io.BytesIO()
    record = {
        "product": "orders",
        "window_start": datetime.fromtimestamp(T0, UTC),
        "window_end": datetime.fromtimestamp(T0 + W, UTC),
        "event_count": 12,
        "producer_id": None,
    }
    schemaless_writer(out, parse_schema(manifest_schema()), record)
    assert decode_manifest(out.getvalue()) == Manifest("orders", T0, T0 + W, 12, None)


def test_encoded_manifest_reads_back_with_the_logical_types() -> None:
    payload = encode_manifest(Manifest("orders", T0, T0 + W, 3, "p1"))
    record = schemaless_reader(io.BytesIO(payload), parse_schema(manifest_schema()), None)
    assert record["window_start"] == datetime.fromtimestamp(T0, UTC)  # type: ignore[index, call-overload]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not a manifest"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not a manifest"),
        (encode_manifest(Manifest("o", T0, T0 + W, 1)) + b"\x00", "bytes after the manifest"),
    ],
)
def test_garbage_is_a_manifest_error(payload: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        decode_manifest(payload)


def test_inconsistent_manifests_are_refused() -> None:
    with pytest.raises(ManifestError, match="window_end"):
        encode_manifest(Manifest("o", T0, T0, 1))
    with pytest.raises(ManifestError, match="negative"):
        encode_manifest(Manifest("o", T0, T0 + W, -1))


# --- ManifestEmitter ----------------------------------------------------------------


def test_closed_windows_are_reported_with_their_counts() -> None:
    sent = Sent()
    e = emitter(sent)
    for i in range(5):
        e.record(T0 + i)
    e.record(T0 + W + 1)
    assert e.flush_closed(T0 + W - 0.001) == 0
    assert e.flush_closed(T0 + 2 * W) == 2
    assert sent.manifests() == [
        Manifest("orders", T0, T0 + W, 5, "p1"),
        Manifest("orders", T0 + W, T0 + 2 * W, 1, "p1"),
    ]
    assert {(topic, key) for topic, _, key in sent.messages} == {("manifests", b"orders")}


def test_each_window_is_reported_once() -> None:
    sent = Sent()
    e = emitter(sent)
    e.record(T0)
    e.flush_closed(T0 + W)
    e.flush_closed(T0 + W + 10)
    assert len(sent.messages) == 1


def test_empty_windows_are_reported_as_zero() -> None:
    sent = Sent()
    e = emitter(sent)
    e.flush_closed(T0 + 3 * W)
    assert [m.event_count for m in sent.manifests()] == [0, 0, 0]
    quiet = Sent()
    emitter(quiet, emit_empty=False).flush_closed(T0 + 3 * W)
    assert quiet.messages == []


def test_delay_holds_a_window_back() -> None:
    sent = Sent()
    e = emitter(sent, delay=5.0)
    e.record(T0)
    assert e.flush_closed(T0 + W + 4.0) == 0
    assert e.flush_closed(T0 + W + 5.0) == 1


def test_a_late_event_resends_the_cumulative_count() -> None:
    sent = Sent()
    e = emitter(sent)
    e.record(T0)
    e.flush_closed(T0 + W)
    e.record(T0 + 1)  # late for window 0
    e.flush_closed(T0 + W + 1)
    assert [m.event_count for m in sent.manifests()] == [1, 2]


def test_events_older_than_keep_windows_are_dropped_and_counted() -> None:
    sent = Sent()
    e = emitter(sent, keep_windows=2)
    e.flush_closed(T0 + 5 * W)
    e.record(T0)
    assert e.dropped_late == 1
    assert e.flush_closed(T0 + 5 * W) == 0


def test_a_long_pause_reports_only_the_last_windows_but_every_counted_one() -> None:
    sent = Sent()
    e = emitter(sent, keep_windows=3)
    e.record(T0)
    e.flush_closed(T0 + 100 * W)
    counts = [(m.window_start, m.event_count) for m in sent.manifests()]
    assert counts[0] == (T0, 1)
    assert len(counts) == 4  # window 0 plus the last three


def test_flush_all_reports_open_windows_too() -> None:
    sent = Sent()
    e = emitter(sent)
    e.record(T0)
    e.record(T0 + W)
    assert e.flush_all() == 2


def test_default_producer_ids_differ_between_emitters() -> None:
    a = ManifestEmitter(Sent(), topic="m", product="o", window=W, now=T0)
    b = ManifestEmitter(Sent(), topic="m", product="o", window=W, now=T0)
    assert a.producer_id != b.producer_id


def test_emitted_manifests_reconcile_in_the_tracker() -> None:
    """Producer and monitor agree on windows: loss in window 1 shows, window 0 is whole."""
    sent = Sent()
    e = emitter(sent)
    t = CompletenessTracker(CompletenessConfig(window=W, manifests={"topic": "manifests"}))  # type: ignore[arg-type]
    t.observe(0, T0 - 1, None, None)  # the partial first window
    for i in range(120):
        e.record(T0 + i * 0.9)
        if i != 100:  # lost on the way
            t.observe(0, T0 + i * 0.9, None, None)
    e.flush_closed(T0 + 2 * W)
    for m in sent.manifests():
        t.on_manifest(m.window_start, m.window_end, m.event_count, m.producer_id)
    t.advance(T0 + 2 * W, 0.0)
    snap = t.snapshot()
    assert snap.windows_closed_total["complete"] == 1
    assert snap.windows_closed_total["incomplete"] == 1
    assert (snap.expected_events_total, snap.observed_events_total) == (120, 119)


@pytest.mark.integration
def test_flush_closed_publishes_through_a_real_producer() -> None:
    from confluent_kafka import Consumer, Producer

    from monitor.demo.mockcluster import MockCluster

    with MockCluster(1) as cluster:
        topic = f"manifests-{uuid.uuid4().hex[:6]}"
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
        e = ManifestEmitter(producer, topic=topic, product="orders", window=W, now=T0)
        e.record(T0 + 1)
        assert e.flush_closed(T0 + W) == 1
        assert producer.flush(10) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "group.id": "test",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    break
            else:
                pytest.fail("the manifest never arrived")
        finally:
            consumer.close()
        value = msg.value()
        assert msg.key() == b"orders"
        assert value is not None
        assert decode_manifest(value) == Manifest("orders", T0, T0 + W, 1, e.producer_id)


# --- the control topic in the pipeline ----------------------------------------------


def control_pipeline() -> Pipeline:
    """The orders product with manifests on CONTROL, through the real decoder."""
    config = ProductConfig(
        name="orders",
        owner="team-checkout",
        topic="shop.orders",
        contract=CONTRACT,
        encoding="avro-raw",
        event_time="occurred_at",
        completeness=CompletenessConfig(window=W, manifests={"topic": CONTROL}),  # type: ignore[arg-type]
    )
    contract = Contract.load(CONTRACT)
    product = ProductPipeline.build(
        config, RawAvroDecoder(contract), make_extractor(contract, "occurred_at"), stuck_after=60
    )
    return Pipeline({config.topic: product})


# Two anonymous manifests for window [T0, T0 + W) and a record that is not a manifest.
RECORDS = [
    Msg(CONTROL, 0, 0, encode_manifest(Manifest("orders", T0, T0 + W, 30))),
    Msg(CONTROL, 0, 1, encode_manifest(Manifest("orders", T0, T0 + W, 40))),
    Msg(CONTROL, 0, 2, b"\xff\xff"),
]


def judge_window(pipeline: Pipeline, observed: int) -> CompletenessTracker:
    """Count `observed` events in the window after a partial one, then close it."""
    tracker = pipeline.products["shop.orders"].completeness
    assert tracker is not None
    tracker.observe(0, T0 - W, None, None)  # + max_out_of_orderness: still window -1
    for i in range(observed):
        tracker.observe(0, T0 + i % 60, None, None)
    tracker.advance(T0 + W, 0.0)
    return tracker


def test_a_restarted_instance_takes_expectations_from_replayed_manifests() -> None:
    pipeline = control_pipeline()
    pipeline.assign(CONTROL, 0, 0.0, start=0, warmup_until=3)  # committed at 3
    pipeline.process_batch(RECORDS, 0.0)
    snap = judge_window(pipeline, 70).snapshot()
    assert (snap.expected_events_total, snap.windows_closed_total["complete"]) == (70, 1)
    assert snap.manifests_accepted_total == 0
    assert pipeline.manifests[CONTROL].errors["decode_error"] == 0


@pytest.mark.parametrize(
    "committed", [3, 0], ids=["replayed below the commit", "read again above it"]
)
def test_a_control_partition_read_again_in_the_same_process_applies_nothing_twice(
    committed: int,
) -> None:
    """Anonymous manifests add up: applying one twice would double the expectation."""
    pipeline = control_pipeline()
    pipeline.assign(CONTROL, 0, 0.0, start=0, warmup_until=0)
    pipeline.process_batch(RECORDS, 0.0)
    pipeline.revoke(CONTROL, 0)
    pipeline.assign(CONTROL, 0, 0.0, start=0, warmup_until=committed)
    pipeline.process_batch(RECORDS, 0.0)
    pipeline.process_batch(
        [Msg(CONTROL, 0, 3, encode_manifest(Manifest("orders", T0, T0 + W, 5)))], 0.0
    )
    snap = judge_window(pipeline, 75).snapshot()
    assert (snap.expected_events_total, snap.windows_closed_total["complete"]) == (75, 1)
    assert snap.manifests_accepted_total == 3
    assert pipeline.manifests[CONTROL].errors["decode_error"] == 1
    assert list(pipeline.positions()) == [(CONTROL, 0, 4)]
