"""One event-time window and the vocabulary of window verdicts.

Why apart: the tracker, the collector and the tests all name verdicts and
manifest rejection reasons; they import them from here, not from the tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPLETE = "complete"
INCOMPLETE = "incomplete"
PARTIAL = "partial"
NO_MANIFEST = "no_manifest"
NO_EXPECTATION = "no_expectation"
VERDICTS = (COMPLETE, INCOMPLETE, PARTIAL, NO_MANIFEST, NO_EXPECTATION)
REJECT_REASONS = ("misaligned", "late", "beyond_open_windows", "not_configured")


@dataclass(slots=True, eq=False)
class Window:
    k: int
    partial: bool
    observed: int = 0
    closed: bool = False
    # None while open, waiting for a manifest, or closed partial without live input
    verdict: str | None = None
    live: bool = False  # saw an event or a manifest that was not read back
    manifests: dict[str | None, int] | None = None  # producer id -> count
    by_manifest: bool = False  # expectation came from manifests (they may amend it)
    expected: int = 0  # credited to expected_events_total so far
    credited: int = 0  # credited to observed_events_total so far (<= expected)
    surplus: int = 0  # observed beyond expected, credited so far
