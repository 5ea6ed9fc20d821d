"""Event time: every supported field type, checked on records fastavro really decodes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.errors import ContractError

T = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
T_SECONDS = T.timestamp()  # 1714564800.25


def contract_with(ts_type: Any, name: str = "ts") -> Contract:
    return Contract.from_schema(
        {
            "type": "record",
            "name": "E",
            "namespace": "t",
            "fields": [{"name": "id", "type": "string"}, {"name": name, "type": ts_type}],
        }
    )


def decoded(contract: Contract, value: Any, avro_body) -> dict[str, Any]:
    """The record as the pipeline will see it: written, then read back by our decoder."""
    record, _ = RawAvroDecoder(contract).decode(
        avro_body(contract.schema, {"id": "x", "ts": value})
    )
    return record


LOGICAL_CASES = [
    ("timestamp-millis", T),
    ("timestamp-micros", T),
    ("local-timestamp-millis", T.replace(tzinfo=None)),
    ("local-timestamp-micros", T.replace(tzinfo=None)),
]


@pytest.mark.parametrize(("logical", "written"), LOGICAL_CASES)
def test_logical_timestamps_become_epoch_seconds(logical, written, avro_body) -> None:
    contract = contract_with({"type": "long", "logicalType": logical})
    record = decoded(contract, written, avro_body)
    assert isinstance(record["ts"], datetime)  # fastavro hands us datetimes
    assert make_extractor(contract, "ts")(record, -1) == pytest.approx(T_SECONDS, abs=1e-6)


@pytest.mark.parametrize(
    ("logical", "raw"),
    [
        ("timestamp-millis", 1_714_564_800_250),
        ("timestamp-micros", 1_714_564_800_250_000),
        ("local-timestamp-millis", 1_714_564_800_250),
        ("local-timestamp-micros", 1_714_564_800_250_000),
    ],
)
def test_logical_timestamp_from_a_writer_without_the_logical_type_is_scaled(logical, raw) -> None:
    # Under schema resolution fastavro applies the writer's logical types, so a
    # compatible writer with a plain long hands us an int in the contract's unit.
    contract = contract_with({"type": "long", "logicalType": logical})
    assert make_extractor(contract, "ts")({"ts": raw}, -1) == pytest.approx(T_SECONDS)


def test_plain_long_is_epoch_milliseconds(avro_body) -> None:
    contract = contract_with("long")
    record = decoded(contract, 1_714_564_800_250, avro_body)
    assert make_extractor(contract, "ts")(record, -1) == pytest.approx(T_SECONDS)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00.250Z",
        "2024-05-01T12:00:00.250+00:00",
        "2024-05-01T14:00:00.250+02:00",
        "2024-05-01T12:00:00.250",  # no offset: UTC
        "2024-05-01 12:00:00.250Z",
    ],
)
def test_iso8601_strings(text, avro_body) -> None:
    contract = contract_with("string")
    record = decoded(contract, text, avro_body)
    assert make_extractor(contract, "ts")(record, -1) == pytest.approx(T_SECONDS)


def test_double_is_epoch_seconds(avro_body) -> None:
    contract = contract_with("double")
    record = decoded(contract, T_SECONDS, avro_body)
    assert make_extractor(contract, "ts")(record, -1) == T_SECONDS


@pytest.mark.parametrize(
    "ts_type",
    [
        ["null", {"type": "long", "logicalType": "timestamp-millis"}],
        ["null", "string"],
        ["null", "double"],
        ["null", "long"],
    ],
)
def test_null_in_a_nullable_union_is_missing(ts_type, avro_body) -> None:
    contract = contract_with(ts_type)
    record = decoded(contract, None, avro_body)
    assert make_extractor(contract, "ts")(record, -1) is None


def test_nullable_union_with_a_value(avro_body) -> None:
    contract = contract_with([{"type": "long", "logicalType": "timestamp-micros"}, "null"])
    record = decoded(contract, T, avro_body)
    assert make_extractor(contract, "ts")(record, -1) == pytest.approx(T_SECONDS)


def test_nested_field_of_the_payments_contract(payments, avro_body) -> None:
    body = avro_body(
        payments.schema,
        {
            "header": {"event_time": T, "producer": "p1", "seq": 7},
            "payment_id": "pay-1",
            "amount_cents": 500,
            "status": "CAPTURED",
        },
    )
    record, _ = RawAvroDecoder(payments).decode(body)
    assert make_extractor(payments, "header.event_time")(record, -1) == pytest.approx(T_SECONDS)


NESTED = {
    "type": "record",
    "name": "Outer",
    "fields": [
        {
            "name": "meta",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Meta",
                    "fields": [
                        {
                            "name": "clock",
                            "type": {
                                "type": "record",
                                "name": "Clock",
                                "fields": [{"name": "at", "type": ["null", "string"]}],
                            },
                        }
                    ],
                },
            ],
        },
        {"name": "again", "type": ["null", "Meta"], "default": None},
    ],
}


def test_three_levels_through_a_nullable_record() -> None:
    extract = make_extractor(Contract.from_schema(NESTED), "meta.clock.at")
    assert extract({"meta": {"clock": {"at": "2024-05-01T12:00:00.25Z"}}}, -1) == T_SECONDS
    assert extract({"meta": None}, -1) is None
    assert extract({"meta": {"clock": {"at": None}}}, -1) is None


def test_path_through_a_named_type_reference() -> None:
    extract = make_extractor(Contract.from_schema(NESTED), "again.clock.at")
    assert extract({"again": {"clock": {"at": "2024-05-01T12:00:00.25Z"}}}, -1) == T_SECONDS


def test_two_levels_through_a_null_record() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {
                "name": "h",
                "type": [
                    "null",
                    {"type": "record", "name": "H", "fields": [{"name": "t", "type": "double"}]},
                ],
            }
        ],
    }
    extract = make_extractor(Contract.from_schema(schema), "h.t")
    assert extract({"h": None}, -1) is None
    assert extract({"h": {"t": 1.5}}, -1) == 1.5


def test_kafka_timestamp_is_milliseconds_and_absent_is_missing(orders) -> None:
    extract = make_extractor(orders, "kafka-timestamp")
    assert extract({}, 1_714_564_800_250) == pytest.approx(T_SECONDS)
    assert extract({}, -1) is None


# --- values that exist but cannot be read: ValueError (-> bad_event_time) ----


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01T00:00:00Z", "1714564800"])
def test_unparseable_string_raises_value_error_without_quoting_it(text) -> None:
    extract = make_extractor(contract_with("string"), "ts")
    with pytest.raises(ValueError, match="not ISO-8601") as info:
        extract({"ts": text}, -1)
    assert text == "" or text not in str(info.value)  # payload content stays out of logs


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_double_raises_value_error(value) -> None:
    with pytest.raises(ValueError, match="finite"):
        make_extractor(contract_with("double"), "ts")({"ts": value}, -1)


@pytest.mark.parametrize(
    ("ts_type", "value"),
    [("long", "12"), ("long", True), ("double", "1.5"), ("string", 12)],
)
def test_value_of_an_unexpected_python_type_raises_value_error(ts_type, value) -> None:
    with pytest.raises(ValueError, match="event time"):
        make_extractor(contract_with(ts_type), "ts")({"ts": value}, -1)


def test_aware_datetime_in_another_zone_is_converted() -> None:
    extract = make_extractor(
        contract_with({"type": "long", "logicalType": "timestamp-millis"}), "ts"
    )
    cest = T.astimezone(timezone(timedelta(hours=2)))
    assert extract({"ts": cest}, -1) == pytest.approx(T_SECONDS)


# --- specs that cannot work: ContractError at start-up --------------------------


def test_unknown_field_lists_the_fields_that_exist(orders) -> None:
    with pytest.raises(ContractError) as info:
        make_extractor(orders, "ocurred_at")
    message = str(info.value)
    assert "'ocurred_at'" in message
    assert "orders.avsc" in message
    assert "occurred_at" in message.split("its fields are")[1]


def test_unknown_nested_field_names_the_record(payments) -> None:
    with pytest.raises(ContractError, match=r"header \(com\.example\.pay\.Header\) has no field"):
        make_extractor(payments, "header.event_tme")


def test_path_through_a_non_record_is_rejected(orders) -> None:
    with pytest.raises(ContractError, match="order_id is not a record"):
        make_extractor(orders, "order_id.at")


@pytest.mark.parametrize(
    ("ts_type", "shown"),
    [
        ("int", "type int"),
        ("boolean", "type boolean"),
        ({"type": "int", "logicalType": "date"}, "int with logicalType date"),
        ({"type": "long", "logicalType": "time-micros"}, "long with logicalType time-micros"),
        ({"type": "string", "logicalType": "uuid"}, "string with logicalType uuid"),
        (["null", "long", "string"], "union [null, long, string]"),
        ({"type": "record", "name": "X", "fields": []}, "type record"),
    ],
)
def test_unsupported_type_says_what_is_supported(ts_type, shown) -> None:
    with pytest.raises(ContractError) as info:
        make_extractor(contract_with(ts_type), "ts")
    message = str(info.value)
    assert shown in message
    assert "supported: long with logicalType timestamp-millis" in message
    assert "plain long (read as epoch MILLISECONDS)" in message


@pytest.mark.parametrize("spec", ["", "header.", ".x", "a..b"])
def test_malformed_path_is_rejected(payments, spec) -> None:
    with pytest.raises(ContractError, match="dotted field path"):
        make_extractor(payments, spec)
