"""Fixtures for fault tests: real brokers and the real daemon, broken on purpose.

The brokers and the daemon runner come from the integration harness
(tests/integration/harness, see its README), put on sys.path here so this directory
runs alone. Brokers are shared by the session (each test makes its own topic and
group). Every test here is marked `integration`; the Tansu ones also `tansu`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).parent
sys.path.insert(0, str(_HERE.parent / "integration"))  # the harness package

from harness import Broker, MockBroker, RegistryServer, TansuBroker, TidemarkProcess  # noqa: E402


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
    """Each implementation in turn."""
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
    """The schema registry stand-in (tests/integration/harness/registry_server.py)."""
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
