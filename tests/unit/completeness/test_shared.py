"""Shared-mode completeness: observations split across owners give one instance's verdicts.

A small simulation of the protocol with no Kafka: owners of partitions count into
PartitionCounts and publish records to a list (the compacted topic), crash between
publishing and committing, and hand partitions over; reconcilers read the list and
hand over too. Whatever the split, the final per-window verdicts must equal those of
a single owner of everything with a single reconciler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.completeness.shared import (
    Count,
    Judged,
    ManifestSeen,
    PartitionCounts,
    ProductTable,
    Progress,
    Reconciler,
    Record,
    decode_record,
    encode_record,
    judged_windows,
    record_key,
)
from monitor.completeness.window import COMPLETE, INCOMPLETE, PARTIAL
from monitor.completeness.windows import WindowTracker

Verdicts = dict[int, tuple[str | None, bool, int, int]]
Result = tuple[Verdicts, tuple[int, int]]

W = 10.0
OOO = 2.0
END = 100.0  # a final watermark beyond every window (events are dated 0..80)


def tracker(*, manifests: bool = False) -> WindowTracker:
    return WindowTracker(
        window=W,
        retention=10_000.0,
        max_open=1000,
        max_retained=1000,
        manifests=manifests,
        require_manifest=manifests,
        manifest_grace=10_000.0 if manifests else 0.0,
        manifest_producers=None,
        min_events=None if manifests else 3,
        baseline=None,
    )


def table() -> ProductTable:
    return ProductTable(window=W, max_entries=100_000, keep_windows=2000)


@dataclass
class Owner:
    """One replica's share of one partition: counts, position, watermark."""

    partition: int
    counts: PartitionCounts
    position: int
    max_time: float = float("-inf")

    def progress(self) -> tuple[int, int, float | None, bool]:
        wm = None if self.max_time == float("-inf") else self.max_time - OOO
        return (self.partition, self.position, wm, False)


@dataclass
class World:
    partitions: list[list[float]]  # event times per partition, offset = index
    log: list[Record] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)

    def take_over(self, partition: int) -> Owner:
        """A new owner: seeds counts from the table (caught up to the log's end) and
        resumes after what is covered; offsets before that only warm its clock."""
        t = table()
        for r in self.log:
            t.apply(r)
        counts = PartitionCounts("p", W, max_windows=1000)
        progress = t.progress.get(partition)
        counts.seed(
            partition,
            t.counted(partition),
            progress.origin if progress else None,
            progress.seq if progress else 0,
        )
        covered = progress.offset if progress else 0
        resume = max(self.committed.get(partition, 0), covered)
        owner = Owner(partition, counts, resume)
        for t_ev in self.partitions[partition][:resume]:
            owner.max_time = max(owner.max_time, t_ev)
        return owner

    def step(self, owner: Owner, n: int) -> None:
        events = self.partitions[owner.partition]
        for t_ev in events[owner.position : owner.position + n]:
            owner.counts.count(owner.partition, t_ev)
            owner.max_time = max(owner.max_time, t_ev)
            owner.position += 1

    def publish(self, owner: Owner, *, commit: bool) -> None:
        """Publish before committing; a crash in between leaves the commit behind."""
        self.log.extend(owner.counts.drain([owner.progress()]))
        if commit:
            self.committed[owner.partition] = owner.position

    def finish(self, owner: Owner) -> None:
        self.step(owner, len(self.partitions[owner.partition]))
        self.publish(owner, commit=True)
        # Time moves on: the partition's watermark passes every window.
        self.log.extend(owner.counts.drain([(owner.partition, owner.position, END, True)]))


def reconcile(log: list[Record], handovers: list[int], partitions: int, **kw: bool) -> Result:
    """Read the log with reconcilers that hand over at the given log positions."""
    t = table()
    out: list[Record] = []
    rec = Reconciler("p", tracker(**kw), W, OOO, partitions=partitions)
    rec.activate(t)
    trackers = [rec.tracker]
    for pos, record in enumerate(log):
        if pos in handovers:  # a new replica owns partition 0 now
            for j in out:
                t.apply(j)
            rec = Reconciler("p", tracker(**kw), W, OOO, partitions=partitions)
            rec.activate(t)
            trackers.append(rec.tracker)
        if t.apply(record):
            rec.apply(record, t)
        for j in rec.changes():
            out.append(j)
            t.apply(j)
    latest = judged_windows(iter(out))
    verdicts = {k: (j.verdict, j.partial, j.observed, j.expected) for k, j in latest.items()}
    # The SLI's counters summed over every reconciler there was (as Prometheus sums
    # replicas): each window credited once, whoever judged it.
    sli = (sum(w.expected_total for w in trackers), sum(w.observed_total for w in trackers))
    return verdicts, sli


def single(parts: list[list[float]], **kw: bool) -> Result:
    world = World(parts)
    for p in range(len(parts)):
        world.finish(world.take_over(p))
    return reconcile(world.log, [], len(parts), **kw)


