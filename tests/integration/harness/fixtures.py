"""Pytest fixtures shared by every suite that runs real brokers and the daemon.

A conftest imports the fixtures it wants by name (`from harness.fixtures import
broker, tidemark`) and marks its items with `mark_items`; pytest only reads
`pytest_plugins` from the root conftest, so this module is imported, not registered.
`broker` runs a test once per implementation (mock, tansu); `mock_only`/`tansu_only`
pin one. Brokers are shared by the session (per importing conftest), so tests create
their own topics with `broker.new_topic(partitions)` and their own group names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .brokers import Broker, MockBroker, TansuBroker
from .daemon import TidemarkProcess
from .registry_server import RegistryServer


def mark_items(here: Path, items: list[pytest.Item], *marks: str) -> None:
    """Mark the tests under `here` with `marks`, and the Tansu ones also `tansu`."""
    for item in items:
        if here in item.path.parents:
            for mark in marks:
                item.add_marker(getattr(pytest.mark, mark))
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
def own_broker(tmp_path: Path) -> Iterator[Callable[[str], Broker]]:
    """`own_broker("mock" | "tansu")`: a broker of this test's own, closed at teardown.

    Tests that take a broker down start their own, never the shared one.
    """
    started: list[Broker] = []

    def start(kind: str) -> Broker:
        broker: Broker = MockBroker() if kind == "mock" else TansuBroker(tmp_path / "tansu.log")
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.close()


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
