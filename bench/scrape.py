"""Scrape cost by products x partitions: series, scrape time and memory.

Builds N products x P partitions in this process (the orders contract, avro-raw),
feeds every partition a few events so every series exists, then times a scrape of
the real collector as /metrics renders it (Tidemark's families straight from the
snapshot, monitor/export/exposition.py, plus prometheus-client's process
collectors; `--prometheus-client` times the older path, every family through
prometheus_client's generate_latest) and reports the RSS of the process.
Each size runs in a fresh process, so RSS is that size's alone; scrapes are
repeated and the median reported with the spread (min-max). `/metrics` reuses an
unchanged product's lines, so a scrape of a still pipeline is the cheapest case:
`--changing 0.1` gives a tenth of the products one more event before each scrape.

    python bench/scrape.py                       # the default table
    python bench/scrape.py --sizes 500x8 100x64 --completeness
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastavro import schemaless_writer
from prometheus_client import generate_latest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.completeness.config import CompletenessConfig  # noqa: E402
from monitor.config import ProductConfig  # noqa: E402
from monitor.contract.decoding import RawAvroDecoder  # noqa: E402
from monitor.contract.eventtime import make_extractor  # noqa: E402
from monitor.contract.model import Contract  # noqa: E402
from monitor.export.collector import TidemarkCollector, build_registry  # noqa: E402
from monitor.pipeline import Pipeline, ProductPipeline  # noqa: E402
from monitor.runtime.health import HealthState  # noqa: E402

CONTRACT = REPO / "config" / "contracts" / "orders.avsc"
EVENTS_PER_PARTITION = 20


class Msg:
    """What the pipeline reads of a consumed record."""

    __slots__ = ("_o", "_p", "_t", "_v")

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, -1)

    def error(self) -> Any:
        return None


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(products: int, partitions: int, completeness: bool) -> Pipeline:
    contract = Contract.load(CONTRACT)
    extractor = make_extractor(contract, "occurred_at")
    built = {}
    for i in range(products):
        config = ProductConfig(
            name=f"product-{i}",
            owner="bench",
            topic=f"bench.topic-{i}",
            contract=CONTRACT,
            encoding="avro-raw",
            event_time="occurred_at",
            completeness=(
                CompletenessConfig(
                    window=60.0,
                    sequence={"producer_field": "producer_id", "sequence_field": "sequence"},  # type: ignore[arg-type]
                    expected={"min_events_per_window": 1},  # type: ignore[arg-type]
                )
                if completeness
                else None
            ),
        )
        built[config.topic] = ProductPipeline.build(
            config, RawAvroDecoder(contract), extractor, stuck_after=60
        )
    pipeline = Pipeline(built)
    now = time.time()
    for topic in built:
        for p in range(partitions):
            pipeline.assign(topic, p, now, start=0, warmup_until=0)
    for offset in range(EVENTS_PER_PARTITION):
        batch = [
            Msg(topic, p, offset, order(contract, now - 120 + offset, p, offset))
            for topic in built
            for p in range(partitions)
        ]
        pipeline.process_batch(batch, now)
        pipeline.advance(now)
    pipeline.high_watermarks = {
        topic: dict.fromkeys(range(partitions), EVENTS_PER_PARTITION) for topic in built
    }
    return pipeline


def order(contract: Contract, event_time: float, partition: int, seq: int) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(
        buf,
        contract.parsed,
        {
            "order_id": "o",
            "customer_id": "c",
            "amount_cents": 1,
            "currency": "EUR",
            "occurred_at": int(event_time * 1000),
            "producer_id": f"p-{partition}",
            "sequence": seq,
        },
    )
    return buf.getvalue()


def measure(
    products: int,
    partitions: int,
    completeness: bool,
    scrapes: int,
    old: bool = False,
    changing: float = 0.0,
) -> dict[str, Any]:
    before = rss_mib()
    pipeline = build(products, partitions, completeness)
    contract = Contract.load(CONTRACT)
    topics = list(pipeline.products)
    offset = EVENTS_PER_PARTITION

    def change() -> None:
        """One more event on a `changing` share of products (their cached lines are stale)."""
        nonlocal offset
        now = time.time()
        picked = topics[: round(changing * len(topics))]
        batch = [Msg(t, 0, offset, order(contract, now - 60, 0, offset)) for t in picked]
        pipeline.process_batch(batch, now)
        offset += 1

    registry = build_registry(TidemarkCollector(pipeline, HealthState(liveness_limit=60.0)))

    def scrape() -> bytes:
        if old:
            return generate_latest(registry)
        return registry.exposition(generate_latest, openmetrics=False)

    body = scrape()  # warm-up, and the series count
    times = []
    for _ in range(scrapes):
        if changing:
            change()  # not timed
        t0 = time.perf_counter()
        scrape()
        times.append(time.perf_counter() - t0)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "products": products,
        "partitions": partitions,
        "completeness": completeness,
        "series": series,
        "bytes": len(body),
        "scrape_ms": statistics.median(times) * 1000,
        "scrape_ms_min": min(times) * 1000,
        "scrape_ms_max": max(times) * 1000,
        "rss_mib": rss_mib(),
        "rss_mib_before": before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1x8", "10x8", "100x8", "500x8", "100x64"])
    parser.add_argument("--completeness", action="store_true", help="sequences + windows on")
    parser.add_argument("--scrapes", type=int, default=7)
    parser.add_argument(
        "--prometheus-client", action="store_true", help="time generate_latest (the old path)"
    )
    parser.add_argument(
        "--changing",
        type=float,
        default=0.0,
        help="share of products given one more event before each scrape (0-1)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, p = (int(x) for x in args.one.split("x"))
        r = measure(n, p, args.completeness, args.scrapes, args.prometheus_client, args.changing)
        print(json.dumps(r))
        return 0
    print(
        f"{'products x partitions':>22} {'series':>8} {'series/product':>15} "
        f"{'scrape ms (median, min-max)':>28} {'RSS MiB':>8}"
    )
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", size, "--scrapes", str(args.scrapes)]
        cmd += ["--changing", str(args.changing)]
        if args.completeness:
            cmd.append("--completeness")
        if args.prometheus_client:
            cmd.append("--prometheus-client")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        spread = f"{r['scrape_ms']:.1f} ({r['scrape_ms_min']:.1f}-{r['scrape_ms_max']:.1f})"
        print(
            f"{size:>22} {r['series']:>8} {r['series'] / r['products']:>15.1f} "
            f"{spread:>28} {r['rss_mib']:>8.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
