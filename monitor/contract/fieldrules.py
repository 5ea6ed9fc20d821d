"""CEL_FIELD rules: one CEL condition checked against every primitive field of a record.

Mirrors confluent-kafka's Avro field walk (`common/avro.py` `transform`) and
`CelFieldExecutor`: fields are visited in schema order, depth first through
nested records and union branches; only primitive fields (INT, LONG, FLOAT,
DOUBLE, BOOLEAN, NULL, STRING, BYTES, logical types included) reach the rule;
a rule with `tags` only sees fields carrying one of them (inline
`confluent:tags` or the schema metadata's `tags`, whose keys are wildcards over
`namespace.Record.field`). The rule sees `value`, `name`, `fullName`,
`typeName` (the branch actually taken: a null in a nullable string is `NULL`),
`tags` and `message` (the record holding the field). The first field whose
result is false makes the rule a violation, the first that errors an error.

One deliberate difference from confluent-kafka's walk: array items and map
values are checked and a false one is a violation; Confluent's clients evaluate
them too but only fail a message on a false *field* result, and the result for
an array is a list, so they never fail on an item
(tests/unit/contract/test_rules_confluent.py pins this).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.schema_registry.wildcard_matcher import wildcard_match
from fastavro import parse_schema

from monitor.contract.cel import CelEvalError, Program, now, referenced_keys, to_cel

_PRIMITIVES = {
    "null": "NULL",
    "boolean": "BOOLEAN",
    "int": "INT",
    "long": "LONG",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "STRING",
    "bytes": "BYTES",
}
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(slots=True)
class _Node:
    """One schema position: kind is record, array, map, union, enum, fixed or a primitive."""

    kind: str
    logical: str | None = None
    fields: list[_Field] = field(default_factory=list)
    items: _Node | None = None  # array items, map values
    branches: list[_Node] = field(default_factory=list)
    symbols: frozenset[str] = frozenset()
    size: int = 0

    @property
    def type_name(self) -> str:
        return _PRIMITIVES.get(self.kind, self.kind.upper())


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    full_name: str
    tags: tuple[str, ...]
    node: _Node


class FieldPlan:
    """The contract's fields with their tags, built once; walked per event."""

    def __init__(self, schema: Any, metadata_tags: Mapping[str, Iterable[str]] | None) -> None:
        self._named: dict[str, _Node] = {}
        self._metadata = {k: tuple(v) for k, v in (metadata_tags or {}).items()}
        self.root = self._node(parse_schema(schema, _write_hint=False))

    def _node(self, schema: Any) -> _Node:
        if isinstance(schema, list):
            return _Node("union", branches=[self._node(b) for b in schema])
        if isinstance(schema, str):
            return self._named[schema] if schema in self._named else _Node(schema)
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return self._node(kind)
        if kind == "record":
            node = _Node("record")
            self._named[schema["name"]] = node  # before the fields: records may recurse
            for spec in schema["fields"]:
                full = f"{schema['name']}.{spec['name']}"
                tags = set(spec.get("confluent:tags", ()))
                for pattern, extra in self._metadata.items():
                    if wildcard_match(full, pattern):
                        tags.update(extra)
                node.fields.append(
                    _Field(spec["name"], full, tuple(sorted(tags)), self._node(spec["type"]))
                )
            return node
        if kind in ("array", "map"):
            return _Node(kind, items=self._node(schema["items" if kind == "array" else "values"]))
        if kind == "enum":
            node = _Node("enum", symbols=frozenset(schema["symbols"]))
        elif kind == "fixed":
            node = _Node("fixed", size=schema["size"], logical=schema.get("logicalType"))
        else:
            node = _Node(kind, logical=schema.get("logicalType"))
        if "name" in schema:
            self._named[schema["name"]] = node
        return node

    def leaves(
        self, record: Any, rule_tags: frozenset[str]
    ) -> Iterator[tuple[_Field, str, Any, Any]]:
        """(field, typeName, value, containing record) for each primitive field a rule sees."""
        yield from self._walk_record(self.root, record, rule_tags)

    def _walk_record(
        self, node: _Node, record: Any, rule_tags: frozenset[str]
    ) -> Iterator[tuple[_Field, str, Any, Any]]:
        if not isinstance(record, dict):
            return
        for spec in node.fields:
            if spec.name in record:
                yield from self._walk(spec, spec.node, record[spec.name], record, rule_tags)

    def _walk(
        self, spec: _Field, node: _Node, value: Any, holder: Any, rule_tags: frozenset[str]
    ) -> Iterator[tuple[_Field, str, Any, Any]]:
        kind = node.kind
        if kind == "union":
            branch = _branch(node, value)
            if branch is not None:
                yield from self._walk(spec, branch, value, holder, rule_tags)
        elif kind == "record":
            yield from self._walk_record(node, value, rule_tags)
        elif kind == "array":
            if isinstance(value, list) and node.items is not None:
                for item in value:
                    yield from self._walk(spec, node.items, item, holder, rule_tags)
        elif kind == "map":
            if isinstance(value, dict) and node.items is not None:
                for item in value.values():
                    yield from self._walk(spec, node.items, item, holder, rule_tags)
        elif kind in _PRIMITIVES and (not rule_tags or not rule_tags.isdisjoint(spec.tags)):
            yield spec, node.type_name, value, holder


