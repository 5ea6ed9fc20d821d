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
    slaProperties latency (or freshness)         freshness.threshold (strictest one);
      value + unit, or an ISO 8601 value PT15M
    slaProperties latency element                event_time
    property required: true                      not_null
    logicalTypeOptions pattern / enum            pattern / allowed_values
    logicalTypeOptions minimum/maximum           range (inclusive; integer exclusive
                                                 bounds become inclusive ones)
    quality nullValues                           not_null
    quality missingValues ['', 'N/A']            not_null (null is always missing) + cel
                                                 `!(message.f in ["", "N/A"])`
    quality invalidValues validValues / pattern  allowed_values / pattern
    schema quality rowCount (a minimum)          completeness.expected.min_events_per_window
                                                 in the window the rule, its cron schedule,
                                                 the SLA frequency or the config names
                                                 (monitor.contract.odcs_volume)

A library rule becomes a per-event rule when its operator allows zero violations.
A tolerance (`mustBeLessThan: 5` rows, `< 1` percent) is dataset-level: the rule is
still emitted (each violating event counts against the correctness target) and the
tolerance is reported as not evaluated; an operator that demands violations
(`mustBeGreaterThan: 0`) yields no rule. `mustBeBetween` is inclusive.

Reported as not evaluated: text, sql and custom rules, duplicateValues, unique,
primaryKey, a rowCount without a minimum or a window (and its upper bound), string
length, format, date bounds, multipleOf, rules under array items, and SLA properties
other than latency (retention, availability..., frequency unless a rowCount's window).
Properties and quality rules are walked in `odcs_rules.py`; this module reads the
document level. `unknown_fields(odcs, avro_schema)` lists rule fields the Avro
schema lacks, for the caller to refuse before a typo fails every event.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from monitor.contract.metadata import NAMESPACE, settings_from_properties
from monitor.contract.odcs_rules import NotEvaluated, Path_, PropertyRules, RuleSpec
from monitor.contract.odcs_volume import Volume
from monitor.errors import ContractError
from monitor.yamlpaths import dotted, line_index

__all__ = [
    "NotEvaluated",
    "OdcsContract",
    "RuleSpec",
    "Volume",
    "load_odcs",
    "parse_odcs",
    "unknown_fields",
]

_UNIT_SECONDS = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400.0),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * 86400.0),
}
# ODCS prefers latency to freshness; datacontract-cli reads `freshness`: both are accepted.
_SLA_SYNONYMS = {"ly": "latency", "freshness": "latency", "fy": "frequency", "re": "retention"}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class OdcsContract:
    path: Path
    id: str
    version: str
    object_name: str | None  # the schema object the rules are for
    settings: dict[str, Any]  # partial product settings (see metadata.merge_settings)
    rules: tuple[RuleSpec, ...]
    not_evaluated: tuple[NotEvaluated, ...] = field(default=())
    volume: Volume | None = None  # a rowCount rule: expected events per window

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
    return _Reader(path, line_index(text)).read(data, object_name)


def parse_odcs(data: Any, path: Path, object_name: str | None = None) -> OdcsContract:
    """Map an already-parsed ODCS document (tests, embedded contracts)."""
    return _Reader(path, {}).read(data, object_name)


