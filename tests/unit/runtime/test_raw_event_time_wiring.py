"""The daemon's decoders take the raw event-time fast path unless rules need datetimes.

Why a test: the fast path was once switched off for every product, because an
empty rule set (no rules) was taken for rules; verdicts were right, only slow.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings
from monitor.runtime.build import build_pipeline
from tests.unit.fakes import orders_config
from tests.unit.test_pipeline import NOW, TOPIC, order

REPO = Path(__file__).resolve().parents[3]
CONTRACT = REPO / "config" / "contracts" / "orders.avsc"


def event_time_value(**overrides: Any) -> Any:
    product = orders_config(TOPIC, **overrides)
    pipeline = build_pipeline(Settings(products=[product])).pipeline
    decoder = pipeline.products[TOPIC].decoder
    assert decoder is not None
    record, _ = decoder.decode(order(NOW - 1))
    return record["occurred_at"]


def test_a_product_without_rules_decodes_the_event_time_as_a_plain_long() -> None:
    assert event_time_value() == int((NOW - 1) * 1000)


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "positive", "cel": "message.amount_cents > 0"},
        {"name": "present", "not_null": "currency"},
    ],
)
def test_a_product_with_rules_decodes_it_as_a_timestamp(rule: dict[str, Any]) -> None:
    assert isinstance(event_time_value(rules=[rule]), datetime)
