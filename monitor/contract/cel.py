"""The CEL engine behind correctness rules: compile once, evaluate per event, never raise.

The engine is `cel-expr-python`, Google's wrapper of the C++ CEL implementation,
chosen by measurement (bench/rules.py, thread CPU time on the shared 2-core
machine): one rule with the record bound costs ~8 µs against ~23 µs for the Rust
bindings (`common-expression-language`) and 150-300 µs for cel-python (celpy),
the pure-Python engine confluent-kafka uses; three rules as one combined call
~10.5 µs against ~25 µs and ~750 µs. It also type-checks at compile time (Rust
does not), so with `message` (and the CEL_FIELD variables) declared `dyn`,
syntax errors and undeclared names fail at start-up with a line:column position.

Decoded Avro values are handed to the engine as they are, except the values of
logical types, which are converted the way confluent-kafka's CEL executor binds
them (`cel_executor._value_to_cel`) so the same rule means the same thing:

    datetime (timestamp-*, local-timestamp-*)  -> google.protobuf.Timestamp (CEL timestamp;
                                                  naive datetimes are taken as UTC)
    timedelta                                  -> google.protobuf.Duration (CEL duration)
    date                                       -> int, days since 1970-01-01 (as Confluent)
    UUID                                       -> string (as Confluent)
    Decimal                                    -> double (Confluent has no binding; see rules.py)
    time (time-millis, time-micros)            -> duration since midnight (Confluent: none)
    str or bytes holding a NUL                 -> google.protobuf.StringValue / bytearray, which
                                                  the engine takes whole (it cuts plain ones at
                                                  the NUL); a map KEY with a NUL stays cut

Conversion copies only the containers that hold such a value; a record of plain
values is handed over untouched.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from cel_expr_python import cel
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue

from monitor.contract import celfuncs

_UTC = datetime.UTC
_EPOCH_DAYS: Final = datetime.date(1970, 1, 1).toordinal()
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_PLAIN: Final = frozenset({str, int, float, bool, bytes, type(None)})
_ERROR_AT = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): ([^\n]*)")

# `now` is the evaluation time, bound only for expressions that name it (as Confluent does).
_MESSAGE_ENV = cel.NewEnv(
    variables={"message": cel.Type.DYN, "now": cel.Type.TIMESTAMP},
    functions=celfuncs.declarations(),
)
_FIELD_ENV = cel.NewEnv(
    functions=celfuncs.declarations(),
    variables={
        "message": cel.Type.DYN,
        "now": cel.Type.TIMESTAMP,
        "value": cel.Type.DYN,
        "fullName": cel.Type.STRING,
        "name": cel.Type.STRING,
        "typeName": cel.Type.STRING,
        "tags": cel.Type.List(cel.Type.STRING),
    },
)
_BOOL = cel.Type.BOOL
_DYN = cel.Type.DYN
_ERROR = cel.Type.ERROR


class CelCompileError(Exception):
    """An expression does not compile; the message is `line:column: what` per error."""


class CelEvalError(Exception):
    """An expression did not produce a bool for one event (missing field, wrong type, ...)."""


class Program:
    """One compiled boolean CEL expression over `message` (or the CEL_FIELD variables)."""

    __slots__ = ("_env", "_expr", "returns_bool", "source", "uses_now")

    def __init__(self, source: str, *, field: bool = False, _checked: bool = True) -> None:
        self._env = _FIELD_ENV if field else _MESSAGE_ENV
        self.source = source
        self.uses_now = "now" in source  # Confluent's test: a substring, cheap and safe
        try:
            self._expr = self._env.compile(source)
        except RuntimeError as exc:
            raise CelCompileError(_compile_message(str(exc))) from None
        returns = self._expr.return_type()
        self.returns_bool = returns == _BOOL  # not dyn: a result can only be a bool or an error
        if _checked and returns != _BOOL and returns != _DYN:
            raise CelCompileError(
                f"1:1: a rule must be a boolean condition, this expression returns "
                f"{returns.name().lower()}"
            )

    def activation(self, variables: Mapping[str, Any]) -> Any:
        """Bind already-converted variables once, for several programs of the same env."""
        return self._env.Activation(variables)

    def check(self, activation: Any) -> bool:
        """True or False, or CelEvalError saying why there is no verdict."""
        try:
            result = self._expr.eval(activation)
            value = result.value()
        except Exception as exc:  # the engine reports errors as values; this is a backstop
            raise CelEvalError(f"{type(exc).__name__}: {exc}") from None
        if value is True or value is False:
            return bool(value)
        if result.type() == _ERROR:
            raise CelEvalError(str(value))
        raise CelEvalError(f"the rule returned {result.type().name().lower()}, not a bool")


class Batch:
    """Several programs as one list expression: one engine call for all their results.

    CEL has no way to catch an error inside a list, so one rule that errors
    makes the whole call an error; results() then returns None and the caller
    evaluates each program on its own to get every verdict and message right.
    """

    __slots__ = ("_program",)

    def __init__(self, programs: Sequence[Program]) -> None:
        listing = "[" + ", ".join(f"({p.source})" for p in programs) + "]"
        self._program = Program(listing, _checked=False)

    def results(self, activation: Any) -> list[Any] | None:
        """Each program's result (a bool unless the rule returns something else), or None."""
        try:
            result = self._program._expr.eval(activation)
            if result.type() == _ERROR:
                return None
            values: list[Any] = result.plain_value()
        except Exception:  # the engine reports errors as values; this is a backstop
            return None
        return values


