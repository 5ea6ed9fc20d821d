"""Three completeness SLI errors of a running daemon, each against a real broker.

- A future-dated event carrying a sequence number was reported missing (delivered!).
- A partition whose first data came after the others' (within idle_timeout) did not
  hold the product watermark: windows closed incomplete without it, then recovered.
- Three sends of one producer's manifest were counted accepted 3 AND duplicate 2.

Event times are whole seconds about 15 minutes in the past, aligned to 5 s windows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from completeness_support import ORDERS_AVSC, Event, order_bytes
from harness import Broker, Samples, TidemarkProcess, scrape, wait_for

from monitor.completeness.emitter import Manifest, encode_manifest

W = 5
PRODUCT = "orders"


def write_config(
    path: Path, broker: Broker, topic: str, completeness: dict[str, Any], idle_timeout: float
) -> Path:
    config = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"tidemark-errors-{uuid.uuid4().hex[:10]}",
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
            "properties": dict(broker.group_settings),
        },
        "lag": {"refresh_interval": 0.5},
        "logging": {"format": "json", "level": "info"},
        "products": [
            {
                "name": PRODUCT,
                "owner": "team-test",
                "topic": topic,
                "contract": str(ORDERS_AVSC),
                "encoding": "avro-raw",
                "event_time": "occurred_at",
                "max_out_of_orderness": 1,
                "max_future_skew": 60,
                "idle_timeout": idle_timeout,
                "completeness": {"window": W, **completeness},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_of_windows() -> int:
    return (int(time.time()) - 900) // W * W


def count(s: Samples, name: str, **labels: str) -> float:
    return s.value(name, product=PRODUCT, **labels)


SEQUENCE = {"sequence": {"producer_field": "producer_id", "sequence_field": "sequence"}}


def test_a_future_dated_event_is_not_a_missing_sequence_number(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(1)
    completeness = {**SEQUENCE, "allowed_lateness": W}
    daemon = tidemark(write_config(tmp_path / "t.yaml", broker, topic, completeness, 300))
    t0 = start_of_windows()
    future = int(time.time()) + 86_400  # a producer whose clock is a day ahead
    times = [t0, t0 + 1, future, t0 + 2, t0 + 3, t0 + 30, t0 + 31]
    for seq, t in enumerate(times, start=1):
        broker.produce(topic, 0, order_bytes(Event("producer-a", 0, seq, t)))
    broker.flush()
    s = wait_for(
        daemon.metrics_url,
        lambda s: (
            count(s, "tidemark_events_total") == len(times)
            # the watermark passed seq 3's neighbours + allowed_lateness: a gap would be declared
            and count(s, "tidemark_watermark_timestamp_seconds") >= t0 + 29
        ),
        timeout=30,
    )
    assert count(s, "tidemark_future_events_total") == 1
    assert count(s, "tidemark_sequence_missing_events_total") == 0  # 1 on main
    assert count(s, "tidemark_sequence_out_of_order_events_total") == 0
    assert count(s, "tidemark_sequence_duplicate_events_total") == 0


def test_a_partition_whose_first_data_comes_later_holds_the_windows(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(2)
    completeness = {**SEQUENCE, "expected": {"min_events_per_window": 8}}
    # idle_timeout longer than the test: the empty partition is "not idle yet" throughout
    daemon = tidemark(write_config(tmp_path / "t.yaml", broker, topic, completeness, 300))
    t0 = start_of_windows()

    def deliver(partition: int) -> None:
        for i in range(16):  # 4 events in each of windows 0-3
            t = t0 + (i // 4) * W + i % 4
            broker.produce(
                topic, partition, order_bytes(Event(f"p{partition}", partition, i + 1, t))
            )
        broker.flush()

    deliver(0)
    wait_for(daemon.metrics_url, lambda s: count(s, "tidemark_events_total") == 16, timeout=30)
    # Several lag refreshes (0.5 s): partition 1 is known to be caught up and empty.
    wait_for(
        daemon.metrics_url,
        lambda s: s.value("tidemark_consumer_lag_messages", partition="1", topic=topic) == 0,
        timeout=15,
    )
    time.sleep(1.5)
    s = scrape(daemon.metrics_url)
    closed = s.values("tidemark_windows_closed_total")
    assert sum(closed.values()) == 0, closed  # main: 1 partial + 2 incomplete here

    deliver(1)
    s = wait_for(
        daemon.metrics_url,
        lambda s: (
            count(s, "tidemark_events_total") == 32
            and count(s, "tidemark_windows_closed_total", verdict="complete") == 2
        ),
        timeout=30,
    )
    assert count(s, "tidemark_windows_closed_total", verdict="incomplete") == 0
    assert count(s, "tidemark_windows_recovered_total") == 0
    assert count(s, "tidemark_windows_closed_total", verdict="partial") == 1  # window 0
    assert count(s, "tidemark_window_completeness_ratio") == 1.0


def test_each_manifest_received_is_counted_under_one_result(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(1)
    control = broker.new_topic(1, prefix="manifests")
    completeness = {"manifests": {"topic": control, "grace": 60}}
    daemon = tidemark(write_config(tmp_path / "t.yaml", broker, topic, completeness, 300))
    t0 = start_of_windows()
    sent = [
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 4, "producer-a"),
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 4, "producer-a"),  # a retried send
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 4, "producer-a"),  # and another
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 6, "producer-a"),  # a cumulative update
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 5, "producer-a"),  # an older update, late
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 3, None),  # anonymous ones add up
        Manifest(PRODUCT, t0 + W, t0 + 2 * W, 3, None),
    ]
    for m in sent:
        broker.produce(control, 0, encode_manifest(m), key=PRODUCT.encode())
    broker.flush()

    def results(s: Samples) -> dict[str, float]:
        return {
            r: count(s, "tidemark_manifests_total", result=r)
            for r in ("accepted", "duplicate", "superseded")
        }

    s = wait_for(
        daemon.metrics_url,
        lambda s: sum(results(s).values()) >= len(sent),
        timeout=30,
    )
    assert results(s) == {"accepted": 3, "duplicate": 3, "superseded": 1}
    rejected = s.total("tidemark_manifests_total", product=PRODUCT) - len(sent)
    assert rejected == 0
