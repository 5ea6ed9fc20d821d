"""Fault tests: real brokers made to fail (down, hung, gone) under a running Tidemark.

The integration harness (tests/integration/harness: brokers, daemon runner, scraping) is
put on sys.path here, as tests/e2e does, so these tests run alone. Every test in this
directory talks to a real broker over TCP and is marked `integration`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
sys.path.insert(0, str(_HERE.parent / "integration"))  # the harness package


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
