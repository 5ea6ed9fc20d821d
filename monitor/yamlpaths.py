"""Where a key is in a YAML file: its line, and its path written the way users read it.

Why shared: the config loader and the ODCS reader both point at `file:line: a.b[2].c`
in their errors; one walker keeps them pointing the same way.
"""

from __future__ import annotations

import yaml

KeyPath = tuple[str | int, ...]


def line_index(text: str) -> dict[KeyPath, int]:
    """Map each key path in the YAML document to its 1-based line ({} if it does not parse)."""
    lines: dict[KeyPath, int] = {}

    def walk(node: yaml.Node, path: KeyPath) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def dotted(path: KeyPath) -> str:
    """("products", 0, "name") -> "products[0].name"."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, else of its nearest parent that has one."""
    return next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
