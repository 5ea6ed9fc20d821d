"""Event-time watermarks, lateness, idleness and freshness of a running daemon.

Event times are whole seconds relative to a base time T taken just before producing,
so every expected watermark is exact. The expected values come from `_expected`, a
direct reading of the semantics (Flink-style bounded out-of-orderness) applied to the
script.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon_support import (
    bucket,
    by_partition,
    events,
    order_bytes,
    product,
    timed,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, Samples, TidemarkProcess, scrape, wait_for

OUT_OF_ORDERNESS = 5
IDLE_TIMEOUT = 2
FUTURE_SKEW = 60
THRESHOLD = 500  # freshness objective: phase 1 events are ~1000 s old, phase 2 ~100 s
FUTURE = 10**6  # an event this far ahead of T is beyond max_future_skew


@dataclass
class _Expected:
    max_event_time: dict[int, int] = field(default_factory=dict)
    late: int = 0
    lateness: list[int] = field(default_factory=list)
    future: int = 0
    observed: list[int] = field(default_factory=list)  # event times with a latency

    def watermark(self, partition: int) -> int:
        return self.max_event_time[partition] - OUT_OF_ORDERNESS

    def add(self, partition: int, t: int, now: float) -> None:
        if t > now + FUTURE_SKEW:
            self.future += 1  # counted, but does not move the watermark
            return
        top = self.max_event_time.get(partition)
        if top is not None and t < top - OUT_OF_ORDERNESS:
            self.late += 1
            self.lateness.append(top - OUT_OF_ORDERNESS - t)
        self.max_event_time[partition] = t if top is None else max(top, t)
        self.observed.append(t)


def _produce(broker: Broker, topic: str, script: dict[int, list[int]], want: _Expected) -> int:
    n = 0
    for partition, times in script.items():
        for t in times:
            broker.produce(topic, partition, order_bytes(t, n))
            want.add(partition, t, time.time())
            n += 1
    broker.flush()
    return n


def _product_watermark(s: Samples) -> float:
    return s.value("tidemark_watermark_timestamp_seconds", product="orders")


def _assert_freshness(s: Samples, before: float, after: float) -> None:
    """Freshness is computed at scrape time: scrape-time clock minus product watermark."""
    freshness = s.value("tidemark_freshness_seconds", product="orders")
    wm = _product_watermark(s)
    assert before - wm - 0.01 <= freshness <= after - wm + 0.01


def test_watermarks_lateness_and_idle_partitions(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(3)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            product(
                "orders",
                topic,
                max_out_of_orderness=OUT_OF_ORDERNESS,
                idle_timeout=IDLE_TIMEOUT,
                max_future_skew=FUTURE_SKEW,
                freshness={"threshold": THRESHOLD, "target": 0.99},
            )
        ],
    )
    # Phase 1: every partition active. p0 has a late event (12 after 30) and a future
    # one; p1's 14 after 15 is within the out-of-orderness bound, so not late. The
    # events are there before the daemon starts (start_from earliest).
    t0 = whole_seconds_ago(1000)
    want = _Expected()
    script = {
        0: [t0 + 10, t0 + 20, t0 + 30, t0 + 12, t0 + FUTURE],
        1: [t0 + 5, t0 + 15, t0 + 14],
        2: [t0 + 40, t0 + 50],
    }
    sent = _produce(broker, topic, script, want)
    daemon = tidemark(config)
    url = daemon.metrics_url
    s = wait_events(daemon, "orders", sent)
    assert (want.late, want.future, want.lateness) == (1, 1, [13])  # the script's intent
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == {
        p: want.watermark(p) for p in (0, 1, 2)
    }
    assert by_partition(s, "tidemark_partition_max_event_timestamp_seconds", "orders") == {
        p: want.max_event_time[p] for p in (0, 1, 2)
    }
    assert _product_watermark(s) == min(want.watermark(p) for p in (0, 1, 2))
    assert s.value("tidemark_late_events_total", product="orders") == want.late
    assert s.value("tidemark_future_events_total", product="orders") == want.future
    assert s.value("tidemark_event_lateness_seconds_count", product="orders") == 1
    assert s.value("tidemark_event_lateness_seconds_sum", product="orders") == sum(want.lateness)
    assert bucket(s, "tidemark_event_lateness_seconds", "10.0", product="orders") == 0
    assert bucket(s, "tidemark_event_lateness_seconds", "30.0", product="orders") == 1

    # Phase 2: p1 stalls; p0 and p2 keep receiving events (same event times, so their
    # watermarks are fixed). Once p1 has been quiet for idle_timeout while caught up,
    # it stops holding the product watermark back.
    active = {0: t0 + 900, 2: t0 + 880}
    deadline = time.monotonic() + 20
    while True:
        sent += _produce(broker, topic, {p: [t] for p, t in active.items()}, want)
        s = scrape(url)
        idle = by_partition(s, "tidemark_partition_idle", "orders")
        if idle.get(1) == 1 and _product_watermark(s) == min(want.watermark(p) for p in active):
            break
        assert time.monotonic() < deadline, f"p1 never idle / released: {s.lines()}"
        time.sleep(0.2)
    assert idle == {0: 0, 1: 1, 2: 0}
    assert by_partition(s, "tidemark_consumer_lag_messages", "orders")[1] == 0
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")[1] == (
        want.watermark(1)
    )
    s = wait_events(daemon, "orders", sent)
    fresh = sum(1 for t in want.observed if time.time() - t <= THRESHOLD)
    assert fresh == sent - 10  # phase 2 events only
    assert s.value("tidemark_events_fresh_total", product="orders") == fresh
    assert bucket(s, "tidemark_event_latency_seconds", f"{THRESHOLD}.0", product="orders") == fresh
    assert bucket(s, "tidemark_event_latency_seconds", "+Inf", product="orders") == len(
        want.observed
    )
    assert s.value("tidemark_late_events_total", product="orders") == want.late

    # Phase 3: nothing is produced. Every partition turns idle; the product watermark
    # then is the newest partition watermark and freshness keeps growing.
    all_idle = max(want.watermark(p) for p in (0, 1, 2))
    wait_for(
        url,
        lambda s: (
            set(by_partition(s, "tidemark_partition_idle", "orders").values()) == {1}
            and _product_watermark(s) == all_idle
        ),
        timeout=10,
    )
    first, before1, after1 = timed(lambda: scrape(url))
    time.sleep(1.0)
    second, before2, after2 = timed(lambda: scrape(url))
    for s, before, after in ((first, before1, after1), (second, before2, after2)):
        assert _product_watermark(s) == all_idle
        _assert_freshness(s, before, after)
        assert events(s, "orders") == sent
    grew = second.value("tidemark_freshness_seconds", product="orders") - first.value(
        "tidemark_freshness_seconds", product="orders"
    )
    assert before2 - after1 - 0.01 <= grew <= after2 - before1 + 0.01
