"""Decoders: every reason they raise, writer-schema caching, and bytes that must not crash."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import struct
import threading
import time
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.contract.decoding import (
    ConfluentDecoder,
    HoldReason,
    InvalidEvent,
    RawAvroDecoder,
    Reason,
    SchemaPending,
    SingleObjectDecoder,
)
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract, Verdict, canonical_form, rabin_fingerprint
from monitor.contract.registry import (
    BackgroundLookups,
    ConfluentRegistryLookup,
    RegistryUnavailable,
    SchemaLookup,
    SchemaNotFound,
)
from monitor.errors import ContractError


class FakeLookup:
    """Stands in for a schema registry at the SchemaLookup protocol boundary; counts calls."""

    def __init__(self, schemas: dict[int, Any] | None = None) -> None:
        self.schemas = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in (schemas or {}).items()
        }
        self.down = False
        self.calls: list[int] = []

    def get_schema_str(self, schema_id: int) -> str:
        self.calls.append(schema_id)
        if self.down:
            raise RegistryUnavailable(schema_id, "ConnectError: [Errno 111] Connection refused")
        if schema_id not in self.schemas:
            raise SchemaNotFound(schema_id)
        return self.schemas[schema_id]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InlineExecutor(Executor):
    """Runs each look-up at once on the caller's thread: decoder tests without timing."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def inline(lookup: SchemaLookup, clock: FakeClock | None = None, **kw: Any) -> BackgroundLookups:
    return BackgroundLookups(lookup, executor=InlineExecutor(), clock=clock or FakeClock(), **kw)


def confluent_decoder(
    contract: Contract,
    lookup: SchemaLookup,
    clock: FakeClock | None = None,
    max_writer_schemas: int = 32,
    **kw: Any,
) -> ConfluentDecoder:
    """A decoder whose look-ups answer before resolve() returns (the answer, not the wait)."""
    return ConfluentDecoder(
        contract, inline(lookup, clock, **kw), max_writer_schemas=max_writer_schemas
    )


def pending_of(decoder: Any, payload: bytes) -> HoldReason:
    with pytest.raises(SchemaPending) as info:
        decoder.decode(payload)
    return info.value.reason


