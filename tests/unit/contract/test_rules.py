"""Correctness rules: config forms, registry rules, verdicts, errors, sampling."""

from __future__ import annotations

import datetime
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from cel_expr_python import cel
from confluent_kafka.schema_registry import Rule, RuleSet
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from monitor.contract.cel import referenced_keys, to_cel
from monitor.contract.ruleconfig import MAX_RULES, RuleConfig, RuleList, short_form
from monitor.contract.rules import (
    RuleError,
    RuleVerdict,
    Sampler,
    compile_rules,
)
from monitor.errors import ContractError

PASS, VIOLATION, ERROR = RuleVerdict.PASS, RuleVerdict.VIOLATION, RuleVerdict.ERROR
UTC = datetime.UTC


def rule(**spec: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", **spec})


def verdict(spec: dict[str, Any], record: Any, **options: Any) -> RuleVerdict:
    return compile_rules([rule(**spec)], **options).evaluate(record).verdict("r")


def both(spec: dict[str, Any], record: Any) -> RuleVerdict:
    """The verdict, after checking the Python short form and its CEL agree on it."""
    fast = verdict(spec, record)
    assert verdict(spec, record, python_short_forms=False) is fast, (spec, record)
    return fast


# --- config model -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "1bad", "cel": "true"}, "String should match pattern"),
        ({"name": "has-dash", "cel": "true"}, "String should match pattern"),
        ({"name": "two", "cel": "true", "not_null": "x"}, "exactly one of"),
        ({"name": "none"}, "got none"),
        ({"name": "r", "range": {"field": "x"}}, "needs min, max or both"),
        ({"name": "r", "range": {"field": "x", "min": 5, "max": 1}}, "above max"),
        ({"name": "r", "range": {"field": "x", "min": math.inf}}, "finite"),
        ({"name": "r", "range": {"field": "x", "min": "1"}}, "valid"),
        ({"name": "r", "allowed_values": {"field": "x", "values": []}}, "at least 1"),
        ({"name": "r", "allowed_values": {"field": "x", "values": [math.nan]}}, "finite"),
        ({"name": "r", "not_null": "a..b"}, "String should match pattern"),
        ({"name": "r", "cel": "true", "extra": 1}, "Extra inputs"),
    ],
)
def test_config_rejects_bad_rules(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuleConfig.model_validate(spec)


def test_rule_names_are_unique_per_product() -> None:
    adapter = TypeAdapter(RuleList)
    with pytest.raises(ValidationError, match="used twice"):
        adapter.validate_python([{"name": "a", "cel": "true"}, {"name": "a", "not_null": "x"}])
    assert len(adapter.validate_python([{"name": "a", "cel": "true"}])) == 1


def test_short_forms_compile_to_the_cel_that_defines_them() -> None:
    assert short_form(rule(not_null="a.b")).cel == (
        '"b" in message["a"] && message["a"]["b"] != null'
    )
    assert short_form(rule(allowed_values={"field": "c", "values": ['x"y', 1, 2.5, True]})).cel == (
        'message["c"] in ["x\\"y", 1, 2.5, true]'
    )
    assert short_form(rule(pattern={"field": "s", "regex": "^a\\d$"})).cel == (
        'message["s"].matches("^a\\\\d$")'
    )
    assert short_form(rule(range={"field": "q", "min": 1, "max": 9.5})).cel == (
        'message["q"] >= 1 && message["q"] <= 9.5'
    )


# --- every form: pass, violation, error ------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"x": 1}, PASS),
        ({"x": ""}, PASS),
        ({"x": None}, VIOLATION),
        ({}, VIOLATION),  # a missing field is null for not_null
        ({"x": False}, PASS),
    ],
)
def test_not_null(record: dict[str, Any], expected: RuleVerdict) -> None:
    assert both({"not_null": "x"}, record) is expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"a": {"b": 1}}, PASS),
        ({"a": {"b": None}}, VIOLATION),
        ({"a": {}}, VIOLATION),
        ({"a": None}, ERROR),  # the parent itself is not there: no verdict
        ({}, ERROR),
    ],
)
def test_not_null_on_a_nested_field(record: dict[str, Any], expected: RuleVerdict) -> None:
    assert both({"not_null": "a.b"}, record) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("EUR", PASS),
        ("JPY", VIOLATION),
        (None, VIOLATION),  # CEL: null is simply not among the values
        (1, PASS),
        (1.0, PASS),  # CEL equality: 1 == 1.0
        (True, VIOLATION),  # CEL equality: true != 1
        (b"EUR", VIOLATION),
        ([1], VIOLATION),
    ],
)
def test_allowed_values(value: Any, expected: RuleVerdict) -> None:
    spec = {"allowed_values": {"field": "c", "values": ["EUR", "USD", 1]}}
    assert both(spec, {"c": value}) is expected


