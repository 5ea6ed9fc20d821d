"""Open Data Contract Standard (ODCS v3.x) files: what Tidemark can check on each event.

`load_odcs(path, object_name=None)` reads an ODCS YAML file and returns an
`OdcsContract`: product settings (owner, description, freshness threshold and the
event-time field, `tidemark.*` custom properties), per-event rules in the rule
engine's config short forms, and everything it cannot evaluate as (what, why) pairs
to report once at start-up; nothing is dropped without a word. ODCS is not the
schema source: the Avro schema still comes from a file or the registry.

What maps to what (field = a property's `physicalName`, else its `name`; nested
object properties give dotted paths such as `customer.id`):

    team.name (or the deprecated list's owner)   owner       (if it can be a label)
    team member with role owner, username a@b    owner_email
    description.purpose (or a plain string)      description
    customProperties tidemark.*                  as registry metadata (metadata.py)
    slaProperties latency value+unit             freshness.threshold (strictest one)
    slaProperties latency element                event_time
    property required: true                      not_null
    logicalTypeOptions pattern                   pattern
    logicalTypeOptions minimum/maximum           range (inclusive; integer exclusive
                                                 bounds become inclusive ones)
    quality nullValues                           not_null
    quality missingValues [null, '', 'N/A']      not_null + cel `!(message.f in [...])`
    quality invalidValues validValues / pattern  allowed_values / pattern

A library rule becomes a per-event rule when its operator allows zero violations.
A tolerance (`mustBeLessThan: 5` rows, `< 1` percent) is dataset-level: the rule is
still emitted (each violating event counts against the correctness target) and the
tolerance is reported as not evaluated; an operator that demands violations
(`mustBeGreaterThan: 0`) yields no rule. Reported as not evaluated: text, sql and
custom rules, duplicateValues, unique, primaryKey, rowCount (a stream has no
total), string length, format, date bounds, multipleOf, rules under array items,
and SLA properties other than latency (frequency, retention, availability...).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from monitor.contract.metadata import NAMESPACE, settings_from_properties
from monitor.errors import ContractError

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
_UNIT_SECONDS = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400.0),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * 86400.0),
}
_SLA_SYNONYMS = {"ly": "latency", "fy": "frequency", "re": "retention"}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_CEL_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_RULES = 10_000  # a contract, not a data set; bounds what one file can make us compile

Path_ = tuple[str | int, ...]


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


@dataclass(frozen=True, slots=True)
class OdcsContract:
    path: Path
    id: str
    version: str
    object_name: str | None  # the schema object the rules are for
    settings: dict[str, Any]  # partial product settings (see metadata.merge_settings)
    rules: tuple[RuleSpec, ...]
    not_evaluated: tuple[NotEvaluated, ...] = field(default=())

    def report(self) -> list[str]:
        """One line per part Tidemark does not check, for a single start-up log."""
        return [f"{n.what}: {n.why}" for n in self.not_evaluated]


def load_odcs(path: Path | str, object_name: str | None = None) -> OdcsContract:
    """Read and map an ODCS v3 file; ContractError names the file, YAML path and problem.

    `object_name` picks the schema object the topic carries when the file has several.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"odcs {path}: cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ContractError(f"odcs {where}: not valid YAML: {exc}") from None
    return _Reader(path, _line_index(text)).read(data, object_name)


def parse_odcs(data: Any, path: Path, object_name: str | None = None) -> OdcsContract:
    """Map an already-parsed ODCS document (tests, embedded contracts)."""
    return _Reader(path, {}).read(data, object_name)


