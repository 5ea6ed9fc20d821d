"""Shared pieces of the daemon integration tests (test_daemon_*.py).

Config files for `python -m monitor run`, Avro payload builders for the example
`orders` contract and a small test-only contract, and scrape helpers for the
per-partition label sets. Expected values are always computed by the tests from
the events they script; nothing here knows what the daemon should answer.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from harness import Broker, Samples, TidemarkProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
ORDERS_AVSC = REPO / "config" / "contracts" / "orders.avsc"
ORDERS_V2_AVSC = REPO / "config" / "contracts" / "orders-v2.avsc"
ORDERS = json.loads(ORDERS_AVSC.read_text())
ORDERS_V2 = json.loads(ORDERS_V2_AVSC.read_text())

# The contract cannot read this writer: customer_id has no default and is gone,
# and amount_cents is a string.
ORDERS_INCOMPATIBLE: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "com.example.shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "amount_cents", "type": "string"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "producer_id", "type": "string"},
        {"name": "sequence", "type": "long"},
    ],
}

# A test-only contract whose event time is a nullable ISO-8601 string, so that
# missing_event_time and bad_event_time can be produced with valid Avro.
READINGS: dict[str, Any] = {
    "type": "record",
    "name": "Reading",
    "namespace": "test.tidemark",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": "double"},
        {"name": "measured_at", "type": ["null", "string"], "default": None},
    ],
}

# librdkafka's mock cluster does not act on LeaveGroup: after a member closes, the next
# join (a restart, or the rebalance when a member leaves) waits until the departed
# member's session times out, 45 s by default. A short session makes that ~2 s. Tansu
# handles LeaveGroup and rejects sessions under 6 s (its group_settings already say 6 s).
MOCK_REJOIN = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


# --- Avro payloads ----------------------------------------------------------------------
_PARSED: dict[str, Any] = {}


def _parsed(schema: dict[str, Any]) -> Any:
    key = json.dumps(schema, sort_keys=True)
    if key not in _PARSED:
        _PARSED[key] = parse_schema(copy.deepcopy(schema))
    return _PARSED[key]


def avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Schemaless Avro body written by fastavro (the reference implementation)."""
    out = io.BytesIO()
    schemaless_writer(out, _parsed(schema), record)
    return out.getvalue()


def confluent(schema_id: int, body: bytes) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body."""
    return b"\x00" + struct.pack(">I", schema_id) + body


def decodes(schema: dict[str, Any], payload: bytes) -> bool:
    """Whether `payload` is exactly one record of `schema` (checks the test's own input)."""
    fo = io.BytesIO(payload)
    try:
        schemaless_reader(fo, _parsed(schema), None)
    except Exception:
        return False
    return fo.tell() == len(payload)


def order(event_time: float, seq: int = 0, **fields: Any) -> dict[str, Any]:
    """An orders record (contract v1 fields) with event time `event_time` (epoch seconds)."""
    record: dict[str, Any] = {
        "order_id": f"order-{seq}",
        "customer_id": f"customer-{seq}",
        "amount_cents": 100 + seq,
        "currency": "EUR",
        "occurred_at": datetime.fromtimestamp(event_time, UTC),
        "producer_id": "producer-1",
        "sequence": seq,
    }
    record.update(fields)
    return record


def order_bytes(event_time: float, seq: int = 0) -> bytes:
    return avro(ORDERS, order(event_time, seq))


def whole_seconds_ago(seconds: int) -> int:
    """A whole-second epoch time `seconds` before now: event times stay exact in floats."""
    return int(time.time()) - seconds


# --- configuration -----------------------------------------------------------------------
def product(
    name: str,
    topic: str,
    *,
    contract: Path = ORDERS_AVSC,
    encoding: str = "avro-raw",
    event_time: str = "occurred_at",
    **extra: Any,
) -> dict[str, Any]:
    """One products[] entry; durations as numbers of seconds."""
    return {
        "name": name,
        "owner": "team-test",
        "tier": "gold",
        "topic": topic,
        "contract": str(contract),
        "encoding": encoding,
        "event_time": event_time,
        **extra,
    }


def write_config(
    path: Path,
    broker: Broker,
    products: Sequence[dict[str, Any]],
    *,
    group: str | None = None,
    registry_url: str | None = None,
    retry_after: float = 30.0,
    kafka: dict[str, Any] | None = None,
    lag: dict[str, Any] | None = None,
    rejoin: bool = False,
) -> Path:
    """Write a daemon config with short intervals; returns `path`.

    The consumer group is unique unless given; the broker's `group_settings` (fast
    first join on Tansu) go through kafka.properties, plus MOCK_REJOIN on the mock when
    the test has members leave and join the same group (`rejoin`).
    """
    properties = dict(broker.group_settings)
    if rejoin and broker.name == "mock":
        properties.update(MOCK_REJOIN)
    kafka_section: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": group or f"tidemark-{uuid.uuid4().hex[:10]}",
        "poll_timeout": 0.1,
        "commit_interval": 0.5,
        "start_from": "earliest",
        "properties": properties,
    }
    extra = dict(kafka or {})
    properties.update(extra.pop("properties", {}))
    kafka_section.update(extra)
    config: dict[str, Any] = {
        "kafka": kafka_section,
        "lag": {"refresh_interval": 0.5, "stuck_after": 30, **(lag or {})},
        "logging": {"format": "json", "level": "info"},
        "products": list(products),
    }
    if registry_url is not None:
        config["schema_registry"] = {"url": registry_url, "retry_after": retry_after}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def group_of(config: Path) -> str:
    group: str = yaml.safe_load(config.read_text())["kafka"]["group_id"]
    return group


# --- reading /metrics ------------------------------------------------------------------
def by_partition(samples: Samples, name: str, product_name: str) -> dict[int, float]:
    """{partition: value} of a per-partition series for one product."""
    out: dict[int, float] = {}
    for labels, value in samples.values(name).items():
        d = dict(labels)
        if d.get("product") == product_name:
            out[int(d["partition"])] = value
    return out


def partitions_exported(samples: Samples, product_name: str) -> dict[str, set[int]]:
    """For every series carrying a partition label: the partitions it has for the product."""
    out: dict[str, set[int]] = {}
    for s in samples.samples:
        if "partition" in s.labels and s.labels.get("product") == product_name:
            out.setdefault(s.name, set()).add(int(s.labels["partition"]))
    return out


def bucket(samples: Samples, name: str, le: str, **labels: object) -> float:
    """Cumulative count of histogram `name` at upper bound `le` ("+Inf" or "300.0")."""
    return samples.value(f"{name}_bucket", le=le, **labels)


def violations(samples: Samples, product_name: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for labels, value in samples.values("tidemark_contract_violations_total").items()
        if dict(labels)["product"] == product_name
    }


def events(samples: Samples, product_name: str) -> float:
    return samples.value("tidemark_events_total", product=product_name)


def wait_events(daemon: TidemarkProcess, product_name: str, n: int, timeout: float = 20) -> Samples:
    """Scrape until events_total of the product is `n`; returns that scrape."""
    return wait_for(daemon.metrics_url, lambda s: events(s, product_name) == n, timeout)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall clock before, wall clock after): brackets a scrape's own `now`."""
    before = time.time()
    result = fn()
    return result, before, time.time()
