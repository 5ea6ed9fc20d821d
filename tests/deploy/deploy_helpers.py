"""Shared helpers for the deployment tests: paths, the shipped rules, external tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/tidemark/tidemark/blob/main/docs/runbooks/"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in rule_files():
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def alert_names() -> list[str]:
    return sorted({r["alert"] for r in alert_rules()})


def recording_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def tool(name: str) -> str:
    """Path of a CLI from Debian's prometheus / prometheus-alertmanager packages."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
