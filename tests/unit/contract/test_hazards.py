"""Bounded decoding: payload size, zero-byte array items, self-containing types.

Each test names the shape of a hostile payload or schema and what it costs without the
guard (measured on main: 12 bytes -> 7.6 GB and 36 s; ~5000 nesting levels -> SIGSEGV).
"""

from __future__ import annotations

import io
import json
import struct
import time
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cli import main
from monitor.config import ProductConfig
from monitor.contract.decoding import (
    ConfluentDecoder,
    InvalidEvent,
    RawAvroDecoder,
    Reason,
    SingleObjectDecoder,
)
from monitor.contract.hazards import is_recursive, unbounded_shapes
from monitor.contract.model import Contract, Verdict, canonical_form, rabin_fingerprint
from monitor.contract.registry import BackgroundLookups, SchemaLookup, SchemaNotFound
from monitor.errors import ContractError


class _InlineExecutor(Executor):
    """Runs a look-up before submit() returns: the answer is in, as after a warm-up."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def answered(lookup: SchemaLookup) -> BackgroundLookups:
    """The decoder's resolver, with look-ups that have answered by the time it asks."""
    return BackgroundLookups(lookup, executor=_InlineExecutor())


def zigzag(n: int) -> bytes:
    """Avro long encoding (zig-zag varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def record(name: str, *fields: tuple[str, Any], namespace: str = "t") -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": [{"name": n, "type": t} for n, t in fields],
    }


EMPTY = {"type": "record", "name": "Empty", "fields": []}
NOTHING = {"type": "record", "name": "Nothing", "fields": [{"name": "n", "type": "null"}]}
ZERO_FIXED = {"type": "fixed", "name": "Zero", "size": 0}
NODE = record("Node", ("v", "int"), ("next", ["null", "Node"]))


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ("null", "array of null items"),
        (EMPTY, "array of empty record Empty items"),
        (NOTHING, "array of zero-byte record Nothing items"),
        (ZERO_FIXED, "array of zero-size fixed Zero items"),
        ({"type": "null"}, "array of null items"),
    ],
)
def test_contract_with_zero_byte_array_items_is_refused_naming_the_field(
    items: Any, words: str
) -> None:
    schema = record("Order", ("id", "string"), ("items", {"type": "array", "items": items}))
    with pytest.raises(ContractError) as info:
        Contract.from_schema(schema, Path("orders.avsc"))
    assert f"Order.items[]: {words} can encode unbounded elements in zero bytes" in str(info.value)


def test_zero_byte_items_are_found_inside_unions_maps_and_nested_records() -> None:
    inner = record("Line", ("tags", ["null", {"type": "array", "items": "null"}]))
    schema = record(
        "Order",
        ("lines", {"type": "array", "items": inner}),
        ("by_key", {"type": "map", "values": {"type": "array", "items": EMPTY}}),
        ("again", {"type": "array", "items": "t.Empty"}),  # a reference, not a definition
    )
    assert [p.split(":")[0] for p in unbounded_shapes(parse_schema(schema))] == [
        "Order.lines[].tags[]",
        "Order.by_key{}[]",
        "Order.again[]",
    ]


@pytest.mark.parametrize(
    "items",
    [
        "boolean",
        {"type": "map", "values": "null"},  # each entry has a key: one byte at least
        ["null", "int"],  # a union writes its branch index: one byte at least
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "fixed", "name": "One", "size": 1},
        record("Half", ("n", "null"), ("b", "boolean")),
        NODE,  # contains itself, ends with a union
    ],
)
def test_items_that_cost_a_byte_are_fine(items: Any) -> None:
    schema = record("Order", ("items", {"type": "array", "items": items}))
    Contract.from_schema(schema)  # no error


def test_self_containing_types_are_recursive_others_not(orders: Contract) -> None:
    assert is_recursive(parse_schema(NODE))
    tree = record("Tree", ("kids", {"type": "array", "items": "t.Tree"}))
    assert is_recursive(parse_schema(tree))
    assert not is_recursive(orders.parsed)
    shared = record("Pair", ("a", EMPTY), ("b", "Empty"))  # referenced twice, no cycle
    assert not is_recursive(parse_schema(shared))


def test_registry_writer_with_zero_byte_items_is_unsafe_schema_not_a_crash(
    orders: Contract,
) -> None:
    writer = json.loads(json.dumps(orders.schema))
    writer["fields"].append(
        {"name": "pad", "type": {"type": "array", "items": "null"}, "default": []}
    )

    class Lookup:
        def get_schema_str(self, schema_id: int) -> str:
            return json.dumps(writer)

    decoder = ConfluentDecoder(orders, answered(Lookup()))
    # The 12-byte event that took 7.6 GB on main: an order prefix does not matter, the
    # writer is refused before any byte of the body is read.
    payload = b"\x00" + struct.pack(">I", 7) + zigzag(2**62) + b"\x00"
    started = time.perf_counter()
    with pytest.raises(InvalidEvent) as info:
        decoder.decode(payload)
    assert time.perf_counter() - started < 1.0
    assert info.value.reason is Reason.UNSAFE_SCHEMA
    assert info.value.writer is not None
    assert info.value.writer.verdict is Verdict.INCOMPATIBLE
    assert "Order.pad[]: array of null items" in info.value.writer.reasons[0]


def test_single_object_writer_list_with_zero_byte_items_is_refused_at_load(
    orders: Contract,
) -> None:
    writer = json.loads(json.dumps(orders.schema))
    writer["fields"].append({"name": "pad", "type": {"type": "array", "items": EMPTY}})
    with pytest.raises(ContractError, match=r"writer_schemas\[0\].*Order.pad\[\]: array of empty"):
        SingleObjectDecoder(orders, [writer])


def test_payload_over_the_limit_is_payload_too_large_before_any_decoding(orders: Contract) -> None:
    class NotFound:
        """Answers "not found" and remembers who asked: the over-limit event must not."""

        def __init__(self) -> None:
            self.asked: list[int] = []

        def get_schema_str(self, schema_id: int) -> str:
            self.asked.append(schema_id)
            raise SchemaNotFound(schema_id)

    registry = NotFound()
    fp = rabin_fingerprint(canonical_form(orders.schema))
    for decoder, header in (
        (RawAvroDecoder(orders, max_payload_bytes=100), b""),
        (SingleObjectDecoder(orders, max_payload_bytes=100), b"\xc3\x01" + fp),
        (
            ConfluentDecoder(orders, answered(registry), max_payload_bytes=100),
            b"\x00\x00\x00\x00\x01",
        ),
    ):
        payload = header + b"\x02" * (101 - len(header))
        with pytest.raises(InvalidEvent) as info:
            decoder.decode(payload)
        assert info.value.reason is Reason.PAYLOAD_TOO_LARGE
        assert registry.asked == []
        # one byte less is decoded (and fails for its own reason)
        with pytest.raises(InvalidEvent) as info:
            decoder.decode(payload[:-1])
        assert info.value.reason is not Reason.PAYLOAD_TOO_LARGE
    assert registry.asked == [1]


def test_payload_limit_config_accepts_units_and_refuses_absurd_values() -> None:
    base = {
        "name": "orders",
        "owner": "o",
        "topic": "t",
        "contract": "c.avsc",
        "encoding": "avro-raw",
        "event_time": "occurred_at",
    }
    assert ProductConfig(**base).max_payload_bytes == 1024 * 1024  # type: ignore[arg-type]
    assert ProductConfig(**base, max_payload_bytes="512KiB").max_payload_bytes == 512 * 1024  # type: ignore[arg-type]
    for absurd in ("1GiB", 0, "12 parsecs", True):
        with pytest.raises(ValueError, match="max_payload_bytes"):
            ProductConfig(**base, max_payload_bytes=absurd)  # type: ignore[arg-type]


def test_deep_nesting_under_a_recursive_contract_is_counted_not_a_crash() -> None:
    """On main, ~5000 levels (10 KB) overflowed the C stack in fastavro's compiled reader."""
    decoder = RawAvroDecoder(Contract.from_schema(NODE))
    shallow = b"\x02\x02" * 50 + b"\x02\x00"
    record_, _ = decoder.decode(shallow)
    assert record_["v"] == 1
    for depth in (5_000, 100_000, 500_000):
        payload = b"\x02\x02" * depth + b"\x02\x00"
        with pytest.raises(InvalidEvent) as info:
            decoder.decode(payload)
        assert info.value.reason is Reason.NESTING_TOO_DEEP


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(0, 20_000), tail=st.binary(max_size=8))
def test_any_nesting_of_a_linked_list_decodes_or_is_counted(depth: int, tail: bytes) -> None:
    decoder = RawAvroDecoder(Contract.from_schema(NODE))
    try:
        decoder.decode(b"\x02\x02" * depth + b"\x02\x00" + tail)
    except InvalidEvent as invalid:
        assert invalid.reason in (Reason.NESTING_TOO_DEEP, Reason.DECODE_ERROR)


