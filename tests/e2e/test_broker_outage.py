"""End-to-end: a broker outage long enough to expire the group session never blinds the SLIs.

Every part is real; only timings are shortened and receivers replaced. Tansu (a
Kafka-protocol broker, memory storage) as a subprocess is hung with SIGSTOP, which keeps
its data but answers nothing, the way a cut-off or wedged broker behaves (connections
stay open, requests time out), then released with SIGCONT. The Tidemark daemon runs as a
subprocess with a 6 s `session.timeout.ms`, so the group session expires during the
outage and librdkafka reports the partitions lost. Debian's Prometheus evaluates the
shipped rules (every `for:` and `keep_firing_for:` clamped to 4s, scrape and evaluation
every 1s); Debian's Alertmanager runs the shipped routing and inhibition (receivers are a
webhook into this process, group_wait/group_interval 1s). See tests/e2e/conftest.py.

What must hold, and is measured:
- /readyz turns 503 within seconds of the broker hanging, 200 again after it returns;
- TidemarkKafkaUnreachable pages the platform (platform-pager) and resolves by itself;
- the freshness series (the cross-instance recording rule and the daemon's own) and the
  partition series never vanish over the whole outage (range query: no gaps), and
  freshness keeps growing;
- TidemarkDataStale fires in Prometheus but the owner's page is inhibited: nothing ever
  reaches data-pager;
- the lag snapshot time stands still while no broker answers;
- everything recovers without restarting Tidemark.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerting_stack import Alertmanager, Prometheus, wait_until
from live_tidemark import (
    Product,
    StallableProducer,
    TansuBroker,
    TidemarkProcess,
    dump_stack,
    live_stack,
    write_config,
)

THRESHOLD = 12.0  # freshness threshold (s): DataStale must come after the Kafka page
IDLE_TIMEOUT = 2.0
OUT_OF_ORDERNESS = 1.0
MAX_FOR = "4s"
UNREACHABLE = "TidemarkKafkaUnreachable"
STALE = "TidemarkDataStale"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    """A Tansu of this test's own: it is hung and released, so it is not shared."""
    broker = TansuBroker(tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        if broker.process.poll() is None:
            broker.process.send_signal(signal.SIGCONT)  # a stopped process ignores SIGINT
        broker.close()


def _query_range(prom: Prometheus, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "1"})
    with urllib.request.urlopen(f"{prom.url}/api/v1/query_range?{params}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _notes(am: Alertmanager, **labels: str) -> list[tuple[str, str]]:
    """(receiver, status) of every webhook notification carrying an alert with `labels`."""
    return [
        (note["receiver"], alert["status"])
        for note in list(am.notifications)
        for alert in note["alerts"]
        if labels.items() <= alert["labels"].items()
    ]


def _readyz_until(daemon: TidemarkProcess, status: int, timeout: float) -> float:
    """Seconds until /readyz answers `status` (polled every 0.1 s)."""
    started = time.monotonic()
    wait_until(
        lambda: daemon.get("/readyz", timeout=1.0)[0] == status,
        timeout,
        f"/readyz {status}",
        every=0.1,
    )
    return time.monotonic() - started


def _gaps(series: dict[str, Any], start: float, end: float) -> list[tuple[float, float]]:
    """Stretches (from, to) of a 1 s range query with no sample: the series had vanished."""
    times = [start - 1, *(float(t) for t, _ in series["values"]), end + 0.5]
    return [(a, b) for a, b in itertools.pairwise(times) if b - a > 1.5]


_DUMPED = (
    "tidemark:product_freshness_seconds",
    "tidemark_freshness_seconds",
    "tidemark_partition_watermark_timestamp_seconds",
    "tidemark_partition_orphaned",
    "tidemark_partition_idle",
    "tidemark_assigned_partitions",
    "tidemark_kafka_reachable",
    "tidemark_ready",
    "ALERTS",
)


def test_broker_outage_keeps_freshness_growing_pages_the_platform_and_recovers(
    tansu: TansuBroker,
    alertmanager: Alertmanager,
    start_prometheus: Callable[..., Prometheus],
    tmp_path: Path,
) -> None:
    product = Product("orders", "team-checkout", "gold", tansu.new_topic(2, "orders"), 2)
    config = write_config(
        tmp_path / "tidemark.yaml",
        tansu.bootstrap,
        [product],
        threshold=THRESHOLD,
        idle_timeout=IDLE_TIMEOUT,
        out_of_orderness=OUT_OF_ORDERNESS,
    )
    doc = yaml.safe_load(config.read_text())
    doc["kafka"]["properties"] = dict(tansu.group_settings)  # 6 s session, 1 s heartbeat
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    producer = StallableProducer(tansu.bootstrap, [product])

    def dump(prom: Prometheus, daemon: TidemarkProcess) -> str:
        return dump_stack(prom, alertmanager, daemon, _DUMPED, tail=30)

    stack = live_stack(config, tmp_path, producer, start_prometheus, dump, max_for=MAX_FOR)
    with stack as (daemon, prom):
        _scenario(prom, alertmanager, daemon, tansu, product)


def _scenario(
    prom: Prometheus,
    am: Alertmanager,
    daemon: TidemarkProcess,
    tansu: TansuBroker,
    product: Product,
) -> None:
    of = f'{{product="{product.name}"}}'
    pid = daemon.process.pid if daemon.process else None

    def baseline() -> bool:
        fresh = prom.query(f"tidemark:product_freshness_seconds{of} < {THRESHOLD / 2}")
        history = prom.query(f"count_over_time(tidemark:product_freshness_seconds{of}[10s]) >= 5")
        reachable = prom.query("tidemark_kafka_reachable == 1")
        marked = prom.query(f"count(tidemark_partition_watermark_timestamp_seconds{of}) == 2")
        pages = [a for a in prom.alerts() if a["labels"].get("severity") == "page"]
        return bool(fresh and history and reachable and marked) and not pages and not am.alerts()

    wait_until(baseline, 45, "a fresh product, Kafka reachable, no page pending or firing")

    # --- the broker hangs -----------------------------------------------------------
    stopped_at = time.time()
    os.kill(tansu.process.pid, signal.SIGSTOP)
    not_ready_after = _readyz_until(daemon, 503, 20)
    _, why = daemon.get("/readyz")
    assert why.startswith("not ready: Kafka unreachable"), why

    wait_until(
        lambda: ("platform-pager", "firing") in _notes(am, alertname=UNREACHABLE),
        30,
        f"a firing {UNREACHABLE} at platform-pager",
    )
    paged_after = time.time() - stopped_at
    [page] = am.alerts(alertname=UNREACHABLE)
    assert page["labels"]["severity"] == "page" and page["labels"]["category"] == "monitor"
    assert page["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{UNREACHABLE}.md")
    assert (REPO / "docs" / "runbooks" / f"{UNREACHABLE}.md").is_file()

    # The session expires: the partitions are lost, yet stay exported as orphans.
    wait_until(
        lambda: (
            prom.query(f"sum(tidemark_partition_orphaned{of}) == 2")
            and prom.query(f"sum(tidemark_assigned_partitions{of}) == 0")
        ),
        30,
        "both partitions lost (orphaned) after the session timeout",
    )
    lost_after = time.time() - stopped_at

    # Staleness is real and fires in Prometheus, but Alertmanager holds the owner's page.
    def stale_and_inhibited() -> bool:
        firing = prom.query(
            f'ALERTS{{alertname="{STALE}",alertstate="firing",product="{product.name}"}}'
        )
        held = am.alerts(alertname=STALE, product=product.name)
        return (
            bool(firing)
            and bool(held)
            and all(
                a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in held
            )
        )

    wait_until(stale_and_inhibited, 30, f"{STALE} firing in Prometheus, inhibited in Alertmanager")
    stale_after = time.time() - stopped_at
    time.sleep(3)  # several group_interval flushes: an uninhibited page would go out now
    assert _notes(am, alertname=STALE) == []
    snapshot_at = prom.value("tidemark_lag_snapshot_timestamp_seconds")
    assert snapshot_at is not None and snapshot_at < stopped_at + 1.5, (snapshot_at, stopped_at)
    outage_freshness = prom.value(f"tidemark:product_freshness_seconds{of}")
    assert outage_freshness is not None and outage_freshness > THRESHOLD

    # --- the broker returns ---------------------------------------------------------
    resumed_at = time.time()
    os.kill(tansu.process.pid, signal.SIGCONT)
    ready_after = _readyz_until(daemon, 200, 45)
    wait_until(
        lambda: ("platform-pager", "resolved") in _notes(am, alertname=UNREACHABLE),
        45,
        f"a resolved {UNREACHABLE} at platform-pager",
    )
    resolved_after = time.time() - resumed_at
    wait_until(
        lambda: not prom.query(f'ALERTS{{alertname="{STALE}"}}') and not am.alerts(alertname=STALE),
        30,
        f"{STALE} resolved",
    )
    recovered_at = time.time()
    fresh = prom.value(f"tidemark:product_freshness_seconds{of}")
    assert fresh is not None and fresh < THRESHOLD, fresh
    assert prom.query(f"sum(tidemark_partition_orphaned{of}) == 0")
    assert prom.query(f"sum(tidemark_assigned_partitions{of}) == 2")
    assert prom.value("tidemark_kafka_reachable") == 1
    assert prom.value("tidemark_lag_snapshot_timestamp_seconds") > resumed_at  # type: ignore[operator]

    # --- over the whole outage ------------------------------------------------------
    # The platform was paged; no staleness alert reached an owner at any time. (The
    # events read after the outage are late: the freshness SLO burns, and its slo
    # alerts may notify the owner: that budget really is spent.)
    assert ("platform-pager", "firing") in _notes(am, alertname=UNREACHABLE)
    data = [
        (n["receiver"], a["labels"])
        for n in am.notifications
        for a in n["alerts"]
        if a["labels"].get("category") == "data"
    ]
    assert data == [], data
    # The freshness series and the partition series never vanished, and freshness grew
    # all the while nothing was read.
    start, end = stopped_at - 3, recovered_at
    gaps = {}
    for expr in (
        f"tidemark:product_freshness_seconds{of}",
        f"tidemark_freshness_seconds{of}",
        f"count(tidemark_partition_watermark_timestamp_seconds{of}) == 2",
    ):
        [series] = _query_range(prom, expr, start, end)
        gaps[expr] = _gaps(series, start, end)
    assert not any(gaps.values()), gaps
    [recorded] = _query_range(
        prom, f"tidemark:product_freshness_seconds{of}", stopped_at + 3, resumed_at
    )
    values = [float(v) for _, v in recorded["values"]]
    assert all(b >= a for a, b in itertools.pairwise(values)), values
    assert values[-1] - values[0] > resumed_at - stopped_at - 6, values

    assert daemon.returncode is None and daemon.process and daemon.process.pid == pid
    events = [r.get("event") for r in daemon.log_records()]
    assert "kafka_unreachable" in events and "partitions_lost" in events, events[-20:]
    print(
        f"\nbroker hung {resumed_at - stopped_at:.1f}s: not ready after {not_ready_after:.1f}s, "
        f"{UNREACHABLE} paged after {paged_after:.1f}s, partitions lost after {lost_after:.1f}s, "
        f"{STALE} firing (inhibited) after {stale_after:.1f}s, freshness {outage_freshness:.1f}s; "
        f"after release: ready in {ready_after:.1f}s, page resolved in {resolved_after:.1f}s "
        f"(for/keep_firing_for {MAX_FOR}), everything recovered in {recovered_at - resumed_at:.1f}s"
    )
