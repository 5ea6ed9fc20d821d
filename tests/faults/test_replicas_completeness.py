"""Completeness across replicas: 1, 2 and 3 real daemons judge the same windows alike.

One scripted stream (a partial first window, loss, duplicates, a late event) is run
against 1, 2 and 3 replicas of the real daemon in one consumer group on a real
broker, with `completeness_sharing` on. Mid-window the replica that reconciles
(owner of partition 0) is killed with SIGKILL and a replacement joins: two
rebalances while window 4 is open, and a partition whose last observations may
reach past its last commit. The per-window verdicts are read from the shared
topic itself (the latest verdict record of each window, as the reconciler wrote it)
and must be the same for every replica count, and equal to the script's truth.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from completeness_support import ORDERS_AVSC, Event, order_bytes
from confluent_kafka.admin import AdminClient, ConfigResource
from harness import Broker, MockBroker, TidemarkProcess, scrape, wait_for

from monitor.completeness.manifests import Manifest, encode_manifest
from monitor.completeness.shared import Judged, Progress, decode_record

W = 10  # window seconds
PARTITIONS = 3
PER = 3  # events per partition per window
OOO = 2
OFFSET_COMMIT = 8  # Kafka API key
TOPIC_AUTHORIZATION_FAILED = 29
MOCK_REJOIN = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}

Verdicts = dict[int, tuple[str | None, bool, int, int]]

# The script's truth: (verdict, partial, observed, expected) per window.
TRUTH: Verdicts = {
    0: ("partial", True, 9, 0),  # where every partition's history begins
    1: ("complete", False, 9, 9),
    2: ("complete", False, 9, 9),
    3: ("incomplete", False, 9, 11),  # two events lost
    4: ("complete", False, 11, 9),  # two events delivered twice
    5: ("complete", False, 9, 9),  # incomplete at close, amended by a late event
    6: ("complete", False, 9, 9),
    7: (None, False, 0, 0),  # closed, no events, waiting for a manifest (grace)
}


class Script:
    """Produces the stream in phases; event times are whole seconds from t0."""

    def __init__(self, broker: Broker, topic: str, control: str) -> None:
        self.broker, self.topic, self.control = broker, topic, control
        self.t0 = (int(time.time()) - 3600) // W * W
        self.seq = 0

    def events(self, k: int, partition: int, which: range) -> None:
        for i in which:
            self.seq += 1
            t = self.t0 + k * W + 1 + partition + 2 * i
            event = Event("shop", partition, self.seq, t)
            self.broker.produce(self.topic, partition, order_bytes(event))

    def window(self, k: int, *, skip: tuple[int, int] | None = None) -> None:
        for p in range(PARTITIONS):
            self.events(k, p, range(PER) if skip is None or skip[0] != p else range(PER - 1))

    def manifest(self, k: int, count: int) -> None:
        start = float(self.t0 + k * W)
        record = encode_manifest(Manifest("orders", start, start + W, count, "shop"))
        self.broker.produce(self.control, 0, record)

    def phase1(self) -> int:
        """Windows 0-3 and the first event of window 4 on each partition."""
        for k in range(4):
            self.window(k)
        for p in range(PARTITIONS):
            self.events(4, p, range(1))
        for k in (1, 2):
            self.manifest(k, PARTITIONS * PER)
        self.manifest(3, PARTITIONS * PER + 2)  # two events were lost on the way
        self.broker.flush()
        return 4 * PARTITIONS * PER + PARTITIONS

    def phase2(self) -> None:
        """The rest of window 4 (two sent twice), 5 (one held back), 6; then time moves on."""
        for p in range(PARTITIONS):
            self.events(4, p, range(1, PER))
        self.seq -= 2
        self.events(4, 2, range(1, PER))  # the same two events again: duplicates
        self.window(5, skip=(1, PER - 1))
        self.window(6)
        for k in (4, 5, 6):
            self.manifest(k, PARTITIONS * PER)
        for p in range(PARTITIONS):  # moves every partition's watermark past window 7
            self.seq += 1
            event = Event("shop", p, self.seq, self.t0 + 8 * W + 5)
            self.broker.produce(self.topic, p, order_bytes(event))
        self.broker.flush()

    def late(self) -> None:
        """The event window 5 missed, long after it closed."""
        self.events(5, 1, range(PER - 1, PER))
        self.broker.flush()


def sharing_settings(broker: Broker, group: str, shared: str) -> dict[str, Any]:
    """A replica's settings apart from what it watches: quick polls, commits and
    rejoins (the mock's short session), sharing through `shared`."""
    properties: dict[str, Any] = dict(broker.group_settings)
    if broker.name == "mock":
        properties.update(MOCK_REJOIN)
    return {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": group,
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
            "properties": properties,
        },
        "lag": {"refresh_interval": 0.5},
        "logging": {"format": "json", "level": "info"},
        "completeness_sharing": {"enabled": True, "topic": shared},
    }


