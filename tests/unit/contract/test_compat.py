"""`tidemark compat`: is a schema change backward / forward / fully compatible, and why not."""

from __future__ import annotations

import pytest

from monitor.contract.compat import CompatibilityReport, check_compatibility, format_report


@pytest.mark.parametrize("mode", ["backward", "forward", "full"])
def test_adding_an_optional_field_is_fully_compatible(orders, orders_v2, mode) -> None:
    report = check_compatibility(orders.schema, orders_v2, mode)
    assert report == CompatibilityReport(compatible=True, mode=mode, reasons=())


def test_adding_a_required_field_breaks_backward_only(orders, schema_copy) -> None:
    new = schema_copy()
    new["fields"].append({"name": "region", "type": "string"})
    backward = check_compatibility(orders.schema, new, "backward")
    assert not backward.compatible
    assert backward.reasons == (
        "region (/fields/7): field is absent from the writer schema and has no default "
        "in the reader",
    )
    assert check_compatibility(orders.schema, new, "forward").compatible


def test_removing_a_required_field_breaks_forward_only(orders, schema_copy) -> None:
    new = schema_copy()
    new["fields"] = [f for f in new["fields"] if f["name"] != "customer_id"]
    assert check_compatibility(orders.schema, new, "backward").compatible
    forward = check_compatibility(orders.schema, new, "forward")
    assert not forward.compatible
    assert forward.reasons == (
        "customer_id (/fields/1): field is absent from the writer schema and has no default "
        "in the reader",
    )


def test_widening_int_to_long_is_backward_but_not_forward(schema_copy) -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    new = schema_copy(old)
    new["fields"][0]["type"] = "long"
    assert check_compatibility(old, new, "backward").compatible
    forward = check_compatibility(old, new, "forward")
    assert forward.reasons == (
        "n (/fields/0/type): reader type: int not compatible with writer type: long",
    )


def test_adding_an_enum_symbol_breaks_forward_and_names_the_symbol(payments, schema_copy) -> None:
    new = schema_copy(payments.schema)
    new["fields"][3]["type"]["symbols"].append("CHARGED_BACK")
    assert check_compatibility(payments.schema, new, "backward").compatible
    forward = check_compatibility(payments.schema, new, "forward")
    assert forward.reasons == (
        "status (/fields/3/type/symbols): reader enum lacks writer symbol(s) "
        "{'CHARGED_BACK'} and has no enum default",
    )


def test_full_mode_reports_both_directions_with_their_direction(
    orders, schema_copy, field_of
) -> None:
    new = schema_copy()
    field_of(new, "sequence")["type"] = "string"
    report = check_compatibility(orders.schema, new, "full")
    assert not report.compatible
    assert report.reasons == (
        "backward (new schema reading old data): sequence (/fields/6/type): reader type: "
        "string not compatible with writer type: long",
        "forward (old schema reading new data): sequence (/fields/6/type): reader type: "
        "long not compatible with writer type: string",
    )


def test_nested_field_change_is_reported_with_its_dotted_path(payments, schema_copy) -> None:
    new = schema_copy(payments.schema)
    new["fields"][0]["type"]["fields"][2]["type"] = "string"  # header.seq
    report = check_compatibility(payments.schema, new, "backward")
    assert report.reasons == (
        "header.seq (/fields/0/type/fields/2/type): reader type: string not compatible "
        "with writer type: long",
    )


def test_making_a_field_nullable_is_backward_compatible_only(orders, schema_copy, field_of) -> None:
    new = schema_copy()
    field_of(new, "customer_id")["type"] = ["null", "string"]
    assert check_compatibility(orders.schema, new, "backward").compatible
    forward = check_compatibility(orders.schema, new, "forward")
    assert forward.reasons == (
        "customer_id (/fields/1/type): reader type: string not compatible with writer type: null",
    )


def test_unknown_mode_is_rejected(orders) -> None:
    with pytest.raises(ValueError, match="backward, forward or full"):
        check_compatibility(orders.schema, orders.schema, "sideways")  # type: ignore[arg-type]


def test_report_text_for_a_compatible_change(orders, orders_v2) -> None:
    text = format_report(check_compatibility(orders.schema, orders_v2, "backward"))
    assert text == (
        "COMPATIBLE (backward): readers using the new schema can read data written with "
        "the old one."
    )


def test_report_text_lists_each_reason_on_its_own_line(orders, schema_copy) -> None:
    new = schema_copy()
    new["fields"].append({"name": "region", "type": "string"})
    new["fields"].append({"name": "store", "type": "string"})
    lines = format_report(check_compatibility(orders.schema, new, "backward")).splitlines()
    assert lines[0].startswith("INCOMPATIBLE (backward):")
    assert lines[1:] == [
        "  - region (/fields/7): field is absent from the writer schema and has no default "
        "in the reader",
        "  - store (/fields/8): field is absent from the writer schema and has no default "
        "in the reader",
    ]
