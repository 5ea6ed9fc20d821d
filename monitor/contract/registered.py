"""Registry rules in one shape, whichever form they arrive in, and which of them are checks.

Accepts a `ruleSet` as the REST API returns it (`domainRules`, `migrationRules`,
`encodingRules`, `enableAt`), a list of rule dicts, or confluent-kafka's
`RuleSet` / `Rule` models. Only domain rules can be checks; migration and
encoding rules, and every rule of a set whose enableAt excludes clients, come
back marked so that why_not() reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import RuleSet

# Tidemark checks on the stream both what producers promised (WRITE: their
# serializers enforce it, but not every client runs them) and what consumers
# require (READ). UPGRADE/DOWNGRADE/UPDOWN belong to migrations between versions.
_CHECK_MODES: Final = frozenset({"WRITE", "READ", "WRITEREAD"})


@dataclass(frozen=True, slots=True)
class Registered:
    """A registry rule as the REST API spells it, whichever form it arrived in."""

    name: str
    kind: str | None
    mode: str | None
    type: str | None
    expr: str | None
    tags: tuple[str, ...]
    disabled: bool
    set_aside: str | None = None  # why the rule set itself keeps it from being a check


def cel_rule_set(rules: Iterable[tuple[str, str]], mode: str = "WRITEREAD") -> RuleSet:
    """confluent-kafka's RuleSet of CEL CONDITION domain rules, one per (name, expr).

    How a team registers checks with its schema; the demo, the bench and the tests
    register theirs through this one builder so they all register the same shape.
    """
    from confluent_kafka.schema_registry import Rule, RuleKind, RuleMode, RuleSet

    return RuleSet(
        migration_rules=None,
        domain_rules=[
            Rule(
                name=name,
                doc=None,
                kind=RuleKind.CONDITION,
                mode=RuleMode(mode),
                type="CEL",
                tags=None,
                params=None,
                expr=expr,
                on_success=None,
                on_failure="ERROR",
                disabled=False,
            )
            for name, expr in rules
        ],
    )


def why_not(rule: Registered) -> str | None:
    """Why a registry rule is not evaluated on the stream, or None when it is."""
    if rule.set_aside is not None:
        return rule.set_aside
    if rule.disabled:
        return "disabled in the registry"
    if rule.kind != "CONDITION":
        return f"kind {rule.kind}: only CONDITION rules are checks (TRANSFORM rules rewrite data)"
    if rule.type not in ("CEL", "CEL_FIELD"):
        return f"type {rule.type}: only CEL and CEL_FIELD conditions are evaluated"
    if rule.mode not in _CHECK_MODES:
        return f"mode {rule.mode}: a migration rule, run only when a client changes versions"
    if not (rule.expr or "").strip():
        return "no expression"
    return None


def registered(rules: Any) -> list[Registered]:
    """Normalise registry rules; a whole RuleSet's migration and encoding rules become skipped."""
    if rules is None:
        return []
    if isinstance(rules, Mapping):  # the REST `ruleSet` object
        return _from_set(
            rules.get("domainRules"),
            rules.get("migrationRules"),
            rules.get("encodingRules"),
            rules.get("enableAt"),
        )
    if hasattr(rules, "domain_rules"):  # confluent_kafka.schema_registry.RuleSet
        return _from_set(
            rules.domain_rules,
            rules.migration_rules,
            getattr(rules, "encoding_rules", None),
            getattr(rules, "enable_at", None),
        )
    return [_one(rule, i) for i, rule in enumerate(rules)]


def _from_set(domain: Any, migration: Any, encoding: Any, enable_at: Any) -> list[Registered]:
    out = [_one(rule, i) for i, rule in enumerate(domain or [])]
    if enable_at not in (None, "ALL", "CLIENT"):
        why = f"the rule set has enableAt {enable_at}: its rules do not run in clients"
        out = [replace(r, set_aside=why) for r in out]
    why = "a migration rule: it converts between schema versions, it is not a check"
    out += [replace(_one(r, i), set_aside=why) for i, r in enumerate(migration or [])]
    why = "an encoding rule: it runs on the serialized bytes, it is not a check"
    out += [replace(_one(r, i), set_aside=why) for i, r in enumerate(encoding or [])]
    return out


def _one(rule: Any, position: int) -> Registered:
    data = rule if isinstance(rule, Mapping) else rule.to_dict()
    return Registered(
        name=str(data.get("name") or f"unnamed_rule_{position}"),
        kind=_upper(data.get("kind")),
        mode=_upper(data.get("mode")),
        type=_upper(data.get("type")),
        expr=data.get("expr"),
        tags=tuple(data.get("tags") or ()),
        disabled=bool(data.get("disabled")),
    )


def _upper(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).upper()
