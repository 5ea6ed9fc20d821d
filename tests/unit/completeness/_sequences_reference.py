"""Per-producer sequence tracking: gaps, duplicates and out-of-order arrivals.

Why: a producer that numbers its events lets Tidemark name exactly which events never
arrived. Memory stays bounded whatever the data does: a gap is one range object (a jump
of 10**9 costs one allocation), producers live in an LRU of `max_producers`, and pending
gaps have a global cap. Gaps are declared missing in `advance()`, never in `observe()`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count

ProducerKey = tuple[int, str]
_MISSED_KEPT = 8  # declared-missing ranges remembered per producer, to spot late arrivals


@dataclass(slots=True, eq=False)
class Gap:
    """Sequence numbers lo..hi (inclusive) not seen yet."""

    lo: int
    hi: int
    deadline: float  # upper neighbour's event time + allowed lateness
    owner: Producer
    live: bool = True


def _lo(gap: Gap) -> int:
    return gap.lo


@dataclass(slots=True, eq=False)
class Producer:
    """One producer's stream: everything in [base, high] is received, pending or resolved."""

    key: ProducerKey
    high: int
    base: int  # baseline: the first sequence seen; nothing below it is judged
    base_time: float  # its event time, so earlier numbers get the lateness bound too
    gaps: list[Gap] = field(default_factory=list)  # ascending by lo, disjoint
    missed: list[tuple[int, int]] | None = None  # recent ranges declared missing


