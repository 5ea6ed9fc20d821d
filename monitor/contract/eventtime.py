"""Event time of a decoded record, as float epoch seconds.

The field path is resolved against the contract once, at start-up, so a typo
or an unusable type fails loudly before any event is read, and the per-event
function does no string work.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro import parse_schema

from monitor.contract.model import Contract
from monitor.errors import ContractError

EventTimeExtractor = Callable[[dict[str, Any], int], float | None]
Converter = Callable[[Any], float]

KAFKA_TIMESTAMP = "kafka-timestamp"

_DIVISORS = {
    "timestamp-millis": 1_000,
    "local-timestamp-millis": 1_000,
    "timestamp-micros": 1_000_000,
    "local-timestamp-micros": 1_000_000,
    "timestamp-nanos": 1_000_000_000,
    "local-timestamp-nanos": 1_000_000_000,
}
SUPPORTED = (
    "long with logicalType timestamp-millis, timestamp-micros, local-timestamp-millis or "
    "local-timestamp-micros (also the -nanos variants; local-* read as UTC); "
    "plain long (read as epoch MILLISECONDS); "
    "string (ISO-8601 such as 2024-05-01T12:00:00.250Z; no offset means UTC); "
    'double (epoch seconds); or a nullable union ["null", one of these]'
)


def make_extractor(contract: Contract, spec: str) -> EventTimeExtractor:
    """Extractor for `spec`: a dotted field path ("header.event_time") or "kafka-timestamp"."""
    if spec == KAFKA_TIMESTAMP:
        return kafka_timestamp
    names = tuple(spec.split("."))
    if not spec or not all(names):
        raise ContractError(
            f"event time {spec!r} for contract {contract.path}: expected a dotted field path "
            f'such as "occurred_at" or "header.event_time", or "{KAFKA_TIMESTAMP}"'
        )
    leaf = _leaf_type(contract, names, spec)
    convert = _converter(leaf, contract, spec)
    divisor = _epoch_divisor(leaf)
    if divisor is not None and len(names) == 1:
        return _epoch_extractor(names[0], divisor)
    return _path_extractor(names, convert)


def _epoch_divisor(leaf: Any) -> int | None:
    """The divisor of an epoch-long leaf (what _converter gives _epoch), else None."""
    base, logical = (
        (leaf.get("type"), leaf.get("logicalType")) if isinstance(leaf, dict) else (leaf, None)
    )
    if base == "long" and (logical is None or logical in _DIVISORS):
        return _DIVISORS.get(logical or "", 1_000)
    return None


def _epoch_extractor(name: str, divisor: int) -> EventTimeExtractor:
    """A top-level epoch long: _path_extractor with _epoch's conversion, in one call.

    The hot path of every contract with a timestamp field; the integer (what the
    RawEventTime fast path and plain longs decode to) is tested first.
    """

    def extract(record: dict[str, Any], timestamp_ms: int) -> float | None:
        value = record.get(name)
        if type(value) is int:
            return value / divisor
        if value is None:
            return None
        if type(value) is datetime:
            return _seconds(value)
        raise ValueError("event time is neither a datetime nor an integer epoch value")

    return extract


def kafka_timestamp(record: dict[str, Any], timestamp_ms: int) -> float | None:
    """The one extractor that reads timestamp_ms; the pipeline passes -1 to the others.

    Why: Message.timestamp() builds a tuple per event, wasted on a field path.
    """
    return None if timestamp_ms < 0 else timestamp_ms / 1000.0


def _path_extractor(names: tuple[str, ...], convert: Converter) -> EventTimeExtractor:
    if len(names) == 1:
        (field,) = names

        def extract_1(record: dict[str, Any], timestamp_ms: int) -> float | None:
            value = record.get(field)
            return None if value is None else convert(value)

        return extract_1
    if len(names) == 2:
        outer, inner = names

        def extract_2(record: dict[str, Any], timestamp_ms: int) -> float | None:
            nested = record.get(outer)
            if nested is None:
                return None
            value = nested.get(inner)
            return None if value is None else convert(value)

        return extract_2

    def extract_n(record: dict[str, Any], timestamp_ms: int) -> float | None:
        value: Any = record
        for name in names:
            value = value.get(name)
            if value is None:
                return None
        return convert(value)

    return extract_n


def _leaf_type(contract: Contract, names: tuple[str, ...], spec: str) -> Any:
    """Walk the contract along `names`; the (null-stripped) type of the last field."""
    named: dict[str, Any] = contract.parsed.get("__named_schemas", {})
    node: Any = contract.parsed
    for depth, name in enumerate(names):
        record = _deref(_non_null(node), named)
        where = ".".join(names[:depth]) or "the top level"
        if not isinstance(record, dict) or record.get("type") not in ("record", "error"):
            raise ContractError(
                f"event time field {spec!r} in contract {contract.path}: {where} is not a "
                f"record, so it has no field {name!r}"
            )
        fields = {f["name"]: f for f in record["fields"]}
        if name not in fields:
            raise ContractError(
                f"event time field {spec!r} in contract {contract.path}: {where} "
                f"({record['name']}) has no field {name!r}; its fields are "
                f"{', '.join(fields) or '(none)'}"
            )
        node = fields[name]["type"]
    return _deref(_non_null(node), named)


def _non_null(node: Any) -> Any:
    """["null", X] -> X; other unions stay unions (and are rejected later)."""
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        return branches[0] if len(branches) == 1 else node
    return node


def _deref(node: Any, named: dict[str, Any]) -> Any:
    return named.get(node, node) if isinstance(node, str) else node


def _converter(leaf: Any, contract: Contract, spec: str) -> Converter:
    base, logical = (
        (leaf.get("type"), leaf.get("logicalType"))
        if isinstance(leaf, dict)
        else (
            leaf,
            None,
        )
    )
    if base == "long" and (logical is None or logical in _DIVISORS):
        return _epoch(_DIVISORS.get(logical or "", 1_000))
    if base == "string" and logical is None:
        return _iso8601
    if base == "double" and logical is None:
        return _epoch_seconds
    shown = f"{base} with logicalType {logical}" if logical else _show(leaf)
    raise ContractError(
        f"event time field {spec!r} in contract {contract.path} has type {shown}, which "
        f"cannot hold a timestamp Tidemark understands; supported: {SUPPORTED}"
    )


def _show(leaf: Any) -> str:
    if isinstance(leaf, list):
        return "union [" + ", ".join(_show(b) for b in leaf) + "]"
    if isinstance(leaf, dict):
        return str(leaf.get("type"))
    return str(leaf)


def _seconds(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive (local-timestamp-*) values are taken as UTC
    return dt.timestamp()


def _epoch(divisor: int) -> Converter:
    """An epoch long; fastavro already turned logical timestamps into datetimes."""

    def convert(value: Any) -> float:
        if type(value) is datetime:
            return _seconds(value)
        if type(value) is int:
            return value / divisor
        raise ValueError("event time is neither a datetime nor an integer epoch value")

    return convert


def _iso8601(value: Any) -> float:
    if type(value) is not str:
        raise ValueError("event time is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # fromisoformat's own message quotes the value: payload content stays out of logs
        raise ValueError("event time string is not ISO-8601") from None
    return _seconds(parsed)


def _epoch_seconds(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise ValueError("event time is not a number")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError("event time is not a finite number")
    return seconds


# Epoch values a datetime can hold (years 1-9999): what fastavro's timestamp
# readers accept. Anything outside fails their conversion, a decode_error.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RAW_RANGES = {
    unit: (
        (datetime.min.replace(tzinfo=UTC) - _EPOCH) // step,
        (datetime.max.replace(tzinfo=UTC) - _EPOCH) // step,
    )
    for unit, step in (("millis", timedelta(milliseconds=1)), ("micros", timedelta(microseconds=1)))
}
_RAW_LOGICAL = {
    "timestamp-millis": "millis",
    "local-timestamp-millis": "millis",
    "timestamp-micros": "micros",
    "local-timestamp-micros": "micros",
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True, slots=True)
class RawEventTime:
    """The fast path: the event-time field decoded as its plain epoch long.

    fastavro spends about a third of a typical decode turning a timestamp-millis
    into a datetime that the extractor turns straight back into a number. When
    the event-time field is a timestamp-millis/micros (local-* too) reachable
    through inline records only, conforming events are decoded with `schema`:
    the contract with that one field's logical type dropped. Records then hold
    the raw long in that field (every other field keeps its logical type); the
    extractor divides it exactly as it would have converted the datetime, and
    `check` refuses the values the datetime conversion refused, so every verdict
    stays what it was.
    """

    names: tuple[str, ...]
    schema: Any  # fastavro-parsed contract, event-time field without its logicalType
    low: int
    high: int
    top: str | None = field(init=False, default=None)  # the field, when it is top-level

    def __post_init__(self) -> None:
        object.__setattr__(self, "top", self.names[0] if len(self.names) == 1 else None)

    def check(self, record: dict[str, Any]) -> bool:
        """False when the field holds a value no datetime can (a decode_error)."""
        value: Any = record
        for name in self.names:
            if type(value) is not dict:
                return True
            value = value.get(name)
        return type(value) is not int or self.low <= value <= self.high


def raw_event_time(contract: Contract, spec: str) -> RawEventTime | None:
    """The fast path for `spec` in `contract`, or None where it does not apply.

    Conservative: the path must run through inline record definitions that no
    field refers to by name (dropping the logical type there would change those
    fields too), and the leaf must be an inline timestamp-millis/micros long,
    optionally in a ["null", ...] union.
    """
    if spec == KAFKA_TIMESTAMP:
        return None
    names = tuple(spec.split("."))
    schema = copy.deepcopy(contract.schema)
    referenced = _named_references(schema)
    node: Any = schema
    holder: Any = None
    key: Any = None
    for name in names:
        if not isinstance(node, dict) or node.get("type") not in ("record", "error"):
            return None
        if node.get("name") in referenced or _fullname(node) in referenced:
            return None
        fields = [f for f in node.get("fields", []) if f.get("name") == name]
        if len(fields) != 1:
            return None
        holder, key = fields[0], "type"
        node = holder[key]
        if isinstance(node, list):
            branches = [i for i, b in enumerate(node) if b != "null"]
            if len(branches) != 1 or len(node) != 2:
                return None
            holder, key = node, branches[0]
            node = node[key]
    if not isinstance(node, dict) or node.get("type") != "long":
        return None
    unit = _RAW_LOGICAL.get(node.get("logicalType", ""))
    if unit is None:
        return None
    holder[key] = "long"
    low, high = _RAW_RANGES[unit]
    return RawEventTime(names, parse_schema(schema), low, high)


def _fullname(record: dict[str, Any]) -> str:
    name = str(record.get("name", ""))
    namespace = record.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def _named_references(schema: Any) -> set[str]:
    """Every type name used by reference (a bare string that is not a primitive)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node not in _PRIMITIVES:
                found.add(node)
                found.add(node.rsplit(".", 1)[-1])
        elif isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error"):
                for f in node.get("fields", []):
                    walk(f.get("type"))
            elif kind == "array":
                walk(node.get("items"))
            elif kind == "map":
                walk(node.get("values"))
            elif kind not in ("enum", "fixed"):
                walk(kind)

    walk(schema)
    return found


def timestamp_field(contract: Contract, candidates: Sequence[str]) -> str | None:
    """The first candidate path the contract has as a timestamp logical type, else None.

    Used for discovered topics: a field merely named like a time (a plain long, a
    string) is not trusted to be one; only a declared timestamp-* type is.
    """
    for spec in candidates:
        names = tuple(spec.split("."))
        if not all(names):
            continue
        try:
            leaf = _deref(_leaf_type(contract, names, spec), {})
        except ContractError:
            continue
        if isinstance(leaf, dict) and leaf.get("logicalType") in _DIVISORS:
            return spec
    return None
