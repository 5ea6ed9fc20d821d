"""`tidemark run --workers N`: events/s of the real daemon with 1 and with N workers.

The same Avro events (Confluent wire format) as bench/throughput.py, on an
out-of-process broker (the mock cluster in a child process, or Tansu), are read
by the daemon started from its command line, once with `--workers 1` (the
single process, as shipped) and once with `--workers N`, interleaved, median of
--repeat runs. Each run is a fresh consumer group reading from the beginning.

What is timed: the steady state, while every worker has work. Once the group
has settled (every worker owns partitions, seen on /metrics as
tidemark_worker_assigned_partitions; with one process, the first event
counted), the bench records every change of the group's committed offsets
(OffsetFetch every 10 ms, no scrapes meanwhile) with the CPU counters of that
moment; afterwards the daemon's log says which worker owned which partition.
The clock starts when every worker has committed something (each is past its
start-up: offset look-ups, leader discovery, the first fetch, about 0.5 s,
which in a 3 s run made two workers look like one) and stops when the first
worker has committed all it owns to the end; the rate is the events committed
in between over that time. Per worker, not per partition: a consumer may drain
its partitions one after another (it does on Tansu). A worker that got going
later than the other leaves the end of the run to one worker: that tail is
shown apart ("to the end": until every partition is read), as is the whole run
from the first event (start-up and the first rebalance included). A run where
one worker finished before the other started (the mock cluster's coordinator
sometimes assigns in two generations, 44 s apart) measures nothing and is run
again, said so in the output. Events read twice would cost time, never add
throughput.

Over the same window the CPU time of the consuming processes, of the --workers
parent and of the broker process is read from /proc: events per consumer CPU-
second is what one core does, and holds however busy the machine is. Each run
also reports how idle the host's cores were, how much of them the hypervisor
took (steal: on a shared VM it comes and goes and slows a run for reasons that
are not Tidemark's), and how far apart the workers finished their shares. The
commit interval is 0.1 s in every run so progress is seen promptly; all other
settings are Tidemark's defaults.

The same run measures the machine's own ceiling: the floor loop of
bench/throughput.py (consume + fastavro's schemaless_reader, no Tidemark) in 1
and in N processes, each assigned an equal share of the partitions from the
beginning (no group, no commits), timed the same way: from when every process
has read its first batch to when the first one has read its share. "floor N /
floor 1" is what N Python consumers can get out of these cores with this
broker; Tidemark's workers ratio is read against it.

    python bench/workers.py --events 600000 --partitions 12 --workers 2
    python bench/workers.py --broker tansu --events 200000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import (  # noqa: E402
    CONTRACT,
    REPO,
    TOPIC,
    BrokerUnderTest,
    floor_work,
    produce,
    registry_stand_in,
)

# Tansu's first assignment of a group takes about half of session.timeout.ms (see
# tests/integration/harness/brokers.py); 6 s, Kafka's minimum, makes it ~3 s.
GROUP_SETTINGS = {"tansu": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def _events(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("tidemark_events_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _owners(text: str) -> list[float]:
    """Partitions owned by each worker (tidemark_worker_assigned_partitions)."""
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tidemark_worker_assigned_partitions{")
    ]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) so far of one process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[float, float]:
    """(idle, steal) CPU seconds of the whole host so far (Linux /proc/stat).

    Steal is time the hypervisor gave this VM's cores to someone else: on a shared
    host it comes and goes, and a run that lost a third of a core to it is slower
    for reasons that are not Tidemark's. Each run reports it.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (fields[3] + fields[4]) / tick, fields[7] / tick


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class UnsteadyRunError(Exception):
    """A run whose steady window held too few events to measure anything."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run: steady-state rate and where the CPU went while it lasted."""

    rate: float  # events/s committed while every worker had work (the steady window)
    drain: float  # events/s from the same start until every partition was read to its end
    whole: float  # events/s from the first event counted (start-up rebalance included)
    counted: float  # events counted / n (above 1: read twice around a rebalance)
    steady_share: float  # share of the n events committed inside the steady window
    cpu_workers: float  # CPU-s of the consuming processes in the steady window
    cpu_parent: float  # CPU-s of the --workers parent (merging, supervising)
    cpu_broker: float  # CPU-s of the broker process
    seconds: float  # length of the steady window
    idle: float  # CPU-s the host's cores were idle in the steady window
    steal: float  # CPU-s the hypervisor took from the host's cores in it
    finish_spread: float  # s between the first and the last worker done with its share

    @property
    def per_cpu(self) -> float:
        """Events per CPU-second of the consuming processes (what one core does)."""
        return self.rate * self.seconds / self.cpu_workers if self.cpu_workers else 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The group's committed offsets at one moment, with the CPU counters read then."""

    at: float  # perf_counter
    offsets: list[int]  # committed, per partition
    cpu: tuple[float, float, float, float, float]  # consumers, parent, broker, idle, steal


