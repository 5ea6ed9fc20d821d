"""ODCS `rowCount` → the product's expected volume: a floor of events per completeness window.

Why a floor per window: a stream has no total row count, but a contract that says
"at least N rows" for a batch says how many events one period should bring. Tidemark
already judges windows by volume (`completeness.expected.min_events_per_window`), so
a rowCount becomes that floor, in the window the contract names:

1. a `tidemark.window` custom property on the rowCount rule (a duration: 1h, 300);
2. else the rule's `schedule` with `scheduler: cron` (or v3.0's
   `scheduleCronExpression`) when it fires at a fixed interval (`*/5 * * * *`,
   `0 * * * *`, `30 2 * * *`, `0 4 * * 1`, @hourly, @daily, @weekly): the rows
   counted at each run are the events of one interval;
3. else the SLA `frequency` (value + unit): the rows of one update;
4. else the product's completeness window, when its config has a completeness section.

Only the window's length is taken: Tidemark's windows are aligned to the epoch (UTC),
not to the cron's minute. The config wins where both say something: a config
`completeness.expected.min_events_per_window` replaces the rowCount, and a config
`completeness.window` different from the contract's window leaves the rowCount not
evaluated (a volume per day says nothing exact about a minute). Without any window
the rowCount is reported not evaluated, once, with the way to give one.

Operators: the floor is the smallest count the operators allow (`mustBeGreaterThan:
99` and `mustBeGreaterOrEqualTo: 100` are both 100; `mustBeBetween` is inclusive, as
for every other ODCS rule here). Counts refused above the floor (the 120 of
`mustBeBetween: [100, 120]`, `mustBe`'s upper side) are reported not evaluated:
Tidemark judges missing events; a surplus is counted, never an incomplete window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WINDOW_PROPERTY = "tidemark.window"
_CRON_MACROS = {"@hourly": 3600.0, "@daily": 86400.0, "@midnight": 86400.0, "@weekly": 604800.0}
_HUGE = 10**18  # a count no window reaches: probes for a ceiling


@dataclass(frozen=True, slots=True)
class Volume:
    """A rowCount rule as Tidemark reads it: at least `floor` events per window."""

    floor: int
    window: float | None  # seconds, when the contract names a window
    window_from: str  # which part of the contract gave the window
    label: str  # the rule's id or name
    source: str  # YAML path of the rule

    @property
    def name(self) -> str:
        return f"rowCount {self.label}"


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """What the product gets from the rowCount: settings to fill, or why nothing."""

    settings: dict[str, Any]
    volume: Volume | None  # None: nothing filled
    window_from: str
    skipped: tuple[str, str] | None  # (what, why) when not evaluated

    def became(self, window: float) -> str | None:
        """What the rowCount became, in the product's final window (validate, start-up log)."""
        if self.volume is None or self.skipped is not None:
            return None
        return (
            f"odcs {self.volume.name}: expected volume at least {self.volume.floor} events "
            f"per {window:g}s completeness window ({self.window_from})"
        )


def lowest_allowed(ok: Callable[[float], bool], numbers: Iterable[float]) -> int | None:
    """The smallest whole count the operators allow, or None when they allow none.

    The allowed counts are a union of intervals whose ends are the operators' numbers,
    so the smallest one is 0 or just at/above one of them.
    """
    return next((c for c in _candidates(numbers) if ok(c)), None)


def refused_above(ok: Callable[[float], bool], numbers: Iterable[float], floor: int) -> bool:
    """True when some count above the floor is refused (a ceiling or a hole)."""
    return any(not ok(c) for c in [*_candidates(numbers), _HUGE] if c > floor)


def _candidates(numbers: Iterable[float]) -> list[int]:
    out = {0}
    for n in numbers:
        out.update(c for c in (math.ceil(n), math.floor(n) + 1) if c >= 0)
    return sorted(out)


def cron_period(expr: str) -> float | None:
    """Seconds between runs of a cron schedule that fires at a fixed interval, else None."""
    text = expr.strip()
    if text in _CRON_MACROS:
        return _CRON_MACROS[text]
    fields = text.split()
    if len(fields) != 5 or fields[2:4] != ["*", "*"]:
        return None
    minute, hour, _, _, weekday = fields
    if weekday != "*":
        fixed = _fixed(weekday, 8) and _fixed(minute, 60) and _fixed(hour, 24)
        return 7 * 86400.0 if fixed else None
    every = _step(minute, 60)
    if every is not None:
        return every * 60.0 if hour == "*" else None  # `*/5 3 * * *`: only during hour 3
    if not _fixed(minute, 60):
        return None
    every = _step(hour, 24)
    if every is not None:
        return every * 3600.0
    return 86400.0 if _fixed(hour, 24) else None


def _fixed(field: str, size: int) -> bool:
    return field.isdigit() and int(field) < size


def _step(field: str, size: int) -> int | None:
    """1 for `*`, n for `*/n` when n divides the field's range (60 minutes, 24 hours)."""
    if field == "*":
        return 1
    if field.startswith("*/") and field[2:].isdigit():
        n = int(field[2:])
        return n if 0 < n <= size and size % n == 0 else None
    return None


def plan_volume(volume: Volume | None, completeness: Mapping[str, Any] | None) -> VolumePlan:
    """Settings the rowCount fills, given what the product config says (`exclude_unset`).

    `completeness` is the config's completeness section as written (None: no section).
    """
    if volume is None:
        return VolumePlan({}, None, "", None)
    what = f"odcs {volume.source} ({volume.name})"
    said = (completeness or {}).get("expected") or {}
    if said.get("min_events_per_window") is not None:
        why = (
            "the product config's completeness.expected.min_events_per_window "
            f"({said['min_events_per_window']}) wins over at least {volume.floor}"
        )
        return VolumePlan({}, volume, "", (what, why))
    configured = (completeness or {}).get("window")
    if volume.window is None:
        if completeness is None:
            why = (
                "a stream has no total row count and the contract names no window: add a "
                f"{WINDOW_PROPERTY} custom property to the rule (e.g. 1h), a cron schedule "
                "or an SLA frequency, or a completeness section to the product config"
            )
            return VolumePlan({}, volume, "", (what, why))
        expected = {"expected": {"min_events_per_window": volume.floor}}
        return VolumePlan({"completeness": expected}, volume, "the product config's window", None)
    if configured is not None and abs(float(configured) - volume.window) > 1e-9:
        why = (
            f"the rowCount is per {volume.window:g}s ({volume.window_from}) but the product "
            f"config's completeness.window is {float(configured):g}s; Tidemark does not "
            "rescale a volume to another window"
        )
        return VolumePlan({}, volume, "", (what, why))
    settings = {
        "completeness": {
            "window": volume.window,
            "expected": {"min_events_per_window": volume.floor},
        }
    }
    return VolumePlan(settings, volume, volume.window_from, None)
