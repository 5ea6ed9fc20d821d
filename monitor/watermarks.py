"""Per-partition event-time watermarks, with Flink's semantics, outside Flink.

A partition's watermark is its largest event time minus the bounded
out-of-orderness; it never decreases. Idle partitions (nothing new for
idle_timeout while the consumer is caught up) do not hold the product watermark
back; a partition whose backlog is not being read is *stuck*, which is a
different problem and is reported as such.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NEG_INF = -math.inf

ON_TIME = 0
LATE = 1
FUTURE = 2


@dataclass(frozen=True, slots=True)
class ClockSettings:
    max_out_of_orderness: float
    idle_timeout: float
    max_future_skew: float
    stuck_after: float = 60.0


@dataclass(slots=True)
class PartitionClock:
    """Event-time state of one partition this instance owns."""

    settings: ClockSettings
    assigned_at: float
    max_event_time: float = NEG_INF
    last_event_at: float = NEG_INF  # wall clock of the last processed event
    position: int = -1  # next offset after the last counted event; -1 until known
    position_changed_at: float = NEG_INF
    warm_until: int = -1  # offsets below this are read-back: the watermark is not complete yet
    # Seeded from this process's own last watermark of the partition (it was lost in a
    # broker outage and came back): the read-back cannot make that watermark partial.
    carried_over: bool = False

    def __post_init__(self) -> None:
        self.position_changed_at = self.assigned_at

    @property
    def has_watermark(self) -> bool:
        return self.max_event_time != NEG_INF

    @property
    def watermark(self) -> float:
        return self.max_event_time - self.settings.max_out_of_orderness

    def observe(self, event_time: float, now: float) -> int:
        """Classify one event (ON_TIME, LATE or FUTURE) and advance the clock.

        ProductPipeline._count has this inline (it runs once per event): keep in step.
        """
        self.last_event_at = now
        if event_time > now + self.settings.max_future_skew:
            return FUTURE
        if event_time > self.max_event_time:
            self.max_event_time = event_time
            return ON_TIME
        if event_time < self.max_event_time - self.settings.max_out_of_orderness:
            return LATE
        return ON_TIME

    def warm(self, event_time: float, now: float) -> None:
        """Advance from read-back data (already counted by an earlier owner)."""
        if self.max_event_time < event_time <= now + self.settings.max_future_skew:
            self.max_event_time = event_time

    def advance_position(self, next_offset: int, now: float) -> None:
        if next_offset != self.position:
            self.position = next_offset
            self.position_changed_at = now

    def lag(self, high_watermark: int | None) -> int | None:
        """Messages between Tidemark's position and the end; never negative."""
        if high_watermark is None or high_watermark < 0 or self.position < 0:
            return None
        return max(0, high_watermark - self.position)

    def is_idle(self, now: float, high_watermark: int | None) -> bool:
        """Quiet for idle_timeout *and* caught up: the producer is not writing here."""
        quiet_since = max(self.last_event_at, self.assigned_at)
        if now - quiet_since < self.settings.idle_timeout:
            return False
        lag = self.lag(high_watermark)
        if lag is None:
            # Unknown end offset: caught up only if we never had anything to read.
            return high_watermark is not None and high_watermark <= 0
        return lag == 0

    def is_settling(self, high_watermark: int | None) -> bool:
        """Data that sets this partition's watermark is still unread.

        True while the partition has no event time yet or is still reading back
        below its committed offset, and is not known to be caught up.
        """
        reading_back = self.position < self.warm_until and not self.carried_over
        unsettled = not self.has_watermark or reading_back
        return unsettled and self.lag(high_watermark) != 0

    def is_stuck(self, now: float, high_watermark: int | None) -> bool:
        """Data waits on the broker but Tidemark's position has not moved."""
        lag = self.lag(high_watermark)
        return bool(lag) and now - self.position_changed_at >= self.settings.stuck_after


@dataclass(frozen=True, slots=True)
class Orphan:
    """What this instance last knew of a partition whose assignment was lost.

    A lost assignment (the group session expired, typically because no broker
    answered) is not a hand-over: nobody may be reading the partition. Its last
    watermark stays exported, so freshness keeps growing through an outage of
    any length instead of vanishing; `idle` is frozen as it was when lost, so
    the product watermark does not jump at that moment.
    """

    watermark: float
    max_event_time: float
    last_event_at: float
    idle: bool


