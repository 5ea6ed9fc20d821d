"""Window completeness across replicas: observations, their table, and one reconciler.

Why: with several replicas in one consumer group no instance sees every partition, so
no instance can judge a window on its own. Each owner publishes, per (window,
partition), how many events it counted and how far (offset) that count reaches, plus
each partition's watermark, to a compacted Kafka topic; one reconciler per product
(the owner of partition 0) sums them and feeds the ordinary WindowTracker, so verdicts
and counters mean what they mean on a single instance (the audit pattern of Uber's
Chaperone, with Kafka as the only coordination layer).

Everything here is plain state (no Kafka): monitor/runtime/sharing.py does the talking.
Records are cumulative and keyed so that compaction keeps the latest: applying one
twice, or an older one after a newer one, changes nothing (idempotent under replays).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from monitor.completeness.windows import WindowTracker
from monitor.watermarks import product_watermark

VERSION = 1


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the owner of one partition counted: events below `offset` are in the
    window counts; `origin` is the event time where counting of the partition began
    (windows up to it are partial); watermark None: no event time yet."""

    product: str
    partition: int
    offset: int
    watermark: float | None
    idle: bool
    origin: float | None
    # Rises with every record of the partition, across owners (a new owner continues
    # from the table's): a replayed record never replaces a newer one.
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Count:
    """Events of one partition with event time in window k, counted below `offset`."""

    product: str
    k: int
    partition: int
    count: int
    offset: int


@dataclass(frozen=True, slots=True)
class ManifestSeen:
    """A producer manifest as read from its control topic at (source, offset)."""

    product: str
    source: str  # control topic and partition, "topic/partition"
    offset: int
    start: float
    end: float
    count: int
    producer: str | None


@dataclass(frozen=True, slots=True)
class Judged:
    """A window's verdict state as the reconciler credited it (so a successor does not
    credit it again)."""

    product: str
    k: int
    verdict: str | None
    partial: bool
    observed: int
    expected: int
    credited: int
    surplus: int
    by_manifest: bool
    rev: int = 0  # rises with every revision, across reconcilers


Record = Progress | Count | ManifestSeen | Judged


def record_key(record: Record, window: float) -> bytes:
    """product|kind|... : compaction keeps the latest record of each key."""
    if isinstance(record, Progress):
        key = f"{record.product}|p|{record.partition}"
    elif isinstance(record, Count):
        key = f"{record.product}|w|{round(record.k * window * 1000)}|{record.partition}"
    elif isinstance(record, ManifestSeen):
        key = f"{record.product}|m|{record.source}|{record.offset}"
    else:
        key = f"{record.product}|v|{round(record.k * window * 1000)}"
    return key.encode()


def encode_record(record: Record) -> bytes:
    """A small versioned JSON value (readable with kcat when debugging)."""
    kind = {Progress: "p", Count: "w", ManifestSeen: "m", Judged: "v"}[type(record)]
    body = {
        "v": VERSION,
        "kind": kind,
        **{name: getattr(record, name) for name in record.__slots__},
    }
    return json.dumps(body, separators=(",", ":")).encode()


_TYPES: dict[str, type[Record]] = {"p": Progress, "w": Count, "m": ManifestSeen, "v": Judged}


def decode_record(value: bytes | None) -> Record | None:
    """None for a tombstone, a newer version or anything not ours (skipped, never fatal)."""
    if not value:
        return None
    try:
        body = json.loads(value)
        if not isinstance(body, dict) or body.pop("v", None) != VERSION:
            return None
        cls = _TYPES[body.pop("kind")]
        return cls(**body)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(slots=True)
