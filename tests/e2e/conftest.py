"""Fixtures for end-to-end tests: Debian's Prometheus and Alertmanager on loopback.

`alertmanager` runs the shipped routing and inhibition (deploy/alertmanager) with every
receiver replaced by a webhook into this process, so a test sees which receiver a
notification reached. `prometheus` loads the shipped rules and sends to it; it scrapes
job "tidemark" from a file_sd list the test sets with `prometheus.set_targets([...])`.

Timings are shortened for tests, never the rules' logic: scrape and evaluation every
1s, Alertmanager group_wait/group_interval 1s, and every `for:` (and `keep_firing_for:`)
in a temporary copy of the rule files clamped to `max_for` (default 2s), so e.g.
TidemarkDataStale (`for: 5m` in production) fires ~2s after freshness crosses the
threshold. Ask for other values
with `start_prometheus(max_for=...)`.

Every test in this directory is marked `e2e`. Processes listen on free 127.0.0.1 ports
(a Debian-packaged service on 9090/9093 does not interfere) and are stopped at teardown.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from alerting_stack import (
    Alertmanager,
    Prometheus,
    Webhook,
    WebhookHandler,
    alertmanager_config,
    copy_rules,
    free_port,
    spawn,
)
from live_tidemark import MockBroker

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def broker() -> Iterator[MockBroker]:
    """librdkafka's mock cluster of this test's own (the daemon's group starts fresh)."""
    broker = MockBroker()
    yield broker
    broker.close()


def _alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):  # Debian's name first
        if path := shutil.which(name):
            return path
    pytest.skip("Alertmanager not installed (apt-get install prometheus-alertmanager)")


@pytest.fixture
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    webhook = Webhook(("127.0.0.1", 0), WebhookHandler)
    webhook.notifications = []
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    config = workdir / "alertmanager.yml"
    config.write_text(
        yaml.safe_dump(alertmanager_config(f"http://127.0.0.1:{webhook.server_address[1]}"))
    )
    port = free_port()
    process = spawn(
        "alertmanager",
        [
            _alertmanager_binary(),
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(f"{url}/-/ready")
        yield Alertmanager(url, process, webhook.notifications)
    finally:
        process.stop()
        webhook.shutdown()
        webhook.server_close()


StartPrometheus = Callable[..., Prometheus]


@pytest.fixture
def start_prometheus(
    tmp_path_factory: pytest.TempPathFactory, alertmanager: Alertmanager
) -> Iterator[StartPrometheus]:
    """Factory: start_prometheus(max_for="2s", interval="1s") -> Prometheus."""
    started: list[Prometheus] = []

    def start(max_for: str = "2s", interval: str = "1s") -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("Prometheus not installed (apt-get install prometheus)")
        workdir = tmp_path_factory.mktemp("prometheus")
        rules = copy_rules(workdir / "rules", max_for)
        targets = workdir / "targets.json"
        targets.write_text("[]")
        am = alertmanager.url.removeprefix("http://")
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(rules / "*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
            "scrape_configs": [
                {
                    "job_name": "tidemark",
                    "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        process = spawn(
            "prometheus",
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            workdir,
        )
        prometheus = Prometheus(f"http://127.0.0.1:{port}", process, targets, rules)
        started.append(prometheus)
        process.wait_ready(f"{prometheus.url}/-/ready")
        return prometheus

    yield start
    for prometheus in started:
        prometheus.process.stop()


@pytest.fixture
def prometheus(start_prometheus: StartPrometheus) -> Prometheus:
    """Prometheus with the shipped rules (every `for:` clamped to 2s), sending to `alertmanager`."""
    return start_prometheus()
