"""ODCS rowCount → expected volume: each operator, each window source, the config's word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.config import ProductConfig
from monitor.contract.odcs import OdcsContract, parse_odcs
from monitor.contract.odcs_volume import Volume, cron_period, plan_volume
from monitor.errors import ConfigError, ContractError
from monitor.runtime.products import resolve_product
from tests.unit.test_correctness import validate
from tests.unit.test_pipeline import CONTRACT

HOURLY = [{"property": "tidemark.window", "value": "1h"}]


def _contract(*quality: dict[str, Any], **extra: Any) -> OdcsContract:
    doc: dict[str, Any] = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "x",
        "version": "1.0.0",
        "schema": [{"name": "orders", "quality": list(quality)}],
        **extra,
    }
    return parse_odcs(doc, Path("v.odcs.yaml"))


def _row_count(**rule: Any) -> dict[str, Any]:
    return {"id": "volume", "metric": "rowCount", "customProperties": HOURLY, **rule}


def _report(contract: OdcsContract) -> list[str]:
    return contract.report()


# --- operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operators", "floor", "upper_bound_reported"),
    [
        ({"mustBe": 100}, 100, True),
        ({"mustBeGreaterThan": 99}, 100, False),
        ({"mustBeGreaterThan": 99.5}, 100, False),
        ({"mustBeGreaterOrEqualTo": 100}, 100, False),
        ({"mustBeGreaterOrEqualTo": 99.2}, 100, False),
        ({"mustBeBetween": [100, 120]}, 100, True),  # inclusive, like every ODCS rule here
        ({"mustNotBe": 0}, 1, False),  # a count that is not 0 is at least 1
        ({"mustNotBeBetween": [0, 9]}, 10, False),
        ({"mustBeGreaterThan": 10, "mustBeLessThan": 20}, 11, True),
    ],
)
def test_each_operator_gives_the_smallest_count_it_allows_as_the_floor(
    operators: dict[str, Any], floor: int, upper_bound_reported: bool
) -> None:
    contract = _contract(_row_count(**operators))
    assert contract.volume == Volume(
        floor, 3600.0, "tidemark.window 1h", "volume", "schema[0].quality[0]"
    )
    upper = [line for line in _report(contract) if "upper bound" in line]
    assert bool(upper) is upper_bound_reported, _report(contract)
    if upper:
        assert "never make a window incomplete" in upper[0]


@pytest.mark.parametrize(
    "operators",
    [
        {"mustBeLessThan": 1000},
        {"mustBeLessOrEqualTo": 5},
        {"mustNotBeBetween": [10, 20]},  # 0 is allowed
        {"mustBeGreaterOrEqualTo": 0},
    ],
)
def test_operators_that_allow_an_empty_window_give_no_floor_and_say_so(
    operators: dict[str, Any],
) -> None:
    contract = _contract(_row_count(**operators))
    assert contract.volume is None
    assert [line for line in _report(contract) if "(rowCount volume" in line and "empty" in line]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"mustBeLessThan": 0}, r"quality\[0\]: mustBeLessThan 0 allows no row count"),
        ({"mustBe": 2.5}, "mustBe 2.5 allows no row count"),
        ({"mustBeGreaterThan": 5, "unit": "percent"}, r"unit: a rowCount counts rows"),
        ({"mustBeGreaterThan": float("inf")}, "finite numbers"),
        ({"mustBeBetween": [5, 1]}, "the smaller number comes first"),
        ({}, "needs an operator"),
        (
            {"mustBe": 5, "customProperties": [{"property": "tidemark.window", "value": "soon"}]},
            r"customProperties\[0\].value: tidemark.window: 'soon' is not a duration",
        ),
        (
            {"mustBe": 5, "customProperties": [{"property": "tidemark.window", "value": 0}]},
            "tidemark.window must be more than 0",
        ),
    ],
)
def test_rule_errors_name_the_yaml_path(rule: dict[str, Any], message: str) -> None:
    raw = {"metric": "rowCount", "customProperties": HOURLY, **rule}
    with pytest.raises(ContractError, match=message):
        _contract(raw)


def test_a_row_count_on_a_property_is_reported_where_it_belongs() -> None:
    doc_schema = [
        {
            "name": "orders",
            "properties": [{"name": "f", "quality": [{"metric": "rowCount", "mustBe": 1}]}],
        }
    ]
    contract = _contract(schema=doc_schema)
    assert contract.volume is None
    assert any("put it under schema[].quality" in line for line in _report(contract))


# --- the window --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("*/5 * * * *", 300.0),
        ("* * * * *", 60.0),
        ("0 * * * *", 3600.0),
        ("15 */6 * * *", 6 * 3600.0),
        ("0 20 * * *", 86400.0),
        ("30 4 * * 1", 7 * 86400.0),
        ("@hourly", 3600.0),
        ("@daily", 86400.0),
        ("*/7 * * * *", None),  # 7 does not divide the hour: runs are not evenly spaced
        ("*/5 3 * * *", None),  # only during hour 3
        ("0 9-17 * * *", None),
        ("0 0 1 * *", None),  # months differ in length
        ("0 0 * * 1-5", None),
        ("not a cron", None),
    ],
)
def test_cron_schedules_at_a_fixed_interval_have_a_period(
    schedule: str, seconds: float | None
) -> None:
    assert cron_period(schedule) == seconds


def test_window_sources_in_order_custom_property_cron_then_sla_frequency() -> None:
    frequency = {"slaProperties": [{"property": "frequency", "value": 1, "unit": "d"}]}
    rule = {"id": "volume", "metric": "rowCount", "mustBeGreaterThan": 9}
    by_property = _contract(_row_count(mustBeGreaterThan=9, schedule="0 * * * *"), **frequency)
    by_cron = _contract({**rule, "scheduler": "cron", "schedule": "*/5 * * * *"}, **frequency)
    by_legacy = _contract({**rule, "scheduleCronExpression": "0 20 * * *"})
    by_frequency = _contract(rule, **frequency)
    assert by_property.volume is not None and by_property.volume.window == 3600.0
    assert by_cron.volume is not None and by_cron.volume.window == 300.0
    assert by_cron.volume.window_from == "schedule */5 * * * *"
    assert by_legacy.volume is not None and by_legacy.volume.window == 86400.0
    assert by_frequency.volume is not None and by_frequency.volume.window == 86400.0
    assert by_frequency.volume.window_from == "slaProperties[0] frequency"
    # a frequency a rowCount uses is not "not evaluated"; one it does not use still is
    assert not [line for line in _report(by_frequency) if "frequency" in line]
    assert [line for line in _report(by_cron) if "(frequency 1)" in line]


def test_a_schedule_that_is_no_fixed_interval_is_reported_and_the_next_source_used() -> None:
    frequency = {"slaProperties": [{"property": "fy", "value": "PT1H"}]}
    rule = {"id": "volume", "metric": "rowCount", "mustBe": 5, "schedule": "0 9-17 * * *"}
    contract = _contract(rule, **frequency)
    assert contract.volume is not None and contract.volume.window == 3600.0
    assert any("does not fire at a fixed interval" in line for line in _report(contract))
    other = _contract({**rule, "scheduler": "airflow", "schedule": "@daily"})
    assert other.volume is not None and other.volume.window is None
    assert any("scheduler 'airflow' is not cron" in line for line in _report(other))


def test_a_frequency_without_a_unit_is_an_error_only_when_a_row_count_needs_it() -> None:
    frequency = {"slaProperties": [{"property": "frequency", "value": 1}]}
    assert _contract(**frequency).volume is None  # reported, not refused
    with pytest.raises(ContractError, match=r"slaProperties\[0\].unit: frequency needs a unit"):
        _contract({"metric": "rowCount", "mustBe": 5}, **frequency)


def test_one_volume_per_product_the_strictest_in_the_first_rules_window() -> None:
    contract = _contract(
        _row_count(id="a", mustBeGreaterThan=10),
        _row_count(id="b", mustBeGreaterThan=50),
        {"id": "c", "metric": "rowCount", "mustBeGreaterThan": 1000, "schedule": "@daily"},
    )
    assert contract.volume is not None
    assert (contract.volume.label, contract.volume.floor) == ("b", 51)
    report = _report(contract)
    assert any("(rowCount a)" in line and "rowCount b" in line for line in report), report
    assert any("(rowCount c)" in line and "one expected volume" in line for line in report)


# --- what the product gets: the config wins --------------------------------------------

VOLUME = Volume(10, 300.0, "tidemark.window 5m", "volume", "schema[0].quality[0]")


def test_plan_fills_window_and_floor_when_the_config_has_no_completeness() -> None:
    plan = plan_volume(VOLUME, None)
    assert plan.settings == {
        "completeness": {"window": 300.0, "expected": {"min_events_per_window": 10}}
    }
    assert plan.skipped is None
    assert plan.became(300.0) == (
        "odcs rowCount volume: expected volume at least 10 events per 300s completeness "
        "window (tidemark.window 5m)"
    )


def test_plan_takes_the_configs_window_when_the_contract_names_none() -> None:
    plan = plan_volume(Volume(10, None, "", "volume", "q"), {"sequence": {}})
    assert plan.settings == {"completeness": {"expected": {"min_events_per_window": 10}}}
    assert plan.became(60.0) is not None and "the product config's window" in plan.became(60.0)
    none = plan_volume(Volume(10, None, "", "volume", "q"), None)
    assert none.settings == {} and none.skipped is not None
    assert none.skipped[0] == "odcs q (rowCount volume)"
    assert "names no window" in none.skipped[1] and "tidemark.window" in none.skipped[1]


@pytest.mark.parametrize(
    ("completeness", "why"),
    [
        ({"expected": {"min_events_per_window": 3}}, "min_events_per_window (3) wins"),
        ({"window": 60.0, "sequence": {}}, "completeness.window is 60s"),
    ],
)
def test_the_config_wins_and_the_row_count_is_reported(
    completeness: dict[str, Any], why: str
) -> None:
    plan = plan_volume(VOLUME, completeness)
    assert plan.settings == {} and plan.became(60.0) is None
    assert plan.skipped is not None and why in plan.skipped[1]


def test_the_same_window_in_the_config_is_no_conflict() -> None:
    plan = plan_volume(VOLUME, {"window": 300.0, "sequence": {}})
    assert plan.skipped is None and plan.settings


# --- a product built from it -------------------------------------------------------------

ODCS = """\
apiVersion: v3.1.0
kind: DataContract
id: shop-orders
version: 1.0.0
team: {name: team-odcs}
slaProperties:
  - {property: latency, value: 15, unit: m, element: orders.occurred_at}