def test_allowed_values_with_a_nul_in_a_string() -> None:
    spec = {"allowed_values": {"field": "c", "values": ["a\x00b"]}}
    assert both(spec, {"c": "a\x00b"}) is PASS
    assert both(spec, {"c": "a"}) is VIOLATION


def test_allowed_values_on_a_missing_field_is_an_error() -> None:
    assert both({"allowed_values": {"field": "c", "values": ["EUR"]}}, {}) is ERROR


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, PASS),
        (10, PASS),  # inclusive at both ends
        (0, VIOLATION),
        (11, VIOLATION),
        (5.5, PASS),
        (math.nan, VIOLATION),
        (None, ERROR),
        ("5", ERROR),
        (True, ERROR),
        (Decimal("3.25"), PASS),  # a decimal logical type is a CEL double
        (datetime.datetime(2025, 1, 1, tzinfo=UTC), ERROR),
    ],
)
def test_range(value: Any, expected: RuleVerdict) -> None:
    assert both({"range": {"field": "q", "min": 1, "max": 10}}, {"q": value}) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ABC-12", PASS),
        ("xABC-12x", PASS),  # CEL matches() is a search, anchor the regex to match whole
        ("abc", VIOLATION),
        (None, ERROR),
        (7, ERROR),
    ],
)
def test_pattern(value: Any, expected: RuleVerdict) -> None:
    assert (
        verdict({"pattern": {"field": "sku", "regex": "[A-Z]{3}-[0-9]+"}}, {"sku": value})
        is expected
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"amount": 5.0, "currency": "EUR"}, PASS),
        ({"amount": -5.0, "currency": "EUR"}, VIOLATION),
        ({"amount": 5, "currency": "EUR"}, PASS),  # int against a double literal
        ({"currency": "EUR"}, ERROR),  # missing field
        ({"amount": "5", "currency": "EUR"}, ERROR),  # wrong type
        ({"amount": None, "currency": "EUR"}, ERROR),  # null
    ],
)
def test_cel(record: dict[str, Any], expected: RuleVerdict) -> None:
    spec = {"cel": "message.amount > 0.0 && message.currency in ['EUR', 'USD']"}
    assert verdict(spec, record) is expected


def test_a_guard_limits_a_rule_to_the_events_it_holds_for() -> None:
    spec = {"cel": "message.kind == 'refund' ; message.amount < 0.0"}
    assert verdict(spec, {"kind": "sale", "amount": 5.0}) is PASS
    assert verdict(spec, {"kind": "refund", "amount": 5.0}) is VIOLATION
    assert verdict(spec, {"kind": "refund", "amount": -5.0}) is PASS
    assert verdict(spec, {"amount": -5.0}) is ERROR  # the guard itself errors


# --- logical types ----------------------------------------------------------------


