"""Avro schema compatibility, decided by the `avro` package's own checker.

We never hand-write resolution rules: `avro.compatibility` implements the
spec's reader/writer rules and this module only turns its result into reasons
a person can act on (which field, what is wrong).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

Mode = Literal["backward", "forward", "full"]
AvroJson = dict[str, Any] | str | list[Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _Checker(ReaderWriterCompatibilityChecker):
    """The library's checker, keeping locations absolute.

    Upstream restarts the location at "/" when it compares against each branch
    of a writer union, so a nested problem would point at the wrong field.
    Passing the parent location down keeps reasons pointing where they belong.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._where: list[list[str]] = []

    def get_compatibility(
        self,
        reader: Any,
        writer: Any,
        reference_token: str = "/",  # noqa: S107 - a JSON-pointer token, not a secret
        location: list[str] | None = None,
    ) -> Any:
        if location is None and self._where and self._where[-1]:
            parent = self._where[-1]
            location, reference_token = parent[:-1], parent[-1]
        return super().get_compatibility(reader, writer, reference_token, location)

    def calculate_compatibility(self, reader: Any, writer: Any, location: list[str]) -> Any:
        self._where.append(location)
        try:
            return super().calculate_compatibility(reader, writer, location)
        finally:
            self._where.pop()


def parse_avro(schema: AvroJson) -> Any:
    """Parse with the `avro` package; its errors propagate.

    Logical types do not matter to compatibility, so the package's warnings about
    ones it does not know (local-timestamp-*) are noise here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
        return avro.schema.parse(json.dumps(schema))


def incompatibilities(reader: AvroJson, writer: AvroJson) -> tuple[str, ...]:
    """Reasons why `reader` cannot read data written with `writer`; () if it can."""
    try:
        reader_avro, writer_avro = parse_avro(reader), parse_avro(writer)
    except Exception as exc:  # avro raises several unrelated types for bad schemas
        return (f"schema rejected by the avro library: {exc}",)
    result = _Checker().get_compatibility(reader_avro, writer_avro)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return ()
    return _reasons(reader, set(result.messages), set(result.locations))


# --- turning (messages, locations) into readable reasons --------------------
# The checker reports messages and locations as two unordered sets, so we pair
# them by kind: each kind of incompatibility has a recognisable location suffix
# and message shape. When a kind occurs more than once the pairing is listed.

_KINDS = ("missing_default", "enum", "name", "size", "type")


def _kind_of_location(loc: str) -> str:
    last = loc.rsplit("/", 1)[-1]
    if last == "symbols":
        return "enum"
    if last in ("name", "size"):
        return last
    parts = loc.strip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "fields" and parts[-1].isdigit():
        return "missing_default"
    return "type"


def _kind_of_message(msg: str) -> str:
    if msg.startswith("{"):
        return "enum"
    if msg.startswith("expected: ") and ", found: " in msg:
        return "size"
    if msg.startswith("expected: "):
        return "name"
    if msg.startswith("reader "):
        return "type"
    return "missing_default"


def _text(kind: str, msg: str) -> str:
    if kind == "enum":
        return f"reader enum lacks writer symbol(s) {msg} and has no enum default"
    if kind == "name":
        return (
            f"name differs: the writer's is {msg.removeprefix('expected: ')} (if this is a "
            "rename, list the old name in the reader's aliases)"
        )
    if kind == "size":
        writer, _, reader = msg.removeprefix("expected: ").partition(", found: ")
        return f"fixed size differs: writer {writer}, reader {reader}"
    return msg


def _reader_type_in(msg: str) -> str:
    """'reader type: long not compatible ...' -> 'long'; union messages -> 'union'."""
    if msg.startswith("reader union"):
        return "union"
    return msg.removeprefix("reader type: ").partition(" ")[0]


def _reasons(reader: AvroJson, messages: set[str], locations: set[str]) -> tuple[str, ...]:
    if len(locations) > 1:
        locations.discard("/")  # upstream leaves the root marker in merged results
    by_kind: dict[str, tuple[list[str], list[tuple[str, str]]]] = {k: ([], []) for k in _KINDS}
    for msg in sorted(messages):
        by_kind[_kind_of_message(msg)][0].append(msg)
    for loc in sorted(locations):
        by_kind[_kind_of_location(loc)][1].append(_describe(reader, loc))
    out: list[str] = []
    for kind in _KINDS:
        msgs, where = by_kind[kind]
        if kind == "missing_default":
            out.extend(
                f"{w}: field is absent from the writer schema and has no default in the reader"
                for w, _ in where
            )
            continue
        if kind == "type" and len(msgs) > 1:
            msgs, where = _pair_by_reader_type(msgs, where, out)
        if msgs or where:
            what = "; ".join(_text(kind, m) for m in msgs) or kind
            out.append(f"{', '.join(w for w, _ in where) or '(unknown location)'}: {what}")
    return tuple(out)


def _pair_by_reader_type(
    msgs: list[str], where: list[tuple[str, str]], out: list[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Pair type messages with the one location whose reader type they name."""
    left_msgs, left_where = list(msgs), list(where)
    for msg in msgs:
        matches = [w for w in left_where if w[1] == _reader_type_in(msg)]
        if len(matches) == 1 and sum(_reader_type_in(m) == matches[0][1] for m in msgs) == 1:
            out.append(f"{matches[0][0]}: {msg}")
            left_msgs.remove(msg)
            left_where.remove(matches[0])
    return left_msgs, left_where


