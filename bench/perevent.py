"""Per-event CPU cost of Tidemark's pipeline, without a broker: µs/event by encoding.

Decodes, checks, times and counts pre-built messages through the real Pipeline
(process_batch + advance, batches of 1000), for each encoding with completeness
off and on (sequences + expected volume), next to the floor: fastavro's
schemaless_reader with the contract alone. This is the CPU a core spends per event
above the client; bench/throughput.py measures the whole path through a broker.
Interleaved rounds, median and min-max reported.

    python bench/perevent.py --events 100000 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.completeness.config import (  # noqa: E402
    CompletenessConfig,
    ExpectedConfig,
    SequenceConfig,
)
from monitor.config import Encoding, ProductConfig  # noqa: E402
from monitor.contract.decoding import (  # noqa: E402
    ConfluentDecoder,
    Decoder,
    RawAvroDecoder,
    SingleObjectDecoder,
)
from monitor.contract.eventtime import make_extractor, raw_event_time  # noqa: E402
from monitor.contract.model import Contract, rabin_fingerprint  # noqa: E402
from monitor.contract.registry import Lookup, Resolution  # noqa: E402
from monitor.pipeline import Pipeline, ProductPipeline  # noqa: E402

CONTRACT = REPO / "config" / "contracts" / "orders.avsc"
TOPIC = "bench.orders"
PARTITIONS = 4


class Msg:
    __slots__ = ("_o", "_p", "_v")

    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._p, self._o, self._v = partition, offset, value

    def topic(self) -> str:
        return TOPIC

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


class Found:
    """A registry that already answered (the steady state: ids are cached)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.answer = Resolution(Lookup.FOUND, json.dumps(schema))

    def resolve(self, schema_id: int) -> Resolution:
        return self.answer


def bodies(contract: Contract, n: int, now: float) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        buf = io.BytesIO()
        schemaless_writer(
            buf,
            contract.parsed,
            {
                "order_id": f"{i:032x}",
                "customer_id": f"c-{i % 5000}",
                "amount_cents": 100 + i % 50_000,
                "currency": "EUR",
                "occurred_at": int((now - 5 + i * 1e-4) * 1000),
                "producer_id": f"p-{i % PARTITIONS}",
                "sequence": i // PARTITIONS,
            },
        )
        out.append((i % PARTITIONS, buf.getvalue()))
    return out


def header(encoding: str, contract: Contract) -> bytes:
    """The framing in front of every body; computed once (a fingerprint costs ~1 ms)."""
    if encoding == "confluent":
        return b"\x00" + struct.pack(">I", 1)
    if encoding == "avro-single-object":
        return b"\xc3\x01" + rabin_fingerprint(contract.canonical)
    return b""


def messages(encoding: str, events: list[tuple[int, bytes]]) -> list[Msg]:
    """The framed messages of one encoding, built once and replayed by every round."""
    head = header(encoding, Contract.load(CONTRACT))
    return [Msg(p, i, head + b) for i, (p, b) in enumerate(events)]


def decoder(encoding: str, contract: Contract) -> Decoder:
    raw = raw_event_time(contract, "occurred_at")
    if encoding == "confluent":
        return ConfluentDecoder(contract, Found(contract.schema), raw_event_time=raw)
    if encoding == "avro-single-object":
        return SingleObjectDecoder(contract, raw_event_time=raw)
    return RawAvroDecoder(contract, raw_event_time=raw)


def tidemark(encoding: str, completeness: bool, msgs: list[Msg]) -> float:
    """CPU µs per event of a fresh pipeline over `msgs` (process_batch + advance)."""
    contract = Contract.load(CONTRACT)
    config = ProductConfig(
        name="orders",
        owner="bench",
        topic=TOPIC,
        contract=CONTRACT,
        encoding=cast(Encoding, encoding),  # from --encodings; ProductConfig checks it
        event_time="occurred_at",
        completeness=(
            CompletenessConfig(
                sequence=SequenceConfig(producer_field="producer_id", sequence_field="sequence"),
                expected=ExpectedConfig(min_events_per_window=1),
            )
            if completeness
            else None
        ),
    )
    product = ProductPipeline.build(
        config, decoder(encoding, contract), make_extractor(contract, "occurred_at"), 60
    )
    pipeline = Pipeline({TOPIC: product})
    now = time.time()
    for p in range(PARTITIONS):
        pipeline.assign(TOPIC, p, now, start=0, warmup_until=0)
    batches = [msgs[i : i + 1000] for i in range(0, len(msgs), 1000)]
    t0 = time.process_time()
    for batch in batches:
        pipeline.process_batch(batch, now)
        pipeline.advance(now)
    elapsed = time.process_time() - t0
    assert product.stats.conforming == len(msgs), product.stats
    return elapsed / len(msgs) * 1e6


def floor(events: list[tuple[int, bytes]]) -> float:
    parsed = Contract.load(CONTRACT).parsed
    t0 = time.process_time()
    for _, body in events:
        schemaless_reader(io.BytesIO(body), parsed, None)
    return (time.process_time() - t0) / len(events) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--encodings",
        default="avro-raw,confluent,avro-single-object",
        help="comma-separated encodings to measure",
    )
    parser.add_argument(
        "--completeness", choices=("both", "off", "on"), default="both", help="which variants"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    events = bodies(Contract.load(CONTRACT), args.events, time.time())
    contenders: dict[str, Any] = {"floor (schemaless_reader)": lambda: floor(events)}
    variants = {"both": (False, True), "off": (False,), "on": (True,)}[args.completeness]
    for encoding in args.encodings.split(","):
        msgs = messages(encoding, events)
        for completeness in variants:
            name = f"{encoding}, completeness {'on' if completeness else 'off'}"
            contenders[name] = lambda e=encoding, c=completeness, m=msgs: tidemark(e, c, m)
    setup = time.perf_counter() - started
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):  # interleaved: drift in a shared machine hits all alike
        for name, run in contenders.items():
            results[name].append(run())
    floor_med = statistics.median(results["floor (schemaless_reader)"])
    print(f"{args.events} events, {args.rounds} rounds, CPU time of this process")
    print(f"{'pipeline':<40} {'us/event':>9} {'min-max':>12} {'events/s/core':>14} {'floor/x':>8}")
    for name, values in results.items():
        med = statistics.median(values)
        print(
            f"{name:<40} {med:>9.2f} {min(values):>5.2f}-{max(values):<6.2f}"
            f" {1e6 / med:>14,.0f} {floor_med / med:>8.2f}"
        )
    print(f"setup {setup:.1f} s, total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