def test_logical_types_reach_cel_as_confluent_binds_them() -> None:
    record = {
        "ts": datetime.datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        "local": datetime.datetime(2025, 3, 1, 12, 0),  # local-timestamp: taken as UTC
        "day": datetime.date(2025, 3, 1),
        "price": Decimal("12.50"),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "at": datetime.time(8, 30),
        "raw": b"\x00\xff",  # the engine alone would cut both at the NUL
        "text": "a\x00b",
        "nested": {"items": [{"ts": datetime.datetime(2025, 1, 1, tzinfo=UTC)}], "n": None},
    }
    checks = {
        "raw": "message.raw == b'\\x00\\xff' && size(message.raw) == 2",
        "text": "message.text == 'a\\x00b' && size(message.text) == 3",
        "nested": "message.nested.items[0].ts.getFullYear() == 2025 && message.nested.n == null",
        "ts": "message.ts == timestamp('2025-03-01T12:00:00Z')",
        "local": "message.local > timestamp('2025-03-01T11:59:59Z')",
        "ts_parts": "message.ts.getHours() == 12",
        "day": "message.day == 20148",  # days since 1970-01-01
        "price": "message.price == 12.5",
        "ref": "message.ref == '12345678-1234-5678-1234-567812345678'",
        "at": "message.at == duration('8h30m')",
    }
    compiled = compile_rules([RuleConfig(name=n, cel=c) for n, c in checks.items()])
    outcome = compiled.evaluate(record)
    assert outcome.errors == {}
    assert outcome.all_passed, list(outcome)


def test_conversion_copies_only_what_it_changes() -> None:
    plain = {"a": 1, "b": [1, "x"], "c": {"d": None}}
    assert to_cel(plain) is plain
    mixed = {"a": 1, "b": [Decimal("1.5")], "c": {"d": None}}
    converted = to_cel(mixed)
    assert converted == {"a": 1, "b": [1.5], "c": {"d": None}}
    assert converted["c"] is mixed["c"]
    assert mixed["b"] == [Decimal("1.5")]  # the decoded record is never changed


# --- compile errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("message.amount > undeclared", r"rule 'r': 1:18: undeclared reference to 'undeclared'"),
        ("message.amount >", r"rule 'r': 1:17: Syntax error"),
        ("message.amount + 1", r"rule 'r': 1:1: a rule must be a boolean condition.*returns int"),
        ("message.a ;; true", r"rule 'r': after the guard's ';': 1:1: Syntax error"),
        ("bad guard ; true", r"rule 'r': in the guard \(before ';'\): 1:5: Syntax error"),
    ],
)
def test_compile_errors_name_the_rule_and_the_position(expr: str, message: str) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        compile_rules([rule(cel=expr)])
    assert isinstance(caught.value, ContractError)


def test_a_bad_regex_fails_at_compile_time() -> None:
    with pytest.raises(RuleError, match="rule 'r': the regex does not compile"):
        compile_rules([rule(pattern={"field": "s", "regex": "(("})])


def test_duplicate_names_fail_in_the_config_and_are_reported_from_the_registry() -> None:
    with pytest.raises(RuleError, match="'r': the name is used twice"):
        compile_rules([rule(cel="true"), rule(not_null="x")])
    registered = [reg("r", "false"), reg("s", "true"), reg("s", "false")]
    compiled = compile_rules([rule(cel="true")], registered)
    assert compiled.names == ("r", "s")
    assert [(n.name, n.reason.split(" (")[0]) for n in compiled.not_evaluated] == [
        ("r", "another rule has this name"),
        ("s", "another rule has this name"),
    ]
    assert compiled.evaluate({}).all_passed  # the first of each name is the one evaluated


# --- registered rules ------------------------------------------------------------

SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string", "confluent:tags": ["PII"]},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "lines", "type": {"type": "array", "items": "int"}},
        {
            "name": "ship",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [{"name": "zip", "type": "string"}],
            },
        },
        {"name": "bill", "type": ["null", "Address"], "default": None},
    ],
}
ORDER = {
    "id": "o-1",
    "amount": 5.0,
    "note": None,
    "lines": [1, 2],
    "ship": {"zip": "123"},
    "bill": None,
}


