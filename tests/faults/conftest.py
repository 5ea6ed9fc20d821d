"""Fault tests: hostile inputs and broken surroundings, through the real pipeline.

The integration harness (tests/integration/harness: real brokers over TCP, the daemon
as a subprocess, scraping) is reused, so tests here import `harness` and the
integration helpers the same way tests in tests/integration do. Tests that talk to a
broker use the `mock_only`/`broker`/`tidemark` fixtures re-exported below and are
marked `integration`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

import pytest  # noqa: E402
from harness.brokers import Broker, MockBroker  # noqa: E402
from harness.daemon import TidemarkProcess  # noqa: E402

__all__ = ["Broker", "TidemarkProcess"]

from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and {"mock_only", "tidemark"} & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mock_only() -> Iterator[Broker]:
    """librdkafka's mock cluster (3 brokers) in the test process."""
    broker = MockBroker()
    yield broker
    broker.close()


@pytest.fixture
def tidemark(tmp_path: Path) -> Iterator[Callable[..., TidemarkProcess]]:
    """Start the daemon: `tidemark(config_path, env={...})` returns once /readyz is 200."""
    started: list[TidemarkProcess] = []

    def start(
        config: Path | None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        **kwargs: Any,
    ) -> TidemarkProcess:
        proc = TidemarkProcess(config, tmp_path, env=env, **kwargs)
        started.append(proc)
        return proc.start(ready_timeout)

    yield start
    for proc in started:
        try:
            if proc.returncode is None and proc.process is not None:
                proc.stop(timeout=10)
        finally:
            proc.kill()
