"""librdkafka's `debug` property: the daemon keeps consuming and its lines are JSON.

Before the fix, debug=cgrp (or consumer, all) aborted the process at its first
assignment with `CallState_get: Assertion 'cs != NULL' failed`: the rebalance
callback called the consumer's list_topics(), which clears confluent-kafka's
per-thread call state, and the next librdkafka log line served by the same
consume() found none. Each run here gets an assignment, counts events produced
before and after it, stays up and exits 0 on SIGTERM, with every output line a
JSON object and librdkafka's debug lines among them as `librdkafka_logged` events.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_support import order_bytes, product, wait_events, whole_seconds_ago, write_config
from harness import Broker, TidemarkProcess


def json_lines(daemon: TidemarkProcess) -> list[dict[str, Any]]:
    """Every line of stdout and stderr as JSON; AssertionError names the first that is not."""
    records = []
    for n, line in enumerate(daemon.output().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {n} is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line[:300]
        records.append(record)
    return records


def debug_config(path: Path, broker: Broker, topic: str, debug: str) -> Path:
    write_config(path, broker, [product("orders", topic)], kafka={"properties": {"debug": debug}})
    config = yaml.safe_load(path.read_text())
    config["logging"]["level"] = "debug"  # so librdkafka's lines are rendered, not dropped
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("debug", ["cgrp", "consumer", "all"])
def test_librdkafka_debug_keeps_the_daemon_consuming(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path, debug: str
) -> None:
    topic = broker.new_topic(2)
    for seq in range(10):
        broker.produce(topic, seq % 2, order_bytes(whole_seconds_ago(30), seq))
    broker.flush()
    started = time.monotonic()
    daemon = tidemark(debug_config(tmp_path / "tidemark.yaml", broker, topic, debug))
    assigned_after = time.monotonic() - started
    wait_events(daemon, "orders", 10)
    for seq in range(10, 20):  # after the assignment: the loop keeps consuming
        broker.produce(topic, seq % 2, order_bytes(whole_seconds_ago(5), seq))
    broker.flush()
    wait_events(daemon, "orders", 20)
    time.sleep(2.0)
    assert daemon.returncode is None, daemon.log_tail()
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log_tail()

    records = json_lines(daemon)
    librdkafka = [r for r in records if r.get("event") == "librdkafka_logged"]
    main_client = [r for r in librdkafka if str(r.get("client", "")).endswith("consumer-1")]
    assert main_client, "no librdkafka debug line from the group consumer was logged"
    assert all(r["level"] == "debug" for r in main_client if r.get("facility") == "CGRPSTATE")
    assert [r["event"] for r in records].count("partition_assigned") == 2
    print(
        f"{broker.name} debug={debug}: ready after {assigned_after:.1f}s, "
        f"{len(records)} JSON lines, {len(librdkafka)} from librdkafka"
    )