def reg(name: str, expr: str | None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "CONDITION", "mode": "READ", "type": "CEL", "expr": expr, **extra}


def test_registered_rules_that_are_not_read_side_conditions_are_reported_with_a_reason() -> None:
    rules = [
        reg("ok", "true"),
        reg("off", "false", disabled=True),
        reg("write", "false", mode="WRITE"),
        reg("upgrade", "false", mode="UPGRADE"),
        {"name": "xform", "kind": "TRANSFORM", "mode": "READ", "type": "CEL", "expr": "message"},
        reg("jsonata", "$", type="JSONATA"),
        {
            "name": "encrypt",
            "kind": "TRANSFORM",
            "mode": "WRITEREAD",
            "type": "ENCRYPT",
            "tags": ["PII"],
        },
        reg("empty", None),
        reg("extension", "decimal(message.amount) > 0"),  # a Confluent extension not provided
        reg("fields", "value != null", type="CEL_FIELD"),  # no schema given
    ]
    compiled = compile_rules((), rules)
    # A WRITE rule is the producer's promise: checked on the stream like a READ one.
    assert compiled.names == ("ok", "write")
    reasons = {n.name: n.reason for n in compiled.not_evaluated}
    assert set(reasons) == {r["name"] for r in rules} - {"ok", "write"}
    assert reasons["off"] == "disabled in the registry"
    assert "mode UPGRADE" in reasons["upgrade"]
    assert "kind TRANSFORM" in reasons["xform"]
    assert "type JSONATA" in reasons["jsonata"]
    assert "kind TRANSFORM" in reasons["encrypt"]
    assert reasons["empty"] == "no expression"
    assert "1:8: undeclared reference to 'decimal'" in reasons["extension"]
    assert "needs the contract schema" in reasons["fields"]


def test_confluent_model_classes_and_the_rest_rule_set_are_accepted() -> None:
    rules = [reg("positive", "message.amount > 0.0"), reg("migrate", "true", mode="UPGRADE")]
    as_models = RuleSet(
        migration_rules=[Rule.from_dict(rules[1])],
        domain_rules=[Rule.from_dict(rules[0])],
    )
    as_rest = {"domainRules": [rules[0]], "migrationRules": [rules[1]]}
    for given_rules in (as_models, as_rest, [Rule.from_dict(rules[0])]):
        compiled = compile_rules((), given_rules)
        assert compiled.names == ("positive",)
        assert compiled.evaluate({"amount": -1.0}).verdict("positive") is VIOLATION
    skipped = compile_rules((), as_rest).not_evaluated
    assert [n.name for n in skipped] == ["migrate"]
    assert skipped[0].reason.startswith("a migration rule")


def test_a_rule_set_not_enabled_for_clients_is_not_evaluated() -> None:
    compiled = compile_rules((), {"domainRules": [reg("a", "true")], "enableAt": "DEK_REGISTRY"})
    assert compiled.names == ()
    assert "enableAt DEK_REGISTRY" in compiled.not_evaluated[0].reason


def field_verdict(expr: str, record: dict[str, Any], **extra: Any) -> RuleVerdict:
    compiled = compile_rules((), [reg("f", expr, type="CEL_FIELD", **extra)], schema=SCHEMA)
    return compiled.evaluate(record).verdict("f")


def test_cel_field_sees_each_primitive_field_with_confluents_variables() -> None:
    seen = (
        "(name == 'id' && fullName == 'shop.Order.id' && typeName == 'STRING' && tags == ['PII'])"
        " || (name == 'amount' && typeName == 'DOUBLE' && value == message.amount)"
        " || (name == 'note' && typeName == 'NULL' && value == null)"
        " || (name == 'lines' && typeName == 'INT')"
        " || (name == 'zip' && fullName == 'shop.Address.zip' && message == {'zip': '123'})"
        " || (name == 'bill' && typeName == 'NULL')"
    )
    assert field_verdict(seen, ORDER) is PASS
    # a null in a nullable record is the NULL branch, a primitive, as in Confluent's walk
    assert field_verdict("name != 'bill'", ORDER) is VIOLATION