event_times = st.lists(st.integers(0, 80).map(float), min_size=0, max_size=25)


@settings(max_examples=120, deadline=None)
@given(
    parts=st.lists(event_times, min_size=1, max_size=3),
    plan=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 6), st.booleans(), st.booleans()),
        max_size=25,
    ),
    handover_at=st.lists(st.floats(0.0, 1.0), max_size=3),
    replay=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_any_split_gives_single_instance_verdicts(
    parts: list[list[float]],
    plan: list[tuple[int, int, bool, bool]],
    handover_at: list[float],
    replay: tuple[float, float],
) -> None:
    """plan: (partition, events to process, publish+commit / crash, hand over after);
    replay: a prefix of the topic is read again at some point (a reader restarted, a
    producer retry): records are cumulative, so nothing changes."""
    world = World(parts)
    owners = {p: world.take_over(p) for p in range(len(parts))}
    for p, n, commit, handover in plan:
        if p >= len(parts):
            continue
        owner = owners[p]
        world.step(owner, n)
        world.publish(owner, commit=commit)
        if not commit or handover:  # a crash after publishing, or a rebalance
            owners[p] = world.take_over(p)
    for owner in owners.values():
        world.finish(owner)
    # The reconciler moves at these fractions of the log (partition 0 changed hands).
    at = [int(f * len(world.log)) for f in handover_at]
    cut, where = int(replay[0] * len(world.log)), int(replay[1] * len(world.log))
    log = world.log[:where] + world.log[:cut] + world.log[where:]
    got = reconcile(log, at, len(parts))
    assert_same_verdicts(got, single(parts))


def assert_same_verdicts(got_result: Result, want_result: Result) -> None:
    """Judged windows are equal. Windows before a partition's first counted event are
    partial by definition; one that only late events reach may be materialised or not
    depending on when the watermark first moved (as on a single instance), so a
    partial window on one side may be absent on the other."""
    (got, got_sli), (want, want_sli) = got_result, want_result
    assert got_sli == want_sli
    judged = {k: v for k, v in want.items() if not v[1]}
    assert {k: v for k, v in got.items() if not v[1]} == judged
    for k in set(got) ^ set(want):
        assert (got.get(k) or want[k])[1], k
    for k in set(got) & set(want):
        assert got[k][1] == want[k][1], k


def test_prefixes_replayed_change_nothing() -> None:
    """A reconciler reading the log twice (from the start after a restart) agrees."""
    parts = [[1.0, 2.0, 12.0, 15.0, 33.0], [3.0, 11.0, 21.0, 22.0, 23.0, 40.0]]
    world = World(parts)
    for p in range(2):
        world.finish(world.take_over(p))
    once = reconcile(world.log, [], 2)[0]
    twice = reconcile(world.log + world.log, [len(world.log)], 2)[0]
    assert once == twice
    assert once[0] == (PARTIAL, True, 3, 0)  # both partitions start in window 0
    assert once[1] == (COMPLETE, False, 3, 3)
    assert once[2] == (COMPLETE, False, 3, 3)
    assert once[3] == (INCOMPLETE, False, 1, 3)


def test_a_crash_between_publish_and_commit_is_not_counted_twice() -> None:
    parts = [[5.0, 11.0, 12.0, 13.0, 14.0, 35.0]]
    world = World(parts)
    owner = world.take_over(0)
    world.step(owner, 3)
    world.publish(owner, commit=False)  # published 3 events, the commit never happened
    assert world.committed.get(0, 0) == 0
    world.finish(world.take_over(0))
    assert reconcile(world.log, [], 1)[0][1] == (COMPLETE, False, 4, 3)


def test_windows_before_a_partitions_first_event_are_partial() -> None:
    parts = [[1.0, 25.0, 26.0, 27.0], [25.0, 26.0, 27.0]]
    got = single(parts)[0]
    # Partition 1's first event (25 + 2s out-of-orderness) is where its history starts.
    assert got[0][1] and got[1][1] and got[2][1]
    assert got[0][0] == PARTIAL and got[2][0] == PARTIAL


def test_manifests_from_any_owner_reach_the_reconciler() -> None:
    world = World([[5.0, 11.0, 12.0], [6.0, 13.0]])
    world.log.append(ManifestSeen("p", "ctl/0", 7, W, 2 * W, 2, None))
    world.log.append(ManifestSeen("p", "ctl/0", 7, W, 2 * W, 2, None))  # replayed: same key
    world.log.append(ManifestSeen("p", "ctl/1", 3, W, 2 * W, 1, None))  # another: adds up
    for p in range(2):
        world.finish(world.take_over(p))
    got = reconcile(world.log, [4], 2, manifests=True)[0]
    assert got[1] == (COMPLETE, False, 3, 3)