schema:
  - name: orders
    quality:
      - id: orders_volume
        metric: rowCount
        mustBeGreaterOrEqualTo: 40
        customProperties: [{property: tidemark.window, value: 10m}]
"""


def _product(tmp_path: Path, **extra: Any) -> ProductConfig:
    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS)
    return ProductConfig(
        name="orders", topic="t", encoding="avro-raw", contract=CONTRACT, odcs=odcs, **extra
    )


def test_a_product_gets_expected_volume_completeness_from_row_count(tmp_path: Path) -> None:
    setup = resolve_product(0, _product(tmp_path), None)
    completeness = setup.config.completeness
    assert completeness is not None and completeness.expected is not None
    assert (completeness.window, completeness.expected.min_events_per_window) == (600.0, 40)
    assert {"completeness.window", "completeness.expected.min_events_per_window"} <= set(
        setup.filled
    )
    assert setup.expected_volume == (
        "odcs rowCount orders_volume: expected volume at least 40 events per 600s "
        "completeness window (tidemark.window 10m)"
    )
    assert setup.not_evaluated == ()


def test_a_product_whose_config_says_otherwise_keeps_its_config(tmp_path: Path) -> None:
    config = _product(
        tmp_path, completeness={"window": 60, "expected": {"baseline": {"period": 3600}}}
    )
    setup = resolve_product(0, config, None)
    assert setup.config.completeness is not None
    assert setup.config.completeness.window == 60.0
    assert setup.config.completeness.expected is not None
    assert setup.config.completeness.expected.min_events_per_window is None
    assert setup.expected_volume is None
    assert [what for what, _ in setup.not_evaluated] == [
        "odcs schema[0].quality[0] (rowCount orders_volume)"
    ]


def test_filled_settings_that_break_the_completeness_config_are_refused(tmp_path: Path) -> None:
    # the config's baseline period (25 min) is no whole multiple of the contract's 10 min
    config = _product(tmp_path, completeness={"expected": {"baseline": {"period": 1500}}})
    with pytest.raises(ConfigError, match="filled from the contract are invalid"):
        resolve_product(0, config, None)


def test_validate_prints_what_row_count_became(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = validate(tmp_path, capsys, ODCS)
    assert "odcs rowCount orders_volume: expected volume at least 40 events per 600s" in out
    assert "not evaluated" not in out
