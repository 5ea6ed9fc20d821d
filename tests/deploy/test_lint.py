"""Every YAML and JSON file under deploy/ parses, and the alerting docs list every alert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deploy_helpers import DEPLOY, REPO, alert_names

YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(DEPLOY.rglob("*.json"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


@pytest.mark.parametrize("doc", ["docs/alerting.md", "docs/runbooks/README.md"])
def test_alerting_docs_list_every_alert(doc: str) -> None:
    text = (REPO / doc).read_text()
    missing = [name for name in alert_names() if name not in text]
    assert not missing, f"{doc} does not mention {missing}"
