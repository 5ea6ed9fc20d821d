"""Readiness, graceful shutdown, committed offsets and restarts of the daemon.

An operator's view: /readyz turns 200 only once partitions are assigned; SIGTERM
finishes, commits and exits 0; a restarted daemon counts only what it had not
processed and shows the watermark again at once (read-back), never a false
staleness signal.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from daemon_support import (
    by_partition,
    events,
    group_of,
    order_bytes,
    product,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, Samples, TidemarkProcess, free_port, scrape, wait_for

OUT_OF_ORDERNESS = 5
READBACK = 2000


def test_readyz_waits_for_an_assignment(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    # The subscribed topic does not exist yet: the poll loop runs (healthy) but no
    # partition can be assigned (not ready) until the topic is created.
    broker = mock_only
    topic = f"later-{time.monotonic_ns()}"
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic)],
        kafka={"properties": {"topic.metadata.refresh.interval.ms": 500}},
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(tidemark, config, port=port)
        s = wait_for(f"{base}/metrics", lambda s: s.value("tidemark_up") == 1)
        probe = TidemarkProcess(None, tmp_path, port=port)  # only for its HTTP helper
        status, body = probe.get("/readyz")
        assert status == 503 and body.startswith("not ready: "), (status, body)
        assert probe.get("/healthz")[0] == 200
        assert s.value("tidemark_ready") == 0
        assert s.value("tidemark_assigned_partitions", product="orders") == 0
        time.sleep(1.0)  # still not ready a while later: it waits for the assignment
        assert probe.get("/readyz")[0] == 503
        assert not starting.done()

        broker.create_topic(topic, 2)
        daemon = starting.result(timeout=30)  # returns once /readyz is 200
    s = scrape(daemon.metrics_url)
    assert s.value("tidemark_ready") == 1
    assert s.value("tidemark_assigned_partitions", product="orders") == 2
    # No event yet: no watermark and no freshness (absent, not falsely stale).
    assert not s.has("tidemark_watermark_timestamp_seconds")
    assert not s.has("tidemark_freshness_seconds")
    assert daemon.get("/readyz") == (200, "ready\n")


@dataclass
class _Scrape:
    before: float
    after: float
    samples: Samples | None


class _Scraper:
    """Scrapes /metrics every 20 ms in the background, from before the daemon answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[_Scrape] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.time()
            try:
                samples: Samples | None = scrape(self.url, timeout=1)
            except (OSError, AssertionError):
                samples = None
            self.seen.append(_Scrape(before, time.time(), samples))
            time.sleep(0.005)


def _produce(broker: Broker, topic: str, times: dict[int, list[int]]) -> int:
    n = 0
    for partition, ts in times.items():
        for t in ts:
            broker.produce(topic, partition, order_bytes(t, n))
            n += 1
    broker.flush()
    return n


def _stop_in_time(daemon: TidemarkProcess, limit: float) -> None:
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=20)
    took = time.monotonic() - started
    assert code == 0, daemon.log_tail()
    assert took < limit, f"SIGTERM to exit took {took:.1f}s"
    records = daemon.log_records()
    assert [
        r["event"] for r in records if r["event"] in ("shutdown_requested", "consumer_closed")
    ] == [
        "shutdown_requested",
        "consumer_closed",
    ]
    assert not [r for r in records if r.get("level") in ("error", "critical")], daemon.log_tail()


