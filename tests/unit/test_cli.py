"""The commands a CI pipeline calls: validate and compat, with their exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "config" / "contracts"


def test_validate_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(REPO / "config" / "example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok  orders: topic shop.orders.v1, confluent" in out
    assert "ok  payments: topic pay.payments.v1, avro-single-object" in out


def test_validate_fails_with_file_key_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "products:\n"
        "  - name: orders\n"
        "    owner: team\n"
        "    topic: t\n"
        f"    contract: {CONTRACTS / 'orders.avsc'}\n"
        "    encoding: avro-raw\n"
        "    event_time: occurred_at\n"
        "    idle_timeout: soon\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:8: products[0].idle_timeout" in err
    assert "'soon' is not a duration" in err


def test_validate_reports_a_broken_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = tmp_path / "broken.avsc"
    contract.write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    config = tmp_path / "c.yaml"
    config.write_text(
        "products:\n  - {name: x, owner: o, topic: t, contract: broken.avsc,"
        " encoding: avro-raw, event_time: kafka-timestamp}\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "products[0].contract (x)" in err
    assert "broken.avsc" in err


def test_compat_backward_change_passes(capsys: pytest.CaptureFixture[str]) -> None:
    old, new = CONTRACTS / "orders.avsc", CONTRACTS / "orders-v2.avsc"
    assert main(["compat", str(old), str(new), "--mode", "backward"]) == 0
    assert capsys.readouterr().out.startswith("COMPATIBLE (backward)")


def test_compat_breaking_change_fails_with_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = json.loads((CONTRACTS / "orders.avsc").read_text())
    for field in schema["fields"]:
        if field["name"] == "amount_cents":
            field["type"] = "string"
    new = tmp_path / "orders-breaking.avsc"
    new.write_text(json.dumps(schema))
    assert main(["compat", str(CONTRACTS / "orders.avsc"), str(new)]) == 1
    assert "amount_cents" in capsys.readouterr().out


def test_compat_on_an_invalid_schema_is_an_error_not_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.avsc"
    bad.write_text("{not json")
    assert main(["compat", str(CONTRACTS / "orders.avsc"), str(bad)]) == 2
    assert "bad.avsc" in capsys.readouterr().err


def test_console_script_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("tidemark ")
