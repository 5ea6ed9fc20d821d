"""Config rules (a product's `rules:` list) and what their short forms mean.

Each rule has a label-safe `name` and exactly one check:

    rules:
      - name: positive_amount
        cel: "message.amount > 0.0"                    # CEL over the decoded event
      - name: has_customer
        not_null: customer_id                          # present and not null
      - name: known_currency
        allowed_values: {field: currency, values: [EUR, USD]}
      - name: sku_format
        pattern: {field: sku, regex: "^[A-Z]{3}-[0-9]+$"}  # RE2, unanchored (CEL matches)
      - name: sane_quantity
        range: {field: quantity, min: 1, max: 1000}    # both bounds INCLUSIVE

A `field` is an Avro field name or a dotted path into nested records
(`address.country`). Every short form is defined by the CEL it compiles to
(`ShortForm.cel`), so its verdicts are CEL's: a missing field or a null where a
number is needed is an error, not a violation; `allowed_values` uses CEL
equality (1 == 1.0, true != 1, a null or another type is simply not allowed);
`not_null` on a missing field is a violation. not_null, allowed_values and range
also have a Python check with exactly those semantics (tests/unit/contract
checks both against each other), used because it is an order of magnitude
faster than an engine call; pattern always runs in CEL, so its regex dialect is
RE2's, as in every CEL engine.

For a product's config, `RuleList` validates names (unique, at most MAX_RULES)
and `SampleRatio` a sampling ratio in (0, 1], e.g.

    rules: RuleList = Field(default_factory=list)
    rules_sample_ratio: SampleRatio = 1.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from monitor.contract.cel import CelEvalError, to_cel

RULE_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
FIELD_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_RULES = 100  # per product: each one is a metric series and an engine evaluation per event
MAX_VALUES = 1000  # allowed_values entries

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat
FieldPath = Annotated[str, Field(pattern=FIELD_PATH, max_length=500)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowedValues(_Model):
    field: FieldPath
    values: list[Scalar] = Field(min_length=1, max_length=MAX_VALUES)

    @model_validator(mode="after")
    def _finite(self) -> Self:
        if any(isinstance(v, float) and not math.isfinite(v) for v in self.values):
            raise ValueError("allowed values must be finite numbers (no nan or inf)")
        return self


class Pattern(_Model):
    field: FieldPath
    regex: str = Field(min_length=1, max_length=2000)


class Range(_Model):
    """Inclusive at both ends: min <= value <= max; either bound may be left out."""

    field: FieldPath
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        bounds = [b for b in (self.min, self.max) if b is not None]
        if not bounds:
            raise ValueError("a range needs min, max or both")
        if not all(math.isfinite(b) for b in bounds):
            raise ValueError("range bounds must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class RuleConfig(_Model):
    """One correctness check of a product; `name` becomes the `rule` metric label."""

    name: str = Field(pattern=RULE_NAME, max_length=100)
    cel: str | None = Field(default=None, min_length=1, max_length=10_000)
    not_null: FieldPath | None = None
    allowed_values: AllowedValues | None = None
    pattern: Pattern | None = None
    range: Range | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [
            k
            for k in ("cel", "not_null", "allowed_values", "pattern", "range")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"rule {self.name!r} needs exactly one of cel, not_null, allowed_values, "
                f"pattern, range; got {', '.join(given) or 'none'}"
            )
        return self


def _unique(rules: list[RuleConfig]) -> list[RuleConfig]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rule name {rule.name!r} is used twice; names are unique per product")
        seen.add(rule.name)
    return rules


# The type of a product's `rules:` key: names unique, at most MAX_RULES.
RuleList = Annotated[list[RuleConfig], Field(max_length=MAX_RULES), AfterValidator(_unique)]
# The fraction of events whose rules are evaluated (see rules.Sampler).
SampleRatio = Annotated[float, Field(gt=0.0, le=1.0)]


@dataclass(frozen=True, slots=True)
class ShortForm:
    """A config rule as CEL text, plus an equivalent Python check where one exists."""

    cel: str
    check: Callable[[Any], bool] | None  # raises CelEvalError where CEL would error


def short_form(rule: RuleConfig) -> ShortForm:
    if rule.cel is not None:
        return ShortForm(rule.cel, None)
    if rule.not_null is not None:
        *parents, leaf = rule.not_null.split(".")
        holder = _index(parents)
        return ShortForm(
            f"{cel_literal(leaf)} in {holder} && {holder}[{cel_literal(leaf)}] != null",
            _not_null(parents, leaf),
        )
    if rule.allowed_values is not None:
        spec = rule.allowed_values
        path = spec.field.split(".")
        values = ", ".join(cel_literal(v) for v in spec.values)
        return ShortForm(f"{_index(path)} in [{values}]", _allowed(path, spec.values))
    if rule.pattern is not None:
        path = rule.pattern.field.split(".")
        return ShortForm(f"{_index(path)}.matches({cel_literal(rule.pattern.regex)})", None)
    assert rule.range is not None
    spec_range = rule.range
    path = spec_range.field.split(".")
    value = _index(path)
    parts = []
    if spec_range.min is not None:
        parts.append(f"{value} >= {cel_literal(spec_range.min)}")
    if spec_range.max is not None:
        parts.append(f"{value} <= {cel_literal(spec_range.max)}")
    return ShortForm(" && ".join(parts), _range(path, spec_range.min, spec_range.max))


def cel_literal(value: Any) -> str:
    """A CEL literal for a config value (string, int, double or bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # always has a '.' or an exponent, so CEL reads a double
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are CEL escapes


def _index(path: list[str]) -> str:
    return "message" + "".join(f"[{cel_literal(p)}]" for p in path)


def _lookup(record: Any, path: list[str]) -> Any:
    """What CEL's `message['a']['b']` yields, or CelEvalError where CEL errors."""
    value = record
    for part in path:
        if type(value) is not dict:
            raise CelEvalError(f"no such key: {part} (not a record)")
        try:
            value = value[part]
        except KeyError:
            raise CelEvalError(f"no such key: {part}") from None
    return value if type(value) is str else to_cel(value)  # a str compares as it is


def _not_null(parents: list[str], leaf: str) -> Callable[[Any], bool]:
    def check(record: Any) -> bool:
        holder = _lookup(record, parents) if parents else record
        if type(holder) is dict:
            return holder.get(leaf) is not None
        if type(holder) is list and leaf not in holder:  # CEL: `'x' in list` is false
            return False
        raise CelEvalError(f"no such key: {leaf} (not a record)")

    return check


def _allowed(path: list[str], values: list[Any]) -> Callable[[Any], bool]:
    booleans = frozenset(v for v in values if type(v) is bool)
    strings = frozenset(v for v in values if type(v) is str)
    ints = frozenset(v for v in values if type(v) is int)
    doubles = frozenset(v for v in values if type(v) is float)
    # CEL (C++) compares an int with a double as doubles: 2**53 + 1 == 9007199254740992.0
    numbers_as_doubles = doubles | {float(v) for v in ints}

    def check(record: Any) -> bool:
        value = _lookup(record, path)
        kind = type(value)
        if kind is str:
            return value in strings
        if kind is int:
            return value in ints or float(value) in doubles
        if kind is float:
            return value in numbers_as_doubles
        if kind is bool:
            return value in booleans
        return False  # null, bytes, lists, maps, timestamps: equal to no allowed value

    return check


def _range(path: list[str], low: float | None, high: float | None) -> Callable[[Any], bool]:
    def within(value: Any, bound: float, above: bool) -> bool:
        if type(value) is not type(bound):  # int against double: compared as doubles
            value, bound = float(value), float(bound)
        return bool(value >= bound if above else value <= bound)

    def check(record: Any) -> bool:
        value = _lookup(record, path)
        if type(value) is not int and type(value) is not float:
            raise CelEvalError(f"no matching overload for a comparison with {type(value).__name__}")
        return (low is None or within(value, low, True)) and (
            high is None or within(value, high, False)
        )

    return check
