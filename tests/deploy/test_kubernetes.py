"""Kubernetes manifests: core kinds validate against the Kubernetes schemas
(kubernetes-validate, offline); Prometheus Operator kinds, whose CRD schemas are not
available offline, get structural checks; the PrometheusRule carries the shipped rules."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_helpers import DEPLOY, rule_groups

K8S = DEPLOY / "kubernetes"
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _all_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p.name, d)
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in _docs(p.name)
    ]


def _by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for _, d in _all_docs()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


@pytest.mark.parametrize(
    "doc",
    [d for _, d in _all_docs() if d["kind"] not in OPERATOR_KINDS],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_core_manifest_validates_against_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_kustomization_lists_every_standalone_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "sidecar-example.yaml"}
    assert listed == on_disk


def test_prometheusrule_carries_exactly_the_shipped_rules() -> None:
    rule = _by_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == rule_groups()


def test_deployment_runs_several_replicas_in_one_consumer_group() -> None:
    deployment = _by_kind("Deployment", "tidemark")
    assert deployment["spec"]["replicas"] >= 2
    config = yaml.safe_load(_by_kind("ConfigMap", "tidemark-config")["data"]["config.yaml"])
    assert config["kafka"]["group_id"], "replicas share partitions through one group id"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["run", "--config", "/etc/tidemark/config.yaml"]
    assert {"name": "metrics", "containerPort": 9308, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/tidemark/config.yaml" in mounts


def test_service_monitor_scrapes_the_service_by_port_name() -> None:
    service, monitor = _by_kind("Service", "tidemark"), _by_kind("ServiceMonitor")
    assert "tidemark" in service["metadata"]["name"], "job label must contain tidemark"
    assert service["spec"]["publishNotReadyAddresses"] is True
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    pod_labels = _by_kind("Deployment", "tidemark")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_sidecar_runs_next_to_the_producer_and_is_scraped() -> None:
    deployment = _by_kind("Deployment", "orders-producer")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert {"producer", "tidemark"} <= containers.keys()
    monitor = _by_kind("PodMonitor")
    assert "tidemark" in monitor["metadata"]["name"], "job label must contain tidemark"
    ports = {p["name"] for p in containers["tidemark"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_operator_resources_use_known_api_versions() -> None:
    for _, doc in _all_docs():
        if doc["kind"] in OPERATOR_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["kind"]
            assert doc["metadata"]["name"] and doc["spec"]


def test_kubernetes_validate_rejects_a_broken_manifest() -> None:
    """The schema check is real: a misspelled field fails it."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    service = _by_kind("Service", "tidemark")
    broken = {**service, "spec": {**service["spec"], "publishNotReadyAdresses": True}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)