class ProductTable:
    """The latest observation of every key of one product; bounded by `max_entries`.

    When full, the oldest window's entries go first and are counted in `dropped`.
    """

    window: float
    max_entries: int
    keep_windows: int  # windows kept behind the newest (max_open + max_retained)
    progress: dict[int, Progress] = field(default_factory=dict)
    counts: dict[int, dict[int, Count]] = field(default_factory=dict)  # k -> partition ->
    manifests: dict[tuple[str, int], ManifestSeen] = field(default_factory=dict)
    judged: dict[int, Judged] = field(default_factory=dict)
    entries: int = 0
    dropped: int = 0
    floor: int | None = None  # windows below this were dropped: their records are ignored
    newest: int | None = None

    def _expire(self, below: int) -> None:
        """Forget windows past retention (normal ageing, not counted as dropped)."""
        for k in [k for k in self.counts if k < below]:
            self.entries -= len(self.counts.pop(k))
        for k in [k for k in self.judged if k < below]:
            del self.judged[k]
            self.entries -= 1
        for key in [key for key, m in self.manifests.items() if self._k(m) < below]:
            del self.manifests[key]
            self.entries -= 1

    def _k(self, m: ManifestSeen) -> int:
        return int(m.start // self.window)

    def apply(self, record: Record) -> bool:
        """Keep the record if it is news; returns whether anything changed."""
        if isinstance(record, Progress):
            old = self.progress.get(record.partition)
            if old is not None and record.seq <= old.seq:
                return False  # read again (replay), or an older owner's after the newer
            if old is not None and record.origin is None and old.origin is not None:
                # where the partition's history begins never changes
                record = replace(record, origin=old.origin)
            if old is None:
                self.entries += 1
            self.progress[record.partition] = record
            return old != record
        k = record.k if isinstance(record, Count | Judged) else self._k(record)
        if self.floor is not None and k < self.floor:
            self.dropped += 1
            return False
        if isinstance(record, Count) and (self.newest is None or k > self.newest):
            # Only counted events move time on: a manifest's window is the producer's
            # claim (one far in the future must not age every window out).
            self.newest = k
            self._expire(k - self.keep_windows)
        elif self.newest is not None and k < self.newest - self.keep_windows:
            return False  # beyond retention: no reconciler holds that window any more
        changed = self._apply_windowed(record)
        while self.entries > self.max_entries and self._drop_oldest():
            pass
        return changed

    def _apply_windowed(self, record: Record) -> bool:
        if isinstance(record, Count):
            by_partition = self.counts.setdefault(record.k, {})
            old_count = by_partition.get(record.partition)
            if old_count is not None and old_count.count >= record.count:
                return False  # counts only grow: an older record, or a replay
            if old_count is None:
                self.entries += 1
            by_partition[record.partition] = record
            return True
        if isinstance(record, ManifestSeen):
            key = (record.source, record.offset)
            if key in self.manifests:
                return False
            self.manifests[key] = record
            self.entries += 1
            return True
        if isinstance(record, Judged):
            old = self.judged.get(record.k)
            if old is not None and record.rev <= old.rev:
                return False
            if old is None:
                self.entries += 1
            self.judged[record.k] = record
            return True
        return False

    def _drop_oldest(self) -> bool:
        """Drop the oldest window's records; False if none is left (progress only)."""
        ks = [*self.counts, *self.judged, *(self._k(m) for m in self.manifests.values())]
        if not ks:
            return False
        k = min(ks)
        gone = len(self.counts.pop(k, {})) + (1 if self.judged.pop(k, None) else 0)
        for key in [key for key, m in self.manifests.items() if self._k(m) == k]:
            del self.manifests[key]
            gone += 1
        self.entries -= gone
        self.dropped += gone
        self.floor = k + 1
        return True

    def counted(self, partition: int) -> dict[int, int]:
        """Window -> count of one partition (seeds a new owner)."""
        return {k: c[partition].count for k, c in self.counts.items() if partition in c}

    def total(self, k: int) -> int:
        return sum(c.count for c in self.counts.get(k, {}).values())

    def watermark(self, partitions: int) -> float | None:
        """Product watermark over every partition's last progress; None while any
        partition has none, or holds one without an event time that is not idle."""
        known: list[tuple[float, bool]] = []
        for p in range(partitions):
            progress = self.progress.get(p)
            if progress is None:
                return None
            if progress.watermark is None:
                if not progress.idle:
                    return None
                continue
            known.append((progress.watermark, progress.idle))
        return product_watermark(known)


@dataclass(slots=True)
class PartitionCounts:
    """This instance's per-(window, partition) counts of the partitions it owns.

    Seeded from the table when a partition is assigned, so a count published by a new
    owner continues the previous owner's instead of replacing it. Bounded per
    partition by `max_windows` (the oldest window goes; counted in `dropped`).
    """

    product: str
    window: float
    max_windows: int
    counts: dict[int, dict[int, int]] = field(default_factory=dict)  # partition -> k -> n
    dirty: dict[int, set[int]] = field(default_factory=dict)
    origins: dict[int, float | None] = field(default_factory=dict)
    published: dict[int, Progress] = field(default_factory=dict)  # last sent, seq 0
    seqs: dict[int, int] = field(default_factory=dict)
    manifests: list[ManifestSeen] = field(default_factory=list)  # waiting to be published
    dropped: int = 0

    def seed(
        self, partition: int, counted: dict[int, int], origin: float | None, seq: int = 0
    ) -> None:
        """Continue from the table's latest observations of the partition (seq: its
        latest progress record's)."""
        self.counts[partition] = dict(counted)
        self.dirty[partition] = set()
        self.origins[partition] = origin
        self.seqs[partition] = seq
        self.published.pop(partition, None)

    def forget(self, partition: int) -> None:
        self.counts.pop(partition, None)
        self.dirty.pop(partition, None)
        self.origins.pop(partition, None)
        self.seqs.pop(partition, None)
        self.published.pop(partition, None)

    def count(self, partition: int, event_time: float) -> None:
        """One counted event (hot path)."""
        k = int(event_time // self.window)
        counts = self.counts.get(partition)
        if counts is None:
            counts = self.counts[partition] = {}
            self.dirty[partition] = set()
        if self.origins.get(partition) is None:
            self.origins[partition] = event_time
        n = counts.get(k)
        if n is None and len(counts) >= self.max_windows:
            oldest = min(counts)
            if oldest > k:
                self.dropped += 1
                return
            del counts[oldest]
            self.dirty[partition].discard(oldest)
            self.dropped += 1
        counts[k] = (n or 0) + 1
        self.dirty[partition].add(k)

    def unsent(self, records: Iterable[Record]) -> None:
        """A publish failed: these go out again with the next drain (if still owned)."""
        for record in records:
            if isinstance(record, Count) and record.partition in self.counts:
                self.dirty[record.partition].add(record.k)
            elif isinstance(record, Progress):
                self.published.pop(record.partition, None)
            elif isinstance(record, ManifestSeen):
                self.manifests.append(record)

    def drain(self, positions: Iterable[tuple[int, int, float | None, bool]]) -> list[Record]:
        """Records to publish for (partition, covered offset, watermark, idle): changed
        counts first, then manifests, then progress (the reader sees counts before the
        watermark that may close their window)."""
        out: list[Record] = []
        progress: list[Record] = []
        for partition, offset, watermark, idle in positions:
            counts = self.counts.get(partition, {})
            for k in sorted(self.dirty.get(partition, ())):
                out.append(Count(self.product, k, partition, counts[k], offset))
            self.dirty[partition] = set()
            record = Progress(
                self.product, partition, offset, watermark, idle, self.origins.get(partition)
            )
            if self.published.get(partition) != record:
                self.published[partition] = record
                seq = self.seqs[partition] = self.seqs.get(partition, 0) + 1
                progress.append(replace(record, seq=seq))
        out.extend(self.manifests)
        self.manifests.clear()
        out.extend(progress)
        return out


@dataclass(slots=True)
class Reconciler:
    """Judges one product's windows from the table, with the ordinary WindowTracker.

    Active only on the replica that owns partition 0 of the product's topic. On
    activation it rebuilds the tracker's windows from the table: windows a previous
    reconciler judged are restored without crediting any counter again; the rest are
    judged here as they close. Counters on a replica only ever count what it credited,
    so summing them across replicas counts each window once.
    """

    product: str
    tracker: WindowTracker
    window: float
    max_out_of_orderness: float
    partitions: int | None = None  # of the product's topic
    active: bool = False
    fed: dict[int, int] = field(default_factory=dict)  # k -> events given to the tracker
    origins: dict[int, float] = field(default_factory=dict)
    published: dict[int, Judged] = field(default_factory=dict)

    def activate(self, table: ProductTable) -> None:
        self.active = True
        self.tracker.forget_windows()
        self.fed.clear()
        self.origins.clear()
        self.published = dict(table.judged)
        judged = sorted(table.judged.values(), key=lambda j: j.k)
        for j in judged:
            self.tracker.restore(
                j.k,
                verdict=j.verdict,
                partial=j.partial,
                observed=j.observed,
                expected=j.expected,
                credited=j.credited,
                surplus=j.surplus,
                by_manifest=j.by_manifest,
            )
            self.fed[j.k] = j.observed
        through = judged[-1].k if judged else None
        for progress in table.progress.values():
            self._origin(progress)
        for k in sorted(table.counts):
            self._feed(k, table.total(k))
        for m in table.manifests.values():
            self._manifest(m, replay=through is not None and m.start < (through + 1) * self.window)
        self._advance(table)

    def deactivate(self) -> None:
        """Another replica reconciles now: keep the counters, drop the windows."""
        self.active = False
        self.tracker.forget_windows()
        self.fed.clear()
        self.origins.clear()

    def apply(self, record: Record, table: ProductTable) -> None:
        """A record the table kept (call after table.apply returned True)."""
        if not self.active:
            return
        if isinstance(record, Count):
            self._feed(record.k, table.total(record.k))
        elif isinstance(record, ManifestSeen):
            self._manifest(record, replay=False)
        elif isinstance(record, Progress):
            self._origin(record)
            self._advance(table)

    def changes(self) -> list[Judged]:
        """Windows whose verdict state changed since last asked (to publish)."""
        out = []
        for win in self.tracker.closed_windows():
            j = Judged(
                self.product,
                win.k,
                win.verdict,
                win.partial,
                win.observed,
                win.expected,
                win.credited,
                win.surplus,
                win.by_manifest,
            )
            last = self.published.get(win.k)
            if last is None or replace(last, rev=0) != j:
                j = replace(j, rev=(last.rev if last is not None else 0) + 1)
                self.published[win.k] = j
                out.append(j)
        if len(self.published) > 2 * max(1, len(out)) + 10_000:
            live = {w.k for w in self.tracker.closed_windows()}
            self.published = {k: j for k, j in self.published.items() if k in live}
        return out

    def _feed(self, k: int, total: int) -> None:
        delta = total - self.fed.get(k, 0)
        if delta > 0:
            self.tracker.add(k, delta)
            self.fed[k] = total

    def _manifest(self, m: ManifestSeen, *, replay: bool) -> None:
        self.tracker.on_manifest(m.start, m.end, m.count, m.producer, replay=replay)

    def _origin(self, progress: Progress) -> None:
        if progress.origin is None or progress.partition in self.origins:
            return
        self.origins[progress.partition] = progress.origin
        self.tracker.raise_partial_boundary(progress.origin + self.max_out_of_orderness)

    def _advance(self, table: ProductTable) -> None:
        if self.partitions is None:
            return
        watermark = table.watermark(self.partitions)
        if watermark is not None:
            self.tracker.advance(watermark)
        if len(self.fed) > 4 * (len(table.counts) + len(table.judged)) + 1000:
            kept = set(table.counts) | set(table.judged)
            self.fed = {k: n for k, n in self.fed.items() if k in kept}


def judged_windows(records: Iterator[Record]) -> dict[int, Judged]:
    """Latest verdict per window from a stream of records (tests and debugging)."""
    out: dict[int, Judged] = {}
    for record in records:
        if isinstance(record, Judged):
            out[record.k] = record
    return out
