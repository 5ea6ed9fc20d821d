"""The README's metric reference and demo contracts cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from monitor.export.catalogue import METRICS
from monitor.export.reference import render_readme

REPO = Path(__file__).resolve().parents[3]


def test_readme_metric_table_is_current() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    hint = "run `python -m monitor.export.reference` to update README.md"
    assert render_readme(text) == text, hint


def test_every_metric_is_in_the_readme() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for spec in METRICS:
        name = f"{spec.name}_total" if spec.type == "counter" else spec.name
        assert f"`{name}`" in text


def test_demo_contracts_are_the_shipped_examples() -> None:
    for example in (REPO / "config" / "contracts").glob("*.avsc"):
        packaged = REPO / "monitor" / "demo" / "contracts" / example.name
        assert packaged.read_text() == example.read_text(), f"{packaged} differs from {example}"
