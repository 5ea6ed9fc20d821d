"""Two daemons in one consumer group share a topic's partitions, and nothing is counted twice.

A member only exports series for partitions it owns: when a partition is given away its
label sets disappear from that member's /metrics, and the new owner re-establishes the
partition's watermark from the read-back without counting those events again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daemon_support import (
    by_partition,
    events,
    order_bytes,
    partitions_exported,
    product,
    wait_events,
    whole_seconds_ago,
    write_config,
)
from harness import Broker, Samples, TidemarkProcess, scrape, wait_for

OUT_OF_ORDERNESS = 5
ALL = {0, 1, 2, 3}


def _produce(broker: Broker, topic: str, script: dict[int, list[int]], first_seq: int) -> int:
    n = 0
    for partition, times in script.items():
        for t in times:
            broker.produce(topic, partition, order_bytes(t, first_seq + n))
            n += 1
    broker.flush()
    return n


def _owned(s: Samples) -> set[int]:
    """Partitions a member owns: it exports partition_idle for each, and only for those."""
    return set(by_partition(s, "tidemark_partition_idle", "orders"))


def _only_owned_series(s: Samples, owned: set[int]) -> None:
    assert s.value("tidemark_assigned_partitions", product="orders") == len(owned)
    for name, partitions in partitions_exported(s, "orders").items():
        assert partitions <= owned, f"{name} still has given-away partitions {partitions - owned}"
    for name in (
        "tidemark_partition_idle",
        "tidemark_partition_stuck",
        "tidemark_partition_watermark_timestamp_seconds",
        "tidemark_consumer_lag_messages",
    ):
        assert set(by_partition(s, name, "orders")) == owned, name


def test_two_members_split_the_partitions_and_count_each_event_once(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    # On both brokers: Tansu's group coordinator is an independent implementation of
    # the join/sync/leave protocol this depends on (about 12 s there, 4 s on the mock).
    topic = broker.new_topic(4)
    t0 = whole_seconds_ago(600)
    # Distinct watermarks per partition, so a wrong owner or a stale series shows.
    script = {p: [t0 + 100 * p + i for i in range(3)] for p in sorted(ALL)}
    n1 = _produce(broker, topic, script, 0)
    wm = {p: max(ts) - OUT_OF_ORDERNESS for p, ts in script.items()}
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, max_out_of_orderness=OUT_OF_ORDERNESS, idle_timeout=300)],
        rejoin=True,
    )

    a = tidemark(config)
    s = wait_events(a, "orders", n1)
    _only_owned_series(s, ALL)
    assert by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == wm
    wait_for(a.metrics_url, lambda s: s.value("tidemark_commits_total", result="ok") >= 1)

    b = tidemark(config)  # returns once b holds partitions

    def settled(s: Samples) -> bool:
        """Ready, and every owned partition's watermark re-established."""
        owned = _owned(s)
        got = by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")
        return s.value("tidemark_ready") == 1 and bool(owned) and got == {p: wm[p] for p in owned}

    last: dict[str, Samples] = {}

    def split(_: Samples) -> bool:
        last["a"], last["b"] = scrape(a.metrics_url), scrape(b.metrics_url)
        owned_a, owned_b = _owned(last["a"]), _owned(last["b"])
        return (
            settled(last["a"])
            and settled(last["b"])
            and owned_a | owned_b == ALL
            and not owned_a & owned_b
        )

    wait_for(b.metrics_url, split, timeout=20)
    sa, sb = last["a"], last["b"]
    owned_a, owned_b = _owned(sa), _owned(sb)
    assert owned_a | owned_b == ALL and not owned_a & owned_b
    _only_owned_series(sa, owned_a)
    _only_owned_series(sb, owned_b)
    for s, owned in ((sa, owned_a), (sb, owned_b)):
        got = by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders")
        assert got == {p: wm[p] for p in owned}
        assert s.value("tidemark_watermark_timestamp_seconds", product="orders") == min(
            wm[p] for p in owned
        )
    # b warmed its partitions from the read-back; a had counted those events already.
    assert (events(sa, "orders"), events(sb, "orders")) == (n1, 0)

    # New events on every partition: each is counted by exactly one member.
    more = {p: [t0 + 500 + 10 * p + i for i in range(p + 1)] for p in sorted(ALL)}
    _produce(broker, topic, more, n1)
    new_on = {p: len(ts) for p, ts in more.items()}
    wait_events(a, "orders", n1 + sum(new_on[p] for p in owned_a))
    wait_events(b, "orders", sum(new_on[p] for p in owned_b))

    # b leaves: a takes every partition back, warms b's from the read-back and counts
    # nothing again (b committed what it processed when it shut down).
    assert b.stop() == 0
    sa = wait_for(a.metrics_url, lambda s: _owned(s) == ALL, timeout=20)
    wm = {p: max(ts) - OUT_OF_ORDERNESS for p, ts in more.items()}
    sa = wait_for(
        a.metrics_url,
        lambda s: by_partition(s, "tidemark_partition_watermark_timestamp_seconds", "orders") == wm,
    )
    _only_owned_series(sa, ALL)
    time.sleep(0.5)
    assert events(scrape(a.metrics_url), "orders") == n1 + sum(new_on[p] for p in owned_a)