_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_USE = re.compile(
    rf"\bmessage\b(\s*\.\s*(?P<field>{_KEY})\b(?!\s*\()|\s*\[\s*(?:'(?P<sq>[^'\\]*)'|\"(?P<dq>[^\"\\]*)\")\s*\])?"
)


def referenced_keys(source: str) -> frozenset[str] | None:
    """The top-level keys of `message` an expression can observe, or None if it may see all.

    Only `message.key` and `message['key']` uses are understood; any other use of
    `message` (a macro over it, size(message), a member call, the name inside a
    string) makes the answer None. An extra key is harmless, a missing one is not.
    """
    keys = set()
    for use in _USE.finditer(source):
        key = use.group("field") or use.group("sq") or use.group("dq")
        if key is None:
            return None
        keys.add(key)
    return frozenset(keys)


def _compile_message(text: str) -> str:
    found = [f"{line}:{col}: {what}" for line, col, what in _ERROR_AT.findall(text) if line != "-1"]
    return "; ".join(found) if found else text.strip()


def now() -> datetime.datetime:
    """The value of `now`, for the programs that use it."""
    return datetime.datetime.now(_UTC)


def to_cel(value: Any) -> Any:
    """The engine's view of a decoded Avro value; returns `value` itself when nothing changes."""
    kind = type(value)
    if kind is str or kind is bytes:
        # cel-expr-python 0.1 cuts a str or bytes at its first NUL; a StringValue or a
        # bytearray goes through whole (tests/unit/contract pins this)
        if "\x00" in value if kind is str else b"\x00" in value:
            return StringValue(value=value) if kind is str else bytearray(value)
        return value
    if kind in _PLAIN:
        return value
    if kind is dict:
        copy: dict[Any, Any] | None = None
        for key, item in value.items():
            converted = to_cel(item)
            if converted is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = converted
        return value if copy is None else copy
    if kind is list:
        items: list[Any] | None = None
        for index, item in enumerate(value):
            converted = to_cel(item)
            if converted is not item:
                if items is None:
                    items = list(value)
                items[index] = converted
        return value if items is None else items
    return _logical(value)


def _logical(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        since = value - _EPOCH  # 3x cheaper than Timestamp.FromDatetime
        return Timestamp(
            seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
        )
    if isinstance(value, datetime.date):
        return value.toordinal() - _EPOCH_DAYS
    if isinstance(value, datetime.timedelta):
        span = Duration()
        span.FromTimedelta(value)
        return span
    if isinstance(value, datetime.time):
        span = Duration()
        span.FromTimedelta(
            datetime.timedelta(
                hours=value.hour,
                minutes=value.minute,
                seconds=value.second,
                microseconds=value.microsecond,
            )
        )
        return span
    if isinstance(value, Decimal):
        return float("nan") if value.is_nan() else float(value)  # float() raises on sNaN
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):  # fastavro's (record name, value) union notation
        return to_cel(list(value))
    if isinstance(value, Mapping):
        return to_cel(dict(value))
    return value