class _Reader(PropertyRules):
    """The document level: header, team, the schema object, service levels."""

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
        frequency = self.sla(doc, obj, fields, settings)
        volume = self.volume(frequency)
        name = None if obj is None else str(obj.get("physicalName") or obj.get("name"))
        return OdcsContract(
            self.path,
            str(doc["id"]),
            str(doc["version"]),
            name,
            settings,
            tuple(self.rules),
            tuple(self.skipped),
            volume,
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

    # --- service levels ---------------------------------------------------------------
    def sla(
        self,
        doc: dict[str, Any],
        obj: dict[str, Any] | None,
        fields: dict[str, str],
        settings: dict[str, Any],
    ) -> tuple[Path_, dict[str, Any]] | None:
        """Latency → freshness; returns the first frequency entry, a rowCount's window."""
        latencies: list[tuple[float, Path_, str | None]] = []
        frequency: tuple[Path_, dict[str, Any]] | None = None
        for i, raw in enumerate(self.items(doc.get("slaProperties"), ("slaProperties",))):
            at: Path_ = ("slaProperties", i)
            entry = self.mapping(raw, at)
            prop = self.text(entry.get("property"), (*at, "property"))
            prop = _SLA_SYNONYMS.get(prop.lower(), prop.lower())
            if prop == "frequency" and frequency is None:
                frequency = (at, entry)
                continue
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
            return frequency
        latencies.sort(key=lambda item: item[0])
        seconds, _, fld = latencies[0]
        settings.setdefault("freshness", {}).setdefault("threshold", seconds)
        if fld is not None:
            settings.setdefault("event_time", fld)
        for other, at, _ in latencies[1:]:
            self.skip(at, f"latency {other:g}s", f"Tidemark keeps the strictest, {seconds:g}s")
        return frequency

    def volume(self, frequency: tuple[Path_, dict[str, Any]] | None) -> Volume | None:
        """The rowCount that becomes expected volume; the others and an unused frequency
        are reported. Tidemark has one window per product: the first rowCount's window
        wins and the strictest floor in that window is kept."""
        used_frequency = False
        resolved: list[tuple[Path_, Volume]] = []
        for at, vol in self.volumes:
            if vol.window is None and frequency is not None:
                f_at, entry = frequency
                seconds = self.duration(entry, f_at, "frequency")  # an error only when used
                vol = replace(vol, window=seconds, window_from=f"{dotted(f_at)} frequency")
            resolved.append((at, vol))
        if resolved:
            first = resolved[0][1].window
            same = [vol for _, vol in resolved if vol.window == first]
            best = max(same, key=lambda vol: vol.floor)
            used_frequency = best.window_from.endswith(" frequency")
            for at, vol in resolved:
                if vol is not best:
                    self.skip(
                        at,
                        vol.name,
                        f"Tidemark keeps one expected volume per product: {best.name} "
                        f"(at least {best.floor} events per window)",
                    )
        if frequency is not None and not used_frequency:
            f_at, entry = frequency
            self.skip(f_at, f"frequency {entry.get('value')!r}", _SLA_WHY["frequency"])
        return best if resolved else None

    def duration(self, entry: dict[str, Any], at: Path_, what: str = "latency") -> float:
        value = entry.get("value")
        iso = _ISO_DURATION.match(value.upper()) if isinstance(value, str) else None
        if iso and entry.get("unit") is None and any(iso.groupdict().values()):
            scales = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
            seconds = sum(float(v) * scales[k] for k, v in iso.groupdict().items() if v)
            if seconds > 0:
                return seconds
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(value)
            number = float(value)
        except ValueError:
            raise self.error((*at, "value"), f"{what} must be a number, got {value!r}") from None
        unit = entry.get("unit")
        if unit is None:
            raise self.error(
                (*at, "unit"), f"{what} needs a unit such as s, m, h or d (or an ISO value: PT15M)"
            )
        scale = _UNIT_SECONDS.get(str(unit).strip().lower())
        if scale is None:
            raise self.error(
                (*at, "unit"), f"{unit!r} is not a unit Tidemark knows (ms, s, m, h, d, w, y)"
            )
        if not number > 0 or math.isinf(number):
            raise self.error((*at, "value"), f"{what} must be more than 0, got {value!r}")
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


_SLA_WHY = {
    "frequency": "a stream updates per event; freshness (latency) and completeness "
    "cover late or missing data (a frequency is read only as a rowCount's window)",
    "retention": "retention is a topic setting (retention.ms) Tidemark does not check",
}


def unknown_fields(odcs: OdcsContract, schema: Any) -> list[str]:
    """Rule and event-time fields the Avro schema does not have, each with its source.

    The ODCS file and the Avro schema come from different places; a field named in
    one and not the other would make a not_null rule fail on every event (or a rule
    never apply). Call this once the schema is known and refuse to start on a finding.
    """
    paths = _avro_paths(schema, "", {})
    found = [
        f"{rule.field} (rule {rule.name}, {rule.source})"
        for rule in odcs.rules
        if rule.field not in paths
    ]
    event_time = odcs.settings.get("event_time")
    if isinstance(event_time, str) and event_time not in paths:
        found.append(f"{event_time} (event_time, from slaProperties latency element)")
    return found


def _avro_paths(
    node: Any, prefix: str, named: dict[str, Any], walking: frozenset[str] = frozenset()
) -> set[str]:
    """Dotted paths of every field, through nested records and nullable unions.

    A recursive type (a record naming itself) is walked once per path, not forever.
    """
    if isinstance(node, str):
        node = named.get(node, node)
    if isinstance(node, list):
        return {p for branch in node for p in _avro_paths(branch, prefix, named, walking)}
    if not isinstance(node, dict):
        return set()
    if node.get("type") != "record":
        inner = node.get("type")
        if isinstance(inner, dict | list):
            return _avro_paths(inner, prefix, named, walking)
        return set()
    name = str(node.get("name", ""))
    full = f"{node['namespace']}.{name}" if node.get("namespace") else name
    if full in walking:
        return set()
    named[name] = named[full] = node
    out: set[str] = set()
    for fld in node.get("fields", []):
        path = f"{prefix}{fld['name']}"
        out.add(path)
        out |= _avro_paths(fld.get("type"), f"{path}.", named, walking | {full})
    return out