def confluent(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def single_object(schema: dict[str, Any], body: bytes) -> bytes:
    return b"\xc3\x01" + rabin_fingerprint(canonical_form(schema)) + body


def reason_of(decoder: Any, payload: bytes | None) -> Reason:
    with pytest.raises(InvalidEvent) as info:
        decoder.decode(payload)
    return info.value.reason


@pytest.fixture
def incompatible_orders(schema_copy, field_of) -> dict[str, Any]:
    schema = schema_copy()
    field_of(schema, "amount_cents")["type"] = "string"
    return schema


# --- avro-raw -----------------------------------------------------------------


def test_raw_decodes_the_contract_and_keeps_its_logical_types(
    orders, avro_body, make_order
) -> None:
    decoder = RawAvroDecoder(orders)
    record, writer = decoder.decode(avro_body(orders.schema, make_order()))
    assert record == make_order()
    assert isinstance(record["occurred_at"], datetime)
    assert (writer.key, writer.verdict, writer.reasons) == ("contract", Verdict.CONFORMING, ())
    assert decoder.writers == {"contract": writer}


@pytest.mark.parametrize("payload", [None, b""])
def test_null_or_empty_value_is_null_value(orders, payload) -> None:
    assert reason_of(RawAvroDecoder(orders), payload) is Reason.NULL_VALUE


def test_truncated_body_is_decode_error(orders, avro_body, make_order) -> None:
    body = avro_body(orders.schema, make_order())
    assert reason_of(RawAvroDecoder(orders), body[:-1]) is Reason.DECODE_ERROR


def test_trailing_bytes_are_decode_error(orders, avro_body, make_order) -> None:
    body = avro_body(orders.schema, make_order())
    assert reason_of(RawAvroDecoder(orders), body + b"\x00") is Reason.DECODE_ERROR


def test_invalid_utf8_is_decode_error(orders) -> None:
    assert reason_of(RawAvroDecoder(orders), b"\x04\xff\xfe") is Reason.DECODE_ERROR


def test_huge_length_prefix_is_decode_error(orders) -> None:
    huge = b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # zigzag varint near 2**63
    assert reason_of(RawAvroDecoder(orders), huge + b"abc") is Reason.DECODE_ERROR


def test_bad_enum_index_is_decode_error(payments, avro_body) -> None:
    body = avro_body(
        payments.schema,
        {
            "header": {"event_time": datetime(2024, 5, 1, tzinfo=UTC), "producer": "p", "seq": 1},
            "payment_id": "x",
            "amount_cents": 1,
            "status": "REFUNDED",
        },
    )
    assert body[-1] == 4  # zigzag(2): the index of REFUNDED
    assert reason_of(RawAvroDecoder(payments), body[:-1] + b"\x06") is Reason.DECODE_ERROR


# --- avro-single-object ---------------------------------------------------------


def test_single_object_hand_built_from_the_spec() -> None:
    # Avro spec: C3 01, then the 8-byte little-endian CRC-64-AVRO of the writer
    # schema; 7843277075252814651 is schema-tests.txt's value for this schema.
    schema = {"type": "record", "name": "foo", "fields": [{"name": "f1", "type": "boolean"}]}
    payload = b"\xc3\x01" + (7843277075252814651).to_bytes(8, "little", signed=True) + b"\x01"
    record, writer = SingleObjectDecoder(Contract.from_schema(schema)).decode(payload)
    assert record == {"f1": True}
    assert writer.key == "fp:" + (7843277075252814651).to_bytes(8, "little", signed=True).hex()
    assert writer.verdict is Verdict.CONFORMING


def test_single_object_conforming_and_compatible_writers(orders, orders_v2, avro_body, make_order):
    decoder = SingleObjectDecoder(orders, [orders_v2])
    record, writer = decoder.decode(
        b"\xc3\x01" + orders.fingerprint + avro_body(orders.schema, make_order())
    )
    assert record == make_order()
    assert writer.key == f"fp:{orders.fingerprint_hex}"
    assert writer.verdict is Verdict.CONFORMING

    v2_body = avro_body(orders_v2, {**make_order(), "channel": "web"})
    record, writer = decoder.decode(single_object(orders_v2, v2_body))
    assert record == make_order()  # resolved to the contract: channel dropped
    assert writer.verdict is Verdict.COMPATIBLE
    assert set(decoder.writers) == {f"fp:{orders.fingerprint_hex}", writer.key}


def test_single_object_unknown_fingerprint(orders, orders_v2, avro_body, make_order) -> None:
    decoder = SingleObjectDecoder(orders)  # v2 not listed in config
    v2_body = avro_body(orders_v2, {**make_order(), "channel": None})
    assert reason_of(decoder, single_object(orders_v2, v2_body)) is Reason.UNKNOWN_SCHEMA


@pytest.mark.parametrize(
    "payload",
    [b"\xc3", b"\xc3\x01\x00\x00", b"\xc3\x02" + bytes(8) + b"\x00", b"\x00\x01" + bytes(9)],
)
def test_single_object_bad_marker_or_short_header_is_bad_framing(orders, payload) -> None:
    assert reason_of(SingleObjectDecoder(orders), payload) is Reason.BAD_FRAMING


def test_single_object_incompatible_writer_carries_the_writer(
    orders, incompatible_orders, avro_body, make_order
) -> None:
    decoder = SingleObjectDecoder(orders, [incompatible_orders])
    body = avro_body(incompatible_orders, make_order(amount_cents="12.99"))
    with pytest.raises(InvalidEvent) as info:
        decoder.decode(single_object(incompatible_orders, body))
    assert info.value.reason is Reason.INCOMPATIBLE_SCHEMA
    writer = info.value.writer
    assert writer is not None and writer.verdict is Verdict.INCOMPATIBLE
    assert writer.reasons == (
        "amount_cents (/fields/2/type): reader type: long not compatible with writer type: string",
    )


def test_single_object_invalid_configured_writer_is_a_contract_error(orders) -> None:
    bad = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]}
    with pytest.raises(ContractError, match=r"writer_schemas\[1\] .* not valid Avro: .*Nope"):
        SingleObjectDecoder(orders, [orders.schema, bad])