@dataclass(slots=True)
class ProductClock:
    """The partitions of one product that this instance owns, and those it lost."""

    settings: ClockSettings
    partitions: dict[int, PartitionClock] = field(default_factory=dict)
    emitted: float | None = None  # product watermark last reported; never goes back
    # Lost partitions, kept until this instance's next assignment (which takes them
    # back or shows another member owns them). Bounded by the topic's partitions.
    orphans: dict[int, Orphan] = field(default_factory=dict)
    # Why: advance() after every batch need not walk every partition of every product.
    # The product watermark can only move when a partition changed (dirty: set by
    # the pipeline per event and here on every assignment change), when the end
    # offsets changed, or when a quiet partition turns idle (not before recheck_at).
    dirty: bool = True
    recheck_at: float = NEG_INF

    def assign(
        self, partition: int, now: float, position: int = -1, warm_until: int = -1
    ) -> PartitionClock:
        self.dirty = True
        clock = PartitionClock(
            self.settings, assigned_at=now, position=position, warm_until=warm_until
        )
        orphan = self.orphans.pop(partition, None)
        if orphan is not None:  # back after an outage: carry the watermark over, no gap
            clock.max_event_time = orphan.max_event_time
            clock.last_event_at = orphan.last_event_at
            clock.carried_over = True
        self.partitions[partition] = clock
        return clock

    def revoke(self, partition: int) -> None:
        """Handed over to another member: forget it, nothing of it is exported."""
        self.dirty = True
        self.partitions.pop(partition, None)
        self.orphans.pop(partition, None)
        self._forget_watermark_if_empty()

    def lose(self, partition: int, now: float, high_watermark: int | None) -> None:
        """Assignment lost, not handed over: keep its last exportable watermark as an orphan.

        A partition still settling (no watermark, or a partly read-back one)
        leaves nothing behind: its watermark was not exported either.
        """
        self.dirty = True
        clock = self.partitions.pop(partition, None)
        if clock is None or not clock.has_watermark or clock.is_settling(high_watermark):
            self._forget_watermark_if_empty()
            return
        self.orphans[partition] = Orphan(
            watermark=clock.watermark,
            max_event_time=clock.max_event_time,
            last_event_at=clock.last_event_at,
            idle=clock.is_idle(now, high_watermark),
        )

    def keep_orphans(self, assigned: set[int]) -> list[int]:
        """After a new assignment: orphans it does not include belong to another member.

        Returns the partitions whose orphaned state was dropped.
        """
        self.dirty = True
        dropped = [p for p in self.orphans if p not in assigned]
        for p in dropped:
            del self.orphans[p]
        self._forget_watermark_if_empty()
        return dropped

    def _forget_watermark_if_empty(self) -> None:
        if not self.partitions and not self.orphans:
            self.emitted = None

    def watermark(self, now: float, high_watermarks: Mapping[int, int]) -> float | None:
        """Min over active partitions; if every partition is idle, the max.

        A partition with no event yet holds the last value (as if its watermark were
        -inf) until it is idle: quiet for idle_timeout since its assignment and caught
        up. Its first events may be older than the other partitions' data, and a value
        that ran ahead of them would close completeness windows without them (judged
        incomplete, then recovered: false alarms) and, never decreasing, hide its
        staleness for good. Holding is bounded by idle_timeout, so a partition nobody
        writes to never holds the watermark forever. Likewise, while any partition is
        settling (its read-back unfinished with data still to read) the last value is
        kept: a partly read-back watermark would show a false staleness.
        When all partitions are idle the producer has stopped altogether and
        the newest data really is getting old, so the product watermark stays
        at the newest partition watermark and freshness grows.
        Orphans (lost partitions) count with their last watermark and idleness.
        """
        known: list[tuple[float, bool]] = [(o.watermark, o.idle) for o in self.orphans.values()]
        for p, clock in self.partitions.items():
            high_watermark = high_watermarks.get(p)
            if clock.is_settling(high_watermark):
                return self.emitted
            idle = clock.is_idle(now, high_watermark)
            if clock.has_watermark:
                known.append((clock.watermark, idle))
            elif not idle:  # no event yet, but one may come: nothing is known to be past
                return self.emitted
        current = product_watermark(known)
        if current is not None and (self.emitted is None or current > self.emitted):
            self.emitted = current
        return self.emitted

    def next_idle_at(self, now: float) -> float:
        """The earliest time after `now` at which the passing of time alone may turn a
        partition idle (and so move the watermark); +inf if none can."""
        timeout = self.settings.idle_timeout
        soonest = math.inf
        for clock in self.partitions.values():
            quiet_since = max(clock.last_event_at, clock.assigned_at)
            if now - quiet_since < timeout:  # not idle by time yet: is_idle's own test
                at = quiet_since + timeout
                soonest = min(soonest, at if at > now else math.nextafter(now, math.inf))
        return soonest


def product_watermark(partitions: Iterable[tuple[float, bool]]) -> float | None:
    """Combine (watermark, idle) pairs: min over active ones, else max over idle."""
    active_min = math.inf
    idle_max = NEG_INF
    for watermark, idle in partitions:
        if idle:
            idle_max = max(idle_max, watermark)
        else:
            active_min = min(active_min, watermark)
    if active_min != math.inf:
        return active_min
    if idle_max != NEG_INF:
        return idle_max
    return None
