"""An ODCS rowCount becomes expected-volume completeness of a running daemon (real broker).

The product config names no completeness at all: the ODCS file's rowCount
(`mustBeGreaterOrEqualTo: 4` with `tidemark.window: 5s`) is its only source. A
scripted stream puts 4, 4, 2 and 5 events in four 5 s event-time windows, then one
event that moves the watermark past the fourth; the scrape must show the verdicts and
counters that floor gives, exactly (without the mapping there is no completeness).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml
from completeness_support import ORDERS_AVSC, Event, order_bytes
from harness import Broker, Samples, TidemarkProcess, wait_for

W = 5
FLOOR = 4
PRODUCT = "orders"
ODCS = f"""\
apiVersion: v3.1.0
kind: DataContract
id: shop-orders
version: 1.0.0
team: {{name: team-odcs}}
slaProperties:
  - {{property: latency, value: 15, unit: m, element: orders.occurred_at}}
schema:
  - name: orders
    quality:
      - id: orders_volume
        metric: rowCount
        mustBeGreaterOrEqualTo: {FLOOR}
        customProperties: [{{property: tidemark.window, value: {W}s}}]
"""


def write_config(tmp_path: Path, broker: Broker, topic: str) -> Path:
    odcs = tmp_path / "orders.odcs.yaml"
    odcs.write_text(ODCS)
    config = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"tidemark-odcs-{uuid.uuid4().hex[:10]}",
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
            "properties": dict(broker.group_settings),
        },
        "logging": {"format": "json", "level": "info"},
        "products": [
            {  # owner, event time and completeness all come from the ODCS file
                "name": PRODUCT,
                "topic": topic,
                "contract": str(ORDERS_AVSC),
                "odcs": str(odcs),
                "encoding": "avro-raw",
                "max_out_of_orderness": 1,
                "idle_timeout": 300,
            }
        ],
    }
    path = tmp_path / "tidemark.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def count(s: Samples, name: str, **labels: str) -> float:
    return s.value(name, product=PRODUCT, **labels)


def test_an_odcs_row_count_judges_windows_by_volume(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(1)
    daemon = tidemark(write_config(tmp_path, broker, topic))
    t0 = (int(time.time()) - 900) // W * W
    per_window = [4, 4, 2, 5, 1]  # the last one (second 3 of window 4) closes window 3
    seq = 0
    for k, n in enumerate(per_window):
        for i in range(n):
            seq += 1
            second = 3 if k == len(per_window) - 1 else i % W
            broker.produce(topic, 0, order_bytes(Event("p", 0, seq, t0 + k * W + second)))
    broker.flush()

    def closed(s: Samples) -> float:
        return s.total("tidemark_windows_closed_total", product=PRODUCT)

    s = wait_for(
        daemon.metrics_url,
        lambda s: count(s, "tidemark_events_total") == seq and closed(s) == 4,
        timeout=30,
    )
    verdicts = {
        v: count(s, "tidemark_windows_closed_total", verdict=v)
        for v in ("complete", "incomplete", "partial", "no_expectation")
    }
    # window 0 is partial: the daemon may have joined it midway (nothing is judged there)
    assert verdicts == {"complete": 2, "incomplete": 1, "partial": 1, "no_expectation": 0}
    # windows 1-3 expected 4 each; window 2 brought 2 (window 3's fifth is surplus)
    assert count(s, "tidemark_completeness_expected_events_total") == 3 * FLOOR
    assert count(s, "tidemark_completeness_observed_events_total") == 4 + 2 + 4
    assert count(s, "tidemark_window_completeness_ratio") == 5 / FLOOR  # window 3, uncapped
    # said once at start-up: where the floor and the window came from
    [filled] = [
        r for r in daemon.log_records() if r.get("event") == "product_settings_from_contract"
    ]
    assert filled["expected_volume"] == (
        f"odcs rowCount orders_volume: expected volume at least {FLOOR} events per {W}s "
        f"completeness window (tidemark.window {W}s)"
    )
    assert not [r for r in daemon.log_records() if r.get("event") == "rules_not_evaluated"]