def test_single_object_writers_are_bounded_but_all_decode(
    orders, schema_copy, avro_body, make_order
):
    variants = []
    for i in range(3):
        schema = schema_copy()
        schema["fields"].append({"name": f"extra{i}", "type": "int", "default": 0})
        variants.append(schema)
    decoder = SingleObjectDecoder(orders, variants, max_writer_schemas=2)
    assert len(decoder.writers) == 2
    body = avro_body(variants[2], {**make_order(), "extra2": 5})
    record, writer = decoder.decode(single_object(variants[2], body))
    assert record == make_order()
    assert writer.key not in decoder.writers


# --- confluent ----------------------------------------------------------------


def test_confluent_looks_up_each_schema_id_once(orders, orders_v2, avro_body, make_order) -> None:
    lookup = FakeLookup({1: orders.schema, 2: orders_v2})
    decoder = confluent_decoder(orders, lookup)
    for _ in range(3):
        record, writer = decoder.decode(confluent(1, avro_body(orders.schema, make_order())))
        assert record == make_order() and writer.verdict is Verdict.CONFORMING
        record, writer = decoder.decode(
            confluent(2, avro_body(orders_v2, {**make_order(), "channel": "app"}))
        )
        assert record == make_order() and writer.verdict is Verdict.COMPATIBLE
    assert lookup.calls == [1, 2]
    assert set(decoder.writers) == {"id:1", "id:2"}


def test_confluent_writer_without_the_contracts_logical_type_is_drift_read_in_its_unit(
    orders, schema_copy, field_of
):
    # Same canonical form, but the registered copy lost its logicalType: that is a
    # writer other than the contract (drift), and the plain long it wrote is read in
    # the contract's unit by the event-time extractor.
    plain = schema_copy()
    field_of(plain, "occurred_at")["type"] = "long"
    decoder = confluent_decoder(orders, FakeLookup({7: plain}))
    record, writer = decoder.decode(confluent(7, b"\x02a\x02b\x02\x06EUR\x02\x02p\x02"))
    assert writer.verdict is Verdict.COMPATIBLE
    assert make_extractor(orders, "occurred_at")(record, -1) == 0.001


def test_confluent_incompatible_writer_is_classified_once(
    orders, incompatible_orders, avro_body, make_order
) -> None:
    lookup = FakeLookup({3: incompatible_orders})
    decoder = confluent_decoder(orders, lookup)
    payload = confluent(3, avro_body(incompatible_orders, make_order(amount_cents="x")))
    for _ in range(2):
        with pytest.raises(InvalidEvent) as info:
            decoder.decode(payload)
        assert info.value.reason is Reason.INCOMPATIBLE_SCHEMA
        assert info.value.writer is decoder.writers["id:3"]
    assert decoder.writers["id:3"].verdict is Verdict.INCOMPATIBLE
    assert lookup.calls == [3]


def test_confluent_unknown_id_is_remembered_for_not_found_ttl(orders, avro_body, make_order):
    lookup, clock = FakeLookup(), FakeClock()
    decoder = confluent_decoder(orders, lookup, clock, not_found_ttl=30.0)
    payload = confluent(9, avro_body(orders.schema, make_order()))
    assert reason_of(decoder, payload) is Reason.UNKNOWN_SCHEMA
    clock.now += 29.0
    assert reason_of(decoder, payload) is Reason.UNKNOWN_SCHEMA
    assert lookup.calls == [9]
    lookup.schemas[9] = json.dumps(orders.schema)  # registered meanwhile
    clock.now += 1.0
    assert decoder.decode(payload)[0] == make_order()
    assert lookup.calls == [9, 9]