def config(path: Path, broker: Broker, topic: str, control: str, shared: str, group: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                **sharing_settings(broker, group, shared),
                "products": [
                    {
                        "name": "orders",
                        "owner": "team-test",
                        "topic": topic,
                        "contract": str(ORDERS_AVSC),
                        "encoding": "avro-raw",
                        "event_time": "occurred_at",
                        "max_out_of_orderness": OOO,
                        "idle_timeout": 300,
                        "completeness": {
                            "window": W,
                            "window_retention": 7200,
                            "manifests": {"topic": control, "grace": 3600},
                        },
                    }
                ],
            },
            sort_keys=False,
        )
    )
    return path


def verdicts(broker: Broker, shared: str, base: int) -> Verdicts:
    """The latest verdict record of each window on the shared topic, k counted from base."""
    out: Verdicts = {}
    for msg in broker.read(shared, 0):
        record = decode_record(msg.value())
        if isinstance(record, Judged):
            k = record.k - base
            out[k] = (record.verdict, record.partial, record.observed, record.expected)
    return out


def wait_verdicts(
    broker: Broker,
    shared: str,
    base: int,
    done: Callable[[Verdicts], bool],
    timeout: float = 45.0,
) -> Verdicts:
    deadline = time.monotonic() + timeout
    got: Verdicts = {}
    while time.monotonic() < deadline:
        got = verdicts(broker, shared, base)
        if done(got):
            return got
        time.sleep(0.3)
    raise AssertionError(f"verdicts never settled: {got}")


def covered(broker: Broker, shared: str) -> int:
    """Events the published observations cover, over all partitions (latest progress)."""
    latest: dict[int, int] = {}
    for msg in broker.read(shared, 0):
        record = decode_record(msg.value())
        if isinstance(record, Progress):
            latest[record.partition] = max(latest.get(record.partition, 0), record.offset)
    return sum(latest.values())


def counted(procs: list[TidemarkProcess]) -> float:
    return sum(scrape(p.metrics_url).total("tidemark_events_total") for p in procs)


