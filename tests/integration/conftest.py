"""Fixtures for tests against real Kafka-protocol brokers, a registry and the daemon.

`broker` runs a test once per implementation (mock, tansu); `mock_only`/`tansu_only`
pin one. Brokers are shared by the whole session, so tests create their own topics
with `broker.new_topic(partitions)` and use their own consumer group names.
Every test here is marked `integration`; the Tansu ones also `tansu`
(deselect with `-m "not tansu"`). The fixtures live in harness/fixtures.py, shared
with tests/faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.fixtures import (  # noqa: F401 (fixtures, found by name)
    broker,
    mark_items,
    mock_only,
    registry,
    tansu_only,
    tidemark,
)

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_items(_HERE, items, "integration")