def owners_from_log(path: Path) -> dict[int, int]:
    """partition -> worker index, from the daemon's last `partition_assigned` of each
    (a single process logs no worker index: worker 0)."""
    owners: dict[int, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partition_assigned":
            owners[int(entry["partition"])] = int(entry.get("worker") or 0)
    return owners


def steady_window(
    samples: list[Sample], owners: dict[int, int], ends: list[int]
) -> tuple[int, int, list[float]]:
    """(first, last) sample of the steady state and when each worker finished its share.

    It starts at the first sample where every worker has committed something (is
    past its start-up) and ends at the first where one worker has committed every
    partition it owns to the end: in between, every worker had work. Per worker,
    not per partition: a consumer may drain its partitions one after another (it
    does on Tansu), so a partition at its end says nothing of its worker.
    """
    shares: dict[int, list[int]] = {}
    for partition, worker in owners.items():
        shares.setdefault(worker, []).append(partition)

    def started(s: Sample) -> bool:
        return all(any(s.offsets[p] > 0 for p in ps) for ps in shares.values())

    def done(s: Sample, ps: list[int]) -> bool:
        return all(s.offsets[p] >= ends[p] for p in ps)

    first = next(i for i, s in enumerate(samples) if started(s))
    last = next(i for i, s in enumerate(samples) if any(done(s, ps) for ps in shares.values()))
    finished = [next(s.at for s in samples if done(s, ps)) for ps in shares.values()]
    return first, last, finished


def run_once(
    broker: BrokerUnderTest,
    registry_url: str,
    n: int,
    workers: int,
    tmp: Path,
    properties: dict[str, str],
) -> Run:
    """Start the daemon, record the group's commits to the end; time the steady window.

    Every change of the committed offsets is recorded with the CPU counters of the
    moment (no scrapes meanwhile); which worker owns which partition comes from the
    daemon's log afterwards, and steady_window() picks the stretch where every
    worker had work. Raises UnsteadyRunError when that stretch holds too little.
    """
    bootstrap = broker.bootstrap
    group = f"bench-workers-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    config = tmp / f"{group}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "group_id": group,
                    "start_from": "earliest",
                    "commit_interval": 0.1,
                    "properties": {**GROUP_SETTINGS.get(broker.kind, {}), **properties},
                },
                "schema_registry": {"url": registry_url},
                "server": {"bind_address": "127.0.0.1", "port": port},
                # info: partition_assigned names each partition's worker (a few lines)
                "logging": {"format": "json", "level": "info"},
                "products": [
                    {
                        "name": "orders",
                        "owner": "bench",
                        "topic": TOPIC,
                        "contract": str(CONTRACT),
                        "encoding": "confluent",
                        "event_time": "occurred_at",
                    }
                ],
            }
        )
    )
    argv = [sys.executable, "-m", "monitor", "run", "--config", str(config)]
    log_path = tmp / f"{group}.log"
    log = log_path.open("wb")
    daemon = subprocess.Popen(
        [*argv, "--workers", str(workers)], cwd=REPO, stdout=log, stderr=log, env=os.environ
    )
    watch = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = [TopicPartition(TOPIC, p) for p in range(broker.partitions)]
    url = f"http://127.0.0.1:{port}/metrics"

    def consumers() -> list[int]:
        return [daemon.pid] if workers == 1 else _children(daemon.pid)

    try:
        deadline = time.monotonic() + 300
        first = 0.0
        while True:  # until the group has settled
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"no settled group (see {log.name})")
            text = _scrape(url)
            if not first and _events(text) > 0:
                first = time.perf_counter()
            owners = _owners(text)
            settled = (
                first > 0
                if workers == 1
                else len(owners) == workers and all(owners) and sum(owners) == broker.partitions
            )
            if settled:
                break
            time.sleep(0.02)
        pids = consumers()
        ends = [high for _, high in (watch.get_watermark_offsets(tp, timeout=10) for tp in tps)]
        samples: list[Sample] = []
        while True:  # no more scrapes: only the group's offsets are watched
            offsets = [max(tp.offset, 0) for tp in watch.committed(tps, timeout=10)]
            if not samples or offsets != samples[-1].offsets:
                idle, steal = _machine()
                cpu = (sum(_cpu(p) for p in pids), _cpu(daemon.pid), _cpu(broker.pid))
                samples.append(Sample(time.perf_counter(), offsets, (*cpu, idle, steal)))
            if sum(offsets) >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"committed {sum(offsets)} of {n} (see {log.name})")
            time.sleep(0.01)
        counted = _events(_scrape(url))
    finally:
        watch.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
    if counted < n:  # the mock cluster keeps only its newest segments of a partition
        raise RuntimeError(
            f"the daemon counted {counted:.0f} of {n} events: the broker no longer had the "
            "rest (the mock cluster keeps some tens of thousands of records per partition, "
            "about 65k of these); use fewer events or more partitions"
        )
    owners_of = owners_from_log(log_path)
    if sorted(owners_of) != list(range(broker.partitions)):
        raise RuntimeError(f"no owner logged for some partitions (see {log.name})")
    i, j, finished = steady_window(samples, owners_of, ends)
    start, stop = samples[i], samples[j]
    in_window = sum(stop.offsets) - sum(start.offsets)
    if j <= i or in_window < n // 4:
        raise UnsteadyRunError(
            f"{max(in_window, 0)} of {n} events were read while every worker had work "
            f"({n - sum(start.offsets)} after every worker had started)"
        )
    seconds = stop.at - start.at
    used = [b - a for a, b in zip(start.cpu, stop.cpu, strict=True)]
    return Run(
        rate=in_window / seconds,
        drain=(n - sum(start.offsets)) / (samples[-1].at - start.at),
        whole=n / (samples[-1].at - (first or start.at)),
        counted=counted / n,
        steady_share=in_window / n,
        cpu_workers=used[0],
        cpu_parent=0.0 if workers == 1 else used[1],
        cpu_broker=used[2],
        seconds=seconds,
        idle=used[3],
        steal=used[4],
        finish_spread=max(finished) - min(finished),
    )