def reconciler(procs: list[TidemarkProcess]) -> TidemarkProcess:
    """The live replica exporting tidemark_completeness_reconciler 1 (waits for one)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for p in procs:
            if scrape(p.metrics_url).total("tidemark_completeness_reconciler") == 1:
                return p
        time.sleep(0.2)
    raise AssertionError("no replica reconciles")


def run_stream(
    broker: Broker, tmp_path: Path, tidemark: Callable[..., TidemarkProcess], replicas: int
) -> tuple[Verdicts, dict[str, float], str]:
    """On the mock cluster the shared topic is made by the test (the mock has no
    CreateTopics) and commits are refused before the kill; on Tansu the daemon creates
    the topic (compacted) and the kill lands wherever the commit cycle is."""
    topic = broker.new_topic(PARTITIONS)
    control = broker.new_topic(1)
    shared = (
        broker.new_topic(1)
        if isinstance(broker, MockBroker)
        else f"__tidemark-completeness-{uuid.uuid4().hex[:8]}"
    )
    script = Script(broker, topic, control)
    group = f"tidemark-replicas-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path / f"r{replicas}.yaml", broker, topic, control, shared, group)
    procs = [tidemark(path) for _ in range(replicas)]
    if isinstance(broker, MockBroker):
        # The broker refuses every commit from here until the kill: the observations are
        # published, the offsets they cover never committed (as when a replica dies
        # between the two). Whoever takes the partitions over must not count them again.
        broker.cluster.push_request_errors(OFFSET_COMMIT, [TOPIC_AUTHORIZATION_FAILED] * 100_000)
    phase1 = script.phase1()
    wait_for(procs[0].metrics_url, lambda s: counted(procs) >= phase1, timeout=30)
    deadline = time.monotonic() + 30
    while covered(broker, shared) < phase1:
        assert time.monotonic() < deadline, "observations never covered phase 1"
        time.sleep(0.2)
    if isinstance(broker, MockBroker):
        assert not broker.committed(group, topic, list(range(PARTITIONS)))
    victim = reconciler(procs)
    victim.kill()  # SIGKILL, mid-window 4
    killed_at = time.monotonic()
    procs.remove(victim)
    if isinstance(broker, MockBroker):
        broker.cluster.clear_request_errors(OFFSET_COMMIT)
    procs.append(tidemark(path, ready_timeout=45))  # a replacement joins the group
    successor = reconciler(procs)  # another replica (or the replacement) took over
    took_over = time.monotonic() - killed_at
    script.phase2()
    phase2_at = time.monotonic()
    base = script.t0 // W
    wait_verdicts(broker, shared, base, lambda v: v.get(5, (None,))[0] == "incomplete")
    judged_in = time.monotonic() - phase2_at
    script.late()
    late_at = time.monotonic()
    got = wait_verdicts(broker, shared, base, lambda v: v.get(5, (None,))[0] == "complete")
    amended_in = time.monotonic() - late_at
    print(  # figures for the record (pytest -s)
        f"\n{broker.name} replicas={len(procs)}: reconciler back {took_over:.1f}s after "
        f"SIGKILL; windows 4-7 judged {judged_in:.1f}s after the data; the late event "
        f"amended window 5 in {amended_in:.1f}s; successor={successor.port}"
    )
    final = scrape(reconciler(procs).metrics_url)
    sli = {
        "recovered": final.total("tidemark_windows_recovered_total"),
        "dropped": sum(
            scrape(p.metrics_url).total("tidemark_completeness_observations_dropped_total")
            for p in procs
        ),
    }
    return got, sli, shared


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_same_verdicts_with_any_number_of_replicas(
    mock_only: Broker,
    tmp_path: Path,
    tidemark: Callable[..., TidemarkProcess],
    replicas: int,
) -> None:
    got, sli, _ = run_stream(mock_only, tmp_path, tidemark, replicas)
    assert got == TRUTH
    assert sli["dropped"] == 0


def test_tansu_two_replicas_create_the_compacted_topic_and_agree(
    tansu_only: Broker, tmp_path: Path, tidemark: Callable[..., TidemarkProcess]
) -> None:
    """A second, independent broker; the daemon creates the shared topic itself."""
    got, _, shared = run_stream(tansu_only, tmp_path, tidemark, 2)
    assert got == TRUTH
    admin = AdminClient({"bootstrap.servers": tansu_only.bootstrap})
    described = admin.describe_configs([ConfigResource("topic", shared)])
    config = next(iter(described.values())).result(10)
    assert config["cleanup.policy"].value == "compact,delete"
    assert config["retention.ms"].value == str(7 * 86_400_000)


def test_workers_share_completeness_behind_one_metrics(
    mock_only: Broker, tmp_path: Path, tidemark: Callable[..., TidemarkProcess]
) -> None:
    """`run --workers 2`: two consumers in the group, one /metrics, the same verdicts;
    the merged counters are those of one instance owning everything."""
    broker = mock_only
    topic, control, shared = broker.new_topic(PARTITIONS), broker.new_topic(1), broker.new_topic(1)
    script = Script(broker, topic, control)
    group = f"tidemark-workers-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path / "workers.yaml", broker, topic, control, shared, group)
    argv = [sys.executable, "-m", "monitor", "run", "--config", str(path), "--workers", "2"]
    proc = tidemark(path, argv=argv, ready_timeout=45)
    phase1 = script.phase1()
    wait_for(proc.metrics_url, lambda s: s.total("tidemark_events_total") >= phase1, timeout=30)
    script.phase2()
    base = script.t0 // W
    wait_verdicts(broker, shared, base, lambda v: v.get(5, (None,))[0] == "incomplete")
    script.late()
    got = wait_verdicts(broker, shared, base, lambda v: v.get(5, (None,))[0] == "complete")
    assert got == TRUTH
    judged = [v for v in TRUTH.values() if v[0] in ("complete", "incomplete")]
    expected = sum(v[3] for v in judged)
    observed = sum(min(v[2], v[3]) for v in judged)
    samples = wait_for(
        proc.metrics_url,
        lambda s: s.total("tidemark_completeness_observed_events_total") == observed,
        timeout=15,
    )
    assert samples.total("tidemark_completeness_expected_events_total") == expected
    assert samples.total("tidemark_completeness_reconciler") == 1
    assert samples.value("tidemark_windows_closed_total", verdict="partial") == 1
    assert samples.total("tidemark_windows_recovered_total") == 1


PRODUCE = 0  # Kafka API key
NOT_ENOUGH_REPLICAS = 19  # retriable: the client keeps trying until it is cleared


def test_no_commit_while_observations_cannot_be_stored(
    mock_only: Broker, tmp_path: Path, tidemark: Callable[..., TidemarkProcess]
) -> None:
    """The broker refuses every Produce (the shared topic's too) after the daemon read
    new events: it counts them but commits nothing until their observations are
    stored, then commits once the broker takes them again."""
    broker = mock_only
    assert isinstance(broker, MockBroker)
    topic, control, shared = broker.new_topic(PARTITIONS), broker.new_topic(1), broker.new_topic(1)
    group = f"tidemark-publish-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path / "publish.yaml", broker, topic, control, shared, group)
    text = path.read_text().replace("enabled: true", "enabled: true\n  publish_timeout: 1")
    path.write_text(text)
    proc = tidemark(path)
    script = Script(broker, topic, control)
    first = script.phase1()
    wait_for(proc.metrics_url, lambda s: s.total("tidemark_events_total") >= first, timeout=30)
    parts = list(range(PARTITIONS))
    deadline = time.monotonic() + 15
    while sum(broker.committed(group, topic, parts).values()) < first:
        assert time.monotonic() < deadline, "phase 1 never committed"
        time.sleep(0.2)
    script.late()  # one more event (window 5, partition 1)...
    broker.cluster.push_request_errors(PRODUCE, [NOT_ENOUGH_REPLICAS] * 100_000)
    try:
        wait_for(
            proc.metrics_url, lambda s: s.total("tidemark_events_total") >= first + 1, timeout=15
        )
        time.sleep(3.0)  # several commit rounds
        assert sum(broker.committed(group, topic, parts).values()) == first
        assert "completeness_publish_failed" in proc.output()
    finally:
        broker.cluster.clear_request_errors(PRODUCE)
    deadline = time.monotonic() + 20
    while sum(broker.committed(group, topic, parts).values()) < first + 1:
        assert time.monotonic() < deadline, "never committed after the broker recovered"
        time.sleep(0.2)
    assert covered(broker, shared) >= first + 1
