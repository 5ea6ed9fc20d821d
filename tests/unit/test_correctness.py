"""Correctness wiring: config forms, settings merged from contracts, rules counted per event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import ProductConfig, Settings, SubjectRef, load_settings
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.contract.odcs import load_odcs
from monitor.contract.rules import Sampler, compile_rules
from monitor.errors import ConfigError
from monitor.export.collector import TidemarkCollector, build_registry
from monitor.export.violations import violations_json
from monitor.pipeline import ContractVersion, Pipeline, ProductPipeline
from monitor.runtime.build import build_pipeline
from monitor.runtime.health import HealthState
from monitor.runtime.products import merged_config, resolve_product
from tests.unit.fakes import order as fake_order
from tests.unit.test_pipeline import CONTRACT, NOW, TOPIC, Msg, product_config

RULES = [
    {"name": "positive_amount", "range": {"field": "amount_cents", "min": 1}},
    {"name": "known_currency", "allowed_values": {"field": "currency", "values": ["EUR", "USD"]}},
    {"name": "cel_small", "cel": "message.amount_cents < 1000000"},
]

ODCS = """\
apiVersion: v3.1.0
kind: DataContract
id: shop-orders
version: 1.0.0
description: {purpose: Orders placed in the shop.}
team: {name: team-odcs}
slaProperties:
  - {property: latency, value: 15, unit: m, element: orders.occurred_at}
schema:
  - name: orders
    properties:
      - {name: currency, logicalType: string, logicalTypeOptions: {enum: [EUR, USD]}}
      - {name: amount_cents, logicalType: integer, logicalTypeOptions: {minimum: 1}}
      - name: order_id
        logicalType: string
        quality: [{type: sql, query: "SELECT 1"}]
"""


def order(seq: int, amount: int = 100, currency: str = "EUR", event_time: float = NOW - 1) -> bytes:
    return fake_order(seq, event_time, amount_cents=amount, currency=currency)


def build(rules: list[dict[str, Any]] | None = None, kept: int = 100, **cfg: Any) -> Pipeline:
    config = product_config(rules=rules or [], **cfg)
    contract = Contract.load(CONTRACT)
    compiled = compile_rules(config.rules, schema=contract.schema)
    product = ProductPipeline.build(
        config,
        RawAvroDecoder(contract),
        make_extractor(contract, "occurred_at"),
        stuck_after=60,
        rules=compiled,
        violations_kept=kept,
    )
    pipeline = Pipeline({TOPIC: product})
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    return pipeline


def scrape(pipeline: Pipeline) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = build_registry(TidemarkCollector(pipeline, HealthState(60.0), clock=lambda: NOW))
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if "rule" in s.name or "correct" in s.name or "contract_version" in s.name:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --- config forms -------------------------------------------------------------------------


def test_contract_may_be_a_registry_subject_with_latest_or_a_pinned_version() -> None:
    latest = product_config(contract={"subject": "shop.orders-value"})
    assert latest.contract == SubjectRef(subject="shop.orders-value", version="latest")
    pinned = product_config(contract={"subject": "s", "version": 3, "check_interval": "5s"})
    assert isinstance(pinned.contract, SubjectRef)
    assert (pinned.contract.version, pinned.contract.check_interval) == (3, 5.0)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        product_config(contract={"subject": "s", "version": 0})


def test_a_subject_needs_the_registry_url(tmp_path: Path) -> None:
    product = product_config(contract={"subject": "s"}, encoding="avro-raw")
    with pytest.raises(ValueError, match=r"needs schema_registry\.url"):
        Settings(products=[product])


def test_owner_and_event_time_may_come_from_the_contract_but_are_required_without_one(
    tmp_path: Path,
) -> None:
    base = dict(name="orders", topic="t", encoding="avro-raw", contract=CONTRACT)
    with pytest.raises(ValueError, match="owner"):
        ProductConfig(**base, event_time="occurred_at")  # type: ignore[arg-type]
    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS)
    config = ProductConfig(**base, odcs=odcs)  # type: ignore[arg-type]
    assert config.owner is None and config.event_time is None


def test_rules_and_sample_ratio_are_validated_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="used twice"):
        product_config(rules=[RULES[0], RULES[0]])
    with pytest.raises(ValueError, match="less than or equal to 1"):
        product_config(rules_sample_ratio=1.5)
    assert product_config(rules=RULES, rules_sample_ratio=0.25).rules_sample_ratio == 0.25


def test_a_rule_that_does_not_compile_fails_the_build_with_name_and_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tidemark.yaml"
    path.write_text(
        f"""
products:
  - name: orders
    owner: team-checkout
    topic: shop.orders
    contract: {CONTRACT}
    encoding: avro-raw
    event_time: occurred_at
    rules:
      - name: broken_rule
        cel: "message.amount_cents >"
