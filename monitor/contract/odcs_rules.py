"""ODCS properties and quality rules mapped to per-event rules, or reported as not evaluated.

The mapping itself is described in `monitor.contract.odcs`; this module holds the
half that walks `schema[].properties[]` and their `quality[]`, and the findings
(rules, not-evaluated parts, errors with file, line and YAML path) both halves use.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from monitor.contract.odcs_volume import (
    WINDOW_PROPERTY,
    Volume,
    cron_period,
    lowest_allowed,
    refused_above,
)
from monitor.durations import parse_duration
from monitor.errors import ContractError
from monitor.yamlpaths import KeyPath, dotted, line_of

RuleKind = Literal["not_null", "allowed_values", "pattern", "range", "cel"]
_METRICS = ("nullValues", "missingValues", "invalidValues", "duplicateValues", "rowCount")
_OPERATORS = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)
_CEL_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_RULES = 10_000  # a contract, not a data set: bounds rules and findings from one file

Path_ = KeyPath


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One per-event rule; `config()` is the rule engine's short form for it."""

    name: str
    field: str
    kind: RuleKind
    args: dict[str, Any]  # allowed_values: values; pattern: regex; range: min/max; cel: expr
    source: str  # where in the ODCS file it came from

    def config(self) -> dict[str, Any]:
        if self.kind == "not_null":
            return {"not_null": self.field}
        if self.kind == "cel":
            return {"cel": self.args["expr"]}
        return {self.kind: {"field": self.field, **self.args}}


@dataclass(frozen=True, slots=True)
class NotEvaluated:
    what: str  # YAML path and a short name of the rule or property
    why: str


class Findings:
    """What reading one file found: rules, parts not evaluated, and how to word errors."""

    def __init__(self, path: Path, lines: dict[Path_, int]) -> None:
        self.path, self.lines = path, lines
        self.rules: list[RuleSpec] = []
        self.skipped: list[NotEvaluated] = []
        self.names: set[str] = set()
        self.volumes: list[tuple[Path_, Volume]] = []  # rowCount rules, in file order

    # --- errors and findings ----------------------------------------------------------
    def error(self, at: Path_, message: str) -> ContractError:
        line = line_of(self.lines, at)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ContractError(f"odcs {where}: {dotted(at) or '(top level)'}: {message}")

    def skip(self, at: Path_, label: str, why: str) -> None:
        if len(self.skipped) >= _MAX_RULES:
            raise self.error(at, f"more than {_MAX_RULES} parts not evaluated; split the contract")
        self.skipped.append(NotEvaluated(f"{dotted(at)} ({label})", why))

    def rule(self, at: Path_, name: str, fld: str, kind: RuleKind, **args: Any) -> None:
        if len(self.rules) >= _MAX_RULES:
            raise self.error(at, f"more than {_MAX_RULES} rules; split the contract")
        unique, n = name, 2
        while unique in self.names:
            unique, n = f"{name}_{n}", n + 1
        self.names.add(unique)
        self.rules.append(RuleSpec(unique, fld, kind, args, dotted(at)))

    def mapping(self, value: Any, at: Path_) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(at, f"must be a mapping, got {type(value).__name__}")
        return value

    def items(self, value: Any, at: Path_) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(at, f"must be a list, got {type(value).__name__}")
        return value

    def text(self, value: Any, at: Path_) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(at, "must be a non-empty string")
        return value

    def number(self, value: Any, at: Path_) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.error(at, f"must be a number, got {value!r}")
        return float(value)

    def regex(self, value: Any, at: Path_) -> str:
        pattern = self.text(value, at)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.error(at, f"not a valid regular expression: {exc}") from None
        return pattern