def test_sigterm_commits_what_was_processed_and_a_restart_counts_only_new_events(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(3)
    partitions = [0, 1, 2]
    # commit_interval of an hour: the only commit that covers the events is the one
    # SIGTERM makes. The restart resumes at the committed offsets, so start_from
    # (earliest here, for the first run) no longer matters then.
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, max_out_of_orderness=OUT_OF_ORDERNESS, idle_timeout=300)],
        kafka={
            "start_from": "earliest",
            "commit_interval": 3600,
            "readback_messages": READBACK,
            "batch_size": 5,
        },
        rejoin=True,
    )
    group = group_of(config)
    t0 = whole_seconds_ago(3000)
    # p0 holds the product watermark and has a long read-back (in small batches), so
    # after the restart p1 and p2 are warm long before p0 is. One event per partition
    # is there before the daemon starts (start_from earliest), the rest arrives while
    # it runs.
    script = {
        0: [t0 + i for i in range(READBACK + 50)],
        1: [t0 + 2500 + i for i in range(10)],
        2: [t0 + 2600 + i for i in range(10)],
    }
    _produce(broker, topic, {p: ts[:1] for p, ts in script.items()})
    first = tidemark(config)
    _produce(broker, topic, {p: ts[1:] for p, ts in script.items()})
    n1 = sum(len(ts) for ts in script.values())
    s = wait_events(first, "orders", n1)
    before_restart = {p: max(ts) - OUT_OF_ORDERNESS for p, ts in script.items()}
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == (
        before_restart
    )
    product_wm = min(before_restart.values())
    assert s.value("tidemark_watermark_timestamp_seconds", product="orders") == product_wm
    # Processed but not committed: at most what was there at start-up (the loop's first
    # turn may commit it), never the events that arrived later.
    early = broker.committed(group, topic, partitions)
    assert all(early.get(p, 0) <= 1 for p in partitions), early

    _stop_in_time(first, limit=5)
    ends = broker.high_watermarks(topic)
    assert ends == {p: len(ts) for p, ts in script.items()}
    assert broker.committed(group, topic, partitions) == ends

    # Restart with the same group. The read-back (READBACK messages per partition below
    # the committed offset) re-establishes the watermark without counting anything again.
    port = free_port()
    with _Scraper(f"http://127.0.0.1:{port}/metrics") as scraper:
        second = tidemark(config, port=port)
        ready_at = time.time()
        s = wait_for(
            second.metrics_url,
            lambda s: (
                by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")
                == before_restart
            ),
            timeout=10,
        )
        time.sleep(0.2)
    assert events(s, "orders") == 0
    assert s.value("tidemark_watermark_timestamp_seconds", product="orders") == product_wm
    # No false staleness, and no false freshness either: whenever the restarted daemon
    # reported a watermark it was the one from before the restart, even while some
    # partitions were still reading back.
    reported = [
        (x.samples.value("tidemark_watermark_timestamp_seconds", product="orders"), x)
        for x in scraper.seen
        if x.samples is not None and x.samples.has("tidemark_freshness_seconds")
    ]
    assert reported, "the scraper never saw a watermark"
    assert {wm for wm, _ in reported} == {product_wm}
    for _, x in reported:
        assert x.samples is not None
        freshness = x.samples.value("tidemark_freshness_seconds", product="orders")
        assert x.before - product_wm - 0.01 <= freshness <= x.after - product_wm + 0.01
    first_seen = min(x.before for _, x in reported)
    assert first_seen - ready_at < 1.0

    # New events after the restart are counted once; SIGTERM commits them.
    more = {p: [t0 + 2800 + 10 * p + i for i in range(p + 2)] for p in partitions}
    n2 = _produce(broker, topic, more)
    s = wait_events(second, "orders", n2)
    assert s.value("tidemark_watermark_timestamp_seconds", product="orders") == (
        min(max(ts) for ts in more.values()) - OUT_OF_ORDERNESS
    )
    _stop_in_time(second, limit=5)
    assert broker.committed(group, topic, partitions) == {
        p: len(script[p]) + len(more[p]) for p in partitions
    }


def test_a_new_group_at_latest_warms_the_watermark_without_counting_history(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    broker = mock_only
    topic = broker.new_topic(2)
    t0 = whole_seconds_ago(600)
    script = {0: [t0 + i for i in range(10)], 1: [t0 + 50 + i for i in range(10)]}
    _produce(broker, topic, script)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, max_out_of_orderness=OUT_OF_ORDERNESS, idle_timeout=300)],
        kafka={"start_from": "latest", "readback_messages": 2},
    )
    daemon = tidemark(config)
    want = {p: max(ts) - OUT_OF_ORDERNESS for p, ts in script.items()}
    s = wait_for(
        daemon.metrics_url,
        lambda s: (
            by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == want
        ),
        timeout=5,
    )
    assert events(s, "orders") == 0
    assert s.value("tidemark_watermark_timestamp_seconds", product="orders") == min(want.values())
    assert s.value("tidemark_late_events_total", product="orders") == 0
    # Read-back is not progress of this group: nothing to commit until new events.
    time.sleep(1.0)
    assert broker.committed(group_of(config), topic, [0, 1]) == {}
    _produce(broker, topic, {1: [t0 + 70]})
    wait_events(daemon, "orders", 1)
    wait_for(
        daemon.metrics_url,
        lambda s: broker.committed(group_of(config), topic, [0, 1]) == {1: 11},
        timeout=5,
    )
