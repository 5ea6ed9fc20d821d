"""The simplest CEL rules, decided in Python where that cannot differ from the engine.

Why: most registered rules are one comparison of one field with a literal
(`message.amount > 0`, `message.currency in ['EUR', 'USD']`,
`message.id.startsWith('c-')`). Binding a record and calling the C++ engine
costs ~10 µs per event; the same comparison in Python ~0.3 µs. A rule is taken
here only if its whole text is one such form, and an event is decided here only
when the field holds a value of exactly the literal's type (int with int, float
with float, str with str, bool with bool), where Python's and CEL's operators
agree; anything else (missing field, null, another type, a nested value that is
not a record) goes to the engine, so verdicts and error messages stay the
engine's own. test_celfast.py checks that against the engine.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, Final

from monitor.contract.cel import Program, to_cel

_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH: Final = rf"message((?:\.{_IDENT})+)"
# Literals without escapes or exponents: their meaning is the same in CEL and Python.
_INT: Final = r"-?(?:0|[1-9][0-9]{0,17})"
_FLOAT: Final = r"-?(?:0|[1-9][0-9]{0,14})\.[0-9]{1,15}"
_STR: Final = r"'[^'\\\n\r]*'|\"[^\"\\\n\r]*\""
_LITERAL: Final = rf"(?:{_FLOAT}|{_INT}|{_STR}|true|false)"

_COMPARE: Final = re.compile(rf"\s*{_PATH}\s*(==|!=|<=|>=|<|>)\s*({_LITERAL})\s*")
_IN: Final = re.compile(rf"\s*{_PATH}\s+in\s+\[\s*({_LITERAL}(?:\s*,\s*{_LITERAL})*)\s*\]\s*")
_STRING_CALL: Final = re.compile(
    rf"\s*{_PATH}\.(startsWith|endsWith|contains)\(\s*({_STR})\s*\)\s*"
)
_ITEM: Final = re.compile(_LITERAL)

_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_STRING_METHODS: Final[dict[str, Callable[[str, str], bool]]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": operator.contains,
}


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text[0] in "'\"":
        return text[1:-1]
    return float(text) if "." in text else int(text)


class FastRule:
    """One simple rule: check(record) is the engine's verdict (CelEvalError on an error)."""

    __slots__ = ("_decide", "_keys", "_program")

    def __init__(
        self, keys: tuple[str, ...], decide: Callable[[Any], bool | None], program: Program
    ):
        self._keys = keys
        self._decide = decide  # True/False, or None: not a case decided here
        self._program = program

    def check(self, record: Any) -> bool:
        value = record
        for key in self._keys:
            if type(value) is not dict or key not in value:
                return self._engine(record)
            value = value[key]
        verdict = self._decide(value)
        return self._engine(record) if verdict is None else verdict

    def _engine(self, record: Any) -> bool:
        program = self._program
        return program.check(program.activation({"message": to_cel(record)}))


def fast_rule(source: str, program: Program) -> FastRule | None:
    """A FastRule for `source` if it is one of the simple forms, else None."""
    if match := _COMPARE.fullmatch(source):
        path, symbol, text = match.groups()
        literal = _literal(text)
        kind = type(literal)
        if kind is bool and symbol not in ("==", "!="):
            return None  # ordering of bools: leave it to the engine
        compare = _OPERATORS[symbol]

        def decide(value: Any) -> bool | None:
            return compare(value, literal) if type(value) is kind else None

    elif match := _IN.fullmatch(source):
        path, items = match.groups()
        values = [_literal(item) for item in _ITEM.findall(items)]
        kind = type(values[0])
        if any(type(v) is not kind for v in values):
            return None  # a mixed list: CEL's heterogeneous equality, the engine's business
        allowed = frozenset(values) if kind is not float else tuple(values)

        def decide(value: Any) -> bool | None:
            return value in allowed if type(value) is kind else None

    elif match := _STRING_CALL.fullmatch(source):
        path, method, text = match.groups()
        needle = _literal(text)
        call = _STRING_METHODS[method]

        def decide(value: Any) -> bool | None:
            return call(value, needle) if type(value) is str else None

    else:
        return None
    return FastRule(tuple(path[1:].split(".")), decide, program)
