"""The per-event fast path gives exactly what the general path gives.

ProductPipeline._count has PartitionClock.observe, Histogram.observe and the
freshness step inline, and decoders call fastavro's compiled reader without
schemaless_reader's per-call set-up: each is checked here against the code it
stands in for.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import NOW, TOPIC, Msg, build, order

from monitor.contract.decoding import InvalidEvent, RawAvroDecoder
from monitor.contract.eventtime import raw_event_time
from monitor.contract.model import Contract
from monitor.watermarks import PartitionClock

# Seconds from NOW: on time, late past max_out_of_orderness (5 s), future past
# max_future_skew (60 s), stale past the freshness threshold (10 s), and ties.
OFFSETS = st.one_of(
    st.integers(min_value=-120_000, max_value=120_000),
    st.sampled_from([-10_000, -5_000, 0, 60_000, 60_001, -9_999, -10_001]),
)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2), OFFSETS), min_size=1, max_size=60))
def test_inline_observe_counts_what_clock_and_histogram_count(
    events: list[tuple[int, int]],
) -> None:
    fast = build()
    product = fast.products[TOPIC]
    reference = build().products[TOPIC]
    clocks: dict[int, PartitionClock] = {}
    for p in range(3):
        fast.assign(TOPIC, p, NOW, start=0, warmup_until=0)
        clocks[p] = reference.clock.assign(p, NOW, position=0)
    offsets = dict.fromkeys(range(3), 0)
    for partition, millis in events:
        event_time = (int(NOW * 1000) + millis) / 1000
        fast.process_batch([Msg(TOPIC, partition, offsets[partition], order(event_time))], NOW)
        offsets[partition] += 1
        # The general path: PartitionClock.observe and Histogram.observe via _observe.
        reference._observe(clocks[partition], partition, event_time, NOW, None)
    got, want = product.stats, reference.stats
    assert (got.late, got.future, got.fresh) == (want.late, want.future, want.fresh)
    assert got.latency.counts == want.latency.counts
    assert math.isclose(got.latency.total, want.latency.total, abs_tol=1e-6)
    assert got.lateness.counts == want.lateness.counts
    for p, clock in clocks.items():
        mine = product.clock.partitions[p]
        assert (mine.max_event_time, mine.last_event_at) == (
            clock.max_event_time,
            clock.last_event_at,
        )
        assert mine.position == offsets[p]


SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "E",
    "namespace": "t",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "n", "type": ["null", "int"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "again", "type": ["null", "Kind"]},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    ],
}
RECORDS = st.fixed_dictionaries(
    {
        "id": st.text(max_size=8),
        "ts": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "n": st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "tags": st.lists(st.text(max_size=3), max_size=3),
        "kind": st.sampled_from(["A", "B"]),
        "again": st.none() | st.sampled_from(["A", "B"]),
        "day": st.integers(min_value=-1000, max_value=100_000),
    }
)


def _outcome(decoder: RawAvroDecoder, body: bytes) -> Any:
    try:
        return decoder.decode(body)[0]
    except InvalidEvent as invalid:
        return invalid.reason


def _pair(raw: bool) -> tuple[RawAvroDecoder, RawAvroDecoder]:
    contract = Contract.from_schema(SCHEMA)
    fast_time = raw_event_time(contract, "ts") if raw else None
    direct = RawAvroDecoder(contract, raw_event_time=fast_time)
    assert direct._entry.compiled is not None  # fastavro's compiled reader is used
    general = RawAvroDecoder(contract, raw_event_time=fast_time)
    general._entry = dataclasses.replace(general._entry, compiled=None)  # schemaless_reader
    return direct, general


@settings(max_examples=300)
@given(
    st.one_of(
        RECORDS.map(lambda r: _encode(r)),
        st.binary(max_size=40),
        RECORDS.map(lambda r: _encode(r)[:-1]),
        RECORDS.map(lambda r: _encode(r) + b"\x00"),
        # Any bytes where a string goes (invalid UTF-8 is a decode_error).
        st.tuples(RECORDS, st.binary(max_size=6)).map(lambda rb: _encode(rb[0], rb[1])),
    ),
    st.booleans(),
)
def test_compiled_reader_decodes_what_schemaless_reader_decodes(body: bytes, raw: bool) -> None:
    direct, general = _pair(raw)
    assert _outcome(direct, body) == _outcome(general, body)


def _encode(record: dict[str, Any], raw_id: bytes | None = None) -> bytes:
    """The record's bytes; ts as any long, id as any bytes when raw_id is given."""
    written = {"ts": "long", "id": "bytes" if raw_id is not None else "string"}
    plain = {
        **SCHEMA,
        "fields": [{**f, "type": written.get(f["name"], f["type"])} for f in SCHEMA["fields"]],
    }
    buf = io.BytesIO()
    schemaless_writer(
        buf, parse_schema(plain), {**record, "id": record["id"] if raw_id is None else raw_id}
    )
    return buf.getvalue()


class NoTimestamp(Msg):
    def timestamp(self) -> tuple[int, int]:
        raise AssertionError("timestamp() read for a field-path event time")


def test_a_field_event_time_never_builds_the_kafka_timestamp() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([NoTimestamp(TOPIC, 0, 0, order(NOW - 1))], NOW)
    stats = pipeline.products[TOPIC].stats
    assert (stats.conforming, stats.processing_errors) == (1, 0)
