"""Correctness rules: compile a product's checks once, then judge each decoded event.

API (everything the pipeline needs):

    compiled = compile_rules(config_rules, registered_rules, schema=contract.schema)
    compiled.names           # rule names, in order: pre-create each metric series at 0
    compiled.not_evaluated   # (name, reason) for registered rules that are not checks
    outcome = compiled.evaluate(record)          # never raises
    outcome.all_passed                           # the common case, one comparison
    for name, verdict in outcome: ...            # RuleVerdict.PASS / VIOLATION / ERROR
    outcome.errors           # {name: engine message} for the ERROR verdicts (do not log per event)
    sample = Sampler(0.1); if sample(partition, offset): ...   # same events on every replica

`config_rules` are RuleConfig (ruleconfig.py: cel, not_null, allowed_values,
pattern, range). `registered_rules` are the schema registry's
`ruleSet.domainRules`, as the REST API returns them (a list of dicts, or the
whole `ruleSet` dict) or as confluent-kafka models them (`RuleSet`, `Rule`).
compile_rules raises RuleError naming the rule and the line:column of a compile
error in a config rule. A registered rule is evaluated when it is a CONDITION of
type CEL or CEL_FIELD whose mode runs on read (READ, WRITEREAD) and is not
disabled; every other registered rule (TRANSFORM, JSONATA, ENCRYPT, WRITE-only,
migration rules, disabled, or not compiling in this engine) is returned in
`not_evaluated` with the reason, so the caller can report it once.

Semantics follow confluent-kafka's CEL executors (`rules/cel`): a CEL rule sees
the record as `message` (and `now`, the evaluation time); `guard ; expr` checks
expr only where guard holds; a CEL_FIELD rule runs per primitive field
(fieldrules.py). tests/unit/contract/test_rules_confluent.py runs Confluent's
own AvroDeserializer side by side. Where a Confluent client would fail the
message, Tidemark counts:

    Confluent                                   Tidemark
    passes                                      PASS
    RuleConditionError (the rule was false)     VIOLATION, whatever onFailure says
                                                (NONE and DLQ too: the data is wrong)
    any other exception (CELEvalError: missing  ERROR, with the engine's message
      field, wrong type, null operand)

Differences, all on purpose: a non-boolean result is an ERROR here where
Confluent takes its truthiness; a guard must be a boolean; comparing a value
with null is false per the CEL spec where celpy raises; a Decimal is a CEL
double here where Confluent's Python client has no binding; a false array item
or map value in a CEL_FIELD rule is a VIOLATION here where Confluent never
fails on one. Confluent's extra string checks (isEmail, isHostname, isIpv4,
isIpv6, isUri, isUriRef, isUuid) are provided (celfuncs.py); its format,
decimal, timestamp and variant functions are not: registered rules using them
do not compile and are reported in not_evaluated (a config rule that does not
compile raises RuleError).

Evaluation cost: the Python short forms run first, with the CEL rules that are a
single comparison of a field with a literal (celfast.py: decided in Python where the
field's type is the literal's, by the engine otherwise); all other CEL rules of a product
are then evaluated as one list expression, one engine call per event whether
the rules pass or fail; only when some rule errors (CEL cannot catch an error
inside the list) is each CEL rule evaluated on its own, so per-rule verdicts
and error messages stay exact. Only the record
fields the CEL rules name (`message.x`, `message['x']`) are converted and bound,
unless a rule uses `message` as a whole (see cel.referenced_keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from monitor.contract.cel import (
    Batch,
    CelCompileError,
    CelEvalError,
    Program,
    now,
    referenced_keys,
    to_cel,
)
from monitor.contract.celfast import FastRule, fast_rule
from monitor.contract.fieldrules import FieldCheck, FieldPlan
from monitor.contract.registered import registered, why_not
from monitor.contract.ruleconfig import MAX_RULES, RuleConfig, cel_literal, short_form
from monitor.errors import ContractError

_MASK64: Final = (1 << 64) - 1


class RuleError(ContractError):
    """A config rule cannot be compiled; the message names the rule and the position."""


class RuleVerdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    VIOLATION = "violation"
    ERROR = "error"  # no verdict: missing field, wrong type, engine runtime error


@dataclass(frozen=True, slots=True)
class NotEvaluated:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """Verdicts for one event, in the order of CompiledRules.names."""

    names: tuple[str, ...]
    verdicts: tuple[RuleVerdict, ...]
    errors: Mapping[str, str]

    @property
    def all_passed(self) -> bool:
        return not self.errors and RuleVerdict.VIOLATION not in self.verdicts

    def __iter__(self) -> Iterator[tuple[str, RuleVerdict]]:
        return zip(self.names, self.verdicts, strict=True)

    def verdict(self, name: str) -> RuleVerdict:
        return self.verdicts[self.names.index(name)]


class CompiledRules:
    """A product's rules, compiled once; evaluate() is the per-event entry point."""

    def __init__(
        self,
        python: list[tuple[int, Any]],
        cel: list[tuple[int, Program]],
        fields: list[tuple[int, FieldCheck]],
        names: tuple[str, ...],
        not_evaluated: tuple[NotEvaluated, ...],
        combine: bool,
    ) -> None:
        self.names = names
        self.not_evaluated = not_evaluated
        self._python = python
        self._cel = cel
        self._fields = fields
        self._keys = _union_keys(p.source for _, p in cel)
        self._now = any(p.uses_now for _, p in cel)
        self._all_true = [True] * len(cel)
        self._bools = all(p.returns_bool for _, p in cel)  # the type checker proved it
        self._batch: Batch | None = None
        if combine and len(cel) > 1:
            try:
                self._batch = Batch([p for _, p in cel])
            except CelCompileError:  # each part compiles; only an engine limit could stop this
                self._batch = None
        self._all_pass = RuleOutcome(names, (RuleVerdict.PASS,) * len(names), MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.names)

    def evaluate(self, record: Any) -> RuleOutcome:
        """Every rule's verdict for one decoded record; never raises."""
        failed: dict[int, str | None] = {}  # index -> None for a violation, message for an error
        for index, check in self._python:
            try:
                if not check(record):
                    failed[index] = None
            except CelEvalError as exc:
                failed[index] = str(exc)
        if self._cel:
            keys = self._keys
            if keys is not None and type(record) is dict:
                record_view = {k: record[k] for k in keys if k in record}
            else:
                record_view = record
            bound = {"message": to_cel(record_view)}
            if self._now:
                bound["now"] = now()
            activation = self._cel[0][1].activation(bound)
            results = None if self._batch is None else self._batch.results(activation)
            # a list of bools equals [True, ...] only if all are True (1 == True: check types)
            if not (self._bools and results == self._all_true):
                self._judge(results, activation, failed)
        for index, field_check in self._fields:
            try:
                if not field_check.check(record):
                    failed[index] = None
            except CelEvalError as exc:
                failed[index] = str(exc)
        if not failed:
            return self._all_pass
        verdicts = list(self._all_pass.verdicts)
        errors = {}
        for index, message in failed.items():
            if message is None:
                verdicts[index] = RuleVerdict.VIOLATION
            else:
                verdicts[index] = RuleVerdict.ERROR
                errors[self.names[index]] = message
        return RuleOutcome(self.names, tuple(verdicts), errors)

    def _judge(
        self, results: list[Any] | None, activation: Any, failed: dict[int, str | None]
    ) -> None:
        """Per-rule verdicts from the batch's results; ask a rule alone where they don't tell."""
        for position, (index, program) in enumerate(self._cel):
            result = None if results is None else results[position]
            if result is True:
                continue
            if result is False:
                failed[index] = None
                continue
            try:  # no batch, an error somewhere in it, or not a bool: ask this rule alone
                if not program.check(activation):
                    failed[index] = None
            except CelEvalError as exc:
                failed[index] = str(exc)