class SequenceTracker:
    """Sequence state of one data product (all producers); counters only increase."""

    def __init__(
        self,
        *,
        max_producers: int,
        allowed_lateness: float,
        restart_threshold: int,
        max_pending_gaps: int,
        per_partition: bool,
    ) -> None:
        self._producers: OrderedDict[ProducerKey, Producer] = OrderedDict()
        self._max_producers = max_producers
        self._lateness = allowed_lateness
        self._restart = restart_threshold
        self._max_gaps = max_pending_gaps
        self._per_partition = per_partition
        self._heap: list[tuple[float, int, Gap]] = []
        self._tiebreak = count()
        self._live = 0
        self._watermark = float("-inf")
        self.missing = 0
        self.duplicate = 0
        self.out_of_order = 0
        self.late = 0  # arrived after being declared missing
        self.pre_baseline = 0  # below a producer's baseline: not judged
        self.resets = 0  # large backward jump taken as a producer restart
        self.abandoned = 0  # pending when their partition moved away: not judged
        self.overflowed = 0  # declared missing early because max_pending_gaps was reached
        self.evictions = 0

    @property
    def producers_tracked(self) -> int:
        return len(self._producers)

    @property
    def pending_gaps(self) -> int:
        return self._live

    def observe(self, partition: int, producer_id: str, seq: int, event_time: float) -> None:
        """Classify one event; O(1) unless it lands below the highest sequence seen."""
        key = (partition if self._per_partition else -1, producer_id)
        p = self._producers.get(key)
        if p is None:
            self._add(key, seq, event_time)
            return
        self._producers.move_to_end(key)
        high = p.high
        if seq == high + 1:
            p.high = seq
        elif seq > high:
            self._open_gap(p, high + 1, seq - 1, event_time)
            p.high = seq
        else:
            self._backward(p, seq, event_time)

    def advance(self, watermark: float) -> None:
        """Declare missing every gap whose deadline the watermark has passed."""
        if watermark <= self._watermark:
            return
        self._watermark = watermark
        heap = self._heap
        while heap and heap[0][0] < watermark:
            gap = heapq.heappop(heap)[2]
            if gap.live:
                self._declare(gap)
        if len(heap) > 2 * self._live + 1024:  # drop entries of filled gaps
            self._heap = [e for e in heap if e[2].live]
            heapq.heapify(self._heap)

    def reset_partitions(self, partitions: Iterable[int] | None) -> None:
        """Forget producers of these partitions (None: all); their pending gaps are abandoned.

        Why: after a partition moves, the next event is a new baseline, and a gap we
        held may be filled on another instance, so it must not be reported as missing.
        """
        parts = None if partitions is None or not self._per_partition else set(partitions)
        for entry in self._heap:
            gap = entry[2]
            if gap.live and (parts is None or gap.owner.key[0] in parts):
                gap.live = False
                self._live -= 1
                self.abandoned += gap.hi - gap.lo + 1
        for key in [k for k in self._producers if parts is None or k[0] in parts]:
            del self._producers[key]

    # --- internals -----------------------------------------------------------------

    def _add(self, key: ProducerKey, seq: int, event_time: float) -> None:
        self._producers[key] = Producer(key, seq, seq, event_time)
        if len(self._producers) > self._max_producers:
            # Pending gaps of the evicted producer stay scheduled: loss is still loss.
            self._producers.popitem(last=False)
            self.evictions += 1

    def _backward(self, p: Producer, seq: int, event_time: float) -> None:
        gaps = p.gaps
        if gaps:
            i = bisect_right(gaps, seq, key=_lo) - 1
            if i >= 0 and gaps[i].hi >= seq:
                self.out_of_order += 1
                self._fill(p, i, seq)
                return
        far = p.high - seq > self._restart
        if seq < p.base:
            if far and self._watermark > p.base_time + self._lateness:
                self._restart_producer(p, seq, event_time)
            else:
                self.pre_baseline += 1
        elif far:
            self._restart_producer(p, seq, event_time)
        elif p.missed and _take(p.missed, seq):
            self.late += 1
        else:
            self.duplicate += 1

    def _restart_producer(self, p: Producer, seq: int, event_time: float) -> None:
        """A counter that went far back: a new epoch. Old gaps stay scheduled."""
        self.resets += 1
        p.gaps = []
        p.missed = None
        p.high = p.base = seq
        p.base_time = event_time

    def _open_gap(self, p: Producer, lo: int, hi: int, event_time: float) -> None:
        gap = Gap(lo, hi, event_time + self._lateness, p)
        p.gaps.append(gap)
        self._push(gap)

    def _fill(self, p: Producer, i: int, seq: int) -> None:
        gap = p.gaps[i]
        if gap.lo == gap.hi:
            gap.live = False
            self._live -= 1
            del p.gaps[i]
        elif seq == gap.lo:
            gap.lo += 1
        elif seq == gap.hi:
            gap.hi -= 1
        else:
            upper = Gap(seq + 1, gap.hi, gap.deadline, p)
            gap.hi = seq - 1
            p.gaps.insert(i + 1, upper)
            self._push(upper)

    def _push(self, gap: Gap) -> None:
        heapq.heappush(self._heap, (gap.deadline, next(self._tiebreak), gap))
        self._live += 1
        while self._live > self._max_gaps:
            oldest = heapq.heappop(self._heap)[2]
            if oldest.live:
                self.overflowed += oldest.hi - oldest.lo + 1
                self._declare(oldest)

    def _declare(self, gap: Gap) -> None:
        gap.live = False
        self._live -= 1
        self.missing += gap.hi - gap.lo + 1
        owner = gap.owner
        gaps = owner.gaps
        i = bisect_left(gaps, gap.lo, key=_lo)
        if i < len(gaps) and gaps[i] is gap:  # not detached by a restart or eviction
            del gaps[i]
            missed = owner.missed
            if missed is None:
                missed = owner.missed = []
            missed.append((gap.lo, gap.hi))
            if len(missed) > _MISSED_KEPT:
                del missed[0]


def _take(ranges: list[tuple[int, int]], seq: int) -> bool:
    """Remove seq from the first range holding it; True if one did."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= seq <= hi:
            parts = [(a, b) for a, b in ((lo, seq - 1), (seq + 1, hi)) if a <= b]
            ranges[i : i + 1] = parts
            if len(ranges) > _MISSED_KEPT:
                del ranges[0]
            return True
    return False
