"""Fakes the unit tests share: a consumed record, an orders event, a decoder that breaks.

Why one place: the pipeline, loop, holds and completeness tests each grew their own
copy of confluent_kafka.Message's getters and of the orders record; a change to what
the pipeline reads from a message now has one fake to follow.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import schemaless_writer

from monitor.config import ProductConfig
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline

CONTRACT = Path(__file__).resolve().parents[2] / "config" / "contracts" / "orders.avsc"
NOW = 1_800_000_000.0
BOOM = b"boom"  # a payload RaisingDecoder raises on: a defect in Tidemark, not bad data


def orders_config(topic: str, **overrides: Any) -> ProductConfig:
    """The orders product as the unit tests configure it (raw Avro, occurred_at)."""
    settings: dict[str, Any] = {
        "name": "orders",
        "owner": "team-checkout",
        "topic": topic,
        "contract": CONTRACT,
        "encoding": "avro-raw",
        "event_time": "occurred_at",
    }
    return ProductConfig(**{**settings, **overrides})


@dataclass
class Msg:
    """A consumed record as the pipeline sees it (confluent_kafka.Message's getters)."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _ts: int = -1
    _ts_type: int = 1  # TIMESTAMP_CREATE_TIME; 0 is TIMESTAMP_NOT_AVAILABLE

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (self._ts_type, self._ts)

    def error(self) -> Any:
        return None


def order(seq: int, event_time: float = NOW - 1, **fields: Any) -> bytes:
    """Raw Avro of an orders event numbered `seq` (producer "p"), `fields` overriding."""
    record = {
        "order_id": f"o-{seq}",
        "customer_id": "c-1",
        "amount_cents": 100,
        "currency": "EUR",
        "occurred_at": int(event_time * 1000),
        "producer_id": "p",
        "sequence": seq,
        **fields,
    }
    buf = io.BytesIO()
    schemaless_writer(buf, Contract.load(CONTRACT).parsed, record)
    return buf.getvalue()


class RaisingDecoder(RawAvroDecoder):
    """The contract's decoder, except that it raises on BOOM (stands for a Tidemark bug)."""

    def decode(self, payload: bytes | None) -> Any:
        if payload == BOOM:
            raise RuntimeError("a defect in Tidemark, whose text may quote the payload")
        return super().decode(payload)


def topic_only_pipeline(topics: list[str], partitions: int) -> Pipeline:
    """Topic-only products with every partition assigned: what the lag tests look up."""
    products = {
        t: ProductPipeline.build(
            ProductConfig(name=t, owner="team", topic=t, encoding="none"), None, None, 60
        )
        for t in topics
    }
    pipeline = Pipeline(products)
    for t in topics:
        for p in range(partitions):
            pipeline.assign(t, p, time.time(), start=0, warmup_until=0)
    return pipeline
