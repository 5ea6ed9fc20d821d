"""Completeness across replicas for discovered products: 1 and 2 daemons agree.

A topic nobody configured is found by `discover:`, whose defaults give it an
expected volume per window. With two replicas in the group each owns part of its
partitions, so only the shared topic lets one of them judge its windows. Real
daemons on the mock cluster; the verdicts are read from the shared topic, as the
reconciler wrote them, and must match the script's truth with either replica count.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from harness import Broker, TidemarkProcess, scrape, wait_for
from test_replicas_completeness import (
    Verdicts,
    counted,
    covered,
    sharing_settings,
    wait_verdicts,
)

W = 10  # window seconds
PARTITIONS = 3
PER = 3  # events per partition per window
FLOOR = PARTITIONS * PER  # the discovered default: min events per window

# (verdict, partial, observed, expected) per window; the first window is where every
# partition's history begins, so it is partial.
TRUTH: Verdicts = {
    0: ("partial", True, FLOOR, 0),  # a partial window expects nothing
    1: ("complete", False, FLOOR, FLOOR),
    2: ("incomplete", False, FLOOR - 1, FLOOR),  # one event missing on partition 1
    3: ("complete", False, FLOOR, FLOOR),
}


def produce_windows(
    broker: Broker, topic: str, t0: int, windows: range, events: range = range(PER)
) -> int:
    """`events` of the `PER` per partition per window, one short in window 2
    (partition 1). Topic-only: the event time is the record's timestamp."""
    sent = 0
    for k in windows:
        for p in range(PARTITIONS):
            for i in events if (k, p) != (2, 1) else range(events.start, min(events.stop, PER - 1)):
                at = (t0 + k * W + 1 + p + 2 * i) * 1000
                broker.produce(topic, p, f"{k}.{p}.{i}".encode(), timestamp_ms=at)
                sent += 1
    broker.flush()
    return sent


def tick(broker: Broker, topic: str, t0: int) -> int:
    """One event per partition that moves every watermark past window 3."""
    for p in range(PARTITIONS):
        broker.produce(topic, p, b"tick", timestamp_ms=(t0 + 5 * W + 5) * 1000)
    broker.flush()
    return PARTITIONS


def config(path: Path, broker: Broker, prefix: str, shared: str, group: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                **sharing_settings(broker, group, shared),
                "discover": {
                    "include": [prefix + r"\."],
                    "refresh_interval": 1.0,
                    "defaults": {
                        "owner": "platform",
                        "idle_timeout": 300,
                        "completeness": {
                            "window": W,
                            "window_retention": 7200,
                            "expected": {"min_events_per_window": FLOOR},
                        },
                    },
                },
            },
            sort_keys=False,
        )
    )
    return path


def owned(proc: TidemarkProcess) -> float:
    return scrape(proc.metrics_url).total("tidemark_assigned_partitions")


@pytest.mark.parametrize("replicas", [1, 2])
def test_discovered_product_windows_judged_alike_by_any_number_of_replicas(
    mock_only: Broker,
    tmp_path: Path,
    tidemark: Callable[..., TidemarkProcess],
    replicas: int,
) -> None:
    """The second replica joins after the first has counted and published two windows
    and the start of a third: it discovers the product then, when the observations are
    on the shared topic already, and must continue them (it reads them again for the
    new product), or window 2 loses what the first owner counted."""
    broker = mock_only
    prefix = f"d{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.clicks"
    broker.create_topic(topic, PARTITIONS)
    shared = broker.new_topic(1)  # the mock cluster has no CreateTopics
    group = f"tidemark-discovered-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path / f"r{replicas}.yaml", broker, prefix, shared, group)
    procs = [tidemark(path, ready_timeout=45)]
    t0 = (int(time.time()) - 3600) // W * W
    # Windows 0-1 and the first event of window 2 on each partition: the new owner
    # of a partition continues a window its old owner began.
    sent = produce_windows(broker, topic, t0, range(2))
    sent += produce_windows(broker, topic, t0, range(2, 3), range(1))
    wait_for(procs[0].metrics_url, lambda s: counted(procs) >= sent, timeout=30)
    deadline = time.monotonic() + 30
    while covered(broker, shared) < sent:
        assert time.monotonic() < deadline, "observations never covered windows 0-1"
        time.sleep(0.2)
    for _ in range(replicas - 1):
        procs.append(tidemark(path, ready_timeout=45))
    deadline = time.monotonic() + 30
    while not all(owned(p) > 0 for p in procs) or sum(owned(p) for p in procs) != PARTITIONS:
        assert time.monotonic() < deadline, "the group never split the topic"
        time.sleep(0.2)
    sent += produce_windows(broker, topic, t0, range(2, 3), range(1, PER))
    sent += produce_windows(broker, topic, t0, range(3, 4)) + tick(broker, topic, t0)
    wait_for(procs[0].metrics_url, lambda s: counted(procs) >= sent, timeout=30)
    got = wait_verdicts(broker, shared, t0 // W, lambda v: all(k in v for k in TRUTH))
    assert {k: got[k] for k in TRUTH} == TRUTH
