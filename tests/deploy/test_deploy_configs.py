"""The Tidemark configurations shipped for compose and Kubernetes pass `tidemark validate`,
so a deployment example cannot drift from the configuration schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_helpers import DEPLOY, REPO

K8S = DEPLOY / "kubernetes"


def _k8s_config(name: str, key: str = "config.yaml") -> str:
    for path in K8S.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
                return str(doc["data"][key])
    raise AssertionError(f"no ConfigMap {name}")


CASES = {
    "compose": (
        (DEPLOY / "compose" / "tidemark.yaml").read_text(),
        REPO / "monitor" / "demo" / "contracts",
    ),
    "kubernetes": (_k8s_config("tidemark-config"), REPO / "config" / "contracts"),
    "sidecar": (_k8s_config("orders-producer-tidemark"), REPO / "config" / "contracts"),
}


@pytest.mark.parametrize("case", CASES)
def test_shipped_config_passes_tidemark_validate(case: str, tmp_path: Path) -> None:
    pytest.importorskip("monitor.config", reason="the config module is not there yet")
    text, contracts = CASES[case]
    (tmp_path / "config.yaml").write_text(text)
    shutil.copytree(contracts, tmp_path / "contracts")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "TIDEMARK_KAFKA__SASL_PASSWORD": "not-a-secret"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