def test_cel_field_tags_select_fields() -> None:
    assert field_verdict("size(value) < 3", ORDER, tags=["PII"]) is VIOLATION  # id only
    assert field_verdict("size(value) < 4", ORDER, tags=["PII"]) is PASS
    assert field_verdict("name == 'id'", ORDER, tags=["PII"]) is PASS
    assert field_verdict("name == 'id'", ORDER, tags=["OTHER"]) is PASS  # no field: vacuous


def test_cel_field_metadata_tags_use_confluent_wildcards() -> None:
    compiled = compile_rules(
        (),
        [reg("f", "name == 'zip'", type="CEL_FIELD", tags=["ADDR"])],
        schema=SCHEMA,
        metadata_tags={"shop.Address.*": ["ADDR"]},
    )
    assert compiled.evaluate(ORDER).all_passed
    billed = {**ORDER, "bill": {"zip": "9"}}
    assert compiled.evaluate(billed).all_passed  # the nullable branch, walked when set


def test_cel_field_first_failure_decides_and_errors_name_the_field() -> None:
    assert field_verdict("typeName != 'INT' || value > 1", ORDER) is VIOLATION  # lines[0] == 1
    compiled = compile_rules((), [reg("f", "value > 0", type="CEL_FIELD")], schema=SCHEMA)
    outcome = compiled.evaluate(ORDER)
    assert outcome.verdict("f") is ERROR
    assert outcome.errors["f"].startswith("field shop.Order.id:")


def test_cel_field_guard() -> None:
    assert field_verdict("typeName == 'DOUBLE' ; value > 100.0", ORDER) is VIOLATION
    assert field_verdict("typeName == 'BYTES' ; value > 100.0", ORDER) is PASS


# --- evaluation as a whole ----------------------------------------------------------


def test_one_failing_rule_does_not_hide_the_others() -> None:
    compiled = compile_rules(
        [
            RuleConfig(name="pos", cel="message.amount > 0.0"),
            RuleConfig(name="missing", cel="message.nosuch > 0"),
            RuleConfig(name="cur", cel="message.currency == 'EUR'"),
            RuleConfig(name="typed", cel="message.currency > 1"),
        ]
    )
    outcome = compiled.evaluate({"amount": -1.0, "currency": "EUR"})
    assert dict(outcome) == {"pos": VIOLATION, "missing": ERROR, "cur": PASS, "typed": ERROR}
    assert set(outcome.errors) == {"missing", "typed"}
    assert "nosuch" in outcome.errors["missing"]
    assert not outcome.all_passed


def test_all_passing_events_share_one_outcome() -> None:
    compiled = compile_rules([RuleConfig(name="a", cel="true"), RuleConfig(name="b", not_null="x")])
    first, second = compiled.evaluate({"x": 1}), compiled.evaluate({"x": 2})
    assert first is second
    assert first.all_passed and first.errors == {}
    assert len(compiled) == 2


def test_no_rules_means_nothing_to_do() -> None:
    compiled = compile_rules()
    assert compiled.names == ()
    assert compiled.evaluate({"a": 1}).all_passed


# --- properties -------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    INT64,
    st.floats(allow_nan=True, allow_infinity=True),
    # where int and double disagree: around 2**53 and the ends of int64
    st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2.0**53, 2.0**63, -(2.0**63)]),
)
values = st.one_of(
    numbers,
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),  # Avro long is 64-bit
)


@settings(max_examples=300, deadline=None)
@given(
    low=st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
    high=st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
    value=values,
)
def test_range_is_the_inclusive_python_predicate(low: Any, high: Any, value: Any) -> None:
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return
    got = both({"range": {"field": "v", "min": low, "max": high}}, {"v": value})
    if type(value) not in (int, float):
        assert got is ERROR
    else:
        holds = (low is None or low <= value) and (high is None or value <= high)
        assert got is (PASS if holds else VIOLATION)


