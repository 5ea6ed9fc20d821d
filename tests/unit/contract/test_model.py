"""Contracts: loading, canonical form and fingerprint, and writer-schema verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import avro.schema
import pytest

from monitor.contract.model import Contract, Verdict, canonical_form, classify, rabin_fingerprint
from monitor.errors import ContractError

# --- loading ------------------------------------------------------------------


def test_example_contracts_load_with_their_full_names(orders, payments, orders_v2) -> None:
    assert orders.name == "com.example.shop.Order"
    assert payments.name == "com.example.pay.Payment"
    v2 = Contract.from_schema(orders_v2)
    assert v2.name == orders.name
    assert v2.fingerprint != orders.fingerprint


def test_example_contracts_document_every_field(orders, payments, orders_v2) -> None:
    def undocumented(schema: dict) -> list[str]:
        missing = [] if schema.get("doc") else [schema["name"]]
        for f in schema["fields"]:
            if not f.get("doc"):
                missing.append(f["name"])
            if isinstance(f["type"], dict) and f["type"].get("type") == "record":
                missing += undocumented(f["type"])
        return missing

    for schema in (orders.schema, payments.schema, orders_v2):
        assert undocumented(schema) == []


def test_missing_contract_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.avsc"
    with pytest.raises(ContractError, match=r"nope\.avsc: file not found"):
        Contract.load(path)


def test_bad_json_reports_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.avsc"
    path.write_text('{\n  "type": "record",\n  "name": "X"\n  "fields": []\n}\n')
    with pytest.raises(ContractError, match=r"broken\.avsc: not valid JSON at line 4 column 3"):
        Contract.load(path)


def test_invalid_avro_carries_fastavro_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(json.dumps({"type": "record", "name": "X", "fields": [{"name": "a"}]}))
    with pytest.raises(ContractError, match=r"bad\.avsc: not a valid Avro schema: .*type"):
        Contract.load(path)


def test_unknown_type_name_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "unknown.avsc"
    schema = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]}
    path.write_text(json.dumps(schema))
    with pytest.raises(ContractError, match=r"unknown\.avsc: not a valid Avro schema: .*Nope"):
        Contract.load(path)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.avsc"
    path.write_text('["null", "string"]')
    with pytest.raises(ContractError, match=r"list\.avsc: the top level must be a JSON object"):
        Contract.load(path)


# --- canonical form and fingerprint -------------------------------------------

# From the Avro project's share/test/data/schema-tests.txt: (input, canonical form,
# CRC-64-AVRO as Java's signed long).
SPEC_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"boolean"}', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('{"type":"long"}', '"long"', -3434872931120570953),
    ('"string"', '"string"', -8142146995180207161),
    (
        '{"type":"fixed","name":"foo","size":15}',
        '{"name":"foo","type":"fixed","size":15}',
        1756455273707447556,
    ),
    (
        '{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
        7843277075252814651,
    ),
    (
        '{"type":"record","name":"PigValue","fields":[{"name":"value",'
        '"type":["null","int","long","PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value",'
        '"type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


@pytest.mark.parametrize(("schema", "canonical", "fp"), SPEC_VECTORS)
def test_canonical_form_and_fingerprint_match_the_avro_spec_vectors(
    schema: str, canonical: str, fp: int
) -> None:
    assert canonical_form(json.loads(schema)) == canonical
    # single-object encoding puts the 64-bit value on the wire little-endian
    assert rabin_fingerprint(canonical) == fp.to_bytes(8, "little", signed=True)


def test_contract_fingerprint_agrees_with_the_avro_package(orders, schema_copy, field_of) -> None:
    # The avro package keeps {"type":"long"} for logical types in its canonical form,
    # against the spec's [PRIMITIVES] rule (Java and fastavro write "long"), so the
    # cross-check uses the logical-type-free spelling, which has the same canonical form.
    plain = schema_copy()
    field_of(plain, "occurred_at")["type"] = "long"
    independent = avro.schema.parse(json.dumps(plain)).fingerprint("CRC-64-AVRO")
    assert orders.fingerprint == independent
    assert orders.fingerprint_hex == independent.hex()


def test_canonical_form_ignores_docs_defaults_and_logical_types(
    orders, schema_copy, field_of
) -> None:
    writer = schema_copy()
    writer["doc"] = "different"
    field_of(writer, "currency").pop("default")
    field_of(writer, "occurred_at")["type"] = "long"
    assert canonical_form(writer) == orders.canonical


# --- classify -----------------------------------------------------------------


def test_contract_itself_is_conforming(orders) -> None:
    assert classify(orders, orders.schema) == (Verdict.CONFORMING, ())


def test_same_canonical_form_is_conforming(orders, schema_copy, field_of) -> None:
    writer = schema_copy()
    field_of(writer, "order_id")["doc"] = "reworded"
    assert classify(orders, writer) == (Verdict.CONFORMING, ())


def test_added_field_is_compatible(orders, orders_v2) -> None:
    assert classify(orders, orders_v2) == (Verdict.COMPATIBLE, ())


def test_field_missing_from_writer_with_reader_default_is_compatible(orders, schema_copy) -> None:
    writer = schema_copy()
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "currency"]
    assert classify(orders, writer) == (Verdict.COMPATIBLE, ())


def test_int_promoted_to_long_is_compatible(orders, schema_copy, field_of) -> None:
    writer = schema_copy()
    field_of(writer, "amount_cents")["type"] = "int"
    assert classify(orders, writer) == (Verdict.COMPATIBLE, ())


def test_removed_required_field_is_incompatible_and_named(orders, schema_copy) -> None:
    writer = schema_copy()
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "customer_id"]
    verdict, reasons = classify(orders, writer)
    assert verdict is Verdict.INCOMPATIBLE
    assert reasons == (
        "customer_id (/fields/1): field is absent from the writer schema and has no default "
        "in the reader",
    )


def test_type_change_is_incompatible_with_field_and_types(orders, schema_copy, field_of) -> None:
    writer = schema_copy()
    field_of(writer, "amount_cents")["type"] = "string"
    verdict, reasons = classify(orders, writer)
    assert verdict is Verdict.INCOMPATIBLE
    assert reasons == (
        "amount_cents (/fields/2/type): reader type: long not compatible with writer type: string",
    )


def test_several_problems_are_each_reported_at_their_field(payments, schema_copy, field_of) -> None:
    writer = schema_copy(payments.schema)
    field_of(writer, "payment_id")["type"] = "int"
    field_of(writer, "amount_cents")["type"] = "string"
    field_of(writer, "status")["type"]["symbols"].append("VOIDED")
    verdict, reasons = classify(payments, writer)
    assert verdict is Verdict.INCOMPATIBLE
    assert set(reasons) == {
        "status (/fields/3/type/symbols): reader enum lacks writer symbol(s) {'VOIDED'} and "
        "has no enum default",
        "amount_cents (/fields/2/type): reader type: long not compatible with writer type: string",
        "payment_id (/fields/1/type): reader type: string not compatible with writer type: int",
    }


def test_problem_inside_a_writer_union_points_at_the_nested_field(payments, schema_copy) -> None:
    writer = schema_copy(payments.schema)
    header = writer["fields"][0]
    header["type"] = ["null", header["type"]]
    header["type"][1]["fields"][1]["type"] = "int"  # header.producer
    verdict, reasons = classify(payments, writer)
    assert verdict is Verdict.INCOMPATIBLE
    assert set(reasons) == {
        "header (/fields/0/type): reader type: record not compatible with writer type: null",
        "header.producer (/fields/0/type/fields/1/type): reader type: string not compatible "
        "with writer type: int",
    }


def test_renamed_record_is_incompatible_and_suggests_aliases(orders, schema_copy) -> None:
    writer = schema_copy()
    writer["name"] = "Purchase"
    verdict, reasons = classify(orders, writer)
    assert verdict is Verdict.INCOMPATIBLE
    assert len(reasons) == 1
    assert "com.example.shop.Purchase" in reasons[0]
    assert "aliases" in reasons[0]


def test_alias_makes_a_rename_compatible(orders, schema_copy) -> None:
    reader_schema = schema_copy()
    reader_schema["aliases"] = ["com.example.shop.Purchase"]
    contract = Contract.from_schema(reader_schema)
    writer = schema_copy()
    writer["name"] = "Purchase"
    assert classify(contract, writer) == (Verdict.COMPATIBLE, ())


def test_unparseable_writer_schema_is_incompatible_with_a_reason(orders) -> None:
    verdict, reasons = classify(orders, {"type": "record", "name": "X", "fields": "nope"})
    assert verdict is Verdict.INCOMPATIBLE
    assert reasons[0].startswith("writer schema is not valid Avro")


def test_writer_changing_only_a_timestamp_unit_is_drift_not_conforming() -> None:
    """millis → micros has the same canonical form but other values: never 'conforming'."""
    import json
    from pathlib import Path

    from monitor.contract.model import Contract, Verdict, classify

    path = Path(__file__).resolve().parents[3] / "config" / "contracts" / "orders.avsc"
    contract = Contract.load(path)
    writer = json.loads(path.read_text())
    assert classify(contract, writer) == (Verdict.CONFORMING, ())
    for field in writer["fields"]:
        if field["name"] == "occurred_at":
            field["type"]["logicalType"] = "timestamp-micros"
    assert classify(contract, writer) == (Verdict.COMPATIBLE, ())
