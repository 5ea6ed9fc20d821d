"""ODCS v3 files: settings, per-event rules in the engine's short forms, and what is not checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from monitor.contract.odcs import OdcsContract, load_odcs, parse_odcs, unknown_fields
from monitor.errors import ContractError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def orders() -> OdcsContract:
    return load_odcs(FIXTURES / "orders.odcs.yaml")


def _doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "x",
        "version": "1.0.0",
        "status": "active",
    }
    doc.update(extra)
    return doc


def _one_property(prop: dict[str, Any]) -> OdcsContract:
    return parse_odcs(_doc(schema=[{"name": "t", "properties": [prop]}]), Path("t.yaml"))


def _skipped(contract: OdcsContract, fragment: str) -> list[str]:
    return [line for line in contract.report() if fragment in line]


def test_settings_come_from_team_description_sla_and_custom_properties(
    orders: OdcsContract,
) -> None:
    assert orders.settings == {
        "owner": "team-shop",
        "owner_email": "shop-lead@example.com",  # the current owner, not the one who left
        "description": "Orders placed in the web shop, one event per order.",
        "conformance": {"target": 0.999},
        "freshness": {"threshold": 900.0},  # the stricter of 15m and 1h
        "event_time": "created_at",  # element orders.created_at, object name stripped
    }
    assert (orders.id, orders.version, orders.object_name) == ("shop-orders", "1.2.0", "orders")


def test_every_evaluable_rule_is_emitted_in_the_engine_short_form(orders: OdcsContract) -> None:
    assert {r.name: r.config() for r in orders.rules} == {
        "order_id_required": {"not_null": "order_id"},
        "order_id_pattern": {"pattern": {"field": "order_id", "regex": "^ord-[0-9]+$"}},
        "created_at_required": {"not_null": "created_at"},  # physicalName wins over name
        "quantity_range": {"range": {"field": "quantity", "min": 1, "max": 999}},
        "amount_range": {"range": {"field": "amount", "min": 0}},
        "currency_known": {
            "allowed_values": {"field": "currency", "values": ["EUR", "USD", "GBP"]}
        },
        "currency_nullValues": {"not_null": "currency"},
        "email_present": {"not_null": "email"},
        "email_present_not_missing": {"cel": '!(message.email in ["", "N/A"])'},
        "email_shape": {"pattern": {"field": "email", "regex": "^[^@]+@[^@]+$"}},
        "customer.id_required": {"not_null": "customer.id"},
    }
    sources = {r.name: r.source for r in orders.rules}
    assert sources["currency_known"] == "schema[0].properties[4].quality[0]"


def test_what_is_not_evaluated_is_reported_with_where_and_why(orders: OdcsContract) -> None:
    expected = {
        "schema[0].quality[1] (duplicateValues orders_unique)": "every earlier value",
        "schema[0].quality[2] (sql rule revenue_sane)": "queries a database",
        "(text rule email_text)": "for people",
        "(custom rule email_custom)": "engine 'soda'",
        "primaryKey (order_id)": "uniqueness",
        "(order_id: maxLength)": "no per-event rule kind",
        "exclusiveMaximum (100000.5)": "inclusive",
        "currency_nullValues tolerance (mustBeLessThan 1 percent)": "dataset-level",
        "email_shape tolerance (mustBeLessThan 5 rows)": "dataset-level",
        "email_has_dupes (mustBeGreaterThan 0)": "asks for violations",
        "items (customer.tags)": "array items",
        "slaProperties[1] (latency 3600s)": "strictest, 900s",
        "slaProperties[3] (retention 7)": "retention.ms",
    }
    report = orders.report()
    # rowCount mustBeGreaterThan 1000 became expected volume in the SLA frequency's window
    assert orders.volume is not None
    assert (orders.volume.floor, orders.volume.window) == (1001, 86400.0)
    for what, why in expected.items():
        assert any(what in line and why in line for line in report), (what, report)
    assert len(report) == len(expected)  # nothing else, nothing dropped


def test_a_rule_demanding_violations_yields_no_rule(orders: OdcsContract) -> None:
    assert "email_has_dupes" not in {r.name for r in orders.rules}


@pytest.mark.parametrize(
    ("operators", "rule", "tolerance"),
    [
        ({"mustBe": 0}, True, False),
        ({"mustBeLessOrEqualTo": 0}, True, False),
        ({"mustBeLessThan": 1}, True, True),  # 0.5 % is allowed: a tolerance
        ({"mustBeLessThan": 10, "unit": "rows"}, True, True),
        ({"mustNotBeBetween": [1, 100]}, True, True),  # 0 and > 100 allowed
        ({"mustNotBeBetween": [0, 100]}, False, False),  # inclusive: 0 is refused
        ({"mustBeBetween": [0, 5]}, True, True),  # inclusive, as datacontract-cli reads it
        ({"mustBeBetween": [1, 5]}, False, False),
        ({"mustBeGreaterOrEqualTo": 1}, False, False),
        ({"mustNotBe": 0}, False, False),
    ],
)
def test_operator_decides_between_rule_tolerance_and_nothing(
    operators: dict[str, Any], rule: bool, tolerance: bool
) -> None:
    contract = _one_property({"name": "f", "quality": [{"metric": "nullValues", **operators}]})
    assert bool(contract.rules) is rule
    assert bool(_skipped(contract, "tolerance")) is tolerance
    assert bool(_skipped(contract, "asks for violations")) is (not rule)


def test_missing_values_default_to_null_only() -> None:
    contract = _one_property({"name": "f", "quality": [{"metric": "missingValues", "mustBe": 0}]})
    assert [r.config() for r in contract.rules] == [{"not_null": "f"}]


def test_missing_values_on_a_field_cel_cannot_name_are_reported() -> None:
    contract = _one_property(
        {
            "name": "f",
            "physicalName": "order-id",
            "quality": [
                {"metric": "missingValues", "arguments": {"missingValues": [""]}, "mustBe": 0}
            ],
        }
    )
    assert [r.config() for r in contract.rules] == [{"not_null": "order-id"}]
    assert _skipped(contract, "cannot be put in CEL")


def test_invalid_values_with_both_arguments_gives_two_rules() -> None:
    contract = _one_property(
        {
            "name": "unit",
            "quality": [
                {
                    "metric": "invalidValues",
                    "arguments": {"validValues": ["kg", "lb"], "pattern": "^[a-z]+$"},
                    "mustBe": 0,
                }
            ],
        }
    )
    assert [r.kind for r in contract.rules] == ["allowed_values", "pattern"]
    assert len({r.name for r in contract.rules}) == 2  # names stay unique


def test_integer_exclusive_bounds_become_inclusive() -> None:
    contract = _one_property(
        {
            "name": "n",
            "logicalType": "integer",
            "logicalTypeOptions": {"exclusiveMinimum": 0, "maximum": 10},
        }
    )
    assert [r.config() for r in contract.rules] == [{"range": {"field": "n", "min": 1, "max": 10}}]


def test_enum_in_logical_type_options_is_allowed_values() -> None:
    contract = _one_property(
        {"name": "c", "logicalType": "string", "logicalTypeOptions": {"enum": ["a", "b"]}}
    )
    assert [r.config() for r in contract.rules] == [
        {"allowed_values": {"field": "c", "values": ["a", "b"]}}
    ]
    assert contract.report() == []


@pytest.mark.parametrize(
    ("sla", "seconds"),
    [
        ({"property": "freshness", "value": 2, "unit": "hours"}, 7200.0),
        ({"property": "ly", "value": "PT1H30M"}, 5400.0),
        ({"property": "Latency", "value": "P1DT30S"}, 86430.0),
        ({"property": "latency", "value": "0.5", "unit": "s"}, 0.5),
    ],
)
def test_latency_spellings_give_the_freshness_threshold(
    sla: dict[str, Any], seconds: float
) -> None:
    contract = parse_odcs(_doc(slaProperties=[sla]), Path("t.yaml"))
    assert contract.settings == {"freshness": {"threshold": seconds}}


def test_object_name_picks_one_of_several_objects() -> None:
    contract = load_odcs(FIXTURES / "two-objects.odcs.yaml", object_name="shop.refunds")
    assert [r.config() for r in contract.rules] == [{"not_null": "refund_id"}]
    assert contract.settings == {"owner": "daustin", "description": "Shop events"}


def test_several_objects_without_a_choice_is_an_error() -> None:
    with pytest.raises(ContractError, match=r"two-objects.odcs.yaml:\d+: schema: 2 objects"):
        load_odcs(FIXTURES / "two-objects.odcs.yaml")


def test_an_owner_that_cannot_be_a_label_is_reported_not_fatal() -> None:
    contract = parse_odcs(_doc(team={"name": "Shop Team"}), Path("t.yaml"))
    assert "owner" not in contract.settings
    assert _skipped(contract, "cannot be a metric label")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "broken-metric.odcs.yaml",
            r"broken-metric.odcs.yaml:11: schema\[0\].properties\[0\].quality\[0\].metric: "
            r"'nullValue' is not one of nullValues",
        ),
        (
            "broken-latency.odcs.yaml",
            r"broken-latency.odcs.yaml:7: slaProperties\[0\].unit: latency needs a unit",
        ),
        (
            "broken-regex.odcs.yaml",
            r"broken-regex.odcs.yaml:13: schema\[0\].properties\[0\].quality\[0\].arguments."
            r"pattern: not a valid regular expression",
        ),
        ("broken-v2.odcs.yaml", r"broken-v2.odcs.yaml:1: apiVersion: v2.2.2: Tidemark reads"),
        ("broken-yaml.odcs.yaml", r"broken-yaml.odcs.yaml:5: not valid YAML"),
        ("missing.odcs.yaml", r"missing.odcs.yaml: cannot be read"),
    ],
)
def test_errors_name_the_file_line_yaml_path_and_problem(name: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        load_odcs(FIXTURES / name)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"kind": "Contract"}, "kind: must be DataContract"),
        ({"id": ""}, "id: is required"),
        ({"schema": {"name": "t"}}, "schema: must be a list"),
        (
            {"customProperties": [{"property": "tidemark.freshnes.target", "value": "0.9"}]},
            "'tidemark.freshnes.target' is not one Tidemark knows",
        ),
        (
            {"customProperties": [{"property": "tidemark.freshness.target", "value": "2"}]},
            "strictly between 0 and 1",
        ),
        (
            {"slaProperties": [{"property": "latency", "value": "soon", "unit": "h"}]},
            r"slaProperties\[0\].value: latency must be a number",
        ),
        (
            {"slaProperties": [{"property": "latency", "value": 1, "unit": "fortnight"}]},
            "'fortnight' is not a unit",
        ),
        (
            {"schema": [{"name": "t", "properties": [{"name": "f", "quality": [{"mustBe": 0}]}]}]},
            r"quality\[0\].type: None is not a quality type",
        ),
        (
            {
                "schema": [
                    {
                        "name": "t",
                        "properties": [{"name": "f", "quality": [{"metric": "nullValues"}]}],
                    }
                ]
            },
            "needs an operator",
        ),
        (
            {
                "schema": [
                    {
                        "name": "t",
                        "properties": [
                            {"name": "f", "quality": [{"metric": "invalidValues", "mustBe": 0}]}
                        ],
                    }
                ]
            },
            r"quality\[0\].arguments: invalidValues needs arguments.validValues or .pattern",
        ),
        (
            {
                "schema": [
                    {
                        "name": "t",
                        "properties": [
                            {
                                "name": "n",
                                "logicalType": "number",
                                "logicalTypeOptions": {"minimum": 5, "maximum": 1},
                            }
                        ],
                    }
                ]
            },
            "minimum 5 is above maximum 1",
        ),
    ],
)
def test_bad_documents_raise_contract_errors(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message) as info:
        parse_odcs(_doc(**extra), Path("bad.odcs.yaml"))
    assert str(info.value).startswith("odcs bad.odcs.yaml")


def test_rule_config_shapes_are_exactly_the_engine_short_forms(orders: OdcsContract) -> None:
    shapes = {
        "not_null": lambda c: isinstance(c["not_null"], str),
        "allowed_values": lambda c: set(c["allowed_values"]) == {"field", "values"},
        "pattern": lambda c: set(c["pattern"]) == {"field", "regex"},
        "range": lambda c: {"field"} <= set(c["range"]) <= {"field", "min", "max"},
        "cel": lambda c: isinstance(c["cel"], str),
    }
    for rule in orders.rules:
        config = rule.config()
        assert list(config) == [rule.kind]
        assert shapes[rule.kind](config), config
        if rule.kind == "pattern":
            re.compile(config["pattern"]["regex"])


ORDER_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "quantity", "type": "int"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": ["null", "string"]},
        {"name": "email", "type": ["null", "string"]},
        {
            "name": "customer",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Customer",
                    "fields": [
                        {"name": "id", "type": "string"},
                        {"name": "tags", "type": {"type": "array", "items": "string"}},
                        {"name": "referrer", "type": ["null", "Customer"]},  # recursive
                    ],
                },
            ],
        },
    ],
}


def test_every_rule_field_of_the_fixture_is_in_the_avro_schema(orders: OdcsContract) -> None:
    assert unknown_fields(orders, ORDER_AVRO) == []


def test_fields_the_avro_schema_lacks_are_listed_with_their_source(orders: OdcsContract) -> None:
    fields = [f for f in ORDER_AVRO["fields"] if f["name"] not in ("currency", "created_at")]
    missing = unknown_fields(orders, {**ORDER_AVRO, "fields": fields})
    assert missing == [
        "created_at (rule created_at_required, schema[0].properties[1].required)",
        "currency (rule currency_known, schema[0].properties[4].quality[0])",
        "currency (rule currency_nullValues, schema[0].properties[4].quality[1])",
        "created_at (event_time, from slaProperties latency element)",
    ]
