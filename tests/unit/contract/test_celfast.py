"""Single-comparison rules decided in Python give exactly the C++ engine's verdicts.

Each case runs the same rule text through celfast's FastRule and through the
engine itself (Program.check over to_cel of the record): the same bool, or the
same CelEvalError message, for values of every type a decoded Avro record holds.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.contract.cel import CelEvalError, Program, to_cel
from monitor.contract.celfast import FastRule, fast_rule
from monitor.contract.registered import cel_rule_set
from monitor.contract.rules import compile_rules


def _engine(source: str, record: Any) -> tuple[str, Any]:
    program = Program(source)
    try:
        return "verdict", program.check(program.activation({"message": to_cel(record)}))
    except CelEvalError as exc:
        return "error", str(exc)


def _fast(source: str, record: Any) -> tuple[str, Any]:
    rule = fast_rule(source, Program(source))
    assert rule is not None, source
    try:
        return "verdict", rule.check(record)
    except CelEvalError as exc:
        return "error", str(exc)


@pytest.mark.parametrize(
    "source",
    [
        "message.amount > 0",
        "message.amount_cents>=100",
        "  message.a.b.c != -5  ",
        "message.price < 10.25",
        "message.currency == 'EUR'",
        'message.currency == "EUR"',
        "message.flag == true",
        "message.currency in ['EUR', 'USD', 'GBP']",
        "message.n in [1, 2, 3]",
        "message.customer_id.startsWith('c-')",
        "message.s.endsWith('x')",
        "message.s.contains('')",
    ],
)
def test_one_comparison_of_a_field_with_a_literal_is_taken(source: str) -> None:
    assert fast_rule(source, Program(source)) is not None


@pytest.mark.parametrize(
    "source",
    [
        "message.a > 0 && message.b > 0",  # more than one comparison
        "(message.a > 0) ? (message.b > 0) : true",  # a guarded rule as compiled
        "message.flag < true",  # ordering of bools
        "message.n in [1, 'a']",  # mixed list: heterogeneous equality
        "message.s == 'a\\'b'",  # escapes
        "message.x > 1e3",  # exponent
        "message.x > 0u",  # unsigned
        "message.x > 0x10",  # hex
        "message['x'] > 0",  # index syntax
        "size(message.s) > 0",
        "message.s.matches('^a')",
        "message.ts < now",
        "0 < message.x",  # literal first
    ],
)
def test_anything_else_is_left_to_the_engine(source: str) -> None:
    assert fast_rule(source, Program(source)) is None


_INTS = st.integers(min_value=-(10**17), max_value=10**17)
_FLOAT_TEXT = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}.{frac}",
    st.sampled_from(["", "-"]),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
)
_SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="'\\\n\r", blacklist_categories=("Cs",)),
    max_size=6,
)
_LITERALS = st.one_of(
    _INTS.map(str),
    _FLOAT_TEXT,
    _SAFE_TEXT.map(lambda s: f"'{s}'"),
    st.sampled_from(["true", "false"]),
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_MISSING = object()


def _record(value: Any, nested: bool) -> dict[str, Any]:
    if value is _MISSING:
        return {"other": 1}
    return {"a": {"b": value}} if nested else {"b": value}


@settings(max_examples=400, deadline=None)
@given(
    op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    literal=_LITERALS,
    value=st.one_of(_VALUES, st.just(_MISSING)),
    nested=st.booleans(),
)
def test_comparisons_agree_with_the_engine(op: str, literal: str, value: Any, nested: bool) -> None:
    source = f"message.{'a.' if nested else ''}b {op} {literal}"
    if literal in ("true", "false") and op not in ("==", "!="):
        assert fast_rule(source, Program(source)) is None
        return
    record = _record(value, nested)
    assert _fast(source, record) == _engine(source, record), (source, record)


@settings(max_examples=300, deadline=None)
@given(
    items=st.one_of(
        st.lists(_INTS.map(str), min_size=1, max_size=4),
        st.lists(_FLOAT_TEXT, min_size=1, max_size=4),
        st.lists(_SAFE_TEXT.map(lambda s: f"'{s}'"), min_size=1, max_size=4),
    ),
    value=st.one_of(_VALUES, st.just(_MISSING), st.sampled_from([0, 1, 0.0, -0.0, "a", ""])),
)
def test_membership_agrees_with_the_engine(items: list[str], value: Any) -> None:
    source = f"message.b in [{', '.join(items)}]"
    record = _record(value, nested=False)
    assert _fast(source, record) == _engine(source, record), (source, record)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["startsWith", "endsWith", "contains"]),
    needle=_SAFE_TEXT,
    value=st.one_of(_VALUES, st.just(_MISSING), _SAFE_TEXT),
)
def test_string_functions_agree_with_the_engine(method: str, needle: str, value: Any) -> None:
    source = f"message.b.{method}('{needle}')"
    record = _record(value, nested=False)
    assert _fast(source, record) == _engine(source, record), (source, record)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("message.b in [1]", True),  # Python: True == 1; CEL: a bool is not an int
        ("message.b in [0]", False),
        ("message.b == 1", True),
        ("message.b in [1.0]", 1),  # Python: 1 == 1.0
        ("message.b == 1.0", 1),
        ("message.b in [0.0]", -0.0),
        ("message.b == 0", -0.0),
        ("message.b < 'b'", "a\x00z"),  # a NUL inside: the engine sees the whole string
        ("message.b.startsWith('a')", b"a"),
    ],
)
def test_values_where_python_and_cel_disagree_on_types(source: str, value: Any) -> None:
    record = {"b": value}
    assert _fast(source, record) == _engine(source, record)


def test_a_value_of_the_literal_type_is_decided_without_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(FastRule, "_engine", lambda self, record: calls.append(record))
    rule = fast_rule("message.amount > 0", Program("message.amount > 0"))
    assert rule is not None
    assert rule.check({"amount": 5}) is True
    assert rule.check({"amount": -5}) is False
    assert calls == []
    rule.check({"amount": 5.0})  # a double against an int literal: the engine's case
    rule.check({"other": 1})  # missing: the engine's error message
    assert len(calls) == 2


def test_registered_rules_of_that_form_take_the_python_path_with_the_same_outcomes() -> None:
    rules = cel_rule_set(
        (
            ("positive", "message.amount > 0"),
            ("known", "message.currency in ['EUR', 'USD']"),
            ("customer", "message.customer.startsWith('c-')"),
            ("both", "message.amount > 0 && message.currency == 'EUR'"),  # the engine's
        )
    )
    fast = compile_rules((), rules)
    engine = compile_rules((), rules, python_short_forms=False)
    assert len(fast._python) == 3 and len(fast._cel) == 1
    assert len(engine._python) == 0 and len(engine._cel) == 4
    for record in (
        {"amount": 5, "currency": "EUR", "customer": "c-1"},
        {"amount": 0, "currency": "JPY", "customer": "x"},
        {"amount": 5.5, "currency": None, "customer": 3},
        {"currency": "EUR"},
        {"amount": math.nan, "currency": "USD", "customer": "c-"},
    ):
        assert fast.evaluate(record) == engine.evaluate(record), record