def _union_keys(sources: Iterable[str]) -> tuple[str, ...] | None:
    """The record keys the CEL rules can see: binding only those is cheaper per event."""
    keys: set[str] = set()
    for source in sources:
        found = referenced_keys(source)
        if found is None:
            return None
        keys |= found
    return tuple(sorted(keys))


def compile_rules(
    config_rules: Sequence[RuleConfig] = (),
    registered_rules: Any = None,
    *,
    schema: Any = None,
    metadata_tags: Mapping[str, Iterable[str]] | None = None,
    combine: bool = True,
    python_short_forms: bool = True,
) -> CompiledRules:
    """Compile config rules (RuleError on any problem) and registered rules (problems reported).

    `schema` (the contract's Avro schema as JSON) and `metadata_tags` (a registered
    schema's `metadata.tags`) are needed only by CEL_FIELD rules. `combine` and
    `python_short_forms` exist for the benchmark and the equivalence tests.
    """
    names: list[str] = []
    python: list[tuple[int, Any]] = []
    cel: list[tuple[int, Program]] = []
    fields: list[tuple[int, FieldCheck]] = []
    skipped: list[NotEvaluated] = []

    def claim(name: str) -> int:
        names.append(name)
        return len(names) - 1

    for rule in config_rules:
        form = short_form(rule)
        try:
            program = guarded(form.cel) if rule.cel is not None else Program(form.cel)
        except CelCompileError as exc:
            raise RuleError(f"rule {rule.name!r}: {exc}") from None
        if rule.pattern is not None:
            _probe_regex(rule.name, rule.pattern.regex)
        if rule.name in names:
            raise RuleError(f"rule {rule.name!r}: the name is used twice; names are unique")
        index = claim(rule.name)
        if python_short_forms and form.check is not None:
            python.append((index, form.check))
        elif python_short_forms and (fast := _fast(program)) is not None:
            python.append((index, fast.check))
        else:
            cel.append((index, program))

    plan: FieldPlan | None = None
    for entry in registered(registered_rules):
        reason = why_not(entry)
        if reason is None and entry.name in names:
            reason = "another rule has this name (a config rule, or an earlier registry rule)"
        if reason is None and len(names) >= MAX_RULES:
            reason = f"over the limit of {MAX_RULES} rules per product"
        if reason is None and entry.type == "CEL_FIELD" and schema is None:
            reason = "a CEL_FIELD rule needs the contract schema to walk its fields"
        if reason is None:
            try:
                program = guarded(entry.expr or "", field=entry.type == "CEL_FIELD")
            except CelCompileError as exc:
                reason = f"does not compile in this CEL engine: {exc}"
        if reason is not None:
            skipped.append(NotEvaluated(entry.name, reason))
            continue
        index = claim(entry.name)
        if entry.type == "CEL_FIELD":
            plan = plan or FieldPlan(schema, metadata_tags)
            fields.append((index, FieldCheck(program, plan, entry.tags)))
        elif python_short_forms and (fast := _fast(program)) is not None:
            python.append((index, fast.check))
        else:
            cel.append((index, program))
    return CompiledRules(python, cel, fields, tuple(names), tuple(skipped), combine)


