"""Event-time tumbling windows: count events, close on the watermark, reconcile, amend.

Why: completeness is judged per window [k*w, (k+1)*w) once the product watermark says
no more on-time events can land in it. Counters are credited at close and amended by
late events or manifests within retention, so rate(observed)/rate(expected) is the SLI
over any range and no counter ever decreases.
"""

from __future__ import annotations

from collections import deque

from monitor.completeness.baseline import Baseline
from monitor.completeness.window import (
    COMPLETE,
    INCOMPLETE,
    NO_EXPECTATION,
    NO_MANIFEST,
    PARTIAL,
    REJECT_REASONS,
    VERDICTS,
    Window,
)

_ALIGN_TOLERANCE = 1e-3  # manifests carry milliseconds
_FAR_PAST = -(2**62)


def _discard() -> dict[str, int]:
    """Counters nobody reads (replayed manifests)."""
    return dict.fromkeys(REJECT_REASONS, 0)


class WindowTracker:
    """Windows of one data product. Methods are cheap except advance(), called per batch."""

    def __init__(
        self,
        *,
        window: float,
        retention: float,
        max_open: int,
        max_retained: int,
        manifests: bool,
        require_manifest: bool,
        manifest_grace: float,
        manifest_producers: int | None,
        min_events: int | None,
        baseline: Baseline | None,
    ) -> None:
        self._w = window
        self._retention = retention
        self._max_open = max_open
        self._max_retained = max_retained
        self._manifests_on = manifests
        self._require = require_manifest
        self._grace = manifest_grace
        self._need = manifest_producers
        self._min_events = min_events
        self._baseline = baseline
        self._windows: dict[int, Window] = {}
        self._closed: deque[Window] = deque()
        self._pending: deque[Window] = deque()  # closed, waiting for a manifest
        self._next_k: int | None = None  # lowest window not closed yet
        self._partial_through: int | None = None  # judged: windows after this one
        self._watermark = float("-inf")
        self._last_k: int | None = None
        self._last_win = Window(0, True)
        self._ratio_k = _FAR_PAST
        self.full_ownership = True
        self.expected_total = 0
        self.observed_total = 0
        self.surplus_total = 0
        self.last_ratio: float | None = None
        self.closed_total = dict.fromkeys(VERDICTS, 0)
        self.recovered = 0
        self.degraded = 0
        self.skipped = 0
        self.late_amendments = 0
        self.late_dropped = 0
        self.beyond_open = 0
        self.manifests_accepted = 0
        self.manifests_duplicate = 0
        self.manifests_superseded = 0
        self.manifests_rejected = dict.fromkeys(REJECT_REASONS, 0)

    @property
    def open_windows(self) -> int:
        return len(self._windows) - len(self._closed)

    @property
    def retained_windows(self) -> int:
        return len(self._closed)

    def count(self, event_time: float) -> None:
        """One valid event (hot path)."""
        k = int(event_time // self._w)
        if k == self._last_k:
            win = self._last_win
        else:
            found = self._windows.get(k)
            if found is None:
                found = self._materialize(k, for_event=True)
                if found is None:
                    return
            if not found.live:
                self._touch(found)
            win = self._last_win = found
            self._last_k = k
        win.observed += 1
        if win.closed:
            self.late_amendments += 1
            if win.verdict == COMPLETE or win.verdict == INCOMPLETE:
                self._reconcile(win, win.expected)

    def add(self, k: int, n: int) -> None:
        """n more events in window k at once (the shared-mode reconciler's feed)."""
        win = self._windows.get(k)
        if win is None:
            win = self._materialize(k, for_event=True, events=n)
            if win is None:
                return
        if not win.live:
            self._touch(win)
        self._last_k = None
        win.observed += n
        if win.closed:
            self.late_amendments += n
            if win.verdict == COMPLETE or win.verdict == INCOMPLETE:
                self._reconcile(win, win.expected)

    def forget_windows(self) -> None:
        """Drop every window but keep the counters (a reconciler rebuilds from its table)."""
        self._windows.clear()
        self._closed.clear()
        self._pending.clear()
        self._next_k = None
        self._partial_through = None
        self._watermark = float("-inf")
        self._last_k = None

    def restore(
        self,
        k: int,
        *,
        verdict: str | None,
        partial: bool,
        observed: int,
        expected: int,
        credited: int,
        surplus: int,
        by_manifest: bool,
    ) -> None:
        """A window another reconciler closed, as it credited it: no counter moves.

        Call in ascending k after forget_windows(), before anything else.
        """
        win = self._windows[k] = Window(k, partial, observed=observed, closed=True)
        win.verdict, win.live, win.by_manifest = verdict, verdict is not None, by_manifest
        win.expected, win.credited, win.surplus = expected, credited, surplus
        self._closed.append(win)
        if verdict is None and not partial:
            self._pending.append(win)
        self._next_k = k + 1

    def closed_windows(self) -> list[Window]:
        return list(self._closed)

    def mark_open_partial(self) -> None:
        """Windows open now lose or gain events seen by another owner: never judge them."""
        for win in self._windows.values():
            if not win.closed:
                win.partial = True

    def raise_partial_boundary(self, t: float) -> None:
        """Windows starting at or before t are partial (a partition's first event at t).

        Until the first call every window is partial: nothing says where our view begins.
        """
        k = int(t // self._w)
        if self._partial_through is None or k > self._partial_through:
            self._partial_through = k

    def on_manifest(
        self, start: float, end: float, n: int, producer_id: str | None, *, replay: bool = False
    ) -> None:
        """replay: read back after an assignment; an earlier owner counted it already, so
        it only feeds the window's expectation and no manifest counter, and does not
        make a window live."""
        rejected = _discard() if replay else self.manifests_rejected
        if not self._manifests_on:
            rejected["not_configured"] += 1
            return
        k = round(start / self._w)
        if abs(k * self._w - start) > _ALIGN_TOLERANCE or abs(end - start - self._w) > (
            _ALIGN_TOLERANCE
        ):
            rejected["misaligned"] += 1
            return
        win = self._windows.get(k)
        if win is None:
            win = self._materialize(k, for_event=False, rejected=rejected)
            if win is None:
                return
        elif win.closed and (self._watermark >= (k + 1) * self._w + self._grace):
            rejected["late"] += 1
            return
        if not replay and not win.live:
            self._touch(win)
        m = win.manifests
        if m is None:
            m = win.manifests = {}
        # Each received manifest is counted under exactly one result: accepted (the
        # first of its producer for the window, or anonymous: those add up), superseded
        # (a larger count from the same producer replaces the earlier one: a cumulative
        # update) or duplicate (a retry that changes nothing).
        previous = m.get(producer_id)
        if previous is None:
            m[producer_id] = n
            result = "accepted"
        elif producer_id is None:
            m[None] = previous + n
            result = "accepted"
        elif n > previous:
            m[producer_id] = n
            result = "superseded"
        else:
            result = "duplicate"
        if not replay:
            if result == "accepted":
                self.manifests_accepted += 1
            elif result == "superseded":
                self.manifests_superseded += 1
            else:
                self.manifests_duplicate += 1
        if win.closed and not win.partial and (win.by_manifest or self._ready(win)):
            win.by_manifest = True
            self._reconcile(win, sum(m.values()))

    def advance(self, watermark: float) -> None:
        """Close windows whose end the watermark reached; expire grace and retention."""
        if watermark <= self._watermark:
            return
        self._watermark = watermark
        target = int(watermark // self._w) - 1  # last window with end <= watermark
        if self._next_k is None:
            self._next_k = min(self._windows, default=target + 1)
        self._close_through(target)
        pending = self._pending
        while pending:
            win = pending[0]
            if win.verdict is None and watermark < (win.k + 1) * self._w + self._grace:
                break
            pending.popleft()
            if win.verdict is None:
                self._grace_expired(win)
        closed = self._closed
        while closed and (
            len(closed) > self._max_retained
            or watermark >= (closed[0].k + 1) * self._w + self._retention
        ):
            self._evict(closed.popleft())

    # --- internals -----------------------------------------------------------------

    def _materialize(
        self,
        k: int,
        *,
        for_event: bool,
        rejected: dict[str, int] | None = None,
        events: int = 1,
    ) -> Window | None:
        """rejected: where a manifest's rejection is counted (its own counters by default)."""
        nk = self._next_k
        if nk is not None and k < nk:
            if for_event:
                self.late_dropped += events
            else:
                (rejected or self.manifests_rejected)["late"] += 1
            return None
        if (nk is not None and k >= nk + self._max_open) or (
            nk is None and len(self._windows) >= self._max_open
        ):
            if for_event:
                self.beyond_open += events
            else:
                (rejected or self.manifests_rejected)["beyond_open_windows"] += 1
            return None
        win = self._windows[k] = Window(k, False)
        return win

    def _close_through(self, target: int) -> None:
        nk = self._next_k
        if nk is None or target < nk:
            return
        cap = self._max_open + self._max_retained
        if target - nk + 1 > cap:  # a huge jump: judge what exists, skip empty windows
            cut = target - cap
            stale = sorted(k for k, win in self._windows.items() if k <= cut and not win.closed)
            for k in stale:
                self._close(self._windows[k])
            self.skipped += cut - nk + 1 - len(stale)
            nk = cut + 1
        for k in range(nk, target + 1):
            win = self._windows.get(k)
            if win is None:
                win = self._windows[k] = Window(k, False)
            self._close(win)
        self._next_k = target + 1

    def _close(self, win: Window) -> None:
        win.closed = True
        self._closed.append(win)
        through = self._partial_through
        if win.partial or not self.full_ownership or through is None or win.k <= through:
            win.partial = True
            if win.live:
                self._first(win, PARTIAL)
            # else silent: only read-back manifests (an earlier owner's, maybe a window
            # it judged already) or nothing at all; a live input later counts it partial.
        elif not self._manifests_on:
            self._judge_by_volume(win)
        elif self._ready(win):
            win.by_manifest = True
            self._reconcile(win, sum((win.manifests or {}).values()))
        else:
            self._pending.append(win)

    def _touch(self, win: Window) -> None:
        """First live input: a partial window that closed silently is partial after all."""
        win.live = True
        if win.closed and win.partial and win.verdict is None:
            self._first(win, PARTIAL)

    def _ready(self, win: Window) -> bool:
        m = win.manifests
        return m is not None and len(m) >= (self._need or 1)

    def _grace_expired(self, win: Window) -> None:
        if win.manifests:
            win.by_manifest = True
            self._reconcile(win, sum(win.manifests.values()))
        elif self._require:
            self._first(win, NO_MANIFEST)
        else:
            self._judge_by_volume(win)

    def _judge_by_volume(self, win: Window) -> None:
        expected = self._min_events
        if self._baseline is not None:
            learned = self._baseline.expected(win.k)
            if learned is not None:
                expected = learned if expected is None else max(expected, learned)
        if expected is None:
            self._first(win, NO_EXPECTATION)
        else:
            self._reconcile(win, expected)

    def _first(self, win: Window, verdict: str) -> None:
        win.verdict = verdict
        self.closed_total[verdict] += 1

    def _reconcile(self, win: Window, expected: int) -> None:
        """Credit the counters up to the window's current state (only increases)."""
        observed = win.observed
        self.expected_total += expected - win.expected
        win.expected = expected
        credited = min(observed, expected)
        self.observed_total += credited - win.credited
        win.credited = credited
        if observed - expected > win.surplus:
            self.surplus_total += observed - expected - win.surplus
            win.surplus = observed - expected
        verdict = COMPLETE if observed >= expected else INCOMPLETE
        if win.verdict is None:
            self._first(win, verdict)
        elif verdict != win.verdict:
            if verdict == COMPLETE:
                self.recovered += 1
            else:
                self.degraded += 1
            win.verdict = verdict
        if expected > 0 and win.k >= self._ratio_k:
            self._ratio_k = win.k
            self.last_ratio = observed / expected

    def _evict(self, win: Window) -> None:
        if win.verdict is None and not win.partial:
            self._grace_expired(win)
        del self._windows[win.k]
        self._last_k = None
        if self._baseline is not None and not win.partial:
            self._baseline.record(win.k, win.observed)