class PropertyRules(Findings):
    """Rules from properties (required, logicalTypeOptions) and library quality metrics."""

    # --- properties and their rules ---------------------------------------------------
    def properties(self, props: Any, at: Path_, prefix: str, fields: dict[str, str]) -> None:
        for i, prop in enumerate(self.items(props, at)):
            here: Path_ = (*at, i)
            entry = self.mapping(prop, here)
            name = self.text(entry.get("name"), (*here, "name"))
            fld = prefix + str(entry.get("physicalName") or name)
            fields[name] = fields[str(entry.get("physicalName") or name)] = fld
            self.constraints(entry, here, fld)
            for j, rule in enumerate(self.items(entry.get("quality"), (*here, "quality"))):
                self.property_quality(rule, (*here, "quality", j), fld)
            if entry.get("properties") is not None:
                self.properties(entry["properties"], (*here, "properties"), f"{fld}.", fields)
            if entry.get("items") is not None:
                self.skip((*here, "items"), fld, "rules on array items are not evaluated")

    def constraints(self, entry: dict[str, Any], at: Path_, fld: str) -> None:
        if entry.get("required") is True:
            self.rule((*at, "required"), f"{fld}_required", fld, "not_null")
        for key in ("unique", "primaryKey"):
            if entry.get(key) is True:
                self.skip((*at, key), fld, "uniqueness needs every earlier value, not one event")
        options = entry.get("logicalTypeOptions")
        if options is None:
            return
        opt_at: Path_ = (*at, "logicalTypeOptions")
        options = self.mapping(options, opt_at)
        logical = entry.get("logicalType")
        if "enum" in options:  # not in the v3.1 JSON schema, but datacontract-cli reads it
            values = self.items(options["enum"], (*opt_at, "enum"))
            self.rule((*opt_at, "enum"), f"{fld}_enum", fld, "allowed_values", values=values)
        if "pattern" in options:
            regex = self.regex(options["pattern"], (*opt_at, "pattern"))
            self.rule((*opt_at, "pattern"), f"{fld}_pattern", fld, "pattern", regex=regex)
        if logical in ("integer", "number"):
            bounds = self.bounds(options, opt_at, integer=logical == "integer")
            if bounds:
                self.rule(opt_at, f"{fld}_range", fld, "range", **bounds)
        rest = sorted(
            k
            for k in options
            if k not in ("pattern", "enum")
            and not (logical in ("integer", "number") and k in _BOUND_KEYS)
        )
        if rest:
            self.skip(opt_at, f"{fld}: {', '.join(rest)}", "no per-event rule kind for these")

    def bounds(self, options: dict[str, Any], at: Path_, integer: bool) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, side in (("minimum", "min"), ("maximum", "max")):
            if key in options:
                self.number(options[key], (*at, key))
                out[side] = options[key]  # as written: 1 stays an int for an integer field
        for key, side, step in (("exclusiveMinimum", "min", 1), ("exclusiveMaximum", "max", -1)):
            if key not in options:
                continue
            value = self.number(options[key], (*at, key))
            if integer and value == int(value):
                bound = int(value) + step
                better = max if side == "min" else min
                out[side] = better(out.get(side, bound), bound)
            else:
                self.skip((*at, key), str(value), "range bounds are inclusive; set minimum/maximum")
        if "min" in out and "max" in out and out["min"] > out["max"]:
            raise self.error(at, f"minimum {out['min']:g} is above maximum {out['max']:g}")
        return out

    # --- quality ----------------------------------------------------------------------
    def kind_of(self, rule: dict[str, Any], at: Path_) -> str:
        kind = rule.get("type")
        metric = rule.get("metric", rule.get("rule"))
        if kind is None:
            kind = "library" if metric is not None else None
        if kind not in ("library", "text", "sql", "custom"):
            raise self.error(
                (*at, "type"),
                f"{kind!r} is not a quality type (library, text, sql, custom); a library "
                "rule needs `metric`",
            )
        if kind == "library" and metric not in _METRICS:
            raise self.error((*at, "metric"), f"{metric!r} is not one of {', '.join(_METRICS)}")
        return str(kind)

    def not_library(self, kind: str, rule: dict[str, Any], at: Path_, label: str) -> None:
        why = {
            "text": "a text rule is for people; there is nothing to evaluate",
            "sql": "a sql rule queries a database; Tidemark sees one event at a time",
            "custom": f"a custom rule for engine {rule.get('engine')!r} runs in that engine",
        }[kind]
        self.skip(at, f"{kind} rule {label}", why)

    def property_quality(self, raw: Any, at: Path_, fld: str) -> None:
        rule = self.mapping(raw, at)
        kind = self.kind_of(rule, at)
        metric = str(rule.get("metric", rule.get("rule")))
        label = str(rule.get("id") or rule.get("name") or f"{fld}_{metric}")
        if kind != "library":
            label = str(rule.get("id") or rule.get("name") or f"{fld}_{kind}")
            self.not_library(kind, rule, at, label)
            return
        if metric in _DATASET_WHY:
            self.skip(at, f"{metric} {label}", _DATASET_WHY[metric])
            return
        zero, others, described = self.operator(rule, at)
        if not zero:
            self.skip(
                at,
                f"{metric} {label} ({described})",
                "asks for violations to exist; a per-event check can only count them",
            )
            return
        args = self.mapping(rule.get("arguments") or {}, (*at, "arguments"))
        if metric == "nullValues":
            self.rule(at, label, fld, "not_null")
        elif metric == "missingValues":
            self.missing(args, at, label, fld)
        else:
            self.invalid(args, at, label, fld)
        if others:
            unit = str(rule.get("unit", "rows"))
            self.skip(
                at,
                f"{metric} {label} tolerance ({described} {unit})",
                "a tolerance is dataset-level; Tidemark counts every violating event "
                "against the product's correctness target instead",
            )

    def missing(self, args: dict[str, Any], at: Path_, label: str, fld: str) -> None:
        # A null is always missing (as in datacontract-cli and Soda); the list adds values.
        values = self.items(args.get("missingValues"), (*at, "arguments", "missingValues"))
        self.rule(at, label, fld, "not_null")
        rest = [v for v in values if v is not None]
        if not rest:
            return
        if not _CEL_PATH.match(fld) or any(isinstance(v, dict | list) for v in rest):
            self.skip(at, f"missingValues {label}", "values or field cannot be put in CEL")
            return
        listed = ", ".join(json.dumps(v) for v in rest)
        self.rule(at, f"{label}_not_missing", fld, "cel", expr=f"!(message.{fld} in [{listed}])")

    def invalid(self, args: dict[str, Any], at: Path_, label: str, fld: str) -> None:
        args_at: Path_ = (*at, "arguments")
        if "validValues" not in args and "pattern" not in args:
            raise self.error(args_at, "invalidValues needs arguments.validValues or .pattern")
        if "validValues" in args:
            values = self.items(args["validValues"], (*args_at, "validValues"))
            if not values:
                raise self.error((*args_at, "validValues"), "must list at least one value")
            self.rule(at, label, fld, "allowed_values", values=list(values))
        if "pattern" in args:
            regex = self.regex(args["pattern"], (*args_at, "pattern"))
            self.rule(at, label, fld, "pattern", regex=regex)

    def operator(self, rule: dict[str, Any], at: Path_) -> tuple[bool, bool, str]:
        """(zero violations allowed, more allowed, the operator as written)."""
        ok, _, described = self.comparison(rule, at)
        return ok(0.0), any(ok(x) for x in (1e-9, 1.0, 1e18)), described

    def comparison(
        self, rule: dict[str, Any], at: Path_
    ) -> tuple[Callable[[float], bool], list[float], str]:
        """A library rule's operators: a test of a value, their numbers, them as written."""
        used = [k for k in _OPERATORS if k in rule]
        if not used:
            raise self.error(at, f"a library rule needs an operator: {', '.join(_OPERATORS)}")
        checks = []
        for key in used:
            value = rule[key]
            if key.endswith("Between"):
                pair = self.items(value, (*at, key))
                if len(pair) != 2:
                    raise self.error((*at, key), "must be a list of two numbers [low, high]")
                low, high = (self.number(v, (*at, key, i)) for i, v in enumerate(pair))
                if low > high:
                    raise self.error((*at, key), "the smaller number comes first")
                checks.append((key, low, high))
            else:
                checks.append((key, self.number(value, (*at, key)), 0.0))

        def ok(x: float) -> bool:
            return all(_OPS[key](x, a, b) for key, a, b in checks)

        numbers = [n for key, a, b in checks for n in ((a, b) if key.endswith("Between") else (a,))]
        return ok, numbers, ", ".join(f"{k} {rule[k]}" for k in used)

    def object_quality(self, raw: Any, at: Path_) -> None:
        rule = self.mapping(raw, at)
        kind = self.kind_of(rule, at)
        metric = str(rule.get("metric", rule.get("rule")))
        label = str(rule.get("id") or rule.get("name") or (metric if kind == "library" else kind))
        if kind != "library":
            self.not_library(kind, rule, at, label)
        elif metric == "rowCount":
            self.row_count(rule, at, label)
        elif metric in _DATASET_WHY:
            self.skip(at, f"{metric} {label}", _DATASET_WHY[metric])
        else:
            self.skip(at, f"{metric} {label}", "a property metric at object level names no field")

    # --- rowCount: expected volume (see monitor.contract.odcs_volume) ------------------
    def row_count(self, rule: dict[str, Any], at: Path_, label: str) -> None:
        unit = rule.get("unit", "rows")
        if unit != "rows":
            raise self.error((*at, "unit"), f"a rowCount counts rows, not {unit!r}: use rows")
        ok, numbers, described = self.comparison(rule, at)
        if any(math.isinf(n) for n in numbers):
            raise self.error(at, f"{described}: a row count is compared with finite numbers")
        floor = lowest_allowed(ok, numbers)
        if floor is None:
            raise self.error(at, f"{described} allows no row count at all")
        if floor == 0:
            self.skip(
                at,
                f"rowCount {label} ({described})",
                "allows an empty window, so there is no floor to judge; a minimum "
                "(mustBeGreaterThan, mustBeGreaterOrEqualTo, mustBeBetween) becomes "
                "expected volume",
            )
            return
        if refused_above(ok, numbers, floor):
            self.skip(
                at,
                f"rowCount {label} upper bound ({described})",
                "Tidemark judges missing events per window; more events than expected "
                "never make a window incomplete",
            )
        if len(self.volumes) >= _MAX_RULES:
            raise self.error(at, f"more than {_MAX_RULES} rowCount rules; split the contract")
        window, window_from = self.rule_window(rule, at, label)
        self.volumes.append((at, Volume(floor, window, window_from, label, dotted(at))))

    def rule_window(self, rule: dict[str, Any], at: Path_, label: str) -> tuple[float | None, str]:
        """The window a rowCount names itself: tidemark.window, else a fixed-interval cron."""
        props_at: Path_ = (*at, "customProperties")
        for i, raw in enumerate(self.items(rule.get("customProperties"), props_at)):
            entry = self.mapping(raw, (*props_at, i))
            if entry.get("property") != WINDOW_PROPERTY:
                continue
            value = entry.get("value")
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise self.error((*props_at, i, "value"), f"{WINDOW_PROPERTY}: {exc}") from None
            if not 0 < seconds < math.inf:
                raise self.error((*props_at, i, "value"), f"{WINDOW_PROPERTY} must be more than 0")
            return seconds, f"{WINDOW_PROPERTY} {value}"
        key = "schedule" if rule.get("schedule") is not None else "scheduleCronExpression"
        schedule = rule.get(key)
        if schedule is None:
            return None, ""
        scheduler = str(rule.get("scheduler") or "cron")
        period = cron_period(str(schedule)) if scheduler.lower() == "cron" else None
        if period is None:
            why = (
                f"scheduler {scheduler!r} is not cron"
                if scheduler.lower() != "cron"
                else "it does not fire at a fixed interval"
            )
            self.skip(
                (*at, key),
                f"{schedule} (window of rowCount {label})",
                f"{why}; the window comes from the SLA frequency or the product config",
            )
            return None, ""
        return period, f"{key} {schedule}"


_BOUND_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_OPS: dict[str, Any] = {
    "mustBe": lambda x, a, b: x == a,
    "mustNotBe": lambda x, a, b: x != a,
    "mustBeGreaterThan": lambda x, a, b: x > a,
    "mustBeGreaterOrEqualTo": lambda x, a, b: x >= a,
    "mustBeLessThan": lambda x, a, b: x < a,
    "mustBeLessOrEqualTo": lambda x, a, b: x <= a,
    # Inclusive, as datacontract-cli evaluates it. The ODCS text calls mustBeBetween
    # "equivalent to mustBeGreaterThan and mustBeLessThan", which would make the usual
    # `nullValues mustBeBetween: [0, 5]` refuse zero nulls: not what authors mean.
    "mustBeBetween": lambda x, a, b: a <= x <= b,
    "mustNotBeBetween": lambda x, a, b: not a <= x <= b,
}
_DATASET_WHY = {
    "duplicateValues": "duplicates need every earlier value, not one event",
    "rowCount": "rowCount counts the rows of a schema object: put it under schema[].quality "
    "to make it the expected volume per completeness window",
}
