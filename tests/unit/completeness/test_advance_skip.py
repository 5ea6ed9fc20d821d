"""advance() skips products whose watermark cannot have moved: verdicts must not change.

A property: the same random history (batches on several partitions, time passing,
partitions turning idle, end offsets changing, partitions moving) through a pipeline
whose advance() may skip, and through one made to walk every product after every
batch as it did before, gives the same completeness state after every step.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.completeness.config import CompletenessConfig
from monitor.config import ProductConfig
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline
from tests.unit.fakes import Msg

REPO = Path(__file__).resolve().parents[3]
ORDERS = Contract.load(REPO / "config" / "contracts" / "orders.avsc")
NOW = 1_700_000_000.0
TOPIC = "shop.orders"
PARTITIONS = 3


def body(event_time: float, seq: int) -> bytes:
    buf = io.BytesIO()
    record = {
        "order_id": "o",
        "customer_id": "c",
        "amount_cents": 1,
        "currency": "EUR",
        "occurred_at": int(event_time * 1000),
        "producer_id": "p",
        "sequence": seq,
    }
    schemaless_writer(buf, ORDERS.parsed, record)
    return buf.getvalue()


def pipeline() -> Pipeline:
    config = ProductConfig(
        name="orders",
        owner="team",
        topic=TOPIC,
        contract=ORDERS.path,
        encoding="avro-raw",
        event_time="occurred_at",
        max_out_of_orderness=1.0,
        idle_timeout=5.0,
        completeness=CompletenessConfig(
            window=10.0,
            allowed_lateness=5.0,
            window_retention=100.0,
            sequence={"producer_field": "producer_id", "sequence_field": "sequence"},  # type: ignore[arg-type]
            expected={"min_events_per_window": 2},  # type: ignore[arg-type]
        ),
    )
    product = ProductPipeline.build(
        config, RawAvroDecoder(ORDERS), make_extractor(ORDERS, "occurred_at"), stuck_after=60
    )
    return Pipeline({TOPIC: product})


EVENTS = st.lists(
    st.tuples(
        st.integers(0, PARTITIONS - 1),
        st.floats(-20.0, 10.0, allow_nan=False),
        st.integers(0, 3),  # sequence step: 0 duplicate, 1 next, more a gap
    ),
    max_size=6,
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), EVENTS, st.floats(0.0, 4.0, allow_nan=False)),
        st.tuples(st.just("wait"), st.floats(0.0, 8.0, allow_nan=False)),
        st.tuples(st.just("ends"), st.lists(st.integers(0, 5), min_size=3, max_size=3)),
        st.tuples(st.just("revoke"), st.integers(0, PARTITIONS - 1)),
        st.tuples(st.just("lose"), st.integers(0, PARTITIONS - 1)),
        st.tuples(st.just("assign"), st.integers(0, PARTITIONS - 1)),
    ),
    max_size=25,
)


class Run:
    """One pipeline and the history it was fed; `eager` walks every product each time."""

    def __init__(self, eager: bool) -> None:
        self.p = pipeline()
        self.eager = eager
        self.now = NOW
        self.offsets = [0] * PARTITIONS
        self.seq = 0
        for partition in range(PARTITIONS):
            self.p.assign(TOPIC, partition, NOW, start=0, warmup_until=0)

    def step(self, step: tuple[Any, ...]) -> Any:
        kind = step[0]
        if kind == "batch":
            batch = []
            for partition, dt, inc in step[1]:
                self.seq += inc
                batch.append(
                    Msg(TOPIC, partition, self.offsets[partition], body(self.now + dt, self.seq))
                )
                self.offsets[partition] += 1
            self.now += step[2]
            self.p.process_batch(batch, self.now)
        elif kind == "wait":
            self.now += step[1]
        elif kind == "ends":
            ends = {p: self.offsets[p] + extra for p, extra in enumerate(step[1])}
            self.p.high_watermarks = {TOPIC: ends}
        elif kind == "revoke":
            self.p.revoke(TOPIC, step[1])
        elif kind == "lose":
            self.p.lose(TOPIC, step[1], self.now)
        else:
            self.p.assign(TOPIC, step[1], self.now, start=self.offsets[step[1]], warmup_until=0)
        product = self.p.products[TOPIC]
        if self.eager:
            product.clock.dirty = True  # as before: every product, after every batch
        self.p.advance(self.now)
        assert product.completeness is not None
        return product.completeness.snapshot()


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_skipping_advance_changes_no_verdict(steps: list[tuple[Any, ...]]) -> None:
    lazy, eager = Run(eager=False), Run(eager=True)
    for step in steps:
        assert lazy.step(step) == eager.step(step)
