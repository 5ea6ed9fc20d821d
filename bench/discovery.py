"""Discovery at scale: N topics x P partitions, topic-only, one Tidemark instance.

Creates the topics on a Kafka-protocol broker (the mock cluster in a child
process), writes one record per partition, then starts the real monitor with a
`discover:` section and measures, from start:

  discovered  time until every topic is a product with its events counted
  scrape      /metrics latency (p50, p99, max) once every topic is exported, over
              --scrapes scrapes, while --rate events/s keep arriving on random topics
  rss         the monitor's resident memory at the end
  load        the machine's load average over the run (other work skews the figures)

Tidemark runs as shipped: librdkafka's defaults, no tuned properties.

    python bench/discovery.py --topics 1000 --partitions 4
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Producer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.config import (  # noqa: E402
    DiscoverConfig,
    DiscoverDefaults,
    KafkaConfig,
    LoggingConfig,
    ServerConfig,
    Settings,
)
from monitor.logs import configure_logging  # noqa: E402
from monitor.runtime.app import Monitor  # noqa: E402

# Creating topics one by one through the mock's C API waits on its thread each
# time (minutes for 1,000); the mock auto-creates a topic with 4 partitions on the
# first produce instead, so --partitions other than 4 need explicit creation.
MOCK_CHILD = """
import sys
from monitor.demo.mockcluster import MockCluster
n, p, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with MockCluster(num_brokers=1) as cluster:
    if p != 4:
        for i in range(n):
            cluster.create_topic(f"{prefix}.{i:05d}", p)
    print(cluster.bootstrap_servers, flush=True)
    sys.stdin.read()
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--no-partition-series", action="store_true", help="product-level series only"
    )
    parser.add_argument(
        "--scrapes", type=int, default=60, help="scrapes once every topic is exported"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="events/s produced while scraping"
    )
    parser.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does")
    args = parser.parse_args()
    configure_logging("json", "warning")
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    child = subprocess.Popen(
        [sys.executable, "-c", MOCK_CHILD, str(args.topics), str(args.partitions), prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    bootstrap = child.stdout.readline().strip()
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
        now_ms = int(time.time() * 1000)
        for i in range(args.topics):
            for p in range(args.partitions):
                producer.produce(f"{prefix}.{i:05d}", b"", partition=p, timestamp=now_ms)
            producer.poll(0)
        producer.flush(60)
        expected = args.topics * args.partitions
        settings = Settings(
            kafka=KafkaConfig(
                bootstrap_servers=bootstrap,
                group_id=f"bench-{uuid.uuid4().hex[:6]}",
                start_from="earliest",
            ),
            server=ServerConfig(bind_address="127.0.0.1", port=0),
            logging=LoggingConfig(format="json", level="warning"),
            discover=DiscoverConfig(
                include=[prefix + "\\."],
                max_products=args.topics + 10,
                defaults=DiscoverDefaults(partition_series=not args.no_partition_series),
            ),
        )
        stop_producing = threading.Event()

        def trickle() -> None:
            """Events keep arriving, so some products change between scrapes."""
            rng = random.Random(7)
            while args.rate > 0 and not stop_producing.wait(1 / args.rate):
                topic = f"{prefix}.{rng.randrange(args.topics):05d}"
                producer.produce(topic, b"", partition=rng.randrange(args.partitions))
                producer.poll(0)

        load_before = os.getloadavg()
        started = time.monotonic()
        monitor = Monitor(settings)
        thread = threading.Thread(target=monitor.run, daemon=True)
        thread.start()
        time.sleep(0.5)  # the server binds in run()
        latencies: list[float] = []
        settled: list[float] = []  # scrapes once every product is exported
        done_at = None
        deadline = started + args.timeout
        producing = threading.Thread(target=trickle, daemon=True)
        headers = {"Accept-Encoding": "gzip"} if args.gzip else {}
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            request = urllib.request.Request(monitor.metrics_url, headers=headers)
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            latencies.append(time.perf_counter() - t0)
            if done_at is not None:
                settled.append(latencies[-1])
            with monitor.pipeline.lock:
                products = len(monitor.pipeline.discovered)
                events = sum(p.stats.events for p in monitor.pipeline.products.values())
            if done_at is None and products == args.topics and events >= expected:
                done_at = time.monotonic() - started
                producing.start()
            if len(settled) >= args.scrapes:
                break
            time.sleep(0.25)
        rss = rss_mb()
        load_after = os.getloadavg()
        stop_producing.set()
        if producing.is_alive():
            producing.join(5)
        producer.flush(10)
        monitor.stop()
        thread.join(30)
    finally:
        child.stdin.close()
        child.wait(30)
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    full = sorted(settled) or [float("nan")]
    full_p99 = full[min(len(full) - 1, int(0.99 * len(full)))]
    print(f"topics x partitions      {args.topics} x {args.partitions}")
    print(
        "all discovered+counted   "
        + (f"{done_at:.1f} s" if done_at is not None else f"NOT within {args.timeout:.0f} s")
    )
    print(f"discovered products      {products} (events counted {events}/{expected})")
    print(
        f"/metrics scrape          p50 {statistics.median(lat) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms over {len(lat)} scrapes "
        f"({len(body) / 1e6:.1f} MB last)"
    )
    print(
        f"  with all exported      p50 {statistics.median(full) * 1000:.0f} ms, "
        f"p99 {full_p99 * 1000:.0f} ms, max {full[-1] * 1000:.0f} ms "
        f"over {len(settled)} scrapes ({args.rate:.0f} events/s arriving"
        f"{', gzip' if args.gzip else ''})"
    )
    cached = [
        line
        for line in body.decode(errors="replace").splitlines()
        if line.startswith("tidemark_cached_scrapes")
    ]
    print(f"RSS (monitor process)    {rss:.0f} MB")
    print(f"cached scrapes           {cached[0].split()[-1] if cached else '?'} (lock busy > 1 s)")
    print(
        "load average             "
        + f"{load_before[0]:.1f} at start, {load_after[0]:.1f} at end (1 min), "
        + f"{load_after[1]:.1f} (5 min)"
    )
    return 0 if done_at is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