def test_confluent_dead_registry_holds_the_event_and_backs_off(orders, avro_body, make_order):
    # Not the producer's fault: never an InvalidEvent, and the registry is asked again
    # only after a doubling backoff, not once per event.
    lookup, clock = FakeLookup({1: orders.schema, 2: orders.schema}), FakeClock()
    lookup.down = True
    decoder = confluent_decoder(orders, lookup, clock, first_backoff=1.0, max_backoff=4.0)
    body = avro_body(orders.schema, make_order())
    for _ in range(1000):
        assert pending_of(decoder, confluent(1, body)) is HoldReason.REGISTRY_UNREACHABLE
    assert lookup.calls == [1]
    for step in (1.0, 2.0, 4.0, 4.0):  # 1 s, 2 s, then capped at 4 s
        clock.now += step - 0.01
        assert pending_of(decoder, confluent(1, body)) is HoldReason.REGISTRY_UNREACHABLE
        calls = len(lookup.calls)
        clock.now += 0.01
        assert pending_of(decoder, confluent(1, body)) is HoldReason.REGISTRY_UNREACHABLE
        assert len(lookup.calls) == calls + 1
    lookup.down = False
    clock.now += 4.0
    assert decoder.decode(confluent(1, body))[0] == make_order()
    assert decoder.decode(confluent(2, body))[0] == make_order()
    assert decoder.writers.keys() == {"id:1", "id:2"}


def test_confluent_cached_ids_keep_decoding_while_the_registry_is_down(
    orders, avro_body, make_order
):
    lookup = FakeLookup({1: orders.schema})
    decoder = confluent_decoder(orders, lookup)
    payload = confluent(1, avro_body(orders.schema, make_order()))
    decoder.decode(payload)
    lookup.down = True
    assert decoder.decode(payload)[0] == make_order()
    assert lookup.calls == [1]


def test_confluent_lookup_that_raises_something_else_counts_as_unreachable(orders) -> None:
    class Broken:
        def get_schema_str(self, schema_id: int) -> str:
            raise RuntimeError("bug")

    decoder = confluent_decoder(orders, Broken())
    assert pending_of(decoder, confluent(1, b"")) is HoldReason.REGISTRY_UNREACHABLE


@pytest.mark.parametrize("schema_str", ['{"type": "object"}', "syntax = 'proto3';", "{"])
def test_confluent_schema_that_is_not_avro_is_unknown(orders, schema_str) -> None:
    decoder = confluent_decoder(orders, FakeLookup({4: schema_str}))
    assert reason_of(decoder, confluent(4, b"\x00")) is Reason.UNKNOWN_SCHEMA
    assert decoder.writers == {}


@pytest.mark.parametrize("payload", [b"\x01\x00\x00\x00\x01\x02", b"\x00\x00\x00\x01", b"\x00"])
def test_confluent_bad_magic_byte_or_short_header_is_bad_framing(orders, payload) -> None:
    lookup = FakeLookup({1: orders.schema})
    assert reason_of(confluent_decoder(orders, lookup), payload) is Reason.BAD_FRAMING
    assert lookup.calls == []


def test_confluent_decode_error_after_a_known_id(orders) -> None:
    decoder = confluent_decoder(orders, FakeLookup({1: orders.schema}))
    assert reason_of(decoder, confluent(1, b"\x02a")) is Reason.DECODE_ERROR


def test_confluent_writers_are_bounded_and_overflow_is_still_cached(orders, avro_body, make_order):
    lookup = FakeLookup({i: orders.schema for i in range(1, 6)})
    # The resolver remembers only 2 schema texts, so an id the decoder evicted is asked again.
    decoder = confluent_decoder(orders, lookup, max_writer_schemas=2, max_remembered=2)
    body = avro_body(orders.schema, make_order())
    for _ in range(3):
        for schema_id in range(1, 5):
            assert decoder.decode(confluent(schema_id, body))[0] == make_order()
    assert set(decoder.writers) == {"id:1", "id:2"}
    assert decoder.writers_not_listed == 2
    assert lookup.calls == [1, 2, 3, 4]  # ids 3 and 4 live in the overflow cache
    decoder.decode(confluent(5, body))  # overflow holds 2: evicts id 3, the least recent
    decoder.decode(confluent(4, body))
    decoder.decode(confluent(3, body))
    assert lookup.calls == [1, 2, 3, 4, 5, 3]


# --- the real registry client (confluent-kafka's in-process mock:// registry) -----


