"""With logging format json, every line the daemon writes is JSON, also in an outage.

Before the fix the lag tracker's own Kafka client had no logger, so librdkafka
printed its connection failures raw on stderr (`%3|...|FAIL|...`), ~400 lines in a
20 s outage. Here the broker goes away while the daemon runs (the mock cluster's
brokers set down, or the Tansu process stopped); afterwards every stdout/stderr
line must parse as a JSON object, and the clients' complaints must be among them
as `librdkafka_logged` events, rate-limited per client and facility (and the
daemon's own kafka_error / high_watermark_query_failed events per error code).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_support import order_bytes, product, wait_events, whole_seconds_ago, write_config
from harness import Broker, MockBroker, TidemarkProcess
from test_librdkafka_debug import json_lines

OUTAGE = 10.0  # seconds; librdkafka reconnects every ~0.1-1 s, so it repeats itself a lot


@pytest.mark.parametrize("kind", ["mock", "tansu"])
def test_every_line_is_json_through_a_broker_outage(
    own_broker: Callable[[str], Broker],
    tidemark: Callable[..., TidemarkProcess],
    tmp_path: Path,
    kind: str,
) -> None:
    broker = own_broker(kind)
    topic = broker.new_topic(2)
    for seq in range(6):
        broker.produce(topic, seq % 2, order_bytes(whole_seconds_ago(10), seq))
    broker.flush()
    daemon = tidemark(write_config(tmp_path / "tidemark.yaml", broker, [product("orders", topic)]))
    wait_events(daemon, "orders", 6)
    before = len(daemon.output().splitlines())

    if isinstance(broker, MockBroker):
        for broker_id in (1, 2, 3):
            broker.cluster.set_broker_up(broker_id, False)
    else:
        broker.close()  # Tansu with memory storage: gone for good
    time.sleep(OUTAGE)
    assert daemon.returncode is None, daemon.log_tail()
    during = len(daemon.output().splitlines()) - before
    if isinstance(broker, MockBroker):
        for broker_id in (1, 2, 3):
            broker.cluster.set_broker_up(broker_id, True)
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0, daemon.log_tail()

    records = json_lines(daemon)  # raises on the first line that is not JSON
    complaints = [
        r
        for r in records
        if r.get("event") == "librdkafka_logged" and r["level"] in ("warning", "error")
    ]
    clients = {str(r["client"]).rsplit("#", 1)[-1] for r in complaints}
    assert "consumer-2" in clients, f"the lag tracker's client logged nothing: {clients}"
    # Rate limit: one line per (client, facility, level) per 30 s, so in a 10 s outage
    # each key appears at most twice (once before and once after a boundary).
    keys = [(r["client"], r["facility"], r["level"]) for r in complaints]
    assert max(keys.count(k) for k in keys) <= 2, sorted(keys)
    # The consumer's error callback and the lag probe: once per error code per 30 s too.
    for event in ("kafka_error", "high_watermark_query_failed"):
        codes = [r.get("code", r.get("error")) for r in records if r.get("event") == event]
        assert all(codes.count(c) <= 2 for c in codes), (event, codes)
    print(f"{kind}: {during} lines in a {OUTAGE:.0f}s outage, {len(complaints)} from librdkafka")
