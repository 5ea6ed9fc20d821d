"""Correctness rules: µs per evaluation for each installed CEL engine, and per event.

Same decoded record, same rules, for every engine that imports here:

  cpp    cel-expr-python             Google's C++ CEL (Tidemark's engine)
  rust   common-expression-language  bindings to the Rust CEL
  celpy  cel-python                  pure Python; what confluent-kafka's executors use

Per engine it prints µs for one rule (binding the record included, as per event),
then for the three rules together: one call per rule each binding the record,
one binding shared by three calls, one combined `a && b && c`, one combined
list `[a, b, c]`. Then the cost of turning a decoded record into engine values,
fastavro decoding the same record for scale, and Tidemark's CompiledRules on
all-passing and violating events, with and without the Python short forms and
the combined call. Best of --repeat runs of --number calls (celpy: a tenth).

    python bench/rules.py
    python bench/rules.py --number 20000 --repeat 7
"""

from __future__ import annotations

import argparse
import datetime
import io
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.contract.cel import to_cel
from monitor.contract.ruleconfig import AllowedValues, Range, RuleConfig
from monitor.contract.rules import CompiledRules, compile_rules

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "bench",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "sku", "type": "string"},
        {"name": "coupon", "type": ["null", "string"], "default": None},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    ],
}
RECORD = {
    "order_id": "o-000123",
    "customer_id": "c-42",
    "amount": 25.5,
    "currency": "EUR",
    "quantity": 3,
    "sku": "ABC-1234",
    "coupon": None,
    "created_at": datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC),
    "price": Decimal("8.50"),
    "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}
PLAIN = {k: v for k, v in RECORD.items() if k not in ("created_at", "price", "ref")}
RULES = {
    "positive_amount": "message.amount > 0.0",
    "known_currency": "message.currency in ['EUR', 'USD', 'GBP']",
    "sane_quantity": "message.quantity >= 1 && message.quantity <= 1000",
}
PATTERN = {"sku_format": "message.sku.matches('^[A-Z]{3}-[0-9]+$')"}
CONFIG = [
    RuleConfig(name="positive_amount", range=Range(field="amount", min=0.01)),
    RuleConfig(
        name="known_currency",
        allowed_values=AllowedValues(field="currency", values=["EUR", "USD", "GBP"]),
    ),
    RuleConfig(name="sane_quantity", range=Range(field="quantity", min=1, max=1000)),
]


def best(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """µs of this thread's CPU per call, best of `repeat` runs.

    CPU time, not wall time, so that other processes on a shared machine do not
    count; the best run is the one least disturbed by them (caches, frequency).
    """
    timer = timeit.Timer(fn, timer=time.thread_time)
    return min(timer.repeat(number=number, repeat=repeat)) / number * 1e6


class Engine:
    name = ""
    scale = 1  # divide --number by this (celpy is slow)

    def prepare(self, record: dict[str, Any]) -> Any:
        """The record as this engine takes it (outside the timed evaluation)."""
        return to_cel(record)

    def one(self, source: str) -> Callable[[Any], Any]:
        raise NotImplementedError

    def shared(self, sources: list[str]) -> Callable[[Any], Any]:
        raise NotImplementedError


class Cpp(Engine):
    name = "cpp (cel-expr-python)"

    def __init__(self) -> None:
        from cel_expr_python import cel

        self.env = cel.NewEnv(variables={"message": cel.Type.DYN})

    def one(self, source: str) -> Callable[[Any], Any]:
        expr = self.env.compile(source)
        return lambda msg: expr.eval(data={"message": msg}).value()

    def shared(self, sources: list[str]) -> Callable[[Any], Any]:
        exprs = [self.env.compile(s) for s in sources]
        env = self.env

        def run(msg: Any) -> Any:
            activation = env.Activation({"message": msg})
            return [e.eval(activation).value() for e in exprs]

        return run


class Rust(Engine):
    name = "rust (common-expression-language)"

    def __init__(self) -> None:
        import cel

        self.cel = cel

    def prepare(self, record: dict[str, Any]) -> Any:
        # takes datetime and Decimal itself; not date or UUID
        return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in record.items()}

    def one(self, source: str) -> Callable[[Any], Any]:
        program = self.cel.compile(source)
        return lambda msg: program.execute({"message": msg})

    def shared(self, sources: list[str]) -> Callable[[Any], Any]:
        programs = [self.cel.compile(s) for s in sources]
        cel = self.cel

        def run(msg: Any) -> Any:
            context = cel.Context(variables={"message": msg})
            return [p.execute(context) for p in programs]

        return run


class Celpy(Engine):
    name = "celpy (cel-python)"
    scale = 10

    def __init__(self) -> None:
        import celpy
        from confluent_kafka.schema_registry.rules.cel.cel_executor import msg_to_cel

        self.env = celpy.Environment()
        self.convert = msg_to_cel

    def prepare(self, record: dict[str, Any]) -> Any:
        return self.convert(record)  # confluent-kafka's own binding of an Avro record

    def one(self, source: str) -> Callable[[Any], Any]:
        program = self.env.program(self.env.compile(source))
        return lambda msg: program.evaluate({"message": msg})

    def shared(self, sources: list[str]) -> Callable[[Any], Any]:
        programs = [self.env.program(self.env.compile(s)) for s in sources]
        return lambda msg: [p.evaluate({"message": msg}) for p in programs]


def engines() -> list[Engine]:
    found: list[Engine] = []
    for kind in (Cpp, Rust, Celpy):
        try:
            found.append(kind())
        except ImportError as exc:
            print(f"# {kind.name}: not installed ({exc.name})")
    return found