def test_confluent_decodes_what_confluents_serializer_wrote(orders, make_order) -> None:
    lookup = ConfluentRegistryLookup({"url": "mock://tidemark-unit"})
    serializer = AvroSerializer(lookup.client, json.dumps(orders.schema))
    ctx = SerializationContext("orders", MessageField.VALUE)
    payload = serializer(make_order(), ctx)
    decoder = confluent_decoder(orders, lookup)
    for _ in range(5):
        record, writer = decoder.decode(payload)
        assert record == make_order()
    schema_id = struct.unpack(">I", payload[1:5])[0]
    assert writer.key == f"id:{schema_id}"
    assert writer.verdict is Verdict.CONFORMING
    assert reason_of(decoder, confluent(schema_id + 100, payload[5:])) is Reason.UNKNOWN_SCHEMA
    assert lookup.counts() == {"ok": 1, "not_found": 1, "error": 0}


def test_registry_schema_of_another_type_is_unknown(orders) -> None:
    lookup = ConfluentRegistryLookup({"url": "mock://tidemark-unit-json"})
    schema_id = lookup.client.register_schema("orders-value", Schema('{"type":"object"}', "JSON"))
    decoder = confluent_decoder(orders, lookup)
    assert reason_of(decoder, confluent(schema_id, b"{}")) is Reason.UNKNOWN_SCHEMA
    assert lookup.counts()["not_found"] == 1


# --- properties -----------------------------------------------------------------

