"""Hostile payloads through the real pipeline: every event counted, memory and time bounded.

For each encoding (avro-raw, Confluent wire format, single-object), FUZZ_EVENTS
payloads built from a fixed seed go through `Pipeline.process_batch` as real
`confluent_kafka.Message` objects, wired by `build_pipeline` from a Settings object as
the daemon does: random bytes, valid events truncated or with flipped bytes, huge and
negative length prefixes, overlong varints, huge and negative array block counts, deep
nesting under a self-containing contract, oversized payloads, wrong magic bytes and
unknown schema ids/fingerprints. Asserted: no exception escapes, every event is
counted under exactly one outcome (events == conforming + sum(violations)), RSS
(/proc/self/status) grows by less than a generous bound, and the slowest single event
stays far from a stall.
A smaller leg sends the same kinds of payloads through a real broker to the daemon.
"""

from __future__ import annotations

import io
import json
import random
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Message
from fastavro import parse_schema, schemaless_writer
from harness import Broker, TidemarkProcess, wait_for

from monitor.config import Settings
from monitor.contract.model import canonical_form, rabin_fingerprint
from monitor.contract.registry import SchemaNotFound
from monitor.pipeline import Pipeline
from monitor.runtime.build import build_pipeline

REPO = Path(__file__).resolve().parents[2]
ORDERS_AVSC = REPO / "config" / "contracts" / "orders.avsc"
ORDERS_V2_AVSC = REPO / "config" / "contracts" / "orders-v2.avsc"
ORDERS = json.loads(ORDERS_AVSC.read_text())
ORDERS_V2 = json.loads(ORDERS_V2_AVSC.read_text())
# A contract whose type contains itself: nesting depth is bounded only by the bytes.
THREAD = {
    "type": "record",
    "name": "Post",
    "namespace": "test.forum",
    "fields": [
        {"name": "posted_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "replies", "type": {"type": "array", "items": "test.forum.Post"}},
    ],
}
# A writer a registry may hand out: readable-looking, but an array of nothing.
UNSAFE = deepcopy(ORDERS)
UNSAFE["fields"].append({"name": "pad", "type": {"type": "array", "items": "null"}, "default": []})
# And one whose record holds itself in every value: reading it never ends (SIGSEGV on main).
ENDLESS = deepcopy(ORDERS)
ENDLESS["fields"].append(
    {
        "name": "loop",
        "type": {"type": "record", "name": "Loop", "fields": [{"name": "x", "type": "Loop"}]},
    }
)

FUZZ_EVENTS = 100_000  # per encoding
THREAD_SHARE = 0.05  # of events that go to the self-containing contract
SEED = 20261201
MAX_PAYLOAD = 256 * 1024
RSS_GROWTH_LIMIT = 96 * 1024 * 1024  # generous: the interpreter's own arenas move too
# Seconds. Unloaded the worst is a few ms (deep nesting in the pure-Python reader); on a
# shared 2-core machine at load 6, scheduling and GC pauses reached ~1.3 s. On main, one
# 12-byte event took 36 s and deep nesting killed the process.
WORST_EVENT_LIMIT = 5.0
ENCODINGS = ("avro-raw", "confluent", "avro-single-object")
IDS = {1: ORDERS, 2: ORDERS_V2, 3: UNSAFE, 4: ENDLESS, 10: THREAD}  # in-process registry
NOW = time.time()
FINGERPRINTS = {id(s): rabin_fingerprint(canonical_form(s)) for s in (ORDERS, ORDERS_V2, THREAD)}


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (no psutil)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(deepcopy(schema)), record)
    return out.getvalue()


class Registry:
    """SchemaLookup stand-in (the protocol boundary): known ids, anything else unknown."""

    def get_schema_str(self, schema_id: int) -> str:
        if schema_id not in IDS:
            raise SchemaNotFound(schema_id)
        return json.dumps(IDS[schema_id])