def test_records_round_trip_and_keys_compact_per_window_and_partition() -> None:
    records: list[Record] = [
        Progress("p", 1, 10, 5.5, False, 1.0),
        Count("p", 3, 1, 7, 10),
        ManifestSeen("p", "ctl/0", 4, 30.0, 40.0, 7, None),
        Judged("p", 3, COMPLETE, False, 7, 7, 7, 0, True),
    ]
    for r in records:
        assert decode_record(encode_record(r)) == r
    assert record_key(records[1], W) == b"p|w|30000|1"
    assert record_key(Count("p", 3, 1, 9, 12), W) == record_key(records[1], W)
    assert decode_record(b'{"v":2,"kind":"p"}') is None
    assert decode_record(b"not json") is None
    assert decode_record(None) is None


def test_table_is_bounded_and_counts_what_it_dropped() -> None:
    t = ProductTable(window=W, max_entries=10, keep_windows=1000)
    for k in range(20):
        t.apply(Count("p", k, 0, 1, k + 1))
    assert t.entries <= 10
    assert t.dropped == 10
    assert not t.apply(Count("p", 0, 0, 5, 30))  # below what was dropped: ignored
    t2 = ProductTable(window=W, max_entries=1000, keep_windows=5)
    for k in range(20):
        t2.apply(Count("p", k, 0, 1, k + 1))
    assert min(t2.counts) == 14 and t2.dropped == 0  # aged out, not dropped


def test_older_progress_never_replaces_newer() -> None:
    t = table()
    assert t.apply(Progress("p", 0, 10, 50.0, False, 1.0, seq=2))
    assert not t.apply(Progress("p", 0, 8, 40.0, False, 1.0, seq=1))
    assert not t.apply(Progress("p", 0, 10, None, False, 1.0, seq=2))  # a replay
    assert t.progress[0].offset == 10 and t.progress[0].watermark == 50.0
    assert t.apply(Count("p", 1, 0, 4, 10))
    assert not t.apply(Count("p", 1, 0, 3, 8))  # counts only grow


def test_a_manifest_far_in_the_future_does_not_age_the_table_out() -> None:
    t = ProductTable(window=W, max_entries=1000, keep_windows=5)
    t.apply(Count("p", 3, 0, 4, 10))
    t.apply(ManifestSeen("p", "ctl/0", 1, 1e9, 1e9 + W, 5, None))
    assert t.counts[3][0].count == 4


def test_a_replica_that_stops_reconciling_keeps_its_counters_and_drops_its_windows() -> None:
    t = table()
    rec = Reconciler("p", tracker(), W, OOO, partitions=1)
    rec.activate(t)
    for r in (Count("p", 1, 0, 3, 3), Progress("p", 0, 3, 25.0, False, 5.0, seq=1)):
        t.apply(r)
        rec.apply(r, t)
    assert rec.tracker.expected_total == 3 and rec.tracker.retained_windows > 0
    rec.deactivate()
    assert rec.tracker.expected_total == 3
    assert rec.tracker.retained_windows == 0 and rec.tracker.open_windows == 0


def test_a_replayed_older_verdict_does_not_make_a_successor_credit_again() -> None:
    t = table()
    assert t.apply(Judged("p", 1, COMPLETE, False, 9, 9, 9, 0, True, rev=2))
    assert not t.apply(Judged("p", 1, INCOMPLETE, False, 8, 9, 8, 0, True, rev=1))
    rec = Reconciler("p", tracker(), W, OOO, partitions=1)
    t.apply(Count("p", 1, 0, 9, 9))
    rec.activate(t)
    assert rec.tracker.observed_total == 0  # credited by the predecessor, not again
    assert rec.changes() == []


def test_a_table_full_of_partitions_alone_still_takes_windows() -> None:
    """Progress records (one per partition) count too but are never dropped."""
    t = ProductTable(window=W, max_entries=3, keep_windows=1000)
    for p in range(5):
        t.apply(Progress("p", p, 1, 1.0, False, 1.0, seq=1))
    t.apply(Count("p", 1, 0, 1, 1))  # over the cap: its own window goes, and it returns
    assert t.dropped == 1 and not t.counts and len(t.progress) == 5


def test_a_failed_publish_goes_out_again_with_the_next_round() -> None:
    counts = PartitionCounts("p", W, max_windows=100)
    counts.seed(0, {}, None)
    counts.count(0, 12.0)
    counts.manifests.append(ManifestSeen("p", "ctl/0", 1, W, 2 * W, 1, None))
    first = counts.drain([(0, 1, 10.0, False)])
    assert counts.drain([(0, 1, 10.0, False)]) == []  # nothing new
    counts.unsent(first)
    again = counts.drain([(0, 1, 10.0, False)])
    assert [type(r) for r in again] == [Count, ManifestSeen, Progress]
    assert again[-1].seq == first[-1].seq + 1  # type: ignore[union-attr]