"""
    )
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_settings(path))
    assert "products[0].rules (orders)" in str(err.value)
    assert "rule 'broken_rule': 1:23: Syntax error" in str(err.value)  # line:column in the rule


# --- settings merged from an ODCS file ----------------------------------------------------


def test_odcs_fills_what_the_config_leaves_out_and_the_config_wins(tmp_path: Path) -> None:
    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS)
    config = ProductConfig(
        name="orders",
        topic="t",
        encoding="avro-raw",
        contract=CONTRACT,
        odcs=odcs,
        description="said by the config",
    )
    merged, filled = merged_config(0, config, load_odcs(odcs), None)
    assert merged.owner == "team-odcs"  # from team.name
    assert merged.event_time == "occurred_at"  # from the latency SLA's element
    assert merged.freshness.threshold == 900.0  # latency 15 m
    assert merged.description == "said by the config"  # the config wins
    assert set(filled) == {"owner", "event_time", "freshness.threshold"}


def test_odcs_rules_are_evaluated_and_what_is_not_is_reported(tmp_path: Path) -> None:
    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS)
    config = ProductConfig(
        name="orders",
        topic="t",
        encoding="avro-raw",
        contract=CONTRACT,
        odcs=odcs,
        rules=[{"name": "currency_enum", "cel": "message.currency == 'EUR'"}],  # type: ignore[list-item]
    )
    setup = resolve_product(0, config, None)
    # the config's rule of the same name wins over the ODCS one
    assert setup.rules.names == ("currency_enum", "amount_cents_range")
    outcome = setup.rules.evaluate({"currency": "USD", "amount_cents": 5})
    assert [v.value for _, v in outcome] == ["violation", "pass"]
    assert [what for what, _ in setup.not_evaluated] == [
        "odcs schema[0].properties[2].quality[0] (sql rule order_id_sql)"
    ]


def test_odcs_naming_a_field_the_schema_lacks_is_refused(tmp_path: Path) -> None:
    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS.replace("name: amount_cents,", "name: amount,"))
    config = product_config(odcs=odcs)
    with pytest.raises(ConfigError, match="amount"):
        resolve_product(0, config, None)


# --- per-event counting -----------------------------------------------------------------


def test_conforming_counted_events_are_rule_checked_with_exact_outcomes() -> None:
    pipeline = build(RULES)
    batch = [
        Msg(TOPIC, 0, 0, order(1), 1000),
        Msg(TOPIC, 0, 1, order(2, amount=-5), 2000),  # positive_amount
        Msg(TOPIC, 0, 2, order(3, currency="XXX"), 3000),  # known_currency
        Msg(TOPIC, 0, 3, order(4, amount=0, currency="GBP"), 4000),  # both
        Msg(TOPIC, 0, 4, b"\x01garbage", 5000),  # a contract violation: never rule-checked
        Msg(TOPIC, 0, 5, order(6, amount=5_000_000), 6000),  # cel_small
        Msg(TOPIC, 0, 6, order(7, currency="USD"), 7000),
    ]
    pipeline.process_batch(batch, NOW)
    stats = pipeline.products[TOPIC].stats
    assert (stats.events, stats.conforming, stats.rule_checked, stats.correct) == (7, 6, 6, 2)
    assert dict(stats.rule_violations) == {
        "positive_amount": 2,
        "known_currency": 2,
        "cel_small": 1,
    }
    assert not stats.rule_errors
    metrics = scrape(pipeline)
    labels = (("product", "orders"), ("topic", TOPIC))
    assert metrics[("tidemark_rule_checked_events_total", labels)] == 6
    assert metrics[("tidemark_events_correct_total", labels)] == 2
    assert (
        metrics[("tidemark_rule_violations_total", (*labels[:1], ("rule", "cel_small"), labels[1]))]
        == 1
    )
    # every rule has its series from the start, at 0 when it never failed
    assert (
        metrics[("tidemark_rule_errors_total", (*labels[:1], ("rule", "cel_small"), labels[1]))]
        == 0
    )

    body = json.loads(violations_json(pipeline))
    listed = body["products"]["orders"]["violations"]
    assert [v["offset"] for v in listed] == [5, 4, 3, 2, 1]  # newest first
    assert listed[0]["rules"] == ["cel_small"]
    assert listed[1] == {
        "partition": 0,
        "offset": 4,
        "timestamp_ms": 5000,
        "timestamp": "1970-01-01T00:00:05.000+00:00",
        "reason": "decode_error",
    }
    assert sorted(listed[2]["rules"]) == ["known_currency", "positive_amount"]
    assert "o-4" not in json.dumps(body)  # never the payload


def test_read_back_events_are_not_rule_checked() -> None:
    pipeline = build(RULES)
    pipeline.revoke(TOPIC, 0)
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=2)
    pipeline.process_batch([Msg(TOPIC, 0, i, order(i, amount=-1)) for i in range(3)], NOW)
    stats = pipeline.products[TOPIC].stats
    assert (stats.rule_checked, stats.rule_violations["positive_amount"]) == (1, 1)


def test_a_rule_that_errors_is_counted_as_its_error_and_never_crashes() -> None:
    pipeline = build([{"name": "needs_field", "cel": "message.no_such_field > 0"}])
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(1)), Msg(TOPIC, 0, 1, order(2))], NOW)
    stats = pipeline.products[TOPIC].stats
    assert (stats.rule_checked, stats.correct, stats.processing_errors) == (2, 0, 0)
    assert dict(stats.rule_errors) == {"needs_field": 2}
    listed = json.loads(violations_json(pipeline))["products"]["orders"]["violations"]
    assert listed[0]["rules"] == [] and listed[0]["rule_errors"] == ["needs_field"]


def test_sampling_checks_the_admitted_positions_and_counts_every_event() -> None:
    pipeline = build(RULES, rules_sample_ratio=0.3)
    n = 400
    pipeline.process_batch([Msg(TOPIC, 0, i, order(i, amount=-1)) for i in range(n)], NOW)
    stats = pipeline.products[TOPIC].stats
    admitted = sum(Sampler(0.3)(0, i) for i in range(n))
    assert stats.events == stats.conforming == n
    assert stats.rule_checked == stats.rule_violations["positive_amount"] == admitted
    assert 0.2 * n < admitted < 0.4 * n


def test_without_rules_there_is_no_check_and_no_correctness_series() -> None:
    pipeline = build()
    assert pipeline.products[TOPIC].rules is None
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(1, amount=-1))], NOW)
    assert pipeline.products[TOPIC].stats.rule_checked == 0
    assert not scrape(pipeline)


def test_violations_kept_are_bounded() -> None:
    pipeline = build(RULES, kept=3)
    pipeline.process_batch([Msg(TOPIC, 0, i, order(i, amount=-1)) for i in range(10)], NOW)
    listed = json.loads(violations_json(pipeline))["products"]["orders"]["violations"]
    assert [v["offset"] for v in listed] == [9, 8, 7]


def test_a_contract_switch_keeps_counting_and_changes_the_exported_version() -> None:
    pipeline = build(RULES[:1])
    product = pipeline.products[TOPIC]
    product.contract_version = ContractVersion("shop.orders-value", 1, 11)
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(1, currency="XXX"))], NOW)
    contract = Contract.load(CONTRACT)
    product.switch_contract(
        RawAvroDecoder(contract),
        make_extractor(contract, "occurred_at"),
        compile_rules(product_config(rules=RULES[:2]).rules),
        ContractVersion("shop.orders-value", 2, 12),
    )
    pipeline.process_batch([Msg(TOPIC, 0, 1, order(2, currency="XXX"))], NOW)
    stats = product.stats
    assert (stats.rule_checked, stats.correct) == (2, 1)
    assert dict(stats.rule_violations) == {"known_currency": 1}
    metrics = scrape(pipeline)
    versions = [k for k in metrics if k[0] == "tidemark_contract_version_info"]
    assert versions == [
        (
            "tidemark_contract_version_info",
            (
                ("product", "orders"),
                ("schema_id", "12"),
                ("subject", "shop.orders-value"),
                ("topic", TOPIC),
                ("version", "2"),
            ),
        )
    ]


def validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], odcs: str, extra: str = "") -> str:
    """`tidemark validate` of an orders product with this ODCS file; its output."""
    from monitor.cli import main

    (tmp_path / "o.odcs.yaml").write_text(odcs)
    path = tmp_path / "tidemark.yaml"
    path.write_text(
        f"""