def _fast(program: Program) -> FastRule | None:
    """The Python form of a one-comparison rule (celfast.py), where it has one."""
    return None if program.uses_now else fast_rule(program.source, program)


def guarded(expr: str, *, field: bool = False) -> Program:
    """Compile Confluent's `guard ; expr`: split at the first ';' (as Confluent does, even
    inside a string literal); the rule holds wherever the guard does not."""
    guard, sep, body = expr.partition(";")
    if not sep:
        return Program(expr, field=field)
    if not guard.strip():
        return Program(body, field=field)
    for part, where in ((guard, "in the guard (before ';')"), (body, "after the guard's ';'")):
        try:
            Program(part, field=field)
        except CelCompileError as exc:
            raise CelCompileError(f"{where}: {exc}") from None
    return Program(f"({guard}) ? ({body}) : true", field=field)


def _probe_regex(name: str, regex: str) -> None:
    """The engine checks a regex only when it first runs it: run it once on an empty string."""
    probe = Program(f"''.matches({cel_literal(regex)})")
    try:
        probe.check(probe.activation({"message": {}}))
    except CelEvalError as exc:
        raise RuleError(f"rule {name!r}: the regex does not compile: {exc}") from None


class Sampler:
    """Decides from (partition, offset) alone whether an event's rules are evaluated.

    A fixed 64-bit mix (splitmix64) of the position, not Python's hash, so every
    replica and every restart picks the same events, and evenly spaced offsets
    are not all in or all out.
    """

    __slots__ = ("_threshold", "ratio")

    def __init__(self, ratio: float) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"sample ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio
        self._threshold = min(int(ratio * 2.0**64), 1 << 64)

    def __call__(self, partition: int, offset: int) -> bool:
        if self._threshold >= 1 << 64:
            return True
        x = (partition * 0x9E3779B97F4A7C15 + offset + 0x9E3779B97F4A7C15) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        return (x ^ (x >> 31)) < self._threshold
