"""Merging worker snapshots: the parts of a split render as the whole would.

The property: events over P partitions, split among K workers that each own a
disjoint set of partitions, processed by K real pipelines; their snapshots,
merged, render exactly the per-product and per-partition samples of one
pipeline that owns every partition and processed the same events. Window
verdicts are not compared: a worker owning part of a topic judges its windows
`partial` (the documented limitation).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.export.collector import TidemarkCollector, render
from monitor.export.merge import (
    SnapshotMerger,
    merge_completeness,
    merge_process,
    partitions_watermark,
)
from monitor.export.snapshot import PartitionView, ProcessView, Snapshot
from monitor.pipeline import Pipeline
from monitor.runtime.health import HealthState
from monitor.stats import LoopStats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_pipeline import NOW, TOPIC, Msg, build, order

PROCESS_FAMILIES = {
    "tidemark_up",
    "tidemark_ready",
    "tidemark_kafka_reachable",
    "tidemark_poll_loop_heartbeat_timestamp_seconds",
    "tidemark_kafka_errors",
    "tidemark_batch_processing_seconds",
    "tidemark_batch_size_messages",
    "tidemark_commits",
    "tidemark_cached_scrapes",
    "tidemark_lag_snapshot_timestamp_seconds",
    "tidemark_build_info",
}

# One event: (partition, seconds before NOW of its event time, or None for garbage).
events = st.lists(
    st.tuples(st.integers(0, 5), st.one_of(st.none(), st.floats(-50, 200, allow_nan=False))),
    max_size=60,
)


def _run(
    partitions: list[int], batch: list[tuple[int, float | None]], hw: dict[int, int]
) -> Pipeline:
    pipeline = build()
    for p in partitions:
        pipeline.assign(TOPIC, p, NOW, start=0, warmup_until=0)
    offsets: Counter[int] = Counter()
    msgs = []
    for i, (p, ago) in enumerate(batch):
        if p not in partitions:
            continue
        value = b"\x01garbage" if ago is None else order(NOW - ago, i)
        msgs.append(Msg(TOPIC, p, offsets[p], value))
        offsets[p] += 1
    pipeline.high_watermarks = {TOPIC: {p: hw.get(p, offsets[p]) for p in partitions}}
    pipeline.process_batch(msgs, NOW)
    return pipeline


def _snapshot(pipeline: Pipeline, now: float) -> Snapshot:
    return TidemarkCollector(pipeline, HealthState(liveness_limit=60))._snapshot(now)


def _samples(snapshot: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in render(snapshot):
        if family.name in PROCESS_FAMILIES:
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@settings(max_examples=60, deadline=None)
@given(
    batch=events,
    owner=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    later=st.sampled_from([0.0, 100.0]),  # 100 s: past idle_timeout (30 s)
    behind=st.sets(st.integers(0, 5)),  # partitions with data still to read
)
def test_merged_parts_render_as_the_whole(
    batch: list[tuple[int, float | None]], owner: list[int], later: float, behind: set[int]
) -> None:
    counts = Counter(p for p, _ in batch)
    hw = {p: counts[p] + (5 if p in behind else 0) for p in range(6)}
    now = NOW + later
    whole = _snapshot(_run(list(range(6)), batch, hw), now)
    workers = sorted(set(owner))
    parts = [
        _snapshot(_run([p for p in range(6) if owner[p] == w], batch, hw), now) for w in workers
    ]
    merged = SnapshotMerger().merge(now, parts, whole.process)
    assert _samples(merged) == _samples(whole)


def test_a_retired_worker_keeps_the_counters_from_falling() -> None:
    batch: list[tuple[int, float | None]] = [(p, 1.0) for p in range(6)] * 3
    hw = {p: 3 for p in range(6)}
    a = _snapshot(_run([0, 1, 2], batch, hw), NOW)
    b = _snapshot(_run([3, 4, 5], batch, hw), NOW)
    merger = SnapshotMerger()
    before = merger.merge(NOW, [a, b], a.process)
    assert before.products[0].stats.events == 18
    # b exits; its replacement starts from 0 and has counted 2 events so far.
    merger.retire(b)
    fresh = _snapshot(_run([3, 4, 5], [(3, 1.0), (4, 1.0)], hw), NOW)
    after = merger.merge(NOW, [a, fresh], a.process)
    assert after.products[0].stats.events == 9 + 9 + 2
    assert after.products[0].stats.latency.count == 20
    # Levels are the live workers' only: the retired one has no partitions.
    assert len(after.products[0].partitions) == 6


def test_without_workers_the_product_series_vanish_and_health_is_down() -> None:
    process = merge_process([], expected=2, cached_scrapes=0)
    assert not process.alive and not process.ready
    merged = SnapshotMerger().merge(NOW, [], process)
    assert merged.products == []


def _process(alive: bool = True, ready: bool = True, heartbeat: float = NOW) -> ProcessView:
    return ProcessView(
        loop=LoopStats(heartbeat=heartbeat, commits=Counter(ok=2)),
        alive=alive,
        ready=ready,
        kafka_reachable=True,
        lag_snapshot_at=heartbeat,
        cached_scrapes=0,
        registry_lookups={"ok": 1},
        registry_up=True,
    )


def test_process_view_is_healthy_only_if_every_worker_is() -> None:
    both = merge_process([_process(), _process(heartbeat=NOW - 5)], expected=2, cached_scrapes=3)
    assert both.alive and both.ready
    assert both.loop.heartbeat == NOW - 5  # the oldest: a stalled worker shows
    assert both.loop.commits["ok"] == 4 and both.registry_lookups == {"ok": 2}
    assert both.cached_scrapes == 3
    assert not merge_process(
        [_process(), _process(ready=False)], expected=2, cached_scrapes=0
    ).ready
    assert not merge_process([_process()], expected=2, cached_scrapes=0).alive  # one missing


def _view(watermark: float | None, idle: bool = False, orphaned: bool = False) -> PartitionView:
    return PartitionView("0", watermark, watermark, idle, False, None, None, None, orphaned)


def test_a_settling_partition_holds_the_product_watermark() -> None:
    assert partitions_watermark([_view(10.0), _view(None)]) == (True, None)
    assert partitions_watermark([_view(10.0), _view(None, idle=True)]) == (False, 10.0)
    assert partitions_watermark([_view(10.0), _view(5.0, idle=True)]) == (False, 10.0)
    assert partitions_watermark([_view(10.0, idle=True), _view(5.0, idle=True)]) == (False, 10.0)
    assert partitions_watermark([_view(10.0), _view(5.0, orphaned=True)]) == (False, 5.0)


def test_completeness_counts_add_and_the_last_ratio_is_kept_only_when_unambiguous() -> None:
    from monitor.completeness.tracker import CompletenessSnapshot

    def snap(**kw: Any) -> CompletenessSnapshot:
        base: dict[str, Any] = {
            f: 0 for f in CompletenessSnapshot.__dataclass_fields__ if f != "objective"
        }
        base.update(
            last_window_ratio=None,
            windows_closed_total={"partial": 1},
            manifests_rejected_total={},
            objective=0.99,
        )
        base.update(kw)
        return CompletenessSnapshot(**base)

    merged = merge_completeness(
        [snap(sequence_missing_total=2, last_window_ratio=0.5), snap(sequence_missing_total=3)]
    )
    assert merged.sequence_missing_total == 5
    assert merged.windows_closed_total == {"partial": 2}
    assert merged.last_window_ratio == 0.5 and merged.objective == 0.99
    two = merge_completeness([snap(last_window_ratio=0.5), snap(last_window_ratio=1.0)])
    assert two.last_window_ratio is None
