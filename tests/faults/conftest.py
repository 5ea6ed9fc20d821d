"""Fixtures for fault tests: the integration harness (real brokers, registry stand-in, daemon).

Fault tests break one real part (a registry that hangs, answers slowly, refuses) and
measure what Tidemark does meanwhile. They reuse tests/integration/harness, put on
sys.path here as tests/e2e/live_tidemark.py does; every test here is marked
`integration` (it talks to a real broker over TCP) and the Tansu runs also `tansu`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).parent
sys.path.insert(0, str(_HERE.parent / "integration"))  # the harness and daemon_support

from harness.brokers import Broker, MockBroker, TansuBroker  # noqa: E402
from harness.daemon import TidemarkProcess  # noqa: E402
from harness.registry_server import RegistryServer  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mock_only() -> Iterator[Broker]:
    broker = MockBroker()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def tansu_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.close()


@pytest.fixture(scope="session", params=["mock", pytest.param("tansu", marks=pytest.mark.tansu)])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each implementation in turn, as in tests/integration."""
    chosen: Broker = request.getfixturevalue(f"{request.param}_only")
    return chosen


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture
def tidemark(tmp_path: Path) -> Iterator[Callable[..., TidemarkProcess]]:
    """Start the daemon; returns once /readyz is 200. Stopped (then killed) at teardown."""
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
