"""Schema shapes that let a few hostile bytes cost unbounded time, memory or stack.

Why: Avro decoding is driven by the writer schema, and two shapes break the rule that
decoding work is bounded by the payload's length:

- an array whose items encode in zero bytes (null, fixed of size 0, records whose
  fields are all zero-byte): a block count of 2**62 takes 9 bytes and makes the reader
  build 2**62 items (a 12-byte event took 7.6 GB and 36 s). Such contracts and writer
  schemas are refused (an array of nothing carries only its length; nobody needs it).
  A map is not such a shape: every entry has a string key of at least one byte.
- a named type that contains itself (a tree, a linked list): nesting depth is bounded
  only by the payload, and fastavro's compiled reader recurses on the C stack, so ~5000
  levels (10 KB) crash the process. Such schemas are legitimate; the decoder reads them
  with fastavro's pure-Python reader, which stops at Python's recursion limit instead.
- a record that contains itself through record fields alone (no union, array or map
  on the way): every value would contain another, so none can be written, and reading
  one recurses without consuming bytes: one byte crashed the process. Refused.

Both checks walk fastavro's *parsed* form (names fully qualified, named types listed
under __named_schemas), once per contract or writer schema, never per event.
"""

from __future__ import annotations

from typing import Any

_PRIMITIVE = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))


def _named(parsed: Any) -> dict[str, Any]:
    named = parsed.get("__named_schemas") if isinstance(parsed, dict) else None
    return dict(named) if isinstance(named, dict) else {}


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Walker:
    def __init__(self, parsed: Any) -> None:
        self.named = _named(parsed)
        self.zero: dict[str, bool] = {}  # record name -> encodes in zero bytes
        self.walked: set[str] = set()  # named types already walked (each once)
        self.problems: list[str] = []
        self.recursive = False

    def resolve(self, node: Any) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVE:
            return self.named.get(node, node)
        return node

    def zero_bytes(self, node: Any, visiting: frozenset[str] = frozenset()) -> bool:
        """True if some value of this type is encoded in zero bytes."""
        node = self.resolve(node)
        if isinstance(node, str):
            return node == "null"
        if not isinstance(node, dict):  # a union always writes its branch index
            return False
        kind = node.get("type")
        if kind == "fixed":
            return node.get("size") == 0
        if kind in ("record", "error"):
            name = str(node.get("name", ""))
            if name in self.zero:
                return self.zero[name]
            if name in visiting:  # contains itself: only a union or array can end it
                return False
            inner = visiting | {name}
            result = all(self.zero_bytes(f.get("type"), inner) for f in node.get("fields", []))
            self.zero[name] = result
            return result
        return kind == "null"  # a primitive written as {"type": ...}, e.g. a logical type

    def walk(self, node: Any, path: str, stack: tuple[str, ...]) -> None:
        if isinstance(node, str):
            if node in _PRIMITIVE:
                return
            if node in stack:
                self.recursive = True
                return
            if node in self.walked or node not in self.named:
                return
            node = self.named[node]
        if isinstance(node, list):
            for branch in node:
                self.walk(branch, path, stack)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind in ("record", "error"):
            name = str(node.get("name", ""))
            if name in stack:
                self.recursive = True
                return
            self.walked.add(name)
            for f in node.get("fields", []):
                self.walk(f.get("type"), f"{path}.{f.get('name')}", (*stack, name))
        elif kind == "array":
            items = node.get("items")
            if self.zero_bytes(items):
                self.problems.append(
                    f"{path}[]: array of {_describe(self.resolve(items))} items can encode "
                    "unbounded elements in zero bytes (a few bytes would make the decoder "
                    "build billions of items)"
                )
            self.walk(items, f"{path}[]", stack)
        elif kind == "map":
            self.walk(node.get("values"), f"{path}{{}}", stack)
        elif isinstance(kind, dict | list):
            self.walk(kind, path, stack)


def _describe(node: Any) -> str:
    if isinstance(node, str):
        return node
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "fixed":
        return f"zero-size fixed {_short(str(node.get('name', '')))}"
    if kind in ("record", "error"):
        empty = not node.get("fields")
        return f"{'empty' if empty else 'zero-byte'} record {_short(str(node.get('name', '')))}"
    return str(kind)


def _analyse(parsed: Any) -> _Walker:
    walker = _Walker(parsed)
    name = parsed.get("name") if isinstance(parsed, dict) else None
    walker.walk(parsed, _short(str(name)) if name else "<root>", ())
    return walker


def unbounded_shapes(parsed: Any) -> list[str]:
    """Why decoding this schema is unbounded, one message each, naming the field path:
    arrays of zero-byte items and records that contain themselves unconditionally."""
    return _analyse(parsed).problems + _infinite_records(parsed)


def _direct_records(node: Any, named: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(record name, field path) for the records a value of `node` always contains."""
    if isinstance(node, str):
        target = named.get(node)
        if isinstance(target, dict) and target.get("type") in ("record", "error"):
            return [(node, path)]
        return []
    if not isinstance(node, dict):  # a union: a branch index, and maybe no record at all
        return []
    kind = node.get("type")
    if kind in ("record", "error"):
        return [(str(node.get("name", "")), path)]
    if isinstance(kind, dict | str) and kind not in ("array", "map"):
        return _direct_records(kind, named, path) if isinstance(kind, dict) else []
    return []  # arrays and maps may be empty


def _infinite_records(parsed: Any) -> list[str]:
    named = _named(parsed)
    edges: dict[str, list[tuple[str, str]]] = {}
    for name, node in named.items():
        if isinstance(node, dict) and node.get("type") in ("record", "error"):
            edges[name] = [
                hit
                for f in node.get("fields", [])
                for hit in _direct_records(f.get("type"), named, f"{_short(name)}.{f.get('name')}")
            ]
    problems: list[str] = []
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in done:
            return
        stack.append(name)
        for target, path in edges.get(name, []):
            if target in stack:
                problems.append(
                    f"{path}: record {_short(target)} contains itself in every value (no "
                    "union, array or map breaks the cycle), so no value can be written and "
                    "reading one would recurse forever"
                )
            else:
                visit(target, stack)
        stack.pop()
        done.add(name)

    for name in edges:
        visit(name, [])
    return problems


def is_recursive(parsed: Any) -> bool:
    """True if a named type can contain itself (nesting depth bounded only by the bytes)."""
    return _analyse(parsed).recursive


def without_bytes_decimals(parsed: Any) -> Any:
    """The parsed schema with `decimal` dropped from `bytes` types (a copy; or as is).

    Why: fastavro turns a bytes decimal into a Decimal of as many digits as the bytes
    hold, whatever the declared precision, and the conversion is quadratic: 100 KB took
    1 s, 1 MiB ~100 s. Tidemark reads only the event time, producer and sequence fields
    (never decimals), so decimals stay raw bytes. Fixed decimals are bounded by their size.
    """

    def has(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "bytes" and node.get("logicalType") == "decimal":
                return True
            return any(has(v) for v in node.values())
        if isinstance(node, list):
            return any(has(v) for v in node)
        return False

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strip(v) for k, v in node.items()}
            if out.get("type") == "bytes" and out.get("logicalType") == "decimal":
                for key in ("logicalType", "precision", "scale"):
                    out.pop(key, None)
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(parsed) if has(parsed) else parsed