ORDERS = st.fixed_dictionaries(
    {
        "order_id": st.text(max_size=40),
        "customer_id": st.text(max_size=40),
        "amount_cents": st.integers(-(2**63), 2**63 - 1),
        "currency": st.text(max_size=3),
        "occurred_at": st.datetimes(
            min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
        "producer_id": st.text(max_size=20),
        "sequence": st.integers(-(2**63), 2**63 - 1),
    }
)

HEALTH = [HealthCheck.function_scoped_fixture]


@settings(max_examples=150, suppress_health_check=HEALTH)
@given(record=ORDERS)
def test_any_order_round_trips_through_every_decoder(orders, orders_v2, avro_body, record):
    body = avro_body(orders.schema, record)
    raw = RawAvroDecoder(orders)
    single = SingleObjectDecoder(orders, [orders_v2])
    conf = confluent_decoder(orders, FakeLookup({1: orders.schema, 2: orders_v2}))
    assert raw.decode(body)[0] == record
    assert single.decode(b"\xc3\x01" + orders.fingerprint + body)[0] == record
    assert conf.decode(confluent(1, body))[0] == record
    v2_body = avro_body(orders_v2, {**record, "channel": "web"})
    assert single.decode(single_object(orders_v2, v2_body))[0] == record
    assert conf.decode(confluent(2, v2_body))[0] == record


def _decoders(orders: Contract, payments: Contract, orders_v2: dict[str, Any], bad: dict[str, Any]):
    lookup = FakeLookup({1: orders.schema, 2: orders_v2, 3: bad})
    return [
        RawAvroDecoder(orders),
        RawAvroDecoder(payments),
        SingleObjectDecoder(orders, [orders_v2, bad]),
        SingleObjectDecoder(payments),
        confluent_decoder(orders, lookup),
        confluent_decoder(payments, FakeLookup({1: payments.schema, 2: orders.schema})),
    ]


@settings(max_examples=400, suppress_health_check=HEALTH)
@given(
    prefix=st.sampled_from(["", "confluent-1", "confluent-2", "confluent-3", "so-orders", "so-v2"]),
    tail=st.binary(max_size=120),
)
def test_random_bytes_never_escape_as_anything_but_invalid_event(
    orders, payments, orders_v2, incompatible_orders, prefix, tail
) -> None:
    heads = {
        "": b"",
        "confluent-1": confluent(1, b""),
        "confluent-2": confluent(2, b""),
        "confluent-3": confluent(3, b""),
        "so-orders": b"\xc3\x01" + orders.fingerprint,
        "so-v2": b"\xc3\x01" + rabin_fingerprint(canonical_form(orders_v2)),
    }
    payload = heads[prefix] + tail
    for decoder in _decoders(orders, payments, orders_v2, incompatible_orders):
        try:
            record, writer = decoder.decode(payload)
        except InvalidEvent as invalid:
            assert isinstance(invalid.reason, Reason)
            assert (invalid.writer is not None) == (invalid.reason is Reason.INCOMPATIBLE_SCHEMA)
        else:
            assert isinstance(record, dict)
            assert writer.verdict is not Verdict.INCOMPATIBLE


# --- the real registry client over HTTP ---------------------------------------
# A few lines of http.server stand in for an external Confluent-compatible
# registry (Confluent SR, Redpanda, Karapace): only GET /schemas/ids/{id} is
# answered, with the status and body each test sets.


class _Registry(http.server.BaseHTTPRequestHandler):
    status = 200
    body: Any = {}

    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        body = self.body
        if callable(body):
            body = body(self)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry():
    """Start a stub registry; yields a function (status, body) -> base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int, body: Any) -> str:
        answer = staticmethod(body) if callable(body) else body
        handler = type("Handler", (_Registry,), {"status": status, "body": answer})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.requests = 0  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_registry_lookup_returns_the_avro_schema(registry, orders) -> None:
    host = registry(200, {"schema": json.dumps(orders.schema)})
    lookup = ConfluentRegistryLookup({"url": f"http://{host}"})
    assert json.loads(lookup.get_schema_str(1)) == orders.schema
    assert lookup.counts() == {"ok": 1, "not_found": 0, "error": 0}


def test_registry_404_with_a_registry_error_code_is_not_found(registry) -> None:
    host = registry(404, {"error_code": 40403, "message": "Schema 5 not found"})
    lookup = ConfluentRegistryLookup({"url": f"http://{host}"})
    with pytest.raises(SchemaNotFound, match="schema id 5 is not in the schema registry"):
        lookup.get_schema_str(5)
    assert lookup.counts() == {"ok": 0, "not_found": 1, "error": 0}


def test_registry_404_without_an_error_code_is_unavailable_and_hints_at_the_url(registry):
    host = registry(404, b"<html>Not Found</html>")
    lookup = ConfluentRegistryLookup({"url": f"http://{host}/wrong-prefix"})
    with pytest.raises(RegistryUnavailable, match="wrong registry URL"):
        lookup.get_schema_str(5)
    assert lookup.counts() == {"ok": 0, "not_found": 0, "error": 1}


def _echo_credentials(handler: http.server.BaseHTTPRequestHandler) -> dict[str, Any]:
    """A misbehaving proxy that puts the caller's credentials into its error message."""
    auth = handler.headers.get("Authorization", "")
    plain = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth else "none"
    return {"error_code": 50001, "message": f"upstream refused credentials {plain}"}


@pytest.mark.parametrize(
    "conf",
    [
        {"url": "http://{host}", "basic.auth.user.info": "alice:hunter2-secret"},
        {"url": "http://alice:hunter2%2Dsecret@{host}"},
    ],
    ids=["basic.auth.user.info", "userinfo-in-url"],
)
def test_registry_errors_never_carry_credentials(registry, conf) -> None:
    host = registry(500, _echo_credentials)
    full = {k: v.format(host=host) for k, v in conf.items()}
    lookup = ConfluentRegistryLookup(full)
    with pytest.raises(RegistryUnavailable) as info:
        lookup.get_schema_str(1)
    text = str(info.value)
    assert "upstream refused credentials" in text  # the server's message is kept...
    assert "hunter2" not in text  # ...without the secret
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_registry_connection_refused_is_unavailable_without_a_long_stall() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lookup = ConfluentRegistryLookup({"url": f"http://127.0.0.1:{port}"})
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="ConnectError"):
        lookup.get_schema_str(1)
    assert time.monotonic() - started < 3.0
    assert lookup.counts() == {"ok": 0, "not_found": 0, "error": 1}


def test_confluent_decoder_with_a_failing_registry_asks_each_id_once(registry, orders) -> None:
    host = registry(503, {"error_code": 50301, "message": "overloaded"})
    lookup = ConfluentRegistryLookup({"url": f"http://{host}"})
    decoder = confluent_decoder(orders, lookup)
    for schema_id in (1, 2, 1, 2, 3):
        assert pending_of(decoder, confluent(schema_id, b"\x00")) is (
            HoldReason.REGISTRY_UNREACHABLE
        )
    assert lookup.counts() == {"ok": 0, "not_found": 0, "error": 3}