@settings(max_examples=300, deadline=None)
@given(
    allowed=st.lists(
        st.one_of(
            st.booleans(),
            st.integers(-5, 5),
            st.floats(-5, 5),
            st.sampled_from(["a", "b", 2**53, 2**53 + 1, 2.0**53, 2**63 - 1, 2.0**63]),
        ),
        min_size=1,
        max_size=4,
    ),
    value=st.one_of(values, st.integers(-5, 5), st.sampled_from(["a", "c", 2**53 + 1])),
)
def test_allowed_values_python_equals_cel(allowed: list[Any], value: Any) -> None:
    both({"allowed_values": {"field": "v", "values": allowed}}, {"v": value})


@settings(max_examples=200, deadline=None)
@given(record=st.dictionaries(st.sampled_from(["x", "y"]), values, max_size=2))
def test_not_null_python_equals_cel(record: dict[str, Any]) -> None:
    both({"not_null": "x"}, record)


RULE_SET = [
    RuleConfig(name="pos", cel="message.a > 0"),
    RuleConfig(name="small", cel="message.b < 10.0"),
    RuleConfig(name="cur", cel="message.c in ['x', 'y']"),
    RuleConfig(name="guarded", cel="message.c == 'x' ; message.a > 5"),
    RuleConfig(name="nn", not_null="a"),
    RuleConfig(name="rng", range={"field": "b", "min": 0, "max": 100}),
]


@settings(max_examples=300, deadline=None)
@given(
    record=st.fixed_dictionaries(
        {},
        optional={
            "a": st.one_of(st.integers(-10, 10), st.none(), st.text(max_size=2)),
            "b": st.one_of(st.floats(-20, 200), st.none(), st.booleans()),
            "c": st.one_of(st.sampled_from("xyz"), st.integers(0, 2)),
        },
    )
)
def test_combined_evaluation_equals_rule_by_rule(record: dict[str, Any]) -> None:
    combined = compile_rules(RULE_SET).evaluate(record)
    for index, spec in enumerate(RULE_SET):
        alone = compile_rules([spec], python_short_forms=False).evaluate(record)
        assert combined.verdicts[index] is alone.verdicts[0], (spec.name, record)
        assert combined.errors.get(spec.name) == alone.errors.get(spec.name) or (
            spec.not_null or spec.range  # Python short forms word their errors themselves
        )
    separate = compile_rules(RULE_SET, combine=False, python_short_forms=False).evaluate(record)
    assert separate.verdicts == combined.verdicts


# --- sampling -----------------------------------------------------------------------


def test_sampling_is_deterministic_and_close_to_the_ratio() -> None:
    sample = Sampler(0.1)
    picked = [(p, o) for p in range(4) for o in range(25_000) if sample(p, o)]
    assert 0.095 < len(picked) / 100_000 < 0.105
    assert picked == [(p, o) for p in range(4) for o in range(25_000) if Sampler(0.1)(p, o)]
    # partitions do not pick the same offsets
    per_partition = [{o for p, o in picked if p == q} for q in range(4)]
    assert len(per_partition[0] & per_partition[1]) < len(per_partition[0]) * 0.2
    # evenly spaced offsets are not all in or all out
    assert 0.05 < sum(sample(0, o) for o in range(0, 1_000_000, 10)) / 100_000 < 0.15


def test_sampling_everything_and_bad_ratios() -> None:
    assert all(Sampler(1.0)(p, o) for p in range(3) for o in range(1000))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sample ratio"):
            Sampler(bad)


def test_sample_ratio_is_stable_across_releases() -> None:
    """Pinned picks: changing the mix would re-sample every replica's events."""
    sample = Sampler(0.5)
    assert [o for o in range(20) if sample(0, o)] == PINNED


PINNED = [3, 4, 5, 7, 10, 11, 14, 16, 18]


# --- binding only what the rules read ---------------------------------------------------