def bench_engine(engine: Engine, number: int, repeat: int) -> None:
    n = max(number // engine.scale, 50)
    msg = engine.prepare(RECORD)
    print(f"\n{engine.name}")
    for name, source in {**RULES, **PATTERN}.items():
        run = engine.one(source)

        def one_rule(run: Callable[[Any], Any] = run) -> Any:
            return run(msg)

        print(f"  {best(one_rule, n, repeat):8.2f} µs  one rule: {name}")
    sources = list(RULES.values())
    calls = [engine.one(s) for s in sources]
    shared = engine.shared(sources)
    conjunction = engine.one(" && ".join(f"({s})" for s in sources))
    listed = engine.one("[" + ", ".join(sources) + "]")
    timings = {
        "3 rules, 3 calls, each binding the record": lambda: [c(msg) for c in calls],
        "3 rules, 1 binding, 3 calls": lambda: shared(msg),
        "3 rules, 1 combined call a && b && c": lambda: conjunction(msg),
        "3 rules, 1 combined call [a, b, c]": lambda: listed(msg),
    }
    for label, fn in timings.items():
        print(f"  {best(fn, n, repeat):8.2f} µs  per event: {label}")


def bench_conversion(number: int, repeat: int) -> None:
    print("\nrecord -> engine values")
    plain_us = best(lambda: to_cel(PLAIN), number, repeat)
    print(f"  {plain_us:8.2f} µs  to_cel, 7 plain fields (returned as is)")
    full_us = best(lambda: to_cel(RECORD), number, repeat)
    print(f"  {full_us:8.2f} µs  to_cel, 10 fields with timestamp, decimal, uuid")
    try:
        from confluent_kafka.schema_registry.rules.cel.cel_executor import msg_to_cel
    except ImportError:
        return
    n = max(number // 10, 50)
    theirs_us = best(lambda: msg_to_cel(RECORD), n, repeat)
    print(f"  {theirs_us:8.2f} µs  confluent-kafka msg_to_cel, the same 10 fields (celpy)")


def bench_decode(number: int, repeat: int) -> None:
    parsed = parse_schema(SCHEMA)
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, RECORD)
    body = buf.getvalue()
    fn = lambda: schemaless_reader(io.BytesIO(body), parsed, None)  # noqa: E731
    print(f"\n  {best(fn, number, repeat):8.2f} µs  fastavro decode of the same record, for scale")


def bench_compiled(number: int, repeat: int) -> None:
    bad = {**RECORD, "amount": -1.0, "quantity": 0}
    registered = [
        {"name": n, "kind": "CONDITION", "mode": "READ", "type": "CEL", "expr": s}
        for n, s in RULES.items()
    ]
    whole = {**registered[0], "name": "whole", "expr": "size(message) == 10"}
    variants = {
        "config short forms (Python checks)": compile_rules(CONFIG),
        "config short forms as CEL, combined": compile_rules(CONFIG, python_short_forms=False),
        "registry CEL rules, combined call": compile_rules((), registered),
        "registry CEL rules, one call per rule": compile_rules((), registered, combine=False),
        "registry CEL rules + size(message): whole record bound": compile_rules(
            (), [*registered, whole]
        ),
        "registry CEL rules + sku pattern, combined": compile_rules(
            (), [*registered, {**registered[0], "name": "sku", "expr": PATTERN["sku_format"]}]
        ),
    }
    schema = {
        **SCHEMA,
        "fields": [
            {**f, "confluent:tags": ["PII"]} if f["name"] in ("order_id", "customer_id") else f
            for f in SCHEMA["fields"]
        ],
    }
    field_rule = {
        **registered[0],
        "type": "CEL_FIELD",
        "expr": "typeName != 'STRING' || size(value) < 50",
    }
    variants["1 CEL_FIELD rule over the 2 PII-tagged fields"] = compile_rules(
        (), [{**field_rule, "tags": ["PII"]}], schema=schema
    )
    variants["1 CEL_FIELD rule over all 10 fields"] = compile_rules((), [field_rule], schema=schema)
    print("\nTidemark CompiledRules.evaluate, per event (3 rules unless said)")
    for label, compiled in variants.items():

        def all_pass(c: CompiledRules = compiled) -> Any:
            return c.evaluate(RECORD)

        def violating(c: CompiledRules = compiled) -> Any:
            return c.evaluate(bad)

        good_us = best(all_pass, number, repeat)
        bad_us = best(violating, number, repeat)
        print(f"  {good_us:8.2f} µs all pass  {bad_us:8.2f} µs 2 violations  {label}")


def bench_scaling(number: int, repeat: int) -> None:
    """How the one combined call grows with the number of CEL rules."""
    base = [
        "message.amount > 0.0",
        "message.currency in ['EUR', 'USD']",
        "message.quantity >= 1 && message.quantity <= 1000",
        "message.order_id != ''",
        "message.customer_id != message.order_id",
    ]
    print("\nTidemark CompiledRules.evaluate, all pass, by number of CEL rules")
    for count in (1, 3, 10, 30):
        compiled = compile_rules(
            [
                RuleConfig(name=f"r{i}", cel=f"{base[i % 5]} || message.amount == {i}.5")
                for i in range(count)
            ]
        )

        def all_pass(c: CompiledRules = compiled) -> Any:
            return c.evaluate(RECORD)

        us = best(all_pass, number, repeat)
        print(f"  {us:8.2f} µs  {count} rules")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for engine in engines():
        bench_engine(engine, args.number, args.repeat)
    bench_conversion(args.number, args.repeat)
    bench_decode(args.number, args.repeat)
    bench_compiled(args.number, args.repeat)
    bench_scaling(args.number, args.repeat)


if __name__ == "__main__":
    main()
