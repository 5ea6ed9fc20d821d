"""deploy/compose cannot run here (no Docker engine): check its structure instead.

Checked: the YAML parses; Kafka runs in KRaft mode; every service the stack needs is
there; every bind-mounted file or directory exists; Prometheus scrapes Tidemark and
loads the shipped rules; the demo topics match the demo's code.
"""

from __future__ import annotations

from typing import Any

import yaml
from deploy_helpers import DEPLOY, run, tool

COMPOSE_DIR = DEPLOY / "compose"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


def test_stack_has_kafka_prometheus_alertmanager_grafana_tidemark_and_producer() -> None:
    services = _compose()["services"]
    assert {
        "kafka",
        "prometheus",
        "alertmanager",
        "grafana",
        "tidemark",
        "demo-producer",
    } <= services.keys()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["demo-producer"]["command"][:1] == ["produce-demo"]
    assert services["tidemark"]["command"] == ["run", "--config", "/etc/tidemark/config.yaml"]


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    services = _compose()["services"]
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "zookeeper" not in yaml.safe_dump(services).lower()


def test_every_bind_mount_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name}: {source}"


def test_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), name


def test_prometheus_scrapes_tidemark_and_loads_the_rules() -> None:
    services = _compose()["services"]
    mounts = services["prometheus"]["volumes"]
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in mounts
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert "rules/*.yml" in config["rule_files"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["tidemark"]["static_configs"][0]["targets"] == ["tidemark:9308"]
    result = run(tool("promtool"), "check", "config", COMPOSE_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_tidemark_config_watches_the_demo_topics() -> None:
    demo = __import__("monitor.demo.run", fromlist=["ORDERS_TOPIC"])
    config = yaml.safe_load((COMPOSE_DIR / "tidemark.yaml").read_text())
    assert {p["topic"] for p in config["products"]} == {demo.ORDERS_TOPIC, demo.PAYMENTS_TOPIC}
    assert config["kafka"]["bootstrap_servers"] == "kafka:9092"
    assert config["server"]["port"] == 9308
