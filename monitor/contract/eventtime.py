"""Event time of a decoded record, as float epoch seconds.

The field path is resolved against the contract once, at start-up, so a typo
or an unusable type fails loudly before any event is read, and the per-event
function does no string work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

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
        return _kafka_timestamp
    names = tuple(spec.split("."))
    if not spec or not all(names):
        raise ContractError(
            f"event time {spec!r} for contract {contract.path}: expected a dotted field path "
            f'such as "occurred_at" or "header.event_time", or "{KAFKA_TIMESTAMP}"'
        )
    convert = _converter(_leaf_type(contract, names, spec), contract, spec)
    return _path_extractor(names, convert)


def _kafka_timestamp(record: dict[str, Any], timestamp_ms: int) -> float | None:
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
