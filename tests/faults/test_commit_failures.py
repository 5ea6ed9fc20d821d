"""Commits the broker refuses are sent again until it accepts them.

librdkafka retries transient commit errors itself (timeouts, coordinator moves); what
reaches the application are refusals such as TOPIC_AUTHORIZATION_FAILED (an ACL
briefly missing) or REBALANCE_IN_PROGRESS. The mock cluster answers the next
OffsetCommit requests with such an error, on every partition, as a broker would.
Before the fix an asynchronous commit counted as done once the call returned: the
refused offsets were never sent again while no new event arrived, not even at
shutdown, and a restart counted those events a second time.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from daemon_support import events, group_of, order_bytes, product, wait_events, write_config
from harness import Broker, MockBroker, TidemarkProcess, scrape, wait_for

OFFSET_COMMIT = 8  # Kafka API key
TOPIC_AUTHORIZATION_FAILED = 29
PER_PARTITION = 50


def test_refused_commits_are_retried_and_a_restart_counts_nothing_twice(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    assert isinstance(mock_only, MockBroker)
    broker = mock_only
    topic = broker.new_topic(2)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker,
        [product("orders", topic, idle_timeout=300)],
        kafka={"commit_interval": 1.0},  # the default, pinned: the test counts rounds
        rejoin=True,
    )
    group = group_of(config)
    first = tidemark(config)
    try:
        # The next three commit rounds are refused; nothing is owed before the events come.
        broker.cluster.push_request_errors(OFFSET_COMMIT, [TOPIC_AUTHORIZATION_FAILED] * 3)
        now = int(time.time())
        for i in range(2 * PER_PARTITION):
            broker.produce(topic, i % 2, order_bytes(now, i))
        ends = broker.flush()
        expected = {p: ends[(topic, p)] for p in (0, 1)}
        wait_events(first, "orders", 2 * PER_PARTITION)

        # No new event arrives, yet the refused offsets go out again, once per interval.
        deadline = time.monotonic() + 15
        while broker.committed(group, topic, [0, 1]) != expected:
            assert time.monotonic() < deadline, broker.committed(group, topic, [0, 1])
            time.sleep(0.1)
        s = wait_for(
            first.metrics_url, lambda s: s.value("tidemark_commits_total", result="ok") >= 1
        )
        assert s.value("tidemark_commits_total", result="error") == 3
        assert s.value("tidemark_kafka_errors_total", code="TOPIC_AUTHORIZATION_FAILED") == 3
        failures = [r for r in first.log_records() if r["event"] == "commit_failed"]
        assert [r["code"] for r in failures] == ["TOPIC_AUTHORIZATION_FAILED"] * 3

        assert first.stop(signal.SIGTERM) == 0
        second = tidemark(config)
        resumed = {
            r["partition"]: r["resume_offset"]
            for r in second.log_records()
            if r["event"] == "partition_assigned"
        }
        assert resumed == expected
        time.sleep(1.0)
        assert events(scrape(second.metrics_url), "orders") == 0  # nothing counted twice
    finally:  # the mock cluster is shared by the session
        broker.cluster.clear_request_errors(OFFSET_COMMIT)
