"""Every metric name used in rules, dashboards and the PrometheusRule exists.

A name is valid when Tidemark exports it (monitor.export.catalogue) or a shipped recording
rule defines it; anything else is a dangling query that would silently match nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from deploy_helpers import DEPLOY, REPO, recording_names

from monitor.export.catalogue import BY_NAME, all_sample_names

NAME = re.compile(r"(?<![A-Za-z0-9_:.\-/])(tidemark(?:_|:)[A-Za-z0-9_:]+)")
SELECTOR = re.compile(r"(tidemark_[A-Za-z0-9_]+)\{([^}]*)\}")
# Labels Prometheus adds at scrape time, plus the ones recording rules and alerts add.
SCRAPE_LABELS = {"job", "instance", "le"}


def _strings(node: Any, keys: set[str]) -> Iterator[str]:
    """Every string under one of `keys` anywhere in a parsed YAML/JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, keys)


def _sources() -> list[tuple[str, str]]:
    """(where, PromQL or template text) from every shipped artefact that queries."""
    out: list[tuple[str, str]] = []
    yaml_files = [
        *sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")),
        DEPLOY / "kubernetes" / "prometheusrule.yaml",
    ]
    for path in yaml_files:
        for doc in yaml.safe_load_all(path.read_text()):
            for text in _strings(doc, {"expr", "description", "summary"}):
                out.append((str(path.relative_to(REPO)), text))
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for text in _strings(json.loads(path.read_text()), {"expr", "query", "definition"}):
            out.append((str(path.relative_to(REPO)), text))
    return out


SOURCES = _sources()


def _known() -> set[str]:
    return set(all_sample_names()) | recording_names()


def test_sources_were_found() -> None:
    files = {where for where, _ in SOURCES}
    assert any(f.endswith("tidemark-alerts.yml") for f in files)
    assert any(f.endswith("prometheusrule.yaml") for f in files)
    assert sum(f.endswith(".json") for f in files) == 3


@pytest.mark.parametrize("where", sorted({w for w, _ in SOURCES}))
def test_every_tidemark_name_is_exported_or_recorded(where: str) -> None:
    used = {m for w, text in SOURCES if w == where for m in NAME.findall(text)}
    assert used, f"{where} uses no tidemark metric at all"
    dangling = sorted(used - _known())
    assert not dangling, f"{where} queries names Tidemark does not export: {dangling}"


@pytest.mark.parametrize("where", sorted({w for w, _ in SOURCES}))
def test_selector_labels_exist_on_the_metric(where: str) -> None:
    """tidemark_x{label=...}: the label must be one the catalogue declares for x."""
    for w, text in SOURCES:
        if w != where:
            continue
        for sample, matchers in SELECTOR.findall(text):
            base = re.sub(r"_(total|created|bucket|sum|count)$", "", sample)
            spec = BY_NAME.get(base) or BY_NAME.get(sample)
            assert spec is not None, sample
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                assert label in {*spec.labels, *SCRAPE_LABELS}, (
                    f"{where}: {sample} has no label {label!r} (labels: {spec.labels})"
                )


def test_checker_rejects_an_unknown_name() -> None:
    """Guards the guard: a made-up name must not slip through the extraction."""
    text = 'rate(tidemark_events_totl[5m]) / tidemark:slo_sli:ratio_rate7m{product="x"}'
    assert set(NAME.findall(text)) - _known() == {
        "tidemark_events_totl",
        "tidemark:slo_sli:ratio_rate7m",
    }


def test_runbook_urls_are_not_mistaken_for_metrics() -> None:
    text = "https://github.com/tidemark/tidemark/blob/main/docs/runbooks/TidemarkDown.md"
    assert NAME.findall(text) == []