def _describe(reader: AvroJson, loc: str) -> tuple[str, str]:
    """'/fields/0/type/fields/1/type' -> ('header.seq (/fields/...)', reader type there)."""
    found = _field_path(reader, [t for t in loc.split("/") if t])
    if found is None:
        return loc, ""
    path, node = found
    where = f"{path} ({loc})" if path else f"top level ({loc})"
    return where, _type_name(node)


def _type_name(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        return _type_name(node.get("type"))
    return str(node)


def _field_path(schema: AvroJson, tokens: list[str]) -> tuple[str, Any] | None:
    named: dict[str, Any] = {}
    _collect_named(schema, named)
    node: Any = schema
    names: list[str] = []
    i = 0
    while i < len(tokens):
        node = _unwrap(node, named)
        tok = tokens[i]
        if tok == "fields" and i + 1 < len(tokens) and isinstance(node, dict):
            fields = node.get("fields", [])
            idx = int(tokens[i + 1]) if tokens[i + 1].isdigit() else -1
            if not 0 <= idx < len(fields):
                return None
            names.append(str(fields[idx]["name"]))
            node = fields[idx]
            i += 2
        elif tok in ("type", "items", "values") and isinstance(node, dict):
            node = node.get(tok)
            if tok != "type":
                names.append("[]" if tok == "items" else "{}")
            i += 1
        elif tok in ("symbols", "name", "size") and i == len(tokens) - 1:
            i += 1
        else:
            return None  # e.g. a writer-union branch index: not a reader path
    if isinstance(node, str) and node not in _PRIMITIVES:
        node = named.get(node, node)
    return ".".join(names), node


def _unwrap(node: Any, named: dict[str, Any]) -> Any:
    """Follow a named-type reference; a nullable union stands for its one branch."""
    if isinstance(node, list):
        others = [b for b in node if b != "null"]
        node = others[0] if len(others) == 1 else node
    if isinstance(node, str) and node not in _PRIMITIVES:
        return named.get(node, node)
    return node


def _collect_named(node: Any, named: dict[str, Any], namespace: str = "") -> None:
    if isinstance(node, list):
        for branch in node:
            _collect_named(branch, named, namespace)
    elif isinstance(node, dict):
        if isinstance(node.get("type"), dict | list):  # a field, or a type wrapping one
            _collect_named(node["type"], named, namespace)
        if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
            ns = node.get("namespace", namespace)
            name = str(node["name"])
            full = name if "." in name or not ns else f"{ns}.{name}"
            named[full] = named[name] = node
            namespace = full.rpartition(".")[0]
        for field in node.get("fields", []) if node.get("type") in ("record", "error") else []:
            _collect_named(field, named, namespace)
        for key in ("items", "values"):
            if key in node:
                _collect_named(node[key], named, namespace)


@dataclass(frozen=True, slots=True)
class CompatibilityReport:
    compatible: bool
    mode: Mode
    reasons: tuple[str, ...]


def check_compatibility(old: AvroJson, new: AvroJson, mode: Mode) -> CompatibilityReport:
    """backward: new reads old data; forward: old reads new data; full: both."""
    if mode not in ("backward", "forward", "full"):
        raise ValueError(f"unknown compatibility mode {mode!r}; use backward, forward or full")
    reasons: list[str] = []
    if mode in ("backward", "full"):
        prefix = "backward (new schema reading old data): " if mode == "full" else ""
        reasons.extend(prefix + r for r in incompatibilities(new, old))
    if mode in ("forward", "full"):
        prefix = "forward (old schema reading new data): " if mode == "full" else ""
        reasons.extend(prefix + r for r in incompatibilities(old, new))
    return CompatibilityReport(compatible=not reasons, mode=mode, reasons=tuple(reasons))


_MEANING = {
    "backward": "readers using the new schema can read data written with the old one",
    "forward": "readers using the old schema can read data written with the new one",
    "full": "old and new schemas can each read data written with the other",
}


def format_report(report: CompatibilityReport) -> str:
    """Text for `tidemark compat`: verdict line, then one reason per line."""
    if report.compatible:
        return f"COMPATIBLE ({report.mode}): {_MEANING[report.mode]}."
    lines = [f"INCOMPATIBLE ({report.mode}): it is not true that {_MEANING[report.mode]}."]
    lines.extend(f"  - {reason}" for reason in report.reasons)
    return "\n".join(lines)
