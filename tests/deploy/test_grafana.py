"""Dashboards are valid Grafana JSON whose every query parses as PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from deploy_helpers import DEPLOY, run, tool

BOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def _queries(board: dict) -> list[str]:
    panels = [p for p in board["panels"] if p["type"] != "row"]
    out = [t["expr"] for p in panels for t in p["targets"]]
    out += [a["expr"] for a in board["annotations"]["list"]]
    return out


def test_three_audiences_are_shipped() -> None:
    assert [b.stem for b in BOARDS] == ["tidemark-debug", "tidemark-executive", "tidemark-oncall"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem and board["title"].startswith("Tidemark /")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "product"} <= names
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_executive_shows_compliance_budget_owner_and_tier() -> None:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "tidemark-executive.json").read_text())
    text = json.dumps(board)
    for needle in ("ratio_rate30d", "error_budget_remaining", "owner", "tier"):
        assert needle in text


def test_oncall_shows_slis_burn_alerts_lag_and_schemas() -> None:
    text = (DEPLOY / "grafana" / "dashboards" / "tidemark-oncall.json").read_text()
    for needle in (
        "slo_sli:ratio_rate1h",
        "slo_burn_rate:rate1h",
        "ALERTS",
        "consumer_lag",
        "writer_schema_info",
    ):
        assert needle in text


def test_debug_shows_partitions_histograms_and_reasons() -> None:
    text = (DEPLOY / "grafana" / "dashboards" / "tidemark-debug.json").read_text()
    for needle in (
        "partition_watermark_timestamp_seconds",
        "partition_idle",
        "event_latency_seconds_bucket",
        "event_lateness_seconds_bucket",
        "contract_violations_total",
        "reason",
    ):
        assert needle in text


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """Grafana variables are substituted, then promtool parses each query as a rule."""
    rules = []
    for path in BOARDS:
        for i, expr in enumerate(_queries(json.loads(path.read_text()))):
            expr = expr.replace("$__rate_interval", "1m")
            expr = re.sub(r"\$\{?\w+\}?", "x", expr)
            rules.append({"record": f"check:{path.stem.replace('-', '_')}:{i}", "expr": expr})
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "tidemark.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts


def _exprs(name: str) -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / f"{name}.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_every_dashboard_shows_correctness() -> None:
    """Executive: SLI vs objective; on-call: its burn; debug: violations and errors by rule."""
    executive = _exprs("tidemark-executive")
    assert any("slo_sli:ratio_rate30d" in e and 'sli="correctness"' in e for e in executive)
    assert any("slo_objective_ratio:max" in e and 'sli="correctness"' in e for e in executive)
    oncall = _exprs("tidemark-oncall")
    assert any("slo_burn_rate:rate1h" in e and 'sli="correctness"' in e for e in oncall)
    debug = _exprs("tidemark-debug")
    assert any("by (product, rule)" in e and "tidemark_rule_violations_total" in e for e in debug)
    assert any("by (product, rule)" in e and "tidemark_rule_errors_total" in e for e in debug)
