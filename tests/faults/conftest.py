"""Fixtures for fault tests: real brokers and the real daemon, broken on purpose.

The brokers, registry and daemon runner are the integration harness's
(tests/integration/harness/fixtures.py, see its README), put on sys.path here so this
directory runs alone. Brokers are shared by the session (each test makes its own
topic and group); `own_broker` gives a test one to take down. Every test here is
marked `integration`; the Tansu ones also `tansu`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
sys.path.insert(0, str(_HERE.parent / "integration"))  # the harness package

from harness.fixtures import (  # noqa: E402, F401 (fixtures, found by name)
    broker,
    mark_items,
    mock_only,
    own_broker,
    registry,
    tansu_only,
    tidemark,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_items(_HERE, items, "integration")