class Hostile:
    """Payload kinds, each a function of the random generator; bodies before framing."""

    def __init__(
        self,
        rng: random.Random,
        depths: tuple[int, ...] = (300, 5_000, 80_000),
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self.rng = rng
        self.depths = depths
        self.orders = [
            avro(
                ORDERS,
                {
                    "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "customer_id": f"c-{i}",
                    "amount_cents": rng.randrange(-(2**40), 2**40),
                    "currency": "EUR",
                    "occurred_at": datetime.fromtimestamp(NOW - rng.uniform(-120, 3600), UTC),
                    "producer_id": f"p-{i % 5}",
                    "sequence": rng.randrange(0, 2**40),
                },
            )
            for i in range(200)
        ]
        self.big = b"\x02" * (max_payload + 1)

    def random_bytes(self) -> bytes:
        n = self.rng.choice((self.rng.randrange(0, 16), self.rng.randrange(0, 64), 2000))
        return self.rng.randbytes(n)

    def valid(self) -> bytes:
        return self.rng.choice(self.orders)

    def truncated(self) -> bytes:
        body = self.valid()
        return body[: self.rng.randrange(0, len(body))]

    def flipped(self) -> bytes:
        body = bytearray(self.valid())
        for _ in range(self.rng.randrange(1, 4)):
            body[self.rng.randrange(len(body))] = self.rng.randrange(256)
        return bytes(body)

    def trailing(self) -> bytes:
        return self.valid() + self.rng.randbytes(self.rng.randrange(1, 8))

    def huge_length(self) -> bytes:
        big = self.rng.choice((2**31, 2**31 - 1, 2**32 + 1, 2**62, 2**63 - 1, 10**12))
        return zigzag(big) + self.rng.randbytes(self.rng.randrange(0, 16))

    def negative_length(self) -> bytes:
        negative = -self.rng.choice((1, 2, 127, 2**31, 2**62, 2**63))
        return zigzag(negative) + self.rng.randbytes(self.rng.randrange(0, 16))

    def overlong_varint(self) -> bytes:
        """Continuation bytes past Avro's 10-byte maximum (quadratic in a naive reader)."""
        return b"\xff" * self.rng.choice((11, 1_000, 10_000)) + b"\x01"

    def huge_length_after_a_valid_prefix(self) -> bytes:
        body = self.valid()
        cut = self.rng.randrange(0, len(body))
        return body[:cut] + self.huge_length()

    def oversized(self) -> bytes:
        return self.big

    # --- for the self-containing contract (Post with replies: array<Post>) ---
    def deep_nesting(self) -> bytes:
        depth = self.rng.choice(self.depths)
        return b"\x02\x02" * depth + b"\x02\x00" + b"\x00" * depth

    def huge_block_count(self) -> bytes:
        count = self.rng.choice((2**62, 2**31, -(2**62)))
        block = zigzag(count) + (zigzag(2**62) if count < 0 else b"")
        return b"\x02" + block + self.rng.randbytes(self.rng.randrange(0, 32))

    def small_thread(self) -> bytes:
        millis = int((NOW - self.rng.uniform(0, 600)) * 1000)
        return zigzag(millis) + b"\x02" + zigzag(millis) + b"\x00" + b"\x00"


ORDER_KINDS = (
    "random_bytes",
    "valid",
    "truncated",
    "flipped",
    "trailing",
    "huge_length",
    "negative_length",
    "huge_length_after_a_valid_prefix",
    "overlong_varint",
    "oversized",
)
THREAD_KINDS = (
    "deep_nesting",
    "huge_block_count",
    "small_thread",
    "random_bytes",
    "truncated",
    "overlong_varint",
)


def frame(encoding: str, body: bytes, schema: Any, rng: random.Random) -> bytes | None:
    """Frame a body for the encoding; sometimes wrongly, sometimes with an unknown writer."""
    roll = rng.random()
    if roll < 0.01:
        return None  # a tombstone
    if encoding == "avro-raw":
        return body
    if encoding == "confluent":
        if roll < 0.05:
            return bytes([rng.randrange(1, 256)]) + body  # wrong magic byte
        if roll < 0.10:
            return b"\x00" + struct.pack(">I", rng.randrange(2**32)) + body  # unknown id
        if roll < 0.15:
            return b"\x00" + struct.pack(">I", rng.choice((2, 3, 4))) + body  # drift / unsafe
        schema_id = 10 if schema is THREAD else 1
        return b"\x00" + struct.pack(">I", schema_id) + body
    if roll < 0.05:
        return rng.randbytes(2) + body  # wrong marker (0xC3 0x01 expected)
    if roll < 0.10:
        return b"\xc3\x01" + rng.randbytes(8) + body  # unknown fingerprint
    writer = ORDERS_V2 if roll < 0.15 and schema is ORDERS else schema
    return b"\xc3\x01" + FINGERPRINTS[id(writer)] + body


def settings(encoding: str, tmp: Path) -> Settings:
    thread = tmp / "thread.avsc"
    thread.write_text(json.dumps(THREAD))
    common = {
        "owner": "team-faults",
        "encoding": encoding,
        "max_payload_bytes": MAX_PAYLOAD,
        "max_future_skew": 60,
    }
    completeness = {
        "window": 60,
        "sequence": {"producer_field": "producer_id", "sequence_field": "sequence"},
        "expected": {"min_events_per_window": 1},
    }
    return Settings(
        schema_registry={"url": "http://127.0.0.1:9"},  # never asked: Registry() stands in
        products=[
            {
                **common,
                "name": "orders",
                "topic": "orders",
                "contract": str(ORDERS_AVSC),
                "event_time": "occurred_at",
                "completeness": completeness,
                **({"writer_schemas": [str(ORDERS_V2_AVSC)]} if "single" in encoding else {}),
            },
            {
                **common,
                "name": "threads",
                "topic": "threads",
                "contract": str(thread),
                "event_time": "posted_at",
            },
        ],
    )


@dataclass
class Run:
    events: int
    seconds: float
    worst: float
    worst_kind: str
    rss_growth: int
    outcomes: dict[str, Counter[str]]
    spent: Counter[str]  # seconds of processing by payload kind


def process(pipeline: Pipeline, msg: Message) -> float:
    """Process one event as the loop does; returns the processing time, waits excluded.

    An event whose writer schema id has no answer yet is held (the loop pauses its
    partition meanwhile, other partitions flow) and processed again once the
    background look-up has answered, as the loop resumes the partition at it.
    """
    spent = 0.0
    deadline = time.monotonic() + 10.0
    while True:
        started = time.perf_counter()
        held = pipeline.process_batch([msg], NOW)
        spent += time.perf_counter() - started
        if not held:
            return spent
        assert time.monotonic() < deadline, "a schema look-up never answered"
        time.sleep(0.0005)


def fuzz(encoding: str, tmp: Path, n: int) -> tuple[Pipeline, Run]:
    rng = random.Random(f"{SEED}-{encoding}")
    pipeline = build_pipeline(settings(encoding, tmp), Registry()).pipeline
    for topic in ("orders", "threads"):
        for p in range(4):
            pipeline.assign(topic, p, NOW, start=0, warmup_until=0)
    hostile = Hostile(rng)
    order_makers = [("orders", k, ORDERS, getattr(hostile, k)) for k in ORDER_KINDS]
    thread_makers = [("threads", k, THREAD, getattr(hostile, k)) for k in THREAD_KINDS]
    makers = [*order_makers, *thread_makers]
    offsets: Counter[tuple[str, int]] = Counter()

    def message(i: int) -> tuple[str, Message]:
        if i < 1000:  # warm-up: every kind in turn
            topic, kind, schema, make = makers[i % len(makers)]
        else:  # the pure-Python reader of the recursive contract is ~100x slower
            chosen = thread_makers if rng.random() < THREAD_SHARE else order_makers
            topic, kind, schema, make = rng.choice(chosen)
        partition = rng.randrange(4)
        offset = offsets[topic, partition]
        offsets[topic, partition] += 1
        value = frame(encoding, make(), schema, rng)
        return kind, Message(
            topic=topic,
            partition=partition,
            offset=offset,
            value=value,
            timestamp=(1, int(NOW * 1000)),
        )

    for i in range(1000):  # warm-up: caches, writer schemas, interpreter arenas
        process(pipeline, message(i)[1])
    pipeline.advance(NOW)
    rss_before = rss_bytes()
    worst, worst_kind = 0.0, ""
    spent: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(1000, n):
        kind, msg = message(i)
        took = process(pipeline, msg)
        spent[kind] += took
        if took > worst:
            worst, worst_kind = took, kind
        if i % 1000 == 0:
            pipeline.advance(NOW)
    seconds = time.perf_counter() - started
    outcomes = {}
    for topic, product in pipeline.products.items():
        counts = Counter(
            {str(r): v for r, v in product.stats.violations.items()},
            conforming=product.stats.conforming,
        )
        outcomes[topic] = +counts
    growth = rss_bytes() - rss_before
    return pipeline, Run(n, seconds, worst, worst_kind, growth, outcomes, spent)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hostile_payloads_are_all_counted_in_bounded_time_and_memory(
    encoding: str, tmp_path: Path
) -> None:
    pipeline, run = fuzz(encoding, tmp_path, FUZZ_EVENTS)
    events = 0
    for topic, product in pipeline.products.items():
        stats = product.stats
        assert stats.events == stats.conforming + sum(stats.violations.values()), topic
        events += stats.events
    assert events == FUZZ_EVENTS  # warm-up included: nothing lost, nothing twice
    print(
        f"\n{encoding}: {FUZZ_EVENTS} events in {run.seconds:.1f}s "
        f"({(FUZZ_EVENTS - 1000) / run.seconds:,.0f}/s), worst {run.worst * 1000:.1f} ms "
        f"({run.worst_kind}), RSS growth {run.rss_growth / 2**20:.1f} MiB\n"
        f"  outcomes: {json.dumps(run.outcomes, sort_keys=True)}\n"
        f"  seconds by kind: { {k: round(v, 2) for k, v in run.spent.most_common()} }"
    )
    assert run.rss_growth < RSS_GROWTH_LIMIT
    assert run.worst < WORST_EVENT_LIMIT
    orders, threads = run.outcomes["orders"], run.outcomes["threads"]
    # The kinds really reached the guards they are aimed at (not all stopped at framing).
    assert orders["payload_too_large"] > 1000 and orders["decode_error"] > 10_000
    assert orders["conforming"] > 1000
    assert threads["nesting_too_deep"] > 500 and threads["conforming"] > 250
    if encoding == "confluent":
        assert orders["unsafe_schema"] > 100 and orders["unknown_schema"] > 100
        assert orders["bad_framing"] > 100
    elif encoding == "avro-single-object":
        assert orders["unknown_schema"] > 100 and orders["bad_framing"] > 100


# --- the same kinds of payloads through a real broker to the daemon ------------------
BROKER_MAX = 16 * 1024  # max_payload_bytes of the daemon in the broker leg


def _daemon_config(path: Path, broker: Broker, topic: str, tmp: Path) -> Path:
    thread = tmp / "thread.avsc"
    thread.write_text(json.dumps(THREAD))
    config = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"tidemark-faults-{uuid.uuid4().hex[:10]}",
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
            "properties": dict(broker.group_settings),
        },
        "lag": {"refresh_interval": 0.5},
        "logging": {"format": "json", "level": "info"},
        "products": [
            {
                "name": "threads",
                "owner": "team-faults",
                "topic": topic,
                "contract": str(thread),
                "encoding": "avro-raw",
                "event_time": "posted_at",
                "max_payload_bytes": BROKER_MAX,
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_hostile_payloads_through_a_real_broker_leave_the_daemon_counting(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    """Deep nesting crashed the daemon on main (SIGSEGV): here it must count everything."""
    topic = mock_only.new_topic(2)
    # Smaller payloads than in-process: the mock cluster keeps ~5 MB per partition.
    hostile = Hostile(random.Random(SEED), depths=(300, 1_000, 2_000), max_payload=BROKER_MAX)
    script = {  # kind -> how many (an oversized payload is big: a few are enough)
        "deep_nesting": 1000,
        "overlong_varint": 20,
        "huge_block_count": 1000,
        "small_thread": 1000,
        "random_bytes": 1000,
        "oversized": 20,
    }
    kinds = [k for k, n in script.items() for _ in range(n)]
    random.Random(SEED).shuffle(kinds)
    daemon = tidemark(_daemon_config(tmp_path / "tidemark.yaml", mock_only, topic, tmp_path))
    for i, kind in enumerate(kinds):
        mock_only.produce(topic, i % 2, getattr(hostile, kind)())
    mock_only.flush()
    total = len(kinds)
    s = wait_for(
        daemon.metrics_url,
        lambda s: s.value("tidemark_events_total", product="threads") == total,
        timeout=60,
    )
    conforming = s.value("tidemark_events_conforming_total", product="threads")
    violations = s.total("tidemark_contract_violations_total", product="threads")
    print(f"\nbroker leg: {total} events, {conforming:.0f} conforming, {violations:.0f} violations")
    assert conforming + violations == total
    assert conforming >= script["small_thread"]
    reason = "tidemark_contract_violations_total"
    # random bytes can nest deep too: at least every deep_nesting payload
    assert s.value(reason, product="threads", reason="nesting_too_deep") >= script["deep_nesting"]
    assert s.value(reason, product="threads", reason="payload_too_large") == script["oversized"]
    assert daemon.returncode is None
