"""`tidemark run --workers N`: events/s of the real daemon with 1 and with N workers.

The same N Avro events (Confluent wire format) as bench/throughput.py, on the
same out-of-process broker (the mock cluster in a child process, or Tansu), are
read by the daemon started from its command line, once with `--workers 1`
(the single process, as shipped) and once with `--workers N`, interleaved,
median of --repeat runs. Each run is a fresh consumer group reading from the
beginning.

What is timed: from the first event counted (polled on /metrics every 20 ms)
until the group's committed offsets reach the end of every partition (polled
with OffsetFetch), so an event counted twice at the workers' start-up
rebalance (at-least-once) adds time, never throughput. The commit interval is
0.1 s in every run so the end is seen promptly; all other settings are
Tidemark's defaults plus bench/throughput.py's fetch setting, the same for
every run.

    python bench/workers.py --events 200000 --workers 2
    python bench/workers.py --broker tansu
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import (  # noqa: E402
    CONTRACT,
    FETCH,
    PARTITIONS,
    REPO,
    TOPIC,
    BrokerUnderTest,
    produce,
    registry_stand_in,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _events(url: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("tidemark_events_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) so far of a process and its children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(_tree_cpu(int(c)) for c in children)


def run_once(
    bootstrap: str,
    registry_url: str,
    n: int,
    workers: int,
    tmp: Path,
    properties: dict[str, str],
) -> tuple[float, float, float]:
    """(events/s to the last commit, events counted / n, events per CPU-second) of one run.

    CPU is the daemon's, its workers' included (user + system), over the timed
    interval: a figure that holds however busy the machine is.
    """
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
                    "properties": {**FETCH, **properties},
                },
                "schema_registry": {"url": registry_url},
                "server": {"bind_address": "127.0.0.1", "port": port},
                "logging": {"format": "json", "level": "warning"},
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
    log = (tmp / f"{group}.log").open("wb")
    daemon = subprocess.Popen(
        [*argv, "--workers", str(workers)], cwd=REPO, stdout=log, stderr=log, env=os.environ
    )
    watch = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 300
        started = 0.0
        while not started:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"no event counted (see {log.name})")
            if _events(url) > 0:
                started = time.perf_counter()
                cpu_started = _tree_cpu(daemon.pid)
            else:
                time.sleep(0.02)
        while True:
            committed = sum(max(tp.offset, 0) for tp in watch.committed(tps, timeout=10))
            if committed >= n:
                elapsed = time.perf_counter() - started
                cpu = _tree_cpu(daemon.pid) - cpu_started
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"committed {committed} of {n} (see {log.name})")
            time.sleep(0.02)
        counted = _events(url)
    finally:
        watch.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
    return n / elapsed, counted / n, n / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
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
    args = parser.parse_args()
    properties = dict(p.split("=", 1) for p in args.property)
    counts = (1, args.workers)
    results: dict[int, list[tuple[float, float, float]]] = {w: [] for w in counts}
    with (
        BrokerUnderTest(args.broker) as bootstrap,
        registry_stand_in() as registry_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        produce(bootstrap, SchemaRegistryClient({"url": registry_url}), args.events)
        print(f"broker {args.broker}: produced {args.events} events, {PARTITIONS} partitions")
        for _ in range(args.repeat):
            for w in counts:
                results[w].append(
                    run_once(bootstrap, registry_url, args.events, w, Path(tmp), properties)
                )
    med = {w: statistics.median(r for r, _, _ in v) for w, v in results.items()}
    print(
        f"\n{'workers':<8} {'events/s (median)':>18} {'runs':>30} {'counted/n':>16} "
        f"{'events per CPU-s':>18}"
    )
    for w, values in results.items():
        runs = ", ".join(f"{r:,.0f}" for r, _, _ in values)
        counted = ", ".join(f"{c:.2f}" for _, c, _ in values)
        per_cpu = statistics.median(c for _, _, c in values)
        print(f"{w:<8} {med[w]:>18,.0f} {runs:>30} {counted:>16} {per_cpu:>18,.0f}")
    print(f"\n{args.workers} workers / 1 worker = {med[args.workers] / med[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
