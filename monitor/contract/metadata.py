"""Product settings a contract carries, and how they fill what the product config leaves out.

A team that registers its schema with Confluent data-contract `metadata.properties`
(or writes ODCS `customProperties`) can state the product's owner and objectives
next to the schema. Tidemark reads them as defaults: the product config wins
wherever both say something (`merge_settings`).

Property names. Confluent's own examples use `owner` and `email`; the rest live in
a `tidemark.` namespace so they cannot clash with other tools' properties:

    property                       product setting       accepted value
    owner                          owner                 letters, digits, '_', '.', '-'
    email | owner_email            owner_email           an address with one '@'
    tier                           tier                  letters, digits, '_', '.', '-'
    description                    description           any text
    tidemark.event_time            event_time            a field path such as created_at
    tidemark.freshness.threshold   freshness.threshold   a duration: 300, "90s", "5m", "1h30m"
    tidemark.freshness.target      freshness.target      a ratio in (0, 1): "0.99" or "99%"
    tidemark.conformance.target    conformance.target    as above
    tidemark.correctness.target    correctness.target    as above

`owner_email` and `correctness` are not ProductConfig fields yet: whoever merges
these settings into a product must add them (or drop them) first.
An unknown `tidemark.*` name is an error, since a typo would otherwise be ignored
without a word; names outside the namespace belong to other tools and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.durations import parse_duration
from monitor.errors import ContractError

NAMESPACE = "tidemark."
# Same rule as the product config: these values become metric labels.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_TEXT = 1000  # a description is shown in logs and the catalogue, not a document


def _label(value: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(
            "must start with a letter or digit and use only letters, digits, '_', '.' "
            "and '-' (it becomes a metric label)"
        )
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not an e-mail address (expected one '@' and no spaces)")
    return value


def _text(value: str) -> str:
    if len(value) > _MAX_TEXT:
        raise ValueError(f"is longer than {_MAX_TEXT} characters")
    return value


def _field(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("must be a field path such as created_at or header.ts, without spaces")
    return value


def _threshold(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def parse_ratio(value: str) -> float:
    """A target such as "0.99" or "99%"; strictly between 0 and 1 like the config's targets."""
    text = value.strip()
    try:
        # round: "99.9%" is 0.999, not 0.9990000000000001, in logs and the merged config
        ratio = round(float(text[:-1]) / 100, 12) if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(
            "is not a number; use a ratio such as 0.99 or a percentage such as 99%"
        ) from None
    if not 0.0 < ratio < 1.0:
        raise ValueError(
            "must be strictly between 0 and 1 (a ratio such as 0.99, or a percentage such as 99.9%)"
        )
    return ratio


# property name -> (path in the product settings, parser)
PROPERTIES: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
    "owner": (("owner",), _label),
    "email": (("owner_email",), _email),
    "owner_email": (("owner_email",), _email),
    "tier": (("tier",), _label),
    "description": (("description",), _text),
    "tidemark.event_time": (("event_time",), _field),
    "tidemark.freshness.threshold": (("freshness", "threshold"), _threshold),
    "tidemark.freshness.target": (("freshness", "target"), parse_ratio),
    "tidemark.conformance.target": (("conformance", "target"), parse_ratio),
    "tidemark.correctness.target": (("correctness", "target"), parse_ratio),
}


def settings_from_properties(properties: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Partial product settings from contract properties; ContractError names `where`.

    `where` says whose properties these are, e.g. "subject shop.orders.v1-value
    version 3" or "odcs orders.odcs.yaml customProperties".
    """
    out: dict[str, Any] = {}
    seen: dict[tuple[str, ...], str] = {}
    for name in sorted(properties):
        raw = properties[name]
        spec = PROPERTIES.get(name)
        if spec is None:
            if name.startswith(NAMESPACE):
                known = ", ".join(n for n in PROPERTIES if n.startswith(NAMESPACE))
                raise ContractError(
                    f"{where}: metadata property {name!r} is not one Tidemark knows; "
                    f"the {NAMESPACE}* properties are: {known}"
                )
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ContractError(
                f"{where}: metadata property {name!r} must be a string or a number, "
                f"got {type(raw).__name__}"
            )
        path, parse = spec
        try:
            value = parse(str(raw).strip())
        except ValueError as exc:
            raise ContractError(f"{where}: metadata property {name!r} = {raw!r} {exc}") from None
        if path in seen and _get(out, path) != value:
            raise ContractError(
                f"{where}: metadata properties {seen[path]!r} and {name!r} both set "
                f"{'.'.join(path)} but disagree; keep one"
            )
        seen[path] = name
        _put(out, path, value)
    return out


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        node = node[key]
    return node


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


@dataclass(frozen=True, slots=True)
class Merged:
    settings: dict[str, Any]
    filled: tuple[str, ...]  # dotted paths that came from a contract, for the start-up log


def merge_settings(config: Mapping[str, Any], *contract: Mapping[str, Any]) -> Merged:
    """The product config, with gaps filled from contract settings (earlier sources first).

    Config wins where both say something; nested mappings (freshness, conformance...)
    are merged key by key, so a config that sets only `freshness.target` still takes
    the contract's `freshness.threshold`. A key present with a null value counts as
    not said (YAML's `description:` with nothing after it). Inputs are not modified.
    """
    filled: list[str] = []

    def merge(base: Mapping[str, Any], extra: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {k: v for k, v in base.items()}
        for key, value in extra.items():
            current = out.get(key)
            if current is None:
                out[key] = _copy(value)
                filled.extend(_leaves(value, f"{prefix}{key}"))
            elif isinstance(current, Mapping) and isinstance(value, Mapping):
                out[key] = merge(current, value, f"{prefix}{key}.")
        return out

    settings = dict(config)
    for source in contract:
        settings = merge(settings, source, "")
    return Merged(settings, tuple(filled))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _leaves(value: Any, path: str) -> list[str]:
    if isinstance(value, Mapping):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    return [path]
