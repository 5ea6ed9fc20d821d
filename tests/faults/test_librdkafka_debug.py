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


def test_sigterm_during_a_log_flood_stops_the_daemon(mock_only: Broker, tmp_path: Path) -> None:
    """SIGTERM while every thread is writing librdkafka debug lines: exit 0, promptly.

    The broker refuses SASL, so librdkafka reconnects and logs thousands of lines a
    second. The signal handler used to log `shutdown_requested` itself; landing
    inside a log write on the main thread, it waited for the output lock that same
    thread held, and the daemon hung until killed. A burst of SIGTERMs (an impatient
    operator, or a supervisor repeating itself) widens the window: with the old
    handler about one run in two hung, so four runs catch it ~94% of the time.
    """
    topic = mock_only.new_topic(1)
    config = debug_config(tmp_path / "tidemark.yaml", mock_only, topic, "all")
    data = yaml.safe_load(config.read_text())
    data["kafka"].update(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password="p4ssw0rd",
    )
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    stop_times = []
    for attempt in range(4):
        daemon = TidemarkProcess(config, tmp_path / f"run{attempt}", env={})
        with pytest.raises(AssertionError, match="not ready"):
            daemon.start(ready_timeout=3)  # never ready: SASL is refused
        assert daemon.process is not None
        try:
            started = time.monotonic()
            for _ in range(300):  # ~0.3 s of SIGTERMs, or until it has exited
                if daemon.returncode is not None:
                    break
                daemon.process.send_signal(signal.SIGTERM)
                time.sleep(0.001)
            assert daemon.stop(signal.SIGTERM, timeout=20) == 0, daemon.log_tail()
            stop_times.append(time.monotonic() - started)
        finally:
            daemon.kill()
        events = [r["event"] for r in json_lines(daemon)]
        assert events.index("shutdown_requested") < events.index("consumer_closed")
    print(f"stop after SIGTERM in a log flood: {', '.join(f'{t:.1f}s' for t in stop_times)}")