@pytest.mark.parametrize(
    ("source", "keys"),
    [
        ("message.a > 0 && message['b'] == 1 && message[\"c\"] != ''", {"a", "b", "c"}),
        ("has(message.x) && message.x.size() > 0", {"x"}),
        ("message . spaced", {"spaced"}),
        ("message.all(k, k != '')", None),  # a macro over the whole record
        ("size(message) > 1", None),
        ("message.a.message == 1", None),  # an unbound use of the name: be safe
        ("message.note == 'message'", None),
        ("message['a\\'b'] == 1", None),
        ("'x' in message", None),
    ],
)
def test_referenced_keys_are_found_or_the_whole_record_is_bound(
    source: str, keys: set[str] | None
) -> None:
    found = referenced_keys(source)
    assert found == (None if keys is None else frozenset(keys))


def test_rules_over_the_whole_record_still_see_every_field() -> None:
    compiled = compile_rules(
        [
            RuleConfig(name="count", cel="size(message) == 3"),
            RuleConfig(name="amount", cel="message.amount > 0"),
        ]
    )
    assert compiled.evaluate({"amount": 1, "b": 2, "c": 3}).all_passed
    only_named = compile_rules([RuleConfig(name="amount", cel="message.amount > 0")])
    assert only_named.evaluate({"amount": 1, "b": Decimal("NaN"), "c": object()}).all_passed


def test_now_is_the_evaluation_time() -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    future = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    compiled = compile_rules([RuleConfig(name="r", cel="message.ts < now")])
    assert compiled.evaluate({"ts": past}).all_passed
    assert compiled.evaluate({"ts": future}).verdict("r") is VIOLATION
    assert (
        field_verdict("name != 'amount' || now > timestamp('2020-01-01T00:00:00Z')", ORDER) is PASS
    )


# --- on what Tidemark's decoder hands over -------------------------------------------


def test_rules_on_events_decoded_by_tidemarks_decoder(orders) -> None:
    import io

    from fastavro import schemaless_writer

    from monitor.contract.decoding import RawAvroDecoder

    compiled = compile_rules(
        [
            RuleConfig(name="positive", range={"field": "amount_cents", "min": 1}),
            RuleConfig(
                name="currency", allowed_values={"field": "currency", "values": ["EUR", "USD"]}
            ),
            RuleConfig(
                name="recent", cel="message.occurred_at > timestamp('2024-01-01T00:00:00Z')"
            ),
            RuleConfig(name="ids", cel="message.order_id != message.customer_id"),
        ],
        [reg("keys", "typeName != 'STRING' || size(value) > 0", type="CEL_FIELD")],
        schema=orders.schema,
    )
    decoder = RawAvroDecoder(orders)

    def decoded(**changes: Any) -> dict[str, Any]:
        event = {
            "order_id": "o-1",
            "customer_id": "c-1",
            "amount_cents": 1250,
            "currency": "EUR",
            "occurred_at": datetime.datetime(2025, 6, 1, tzinfo=UTC),
            "producer_id": "p-1",
            "sequence": 7,
            **changes,
        }
        body = io.BytesIO()
        schemaless_writer(body, orders.parsed, event)
        record, _ = decoder.decode(body.getvalue())
        return record

    assert compiled.evaluate(decoded()).all_passed
    outcome = compiled.evaluate(
        decoded(
            amount_cents=0,
            currency="JPY",
            occurred_at=datetime.datetime(2023, 1, 1, tzinfo=UTC),
            order_id="",
        )
    )
    assert dict(outcome) == {
        "positive": VIOLATION,
        "currency": VIOLATION,
        "recent": VIOLATION,
        "ids": PASS,
        "keys": VIOLATION,
    }


