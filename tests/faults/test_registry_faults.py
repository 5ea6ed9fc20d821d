"""A schema registry that hangs or answers slowly costs the events that need it, never the loop.

Registry-backed product A meets a writer schema id the daemon has not seen while the
registry stand-in misbehaves. Only A's partition with that event waits (paused at
the event, nothing committed past it); A's other partition and product B keep
counting; /healthz stays 200; a hanging registry is no contract violation. Once the
registry answers, the partition resumes at the held event and every event is
counted exactly once. Figures (loop stall, B's throughput, recovery time) are
printed; run with `-s` to see them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon_support import (
    ORDERS,
    ORDERS_V2,
    avro,
    confluent,
    events,
    group_of,
    order,
    product,
    violations,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, RegistryServer, Samples, TidemarkProcess, scrape, wait_for

RETRY_AFTER = 2.0  # also the longest backoff between look-ups of an unreachable registry


class LoopWatch:
    """Scrapes every 50 ms: the longest heartbeat gap seen and every /healthz status.

    The gap is (wall clock at the scrape) - (the loop's last heartbeat): how long the
    poll loop has not come round, as an outside observer sees it.
    """

    def __init__(self, daemon: TidemarkProcess) -> None:
        self.daemon = daemon
        self.max_gap = 0.0
        self.statuses: list[int] = []
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = scrape(self.daemon.metrics_url, timeout=5)
                gap = time.time() - s.value("tidemark_poll_loop_heartbeat_timestamp_seconds")
                self.max_gap = max(self.max_gap, gap)
                self.scrapes += 1
            except (AssertionError, KeyError, OSError, ValueError):
                self.max_gap = max(self.max_gap, 99.0)  # no answer at all is a stall too
            self.statuses.append(self.daemon.get("/healthz")[0])
            self._stop.wait(0.05)


def held(s: Samples, product_name: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for labels, value in s.values("tidemark_partitions_held").items()
        if dict(labels)["product"] == product_name
    }


def _config(
    tmp_path: Path, broker: Broker, registry: RegistryServer, topic_a: str, topic_b: str
) -> Path:
    return write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            product("a", topic_a, encoding="confluent", idle_timeout=300),
            product("b", topic_b, encoding="confluent", idle_timeout=300),
        ],
        registry_url=registry.url,
        retry_after=RETRY_AFTER,
    )


def test_hanging_registry_holds_one_partition_and_nothing_else(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    v1 = registry.register("orders-value", json.dumps(ORDERS))
    topic_a, topic_b = broker.new_topic(2), broker.new_topic(2)
    config = _config(tmp_path, broker, registry, topic_a, topic_b)
    daemon = tidemark(config)
    t0 = whole_seconds_ago(600)
    seq = iter(range(1_000_000))

    def v1_event(topic: str, partition: int) -> None:
        broker.produce(topic, partition, confluent(v1, avro(ORDERS, order(t0, next(seq)))))

    def v2_event(topic: str, partition: int, schema_id: int) -> None:
        record = {**order(t0, next(seq)), "channel": "app"}
        broker.produce(topic, partition, confluent(schema_id, avro(ORDERS_V2, record)))

    # v1 is looked up and cached by both products before the registry goes bad.
    for topic in (topic_a, topic_b):
        for p in (0, 1):
            for _ in range(3):
                v1_event(topic, p)
    broker.flush()
    n_a = n_b = 6
    wait_events(daemon, "a", n_a)
    wait_events(daemon, "b", n_b)

    # The registry accepts connections and never answers. v2 is registered meanwhile
    # (a producer's deploy); the daemon has never seen its id.
    hang_started = time.monotonic()
    registry.hang()
    v2 = registry.register("orders-value", json.dumps(ORDERS_V2))
    for _ in range(2):
        v1_event(topic_a, 0)  # counted: before the held event
    held_offset = 3 + 2
    for _ in range(5):
        v2_event(topic_a, 0, v2)  # the first of these holds partition 0...
        v1_event(topic_a, 0)  # ...and these wait behind it although their id is cached
    for _ in range(10):
        v1_event(topic_a, 1)  # A's other partition keeps flowing
    broker.flush()
    with LoopWatch(daemon) as watch:
        s = wait_for(
            daemon.metrics_url,
            lambda s: events(s, "a") == n_a + 2 + 10 and sum(held(s, "a").values()) == 1,
            timeout=20,
        )
        assert held(s, "a")["schema_lookup"] == 1
        assert sum(held(s, "b").values()) == 0

        # Product B at full speed while A waits.
        burst = 20_000
        for i in range(burst):
            v1_event(topic_b, i % 2)
        broker.flush()
        started = time.monotonic()
        wait_events(daemon, "b", n_b + burst, timeout=30)
        b_seconds = time.monotonic() - started
        n_b += burst

        # The client times out (5 s, one retry): the registry is unreachable, A still waits.
        s = wait_for(
            daemon.metrics_url,
            lambda s: held(s, "a")["registry_unreachable"] == 1,
            timeout=30,
        )
        hold_seen = time.monotonic()
        assert held(s, "a")["schema_lookup"] == 0
        assert s.value("tidemark_schema_registry_up") == 0
        assert events(s, "a") == n_a + 2 + 10
        assert sum(violations(s, "a").values()) == 0  # not the producer's fault
        # Nothing committed past the held event.
        group = group_of(config)
        wait_for_commit = time.monotonic() + 10
        while broker.committed(group, topic_a, [0]).get(0) != held_offset:
            assert time.monotonic() < wait_for_commit, broker.committed(group, topic_a, [0])
            time.sleep(0.2)
        time.sleep(1.0)  # a few more commit intervals: still not past it
        assert broker.committed(group, topic_a, [0]) == {0: held_offset}
        hang_max_gap = watch.max_gap
        assert daemon.get("/healthz")[0] == 200

        # The registry answers again: partition 0 resumes at the held event.
        recovered = time.monotonic()
        registry.recover()
        n_a += 2 + 10 + 10
        s = wait_for(
            daemon.metrics_url,
            lambda s: events(s, "a") == n_a and sum(held(s, "a").values()) == 0,
            timeout=20,
        )
        recovery = time.monotonic() - recovered
    assert set(watch.statuses) == {200}, watch.statuses
    assert watch.scrapes > 20
    # Every held event counted exactly once, none as a violation.
    assert sum(violations(s, "a").values()) == 0
    assert s.value("tidemark_events_conforming_total", product="a") == n_a
    assert s.value("tidemark_schema_drift_events_total", product="a", verdict="compatible") == 5
    assert s.value("tidemark_schema_registry_up") == 1
    time.sleep(1.0)  # nothing more trickles in: no event was read twice
    s = scrape(daemon.metrics_url)
    assert events(s, "a") == n_a and events(s, "b") == n_b
    assert broker.committed(group, topic_a, [0, 1]) == {0: 3 + 2 + 10, 1: 3 + 10}
    print(
        f"\n[{broker.name}] hang: max heartbeat gap {hang_max_gap:.3f}s over a "
        f"{recovered - hang_started:.1f}s hang (unreachable seen after "
        f"{hold_seen - hang_started:.1f}s); B {burst / b_seconds:.0f} events/s "
        f"({burst} in {b_seconds:.2f}s); recovery {recovery:.2f}s; "
        f"max gap whole test {watch.max_gap:.3f}s"
    )
    assert hang_max_gap < 2.0


def test_404_storm_costs_one_slow_lookup_per_id_and_never_the_loop(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    v1 = registry.register("orders-value", json.dumps(ORDERS))
    topic_a, topic_b = broker.new_topic(2), broker.new_topic(2)
    daemon = tidemark(_config(tmp_path, broker, registry, topic_a, topic_b))
    t0 = whole_seconds_ago(600)
    body = avro(ORDERS, order(t0, 1))
    for topic in (topic_a, topic_b):
        for p in (0, 1):
            broker.produce(topic, p, confluent(v1, body))
    broker.flush()
    n_a = n_b = 2
    wait_events(daemon, "a", n_a)
    wait_events(daemon, "b", n_b)
    asked_before = registry.count("GET", "/schemas/ids/")

    # Every answer now takes 0.5 s, and 150 distinct ids are unknown to the registry.
    registry.delay(0.5)
    unknown = list(range(10_000, 10_150))
    for i, schema_id in enumerate(unknown):
        broker.produce(topic_a, i % 2, confluent(schema_id, body))
        broker.produce(topic_a, i % 2, confluent(v1, body))  # waits behind it, counted later
    broker.flush()
    n_a += 2 * len(unknown)
    with LoopWatch(daemon) as watch:
        started = time.monotonic()
        stop_b = threading.Event()
        produced_b = 0

        def feed_b() -> None:  # product B keeps receiving meanwhile
            nonlocal produced_b
            while not stop_b.is_set():
                for i in range(500):
                    broker.produce(topic_b, i % 2, confluent(v1, body))
                broker.flush()
                produced_b += 500
                stop_b.wait(0.2)

        feeder = threading.Thread(target=feed_b, daemon=True)
        feeder.start()
        try:
            s = wait_events(daemon, "a", n_a, timeout=60)
        finally:
            stop_b.set()
            feeder.join(30)
        storm = time.monotonic() - started
        n_b += produced_b
        s = wait_events(daemon, "b", n_b, timeout=20)
    assert violations(s, "a")["unknown_schema"] == len(unknown)
    assert sum(violations(s, "a").values()) == len(unknown)
    assert s.value("tidemark_events_conforming_total", product="a") == n_a - len(unknown)
    assert sum(held(s, "a").values()) == 0
    # One (slow) look-up per unknown id: "not found" is remembered.
    assert registry.count("GET", "/schemas/ids/") - asked_before == len(unknown)
    assert set(watch.statuses) == {200}, watch.statuses
    print(
        f"\n[{broker.name}] 404 storm: {len(unknown)} unknown ids at 0.5 s each resolved in "
        f"{storm:.1f}s; max heartbeat gap {watch.max_gap:.3f}s; B counted {produced_b} meanwhile"
    )
    assert watch.max_gap < 2.0


def test_shutdown_does_not_wait_for_a_hanging_lookup(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    topic_a, topic_b = broker.new_topic(1), broker.new_topic(1)
    config = _config(tmp_path, broker, registry, topic_a, topic_b)
    daemon = tidemark(config)
    registry.hang()
    broker.produce(topic_a, 0, confluent(77, avro(ORDERS, order(whole_seconds_ago(60)))))
    broker.flush()
    wait_for(daemon.metrics_url, lambda s: held(s, "a")["schema_lookup"] == 1, timeout=20)
    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    stopped = time.monotonic() - started
    print(f"\n[{broker.name}] stop with a look-up hanging: {stopped:.2f}s")
    assert stopped < 4.0  # the client timeout alone is 5 s (twice, with its retry)
    # Nothing was committed past the held event: the next owner reads it again.
    assert broker.committed(group_of(config), topic_a, [0]).get(0, 0) == 0


def test_held_partition_survives_a_rebalance_and_counts_once(
    mock_only: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    # A second member joins and leaves while partition 0 is held: whoever owns it
    # meanwhile, it comes back to the first member unpaused, resumes at the held event
    # once the registry answers, and no event is counted twice or never. (Mock cluster
    # only: two rebalances take ~25 s on Tansu; the pause/assign logic is the client's.)
    broker = mock_only
    v1 = registry.register("orders-value", json.dumps(ORDERS))
    topic_a, topic_b = broker.new_topic(4), broker.new_topic(1)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [
            product("a", topic_a, encoding="confluent", idle_timeout=300),
            product("b", topic_b, encoding="confluent", idle_timeout=300),
        ],
        registry_url=registry.url,
        retry_after=RETRY_AFTER,
        rejoin=True,
    )
    t0 = whole_seconds_ago(600)
    seq = iter(range(1_000_000))

    def produce(partition: int, schema_id: int, schema: dict[str, object]) -> None:
        record = {**order(t0, next(seq)), "channel": "app"} if schema is ORDERS_V2 else None
        body = avro(schema, record or order(t0, next(seq)))
        broker.produce(topic_a, partition, confluent(schema_id, body))

    first = tidemark(config)
    for p in range(4):
        produce(p, v1, ORDERS)
    broker.flush()
    wait_events(first, "a", 4)
    registry.hang()
    v2 = registry.register("orders-value", json.dumps(ORDERS_V2))
    produce(0, v1, ORDERS)
    for _ in range(3):
        produce(0, v2, ORDERS_V2)
        produce(0, v1, ORDERS)
    broker.flush()
    produced = 4 + 1 + 6
    wait_for(first.metrics_url, lambda s: sum(held(s, "a").values()) == 1, timeout=20)

    second = tidemark(config)
    wait_for(
        second.metrics_url,
        lambda s: (
            s.value("tidemark_assigned_partitions", product="a") >= 1
            and scrape(first.metrics_url).value("tidemark_assigned_partitions", product="a") >= 1
        ),
        timeout=30,
    )
    # Nothing new to count for the second member: the first counted everything before
    # the held event, and the held event still has no answer.
    last = scrape(second.metrics_url)
    assert events(last, "a") == 0 and sum(violations(last, "a").values()) == 0
    assert second.stop() == 0  # its partitions go back to the first member
    wait_for(
        first.metrics_url,
        lambda s: s.value("tidemark_assigned_partitions", product="a") == 4,
        timeout=30,
    )
    registry.recover()
    wait_for(
        first.metrics_url,
        lambda s: events(s, "a") == produced and sum(held(s, "a").values()) == 0,
        timeout=30,
    )
    time.sleep(1.0)  # nothing more trickles in: no event was counted twice
    s = scrape(first.metrics_url)
    assert events(s, "a") == produced
    assert sum(violations(s, "a").values()) == 0
    assert broker.committed(group_of(config), topic_a, [0]) == {0: 1 + 1 + 6}


POLL_TIMEOUT = 5.0  # long, so a resume that waits out a whole poll cannot hide


def test_every_partition_held_resumes_when_the_slow_registry_answers_not_a_poll_later(
    broker: Broker,
    registry: RegistryServer,
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
) -> None:
    """A registry that answers in 0.3 s, and events of an unseen id on both partitions:
    every partition this daemon owns is held, so consume() has nothing to return. The
    partitions resume within a short poll of the answer, not when a `poll_timeout`
    (5 s here; 0.5 s by default, what each worker of `--workers N` paid at start) runs
    out."""
    v1 = registry.register("orders-value", json.dumps(ORDERS))
    topic = broker.new_topic(2)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("a", topic, encoding="confluent", idle_timeout=300)],
        registry_url=registry.url,
        retry_after=RETRY_AFTER,
        kafka={"poll_timeout": POLL_TIMEOUT},
    )
    daemon = tidemark(config)
    registry.delay(0.3)
    t0 = whole_seconds_ago(600)
    produced = time.monotonic()
    for p in (0, 1):
        for i in range(3):
            broker.produce(topic, p, confluent(v1, avro(ORDERS, order(t0 + i, 10 * p + i))))
    broker.flush()
    wait_events(daemon, "a", 6, timeout=30)
    counted_in = time.monotonic() - produced
    held_for = [
        float(line.split('"held_seconds": ')[1].split(",")[0].rstrip("}"))
        for line in daemon.output().splitlines()
        if '"partition_resumed"' in line
    ]
    print(f"\nevery partition held: counted {counted_in:.2f}s after produce; held {held_for}")
    # (Counting itself takes up to two polls here: consume() waits for a full batch
    # or its timeout, before the hold and after the resume.)
    assert held_for and max(held_for) < POLL_TIMEOUT / 2
