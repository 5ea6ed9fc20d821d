"""Fixtures for tests against real Kafka-protocol brokers, a registry and the daemon.

`broker` runs a test once per implementation (mock, tansu); `mock_only`/`tansu_only`
pin one. Brokers are shared by the whole session, so tests create their own topics
with `broker.new_topic(partitions)` and use their own consumer group names.
Every test here is marked `integration`; the Tansu ones also `tansu`
(deselect with `-m "not tansu"`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.brokers import Broker, MockBroker, TansuBroker
from harness.daemon import TidemarkProcess
from harness.registry_server import RegistryServer

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
            if "tansu_only" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.tansu)


@pytest.fixture(scope="session")
def mock_only() -> Iterator[Broker]:
    """librdkafka's mock cluster (3 brokers) in the test process."""
    broker = MockBroker()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def tansu_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Tansu as a subprocess; its log is in the session's tmp dir (tansu.log)."""
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.close()


@pytest.fixture(scope="session", params=["mock", pytest.param("tansu", marks=pytest.mark.tansu)])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each implementation in turn; code that passes on both leans on neither's quirks."""
    chosen: Broker = request.getfixturevalue(f"{request.param}_only")
    return chosen


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    """A fresh schema-registry stand-in (no auth) on a free loopback port."""
    with RegistryServer() as server:
        yield server


@pytest.fixture
def tidemark(tmp_path: Path) -> Iterator[Callable[..., TidemarkProcess]]:
    """Start the daemon: `tidemark(config_path, env={...})` returns once /readyz is 200.

    Processes still running at teardown get SIGTERM, then SIGKILL.
    """
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