anything = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),  # beyond 64 bits too: never from Avro, still no exception
        st.floats(),
        st.text(max_size=4),
        st.binary(max_size=4),
        st.decimals(allow_nan=True),
        st.datetimes(timezones=st.just(UTC)),
        st.dates(),
        st.uuids(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abxyz"), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    record=st.one_of(anything, st.dictionaries(st.sampled_from(["a", "b", "c", "ship"]), anything))
)
def test_evaluate_never_raises(record: Any) -> None:
    compiled = compile_rules(
        [
            *RULE_SET,
            RuleConfig(name="nested", not_null="ship.zip"),
            RuleConfig(name="pat", pattern={"field": "c", "regex": "^x"}),
            RuleConfig(name="whole", cel="size(message) > 0"),
        ],
        [reg("fields", "value != null", type="CEL_FIELD")],
        schema=SCHEMA,
    )
    outcome = compiled.evaluate(record)
    assert len(outcome.verdicts) == len(compiled.names)


def test_registered_rules_beyond_the_limit_are_reported_not_evaluated() -> None:
    config = [RuleConfig(name=f"c{i}", cel="true") for i in range(MAX_RULES - 1)]
    compiled = compile_rules(config, [reg("last", "true"), reg("one_too_many", "true")])
    assert len(compiled) == MAX_RULES
    assert compiled.not_evaluated[0].name == "one_too_many"
    assert "limit of 100" in compiled.not_evaluated[0].reason
    assert compiled.evaluate({}).all_passed


def test_a_rule_returning_one_is_an_error_even_in_a_batch() -> None:
    """1 == True in Python: the batch must not take a dyn rule's 1 for a pass."""
    compiled = compile_rules(
        [RuleConfig(name="dyn", cel="message.flag"), RuleConfig(name="b", cel="message.x > 0")]
    )
    outcome = compiled.evaluate({"flag": 1, "x": 1})
    assert dict(outcome) == {"dyn": ERROR, "b": PASS}
    assert "returned int" in outcome.errors["dyn"]
    assert compiled.evaluate({"flag": True, "x": 1}).all_passed
    assert dict(compiled.evaluate({"flag": False, "x": 0})) == {"dyn": VIOLATION, "b": VIOLATION}


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        # as doubles 2**63 - 1 is 2.0**63: inside a range that starts there
        ({"min": 2.0**63}, 2**63 - 1, PASS),
        ({"max": 2.0**53}, 2**53 + 1, PASS),
        ({"min": 2**53 + 1}, 2.0**53, PASS),
        ({"min": 2**53 + 1}, 2**53, VIOLATION),  # int against int: exact
    ],
)
def test_range_compares_an_int_with_a_double_as_doubles(
    spec: dict[str, Any], value: Any, expected: RuleVerdict
) -> None:
    assert both({"range": {"field": "v", **spec}}, {"v": value}) is expected


@pytest.mark.parametrize(
    ("allowed", "value", "expected"),
    [
        ([2.0**53], 2**53 + 1, PASS),
        ([2**53 + 1], 2.0**53, PASS),
        ([2**53], 2**53 + 1, VIOLATION),  # int against int: exact
    ],
)
def test_allowed_values_compare_an_int_with_a_double_as_doubles(
    allowed: list[Any], value: Any, expected: RuleVerdict
) -> None:
    assert both({"allowed_values": {"field": "v", "values": allowed}}, {"v": value}) is expected


avro_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        INT64,
        st.floats(allow_nan=False),
        st.text(max_size=6),
        st.binary(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        # map keys holding a NUL are still cut by the engine (documented in cel.py)
        st.dictionaries(st.text(max_size=3).filter(lambda k: "\x00" not in k), inner, max_size=3),
    ),
    max_leaves=10,
)


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return ("bytes", bytes(value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@settings(max_examples=500, deadline=None)
@given(value=avro_values)
def test_the_engine_sees_exactly_the_decoded_value(value: Any) -> None:
    """Round trip through the engine: what a rule reads is what fastavro decoded."""
    result = READ_V.eval(data={"message": {"v": to_cel(value)}})
    assert _plain(result.plain_value()) == _plain(value)


READ_V = cel.NewEnv(variables={"message": cel.Type.DYN}).compile("message.v")