def test_a_large_event_of_a_recursive_contract_decodes_as_the_compiled_reader_does() -> None:
    """Over 512 bytes the pure-Python reader takes over: same record, logical types too."""
    schema = record(
        "Note",
        ("at", {"type": "long", "logicalType": "timestamp-millis"}),
        ("text", "string"),
        ("next", ["null", "Note"]),
    )
    contract = Contract.from_schema(schema)
    value: dict[str, Any] | None = None
    for i in range(60):
        value = {"at": 1_700_000_000_000 + i, "text": "x" * 20, "next": value}
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), value)
    payload = out.getvalue()
    assert len(payload) > 512
    decoded, _ = RawAvroDecoder(contract).decode(payload)
    assert decoded == schemaless_reader(io.BytesIO(payload), contract.parsed, None)
    assert decoded["at"] == datetime(2023, 11, 14, 22, 13, 20, 59_000, tzinfo=UTC)


def test_validate_names_the_product_and_the_field_of_an_unbounded_array(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = tmp_path / "clicks.avsc"
    contract.write_text(
        json.dumps(record("Click", ("at", "long"), ("marks", {"type": "array", "items": EMPTY})))
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        "products:\n  - {name: clicks, owner: o, topic: t, contract: clicks.avsc,"
        " encoding: avro-raw, event_time: at, max_payload_bytes: 64KiB}\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "products[0].contract (clicks)" in err
    assert "Click.marks[]: array of empty record Empty items can encode unbounded" in err


def test_overlong_varints_cost_nothing_in_the_pure_python_reader() -> None:
    """fastavro's pure-Python read_long takes any number of continuation bytes into an
    ever larger int: 200 KB of 0xFF took 2.7 s, 1 MiB 93 s. Longs end at 10 bytes."""
    decoder = RawAvroDecoder(Contract.from_schema(NODE))
    for n in (11, 300_000):
        payload = b"\xff" * n + b"\x01"
        started = time.perf_counter()
        with pytest.raises(InvalidEvent) as info:
            decoder.decode(payload)
        assert time.perf_counter() - started < 1.0
        assert info.value.reason is Reason.DECODE_ERROR
    # Ten bytes is the longest long there is: it still decodes (zig-zag 2**64 - 1).
    longest = b"\xff" * 9 + b"\x01"
    chain = (longest + b"\x02") * 50 + longest + b"\x00"  # 51 nodes, over 512 bytes
    assert len(chain) > 512
    node, _ = decoder.decode(chain)
    for _ in range(50):
        assert node["v"] == -(2**63)
        node = node["next"]
    assert node == {"v": -(2**63), "next": None}


def test_a_large_event_of_a_compatible_recursive_writer_is_resolved_by_the_python_reader() -> None:
    contract = Contract.from_schema(NODE)
    writer = record("Node", ("v", "int"), ("tag", "string"), ("next", ["null", "Node"]))
    value: dict[str, Any] | None = None
    for i in range(40):
        value = {"v": i, "tag": "t" * 10, "next": value}
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(writer), value)
    payload = b"\xc3\x01" + rabin_fingerprint(canonical_form(writer)) + out.getvalue()
    assert len(payload) > 512
    decoded, used = SingleObjectDecoder(contract, [writer]).decode(payload)
    assert used.verdict is Verdict.COMPATIBLE
    expected = schemaless_reader(io.BytesIO(out.getvalue()), parse_schema(writer), contract.parsed)
    assert decoded == expected
    assert "tag" not in decoded and decoded["v"] == 39


INFINITE = record("Loop", ("x", "t.Loop"))  # every Loop holds a Loop: no value exists


def test_a_record_that_always_contains_itself_is_refused_at_load() -> None:
    """On main one byte under such a contract crashed the process (endless recursion)."""
    with pytest.raises(ContractError, match=r"Loop.x: record Loop contains itself in every"):
        Contract.from_schema(INFINITE)
    two_step = record("A", ("at", "long"), ("b", record("B", ("a", "t.A"))))
    with pytest.raises(ContractError, match=r"B.a: record A contains itself"):
        Contract.from_schema(two_step)


def test_a_registry_writer_that_always_contains_itself_is_unsafe_not_a_crash(
    orders: Contract,
) -> None:
    writer = json.loads(json.dumps(orders.schema))
    loop = {"type": "record", "name": "Loop", "fields": [{"name": "x", "type": "Loop"}]}
    writer["fields"].append({"name": "loop", "type": loop})

    class Lookup:
        def get_schema_str(self, schema_id: int) -> str:
            return json.dumps(writer)

    with pytest.raises(InvalidEvent) as info:
        ConfluentDecoder(orders, answered(Lookup())).decode(b"\x00\x00\x00\x00\x07\x02")
    assert info.value.reason is Reason.UNSAFE_SCHEMA


def test_a_huge_bytes_decimal_is_not_converted() -> None:
    """fastavro makes a Decimal of every byte whatever the declared precision, in
    quadratic time (100 KB: 1 s, 1 MiB: ~100 s on main); Tidemark never reads it."""
    schema = record(
        "Payment",
        ("at", {"type": "long", "logicalType": "timestamp-millis"}),
        ("amount", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}),
        (
            "fee",
            {"type": "fixed", "name": "Fee", "size": 2, "logicalType": "decimal", "precision": 4},
        ),
    )
    decoder = RawAvroDecoder(Contract.from_schema(schema))
    n = 300_000
    payload = b"\x02" + zigzag(n) + b"\x7f" * n + b"\x00\x05"
    started = time.perf_counter()
    decoded, _ = decoder.decode(payload)
    assert time.perf_counter() - started < 1.0
    assert decoded["amount"] == b"\x7f" * n  # raw bytes: nobody reads it
    assert decoded["fee"] == Decimal("5")  # a fixed decimal is bounded by its size
    assert decoded["at"] == datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