def _branch(union: _Node, value: Any) -> _Node | None:
    """The first branch that accepts the value, as fastavro's validate decides it."""
    for branch in union.branches:
        if _accepts(branch, value):
            return branch
    return None


def _accepts(node: _Node, value: Any) -> bool:
    kind = node.kind
    if kind == "null":
        return value is None
    if value is None:
        return False
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        if node.logical is not None and not isinstance(value, int):
            return not isinstance(value, (str, bytes, dict, list, float))
        low, high = _INT32 if kind == "int" else _INT64
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str) or node.logical == "uuid"
    if kind == "bytes":
        return isinstance(value, bytes) or node.logical == "decimal"
    if kind == "fixed":
        return (isinstance(value, bytes) and len(value) == node.size) or node.logical == "decimal"
    if kind == "enum":
        return isinstance(value, str) and value in node.symbols
    if kind == "array":
        return isinstance(value, list)
    if kind == "map":
        return isinstance(value, dict)
    if kind == "record":
        return isinstance(value, dict) and all(f.name in value for f in node.fields)
    return False


class FieldCheck:
    """One compiled CEL_FIELD rule: run the program on each leaf, stop at the first non-pass."""

    __slots__ = ("_keys", "_plan", "_program", "_tags")

    def __init__(self, program: Program, plan: FieldPlan, tags: Iterable[str]) -> None:
        self._program = program
        self._plan = plan
        self._tags = frozenset(tags)
        self._keys = referenced_keys(program.source)  # of `message`, the holding record

    def check(self, record: Any) -> bool:
        """True when every field passes; False at the first that fails; CelEvalError otherwise."""
        converted: dict[int, Any] = {}
        at = now() if self._program.uses_now else None
        for spec, type_name, value, holder in self._plan.leaves(record, self._tags):
            message = converted.get(id(holder))  # holders live as long as the record
            if message is None:
                keys = self._keys
                if keys is not None and type(holder) is dict:
                    message = to_cel({k: holder[k] for k in keys if k in holder})
                else:
                    message = to_cel(holder)
                converted[id(holder)] = message
            bound = {
                "value": to_cel(value),
                "fullName": spec.full_name,
                "name": spec.name,
                "typeName": type_name,
                "tags": list(spec.tags),
                "message": message,
            }
            if at is not None:
                bound["now"] = at
            activation = self._program.activation(bound)
            try:
                if not self._program.check(activation):
                    return False
            except CelEvalError as exc:
                raise CelEvalError(f"field {spec.full_name}: {exc}") from None
        return True