def floor_child(bootstrap: str, partitions: list[int], properties: dict[str, str]) -> None:
    """One floor process: read its partitions to the end; print its CPU and its progress
    (time, events so far) after every batch, as JSON."""
    from monitor.config import KafkaConfig

    handle = floor_work()
    consumer = Consumer(
        {
            **KafkaConfig(bootstrap_servers=bootstrap, properties=dict(properties)).librdkafka(),
            "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in partitions])
    seen, first, last, cpu0 = 0, 0.0, 0.0, 0.0
    progress: list[tuple[float, int]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        batch = consumer.consume(1000, 0.2)
        if not batch:
            if seen and time.perf_counter() - last > 1.5:
                break  # the end of every partition, read
            continue
        if not first:
            first, cpu0 = time.perf_counter(), time.process_time()
        for msg in batch:
            if msg.error() is None:
                handle(msg)
                seen += 1
        last = time.perf_counter()
        progress.append((last, seen))
    cpu = time.process_time() - cpu0
    consumer.close()
    print(json.dumps({"cpu": cpu, "progress": progress}))


def floor_once(
    broker: BrokerUnderTest, n: int, processes: int, properties: dict[str, str]
) -> tuple[float, float, float]:
    """(events/s, events per CPU-second, cores stolen by the hypervisor) of `processes`
    floor loops sharing the partitions, with the same client settings as the daemon's
    runs. Timed like the daemon's steady window: from when every process has read
    its first batch to when the first one has read its share. Steal is over the
    children's whole life, start-up included.

    perf_counter is CLOCK_MONOTONIC, one clock for every process on the host.
    """
    shares = [list(range(broker.partitions))[i::processes] for i in range(processes)]
    _, steal0 = _machine()
    began = time.perf_counter()
    settings = [f"{k}={v}" for k, v in properties.items()]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--floor-child",
                broker.bootstrap,
                ",".join(map(str, s)),
                *settings,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for s in shares
    ]
    answers = [json.loads(child.communicate(timeout=400)[0]) for child in children]
    _, steal1 = _machine()
    stolen = (steal1 - steal0) / (time.perf_counter() - began)
    timelines = [a["progress"] for a in answers]
    seen = sum(t[-1][1] for t in timelines)
    if seen < n:
        raise RuntimeError(f"the floor read {seen} of {n} events: the broker dropped some")
    start = max(t[0][0] for t in timelines)  # every process has read a batch
    end = min(t[-1][0] for t in timelines)  # the first process has read its share

    def read_by(timeline: list[list[float]], at: float) -> float:
        return max((count for when, count in timeline if when <= at), default=0)

    in_window = sum(read_by(t, end) - read_by(t, start) for t in timelines)
    cpu = sum(float(a["cpu"]) for a in answers)
    return in_window / (end - start), seen / cpu, stolen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (median)")
    parser.add_argument("--broker", choices=("mock", "tansu"), default="mock")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting for every run (e.g. fetch.queue.backoff.ms=10)",
    )
    parser.add_argument("--floor-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:  # BOOTSTRAP PARTITIONS [KEY=VALUE ...]
        bootstrap, partitions, *settings = args.floor_child
        floor_child(
            bootstrap,
            [int(p) for p in partitions.split(",")],
            dict(p.split("=", 1) for p in settings),
        )
        return 0
    properties = dict(p.split("=", 1) for p in args.property)
    counts = (1, args.workers)
    results: dict[int, list[Run]] = {w: [] for w in counts}
    floors: dict[int, list[tuple[float, float, float]]] = {w: [] for w in counts}
    broker = BrokerUnderTest(args.broker, args.partitions)
    with broker as bootstrap, registry_stand_in() as url, tempfile.TemporaryDirectory() as tmp:
        produce(bootstrap, SchemaRegistryClient({"url": url}), args.events, args.partitions)
        print(
            f"broker {args.broker}: produced {args.events} events, {args.partitions} partitions; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
        )
        for _ in range(args.repeat):  # interleaved: drift in the machine hits every setting
            for w in counts:
                for attempt in range(3):
                    try:
                        run = run_once(broker, url, args.events, w, Path(tmp), properties)
                    except UnsteadyRunError as exc:
                        print(f"  run with {w} worker(s) discarded, run again: {exc}", flush=True)
                        if attempt == 2:
                            raise
                        continue
                    results[w].append(run)
                    break
                floors[w].append(floor_once(broker, args.events, w, properties))
    med = {w: statistics.median(r.rate for r in v) for w, v in results.items()}

    def median(w: int, value: Callable[[Run], float]) -> float:
        return statistics.median(value(r) for r in results[w])

    print(
        f"\n{'workers':<8} {'steady events/s':>16} {'spread':>7} {'to the end':>11} "
        f"{'whole run':>10} "
        f"{'counted/n':>10} {'steady %':>9} {'events/CPU-s':>13} "
        f"{'CPU cores: consumers':>21} {'parent':>7} {'broker':>7}"
    )
    for w, runs in results.items():
        spread = (max(r.rate for r in runs) - min(r.rate for r in runs)) / med[w]
        print(
            f"{w:<8} {med[w]:>16,.0f} {spread:>7.0%} {median(w, lambda r: r.drain):>11,.0f} "
            f"{median(w, lambda r: r.whole):>10,.0f} "
            f"{median(w, lambda r: r.counted):>10.2f} {median(w, lambda r: r.steady_share):>9.0%} "
            f"{median(w, lambda r: r.per_cpu):>13,.0f} "
            f"{median(w, lambda r: r.cpu_workers / r.seconds):>21.2f} "
            f"{median(w, lambda r: r.cpu_parent / r.seconds):>7.2f} "
            f"{median(w, lambda r: r.cpu_broker / r.seconds):>7.2f}"
        )
        for r in runs:
            print(
                f"         run: {r.rate:,.0f}/s over {r.seconds:.2f} s; host cores idle "
                f"{r.idle / r.seconds:.2f}, stolen by the hypervisor {r.steal / r.seconds:.2f}; "
                f"workers finished their shares within {r.finish_spread:.2f} s"
            )
    floor = {w: statistics.median(f[0] for f in v) for w, v in floors.items()}
    floor_cpu = {w: statistics.median(f[1] for f in v) for w, v in floors.items()}
    print(f"\n{'floor':<8} {'events/s':>16} {'events/CPU-s':>13}   runs (cores stolen)")
    for w, v in floors.items():
        floor_runs = ", ".join(f"{f[0]:,.0f} ({f[2]:.2f})" for f in v)
        print(f"{w:<8} {floor[w]:>16,.0f} {floor_cpu[w]:>13,.0f}   {floor_runs}")
    w = args.workers
    print(f"\n{w} workers / 1 worker, steady state = {med[w] / med[1]:.2f}")
    drain = median(w, lambda r: r.drain) / median(1, lambda r: r.drain)
    print(f"{w} workers / 1 worker, to the end of every partition = {drain:.2f}")
    per_cpu = median(w, lambda r: r.per_cpu) / median(1, lambda r: r.per_cpu)
    print(f"events per consumer CPU-second, {w} workers / 1 worker = {per_cpu:.2f}")
    print(f"floor: {w} processes / 1 process (the machine's ceiling) = {floor[w] / floor[1]:.2f}")
    print(f"tidemark 1 worker / floor 1 process = {med[1] / floor[1]:.2f}")
    print(f"tidemark {w} workers / floor {w} processes = {med[w] / floor[w]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
