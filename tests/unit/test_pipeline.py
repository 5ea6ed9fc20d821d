"""One event through decode → contract → event time → watermark, and what the collector shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import FreshnessObjective, ProductConfig, Settings
from monitor.contract.decoding import RawAvroDecoder
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.export.catalogue import METRICS
from monitor.export.collector import TidemarkCollector, build_registry
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.health import HealthState
from tests.unit.fakes import Msg
from tests.unit.fakes import order as fake_order

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "config" / "contracts" / "orders.avsc"
NOW = 1_800_000_000.0
TOPIC = "shop.orders"


def order(event_time: float, seq: int = 1) -> bytes:
    return fake_order(seq, event_time)


def product_config(**overrides: Any) -> ProductConfig:
    values: dict[str, Any] = {
        "name": "orders",
        "owner": "team-checkout",
        "topic": TOPIC,
        "contract": CONTRACT,
        "encoding": "avro-raw",
        "event_time": "occurred_at",
        "max_out_of_orderness": 5.0,
        "idle_timeout": 30.0,
        "max_future_skew": 60.0,
        "freshness": FreshnessObjective(threshold=10.0, target=0.99),
    }
    values.update(overrides)
    return ProductConfig(**values)


def build(config: ProductConfig | None = None) -> Pipeline:
    cfg = config or product_config()
    contract = Contract.load(cfg.contract)
    product = ProductPipeline.build(
        cfg, RawAvroDecoder(contract), make_extractor(contract, cfg.event_time), stuck_after=60
    )
    return Pipeline({cfg.topic: product})


def test_every_event_is_counted_once_as_conforming_or_a_violation() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    batch = [
        Msg(TOPIC, 0, 0, order(NOW - 2)),
        Msg(TOPIC, 0, 1, b"\x01garbage"),
        Msg(TOPIC, 0, 2, None),
        Msg(TOPIC, 0, 3, order(NOW - 1) + b"\x00"),  # trailing byte
        Msg(TOPIC, 0, 4, order(NOW - 30)),  # late: watermark is NOW - 2 - 5
        Msg(TOPIC, 0, 5, order(NOW + 120)),  # future: beyond max_future_skew
    ]
    pipeline.process_batch(batch, NOW)
    stats = pipeline.products[TOPIC].stats
    assert stats.events == 6
    assert stats.conforming == 3
    assert dict(stats.violations) == {"decode_error": 2, "null_value": 1}
    assert stats.late == 1
    assert stats.future == 1
    # latency observed for on-time and late events; the late one is not fresh
    assert stats.latency.count == 2
    assert stats.fresh == 1
    assert stats.conforming + sum(stats.violations.values()) == stats.events


def test_read_back_events_warm_the_clock_without_being_counted() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=3)
    pipeline.process_batch([Msg(TOPIC, 0, i, order(NOW - 50 + i)) for i in range(4)], NOW)
    product = pipeline.products[TOPIC]
    assert product.stats.events == 1  # only offset 3 is new
    assert product.clock.partitions[0].max_event_time == pytest.approx(NOW - 47)


def test_positions_never_move_a_committed_offset_backwards() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=90, warmup_until=100)
    pipeline.process_batch([Msg(TOPIC, 0, 90, order(NOW))], NOW)
    assert list(pipeline.positions()) == []  # 91 < committed 100: nothing to commit
    pipeline.process_batch([Msg(TOPIC, 0, o, order(NOW)) for o in range(91, 101)], NOW)
    assert list(pipeline.positions()) == [(TOPIC, 0, 101)]


def scrape(pipeline: Pipeline, now: float) -> dict[str, list[tuple[dict[str, str], float]]]:
    collector = TidemarkCollector(pipeline, HealthState(liveness_limit=60), clock=lambda: now)
    text = generate_latest(build_registry(collector)).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_freshness_is_computed_at_scrape_time() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(NOW - 3))], NOW)
    first = scrape(pipeline, NOW)["tidemark_freshness_seconds"][0][1]
    later = scrape(pipeline, NOW + 100)["tidemark_freshness_seconds"][0][1]
    assert first == pytest.approx(8.0)  # 3 s old + 5 s out-of-orderness
    assert later == pytest.approx(108.0)  # no event since: it keeps growing


def test_freshness_is_absent_until_a_watermark_is_known() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    samples = scrape(pipeline, NOW)
    assert "tidemark_freshness_seconds" not in samples
    assert "tidemark_watermark_timestamp_seconds" not in samples


def test_revoked_partition_series_disappear() -> None:
    pipeline = build()
    for p in (0, 1):
        pipeline.assign(TOPIC, p, NOW, start=0, warmup_until=0)
        pipeline.process_batch([Msg(TOPIC, p, 0, order(NOW - 1))], NOW)
    before = {s[0]["partition"] for s in scrape(pipeline, NOW)["tidemark_partition_idle"]}
    pipeline.revoke(TOPIC, 1)
    after = {s[0]["partition"] for s in scrape(pipeline, NOW)["tidemark_partition_idle"]}
    assert before == {"0", "1"}
    assert after == {"0"}


def test_every_reason_is_exported_from_the_start_at_zero() -> None:
    samples = scrape(build(), NOW)
    reasons = {labels["reason"]: v for labels, v in samples["tidemark_contract_violations_total"]}
    assert set(reasons) == {
        "decode_error",
        "unknown_schema",
        "null_value",
        "bad_framing",
        "incompatible_schema",
        "payload_too_large",
        "unsafe_schema",
        "nesting_too_deep",
        "missing_event_time",
        "bad_event_time",
    }
    assert set(reasons.values()) == {0.0}


def test_latency_histogram_has_the_freshness_threshold_as_a_bucket() -> None:
    samples = scrape(build(product_config(freshness=FreshnessObjective(threshold=42))), NOW)
    edges = {labels["le"] for labels, _ in samples["tidemark_event_latency_seconds_bucket"]}
    assert "42.0" in edges


def test_scrape_exposes_only_catalogued_names() -> None:
    known = {s for m in METRICS for s in m.sample_names}
    samples = scrape(build(), NOW)
    tidemark = {n for n in samples if n.startswith("tidemark_")}
    assert tidemark <= known, tidemark - known


def test_settings_objectives_are_exported() -> None:
    settings = Settings(products=[product_config()])
    samples = scrape(build(settings.products[0]), NOW)
    objectives = {labels["sli"]: v for labels, v in samples["tidemark_slo_objective_ratio"]}
    assert objectives == {"freshness": 0.99, "conformance": 0.999}


def test_partition_watermark_is_not_exported_while_reading_back() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=10)
    pipeline.high_watermarks = {TOPIC: {0: 12}}
    pipeline.process_batch([Msg(TOPIC, 0, i, order(NOW - 3600 + i)) for i in range(5)], NOW)
    samples = scrape(pipeline, NOW)
    assert "tidemark_partition_watermark_timestamp_seconds" not in samples
    assert "tidemark_freshness_seconds" not in samples  # no hour-old false staleness
    pipeline.process_batch([Msg(TOPIC, 0, i, order(NOW - 12 + i)) for i in range(5, 12)], NOW)
    samples = scrape(pipeline, NOW)
    assert samples["tidemark_partition_watermark_timestamp_seconds"][0][1] == NOW - 1 - 5
    assert samples["tidemark_freshness_seconds"][0][1] == pytest.approx(6.0)


def test_scrape_does_not_wait_for_a_slow_batch() -> None:
    """A batch stuck on a hanging registry holds the lock; the scrape serves its last copy."""
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(NOW - 3))], NOW)
    collector = TidemarkCollector(
        pipeline, HealthState(liveness_limit=60), clock=lambda: clock[0], lock_timeout=0.05
    )
    registry = build_registry(collector)
    clock = [NOW]
    generate_latest(registry)  # first scrape: a copy to fall back on
    clock[0] = NOW + 50
    with pipeline.lock:  # the loop is inside a batch
        text = generate_latest(registry).decode()
    samples = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels or s.labels.get("product") == "orders"
    }
    assert samples["tidemark_cached_scrapes_total"] == 1
    assert samples["tidemark_freshness_seconds"] == pytest.approx(58.0)  # still grows