products:
  - name: orders
    topic: shop.orders
    contract: {CONTRACT}
    odcs: o.odcs.yaml
    encoding: avro-raw
{extra}"""
    )
    assert main(["validate", "--config", str(path)]) == 0
    return capsys.readouterr().out


def test_validate_lists_rules_settings_from_odcs_and_what_is_not_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = """\
    rules_sample_ratio: 0.5
    rules:
      - {name: small, cel: "message.amount_cents < 100000"}
"""
    out = validate(tmp_path, capsys, ODCS, rules)
    assert "ok  orders: topic shop.orders" in out and "owner team-odcs" in out
    assert "from the contract: description, owner, freshness.threshold, event_time" in out
    assert "rules evaluated (sampled 0.5): small, currency_enum, amount_cents_range" in out
    assert "not evaluated: odcs schema[0].properties[2].quality[0] (sql rule order_id_sql)" in out


def test_the_config_wins_then_odcs_then_registered_metadata(tmp_path: Path) -> None:
    from types import SimpleNamespace

    odcs = tmp_path / "o.odcs.yaml"
    odcs.write_text(ODCS)
    registered = SimpleNamespace(
        settings={
            "owner": "team-registry",
            "tier": "gold",
            "freshness": {"threshold": 60.0, "target": 0.95},
            "correctness": {"target": 0.995},
        }
    )
    config = product_config(owner="team-config", odcs=odcs, freshness={"target": 0.9})
    merged, filled = merged_config(0, config, load_odcs(odcs), registered)  # type: ignore[arg-type]
    assert merged.owner == "team-config"  # config
    assert merged.freshness.target == 0.9  # config, key by key within freshness
    assert merged.freshness.threshold == 900.0  # ODCS's latency, before the registry's 60 s
    assert merged.description == "Orders placed in the shop."  # ODCS
    assert (merged.tier, merged.correctness.target) == ("gold", 0.995)  # registry metadata
    assert set(filled) == {
        "description",
        "freshness.threshold",
        "tier",
        "correctness.target",
    }