def _line_index(text: str) -> dict[Path_, int]:
    lines: dict[Path_, int] = {}

    def walk(node: yaml.Node, at: Path_) -> None:
        lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*at, str(key.value))] = key.start_mark.line + 1
                walk(value, (*at, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*at, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _dotted(at: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in at).replace(".[", "[")


class _Reader:
    def __init__(self, path: Path, lines: dict[Path_, int]) -> None:
        self.path, self.lines = path, lines
        self.rules: list[RuleSpec] = []
        self.skipped: list[NotEvaluated] = []
        self.names: set[str] = set()

    # --- errors and findings ----------------------------------------------------------
    def error(self, at: Path_, message: str) -> ContractError:
        line = next((self.lines[at[:n]] for n in range(len(at), 0, -1) if at[:n] in self.lines), 0)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ContractError(f"odcs {where}: {_dotted(at) or '(top level)'}: {message}")

    def skip(self, at: Path_, label: str, why: str) -> None:
        self.skipped.append(NotEvaluated(f"{_dotted(at)} ({label})", why))

    def rule(self, at: Path_, name: str, fld: str, kind: RuleKind, **args: Any) -> None:
        if len(self.rules) >= _MAX_RULES:
            raise self.error(at, f"more than {_MAX_RULES} rules; split the contract")
        unique, n = name, 2
        while unique in self.names:
            unique, n = f"{name}_{n}", n + 1
        self.names.add(unique)
        self.rules.append(RuleSpec(unique, fld, kind, args, _dotted(at)))

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

    # --- the document -----------------------------------------------------------------
    def read(self, data: Any, object_name: str | None) -> OdcsContract:
        doc = self.mapping(data, ())
        if doc.get("kind") != "DataContract":
            raise self.error(("kind",), f"must be DataContract, got {doc.get('kind')!r}")
        api = str(doc.get("apiVersion", ""))
        if not api.startswith("v3."):
            raise self.error(
                ("apiVersion",), f"{api or 'missing'}: Tidemark reads ODCS v3.x (v3.0.x, v3.1.0)"
            )
        for key in ("id", "version"):
            if not isinstance(doc.get(key), str | int | float) or doc.get(key) == "":
                raise self.error((key,), "is required")
        settings = self.header(doc)
        obj_at, obj = self.pick_object(doc, object_name)
        fields: dict[str, str] = {}
        if obj is not None:
            self.properties(obj.get("properties"), (*obj_at, "properties"), "", fields)
            for i, rule in enumerate(self.items(obj.get("quality"), (*obj_at, "quality"))):
                self.object_quality(rule, (*obj_at, "quality", i))
        self.sla(doc, obj, fields, settings)
        name = None if obj is None else str(obj.get("physicalName") or obj.get("name"))
        return OdcsContract(
            self.path,
            str(doc["id"]),
            str(doc["version"]),
            name,
            settings,
            tuple(self.rules),
            tuple(self.skipped),
        )

    def header(self, doc: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for i, custom in enumerate(self.items(doc.get("customProperties"), ("customProperties",))):
            at: Path_ = ("customProperties", i)
            entry = self.mapping(custom, at)
            name = self.text(entry.get("property"), (*at, "property"))
            if name.startswith(NAMESPACE):
                props[name] = entry.get("value")
        owner, email = self.team(doc.get("team"))
        if owner is not None:
            props.setdefault("owner", owner)
        if email is not None:
            props.setdefault("owner_email", email)
        description = doc.get("description")
        if isinstance(description, dict):
            description = description.get("purpose")
        if isinstance(description, str) and description.strip():
            props.setdefault("description", description.strip())
        return settings_from_properties(props, f"odcs {self.path}")

    def team(self, team: Any) -> tuple[str | None, str | None]:
        if team is None:
            return None, None
        members_at: Path_ = ("team", "members")
        if isinstance(team, list):  # deprecated v3.0 shape: a list of members
            members, name, members_at = team, None, ("team",)
        else:
            entry = self.mapping(team, ("team",))
            members, name = self.items(entry.get("members"), members_at), entry.get("name")
        owners = [
            m
            for m in members
            if isinstance(m, dict)
            and str(m.get("role", "")).lower() == "owner"
            and not m.get("dateOut")
        ]
        username = str(owners[0].get("username", "")) if owners else ""
        email = username if "@" in username else None
        owner = name if isinstance(name, str) else (username.split("@")[0] or None)
        if owner is not None and not _LABEL.match(owner):
            self.skip(
                ("team",),
                f"owner {owner!r}",
                "cannot be a metric label (letters, digits, '_', '.', '-'); set owner in "
                "the product config",
            )
            owner = None
        return owner, email

    def pick_object(
        self, doc: dict[str, Any], wanted: str | None
    ) -> tuple[Path_, dict[str, Any] | None]:
        objects = [
            (("schema", i), self.mapping(o, ("schema", i)))
            for i, o in enumerate(self.items(doc.get("schema"), ("schema",)))
        ]
        names = [str(o.get("physicalName") or o.get("name")) for _, o in objects]
        if wanted is not None:
            for (at, obj), name in zip(objects, names, strict=True):
                if wanted in (name, obj.get("name")):
                    return at, obj
            raise self.error(("schema",), f"no object named {wanted!r}; objects: {names}")
        if len(objects) > 1:
            raise self.error(
                ("schema",),
                f"{len(objects)} objects ({', '.join(names)}); name the one this topic "
                "carries (object_name)",
            )
        return objects[0] if objects else ((), None)

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
            if k != "pattern" and not (logical in ("integer", "number") and k in _BOUND_KEYS)
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
        if metric in ("duplicateValues", "rowCount"):
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
        values = self.items(args.get("missingValues", [None]), (*at, "arguments", "missingValues"))
        if None in values or not values:
            self.rule(at, label, fld, "not_null")
        rest = [v for v in values if v is not None]
        if not rest:
            return
        if not _CEL_PATH.match(fld) or any(isinstance(v, dict | list) for v in rest):
            self.skip(at, f"missingValues {label}", "values or field cannot be put in CEL")
            return
        listed = ", ".join(json.dumps(v) for v in rest)
        name = f"{label}_not_missing" if label in self.names else label
        self.rule(at, name, fld, "cel", expr=f"!(message.{fld} in [{listed}])")

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

        described = ", ".join(f"{k} {rule[k]}" for k in used)
        return ok(0.0), any(ok(x) for x in (1e-9, 1.0, 1e18)), described

    def object_quality(self, raw: Any, at: Path_) -> None:
        rule = self.mapping(raw, at)
        kind = self.kind_of(rule, at)
        metric = str(rule.get("metric", rule.get("rule")))
        label = str(rule.get("id") or rule.get("name") or (metric if kind == "library" else kind))
        if kind != "library":
            self.not_library(kind, rule, at, label)
        elif metric in _DATASET_WHY:
            self.skip(at, f"{metric} {label}", _DATASET_WHY[metric])
        else:
            self.skip(at, f"{metric} {label}", "a property metric at object level names no field")

    # --- service levels ---------------------------------------------------------------
    def sla(
        self,
        doc: dict[str, Any],
        obj: dict[str, Any] | None,
        fields: dict[str, str],
        settings: dict[str, Any],
    ) -> None:
        latencies: list[tuple[float, Path_, str | None]] = []
        for i, raw in enumerate(self.items(doc.get("slaProperties"), ("slaProperties",))):
            at: Path_ = ("slaProperties", i)
            entry = self.mapping(raw, at)
            prop = self.text(entry.get("property"), (*at, "property"))
            prop = _SLA_SYNONYMS.get(prop.lower(), prop.lower())
            if prop != "latency":
                why = _SLA_WHY.get(prop, "no Tidemark measurement for this service level")
                self.skip(at, f"{prop} {entry.get('value')!r}", why)
                continue
            seconds = self.duration(entry, at)
            element = entry.get("element")
            fld = None
            if element is not None:
                fld = self.element(self.text(element, (*at, "element")), at, obj, fields)
            latencies.append((seconds, at, fld))
        if not latencies:
            return
        latencies.sort(key=lambda item: item[0])
        seconds, _, fld = latencies[0]
        settings.setdefault("freshness", {}).setdefault("threshold", seconds)
        if fld is not None:
            settings.setdefault("event_time", fld)
        for other, at, _ in latencies[1:]:
            self.skip(at, f"latency {other:g}s", f"Tidemark keeps the strictest, {seconds:g}s")

    def duration(self, entry: dict[str, Any], at: Path_) -> float:
        value = entry.get("value")
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(value)
            number = float(value)
        except ValueError:
            raise self.error((*at, "value"), f"latency must be a number, got {value!r}") from None
        unit = entry.get("unit")
        if unit is None:
            raise self.error((*at, "unit"), "latency needs a unit such as s, m, h or d")
        scale = _UNIT_SECONDS.get(str(unit).strip().lower())
        if scale is None:
            raise self.error(
                (*at, "unit"), f"{unit!r} is not a unit Tidemark knows (ms, s, m, h, d, w, y)"
            )
        if not number > 0 or math.isinf(number):
            raise self.error((*at, "value"), f"latency must be more than 0, got {value!r}")
        return number * scale

    def element(
        self, element: str, at: Path_, obj: dict[str, Any] | None, fields: dict[str, str]
    ) -> str:
        first, *rest = (e.strip() for e in element.split(","))
        if rest:
            self.skip((*at, "element"), ", ".join(rest), "freshness is measured on one field")
        if obj is not None:
            for prefix in {str(obj.get("name")), str(obj.get("physicalName"))}:
                if first.startswith(prefix + "."):
                    first = first[len(prefix) + 1 :]
                    break
        return fields.get(first, first)


_BOUND_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_OPS: dict[str, Any] = {
    "mustBe": lambda x, a, b: x == a,
    "mustNotBe": lambda x, a, b: x != a,
    "mustBeGreaterThan": lambda x, a, b: x > a,
    "mustBeGreaterOrEqualTo": lambda x, a, b: x >= a,
    "mustBeLessThan": lambda x, a, b: x < a,
    "mustBeLessOrEqualTo": lambda x, a, b: x <= a,
    # ODCS: "mustBeBetween is the equivalent to mustBeGreaterThan and mustBeLessThan".
    "mustBeBetween": lambda x, a, b: a < x < b,
    "mustNotBeBetween": lambda x, a, b: not a < x < b,
}
_DATASET_WHY = {
    "duplicateValues": "duplicates need every earlier value, not one event",
    "rowCount": "a stream has no total row count; set completeness.expected in the "
    "product config for a volume per window",
}
_SLA_WHY = {
    "frequency": "a stream updates per event; freshness (latency) and completeness "
    "cover late or missing data",
    "retention": "retention is a topic setting (retention.ms) Tidemark does not check",
}
