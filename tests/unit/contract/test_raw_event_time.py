"""The raw event-time fast path gives exactly the verdicts and times of the datetime path."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from monitor.contract.decoding import InvalidEvent, RawAvroDecoder
from monitor.contract.eventtime import make_extractor, raw_event_time
from monitor.contract.model import Contract

LOGICAL = [
    "timestamp-millis",
    "local-timestamp-millis",
    "timestamp-micros",
    "local-timestamp-micros",
]
LONGS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-62135596800000 * 1000 - 3, max_value=-62135596800000 * 1000 + 3),
    st.integers(min_value=-62135596800000 - 3, max_value=-62135596800000 + 3),
    st.integers(min_value=253402300799999 - 3, max_value=253402300799999 + 3),
    st.integers(min_value=253402300799999999 - 3, max_value=253402300799999999 + 3),
    st.integers(min_value=0, max_value=2_000_000_000_000_000),
)


def flat(logical: str, nullable: bool) -> dict[str, Any]:
    ts: Any = {"type": "long", "logicalType": logical}
    return {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": ["null", ts] if nullable else ts},
            {"name": "other", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }


def nested(logical: str) -> dict[str, Any]:
    header = {
        "type": "record",
        "name": "Header",
        "fields": [{"name": "ts", "type": {"type": "long", "logicalType": logical}}],
    }
    return {"type": "record", "name": "E", "fields": [{"name": "header", "type": header}]}


def verdict(decoder: RawAvroDecoder, contract: Contract, spec: str, body: bytes) -> Any:
    """What the pipeline would conclude: a Reason, or the event time and the other fields."""
    try:
        record, _ = decoder.decode(body)
    except InvalidEvent as invalid:
        return invalid.reason
    try:
        seconds = make_extractor(contract, spec)(record, -1)
    except (ValueError, TypeError, OverflowError):
        return "bad_event_time"
    return seconds, record.get("other")


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    plain = _without_logical(schema)
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(plain), record)
    return buf.getvalue()


def _without_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical(v) for v in node]
    return node


@pytest.mark.parametrize("logical", LOGICAL)
@pytest.mark.parametrize("nullable", [False, True])
@given(value=LONGS, other=st.integers(min_value=0, max_value=2**40))
def test_flat_field_same_verdict(logical: str, nullable: bool, value: int, other: int) -> None:
    schema = flat(logical, nullable)
    contract = Contract.from_schema(schema)
    raw = raw_event_time(contract, "ts")
    assert raw is not None
    body = encode(schema, {"id": "x", "ts": value, "other": other})
    slow = verdict(RawAvroDecoder(contract), contract, "ts", body)
    fast = verdict(RawAvroDecoder(contract, raw_event_time=raw), contract, "ts", body)
    assert fast == slow


@pytest.mark.parametrize("logical", LOGICAL)
@given(value=LONGS)
def test_nested_field_same_verdict(logical: str, value: int) -> None:
    schema = nested(logical)
    contract = Contract.from_schema(schema)
    raw = raw_event_time(contract, "header.ts")
    assert raw is not None
    body = encode(schema, {"header": {"ts": value}})
    slow = verdict(RawAvroDecoder(contract), contract, "header.ts", body)
    fast = verdict(RawAvroDecoder(contract, raw_event_time=raw), contract, "header.ts", body)
    assert fast == slow


def test_other_timestamp_fields_keep_their_datetimes() -> None:
    contract = Contract.from_schema(flat("timestamp-millis", False))
    raw = raw_event_time(contract, "ts")
    body = encode(flat("timestamp-millis", False), {"id": "x", "ts": 5, "other": 7})
    record, _ = RawAvroDecoder(contract, raw_event_time=raw).decode(body)
    assert record["ts"] == 5
    assert record["other"].year == 1970


def test_out_of_range_millis_is_still_a_decode_error() -> None:
    schema = flat("timestamp-millis", False)
    contract = Contract.from_schema(schema)
    raw = raw_event_time(contract, "ts")
    body = encode(schema, {"id": "x", "ts": 253402300799999 + 1, "other": 0})
    assert verdict(RawAvroDecoder(contract, raw_event_time=raw), contract, "ts", body) == (
        "decode_error"
    )


@pytest.mark.parametrize(
    ("schema", "spec"),
    [
        # a record referred to by name elsewhere: dropping the type would change that field too
        (
            {
                "type": "record",
                "name": "E",
                "fields": [
                    {"name": "header", "type": nested("timestamp-millis")["fields"][0]["type"]},
                    {"name": "previous", "type": ["null", "Header"]},
                ],
            },
            "header.ts",
        ),
        (flat("timestamp-millis", False), "id"),  # not a timestamp
        ({"type": "record", "name": "E", "fields": [{"name": "t", "type": "long"}]}, "t"),
        (
            {
                "type": "record",
                "name": "E",
                "fields": [
                    {"name": "t", "type": {"type": "long", "logicalType": "timestamp-nanos"}}
                ],
            },
            "t",
        ),
        (flat("timestamp-millis", False), "kafka-timestamp"),
    ],
)
def test_no_fast_path_where_it_would_not_be_exact(schema: dict[str, Any], spec: str) -> None:
    assert raw_event_time(Contract.from_schema(schema), spec) is None
