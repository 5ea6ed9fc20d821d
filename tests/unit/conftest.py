"""Shared fixtures: the example contracts shipped in config/contracts and Avro helpers."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from monitor.contract.model import Contract

CONTRACTS = Path(__file__).resolve().parents[2] / "config" / "contracts"


def _avro_body(schema: Any, record: Any) -> bytes:
    """Schemaless Avro bytes, written by fastavro (the reference writer)."""
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


def _order(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "order_id": "3f2b8c1e-4d5a-4b6c-8e7f-9a0b1c2d3e4f",
        "customer_id": "cust-000123",
        "amount_cents": 12999,
        "currency": "EUR",
        "occurred_at": datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC),
        "producer_id": "producer-7",
        "sequence": 42,
    }
    record.update(overrides)
    return record


@pytest.fixture(scope="session")
def orders() -> Contract:
    return Contract.load(CONTRACTS / "orders.avsc")


@pytest.fixture(scope="session")
def payments() -> Contract:
    return Contract.load(CONTRACTS / "payments.avsc")


@pytest.fixture(scope="session")
def orders_v2() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CONTRACTS / "orders-v2.avsc").read_text())
    return schema


@pytest.fixture(scope="session")
def schema_copy(orders: Contract) -> Callable[..., dict[str, Any]]:
    """A deep copy of a schema (the orders contract by default) for a test to change."""

    def _edit(schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return copy.deepcopy(schema if schema is not None else orders.schema)

    return _edit


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The field called `name` of a record schema (for tests that edit one)."""
    for f in schema["fields"]:
        if f["name"] == name:
            return f  # type: ignore[no-any-return]
    raise KeyError(name)


# Helpers are handed out as session fixtures rather than imported, so no test
# module depends on which conftest.py is first on sys.path.


@pytest.fixture(scope="session")
def avro_body() -> Callable[[Any, Any], bytes]:
    return _avro_body


@pytest.fixture(scope="session")
def make_order() -> Callable[..., dict[str, Any]]:
    return _order


@pytest.fixture(scope="session")
def field_of() -> Callable[[dict[str, Any], str], dict[str, Any]]:
    return _field
