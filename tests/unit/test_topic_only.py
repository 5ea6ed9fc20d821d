"""Topic-only mode (encoding: none): no contract, the Kafka timestamp is the event time."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config import ProductConfig, Settings
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.build import build_pipeline
from tests.unit.test_pipeline import NOW, Msg, scrape

TOPIC = "clicks"
CONFORMANCE_SERIES = (
    "tidemark_events_conforming_total",
    "tidemark_contract_violations_total",
    "tidemark_schema_drift_events_total",
    "tidemark_partitions_held",
)


def topic_only(**overrides: Any) -> ProductConfig:
    values: dict[str, Any] = {
        "name": "clicks",
        "owner": "team-web",
        "topic": TOPIC,
        "encoding": "none",
        "idle_timeout": 30.0,
        "freshness": {"threshold": 10.0},
    }
    values.update(overrides)
    return ProductConfig(**values)


def build(config: ProductConfig | None = None) -> Pipeline:
    settings = Settings(products=[config or topic_only()])
    return build_pipeline(settings).pipeline


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def test_topic_only_needs_no_contract_and_reads_no_payload() -> None:
    pipeline = build()
    product = pipeline.products[TOPIC]
    assert product.decoder is None
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    # Payloads that no decoder could read: topic-only never looks at them.
    batch = [
        Msg(TOPIC, 0, 0, b"\x01garbage", ms(NOW - 2)),
        Msg(TOPIC, 0, 1, None, ms(NOW - 1)),
        Msg(TOPIC, 0, 2, b"", ms(NOW - 30)),  # late
        Msg(TOPIC, 0, 3, b"x", ms(NOW + 120)),  # future
        Msg(TOPIC, 0, 4, b"x", -1),  # no timestamp: counted, not timed
    ]
    pipeline.process_batch(batch, NOW)
    stats = product.stats
    assert stats.events == 5
    assert stats.late == 1
    assert stats.future == 1
    assert stats.latency.count == 3
    assert stats.fresh == 2
    assert stats.processing_errors == 0
    assert product.clock.partitions[0].max_event_time == pytest.approx(NOW - 1)
    assert list(pipeline.positions()) == [(TOPIC, 0, 5)]


def test_topic_only_read_back_warms_the_clock_without_counting() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=3)
    pipeline.process_batch([Msg(TOPIC, 0, i, b"", ms(NOW - 50 + i)) for i in range(4)], NOW)
    product = pipeline.products[TOPIC]
    assert product.stats.events == 1
    assert product.clock.partitions[0].max_event_time == pytest.approx(NOW - 47)


def test_topic_only_exports_time_series_but_no_conformance() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg(TOPIC, 0, 0, b"?", ms(NOW - 3))], NOW)
    series = scrape(pipeline, NOW)
    assert series["tidemark_events_total"][0][1] == 1
    assert series["tidemark_freshness_seconds"][0][1] == pytest.approx(8.0)  # 3 + 5 ooo
    assert "tidemark_partition_last_event_age_seconds" in series
    for name in CONFORMANCE_SERIES:
        assert name not in series, name
    slis = {labels["sli"] for labels, _ in series["tidemark_slo_objective_ratio"]}
    assert slis == {"freshness"}


def test_expected_volume_completeness_works_in_topic_only_mode() -> None:
    cfg = topic_only(
        completeness={"window": 10.0, "expected": {"min_events_per_window": 3}},
        max_out_of_orderness=0.0,
    )
    pipeline = build(cfg)
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    base = (NOW // 10) * 10 - 100
    # The first window seen is partial (joined mid-way) and is not judged.
    pipeline.process_batch([Msg(TOPIC, 0, 0, b"", ms(base - 5))], NOW)
    pipeline.process_batch([Msg(TOPIC, 0, i, b"", ms(base + i)) for i in range(1, 4)], NOW)
    pipeline.process_batch([Msg(TOPIC, 0, 4, b"", ms(base + 90))], NOW)
    pipeline.advance(NOW)
    tracker = pipeline.products[TOPIC].completeness
    assert tracker is not None
    snap = tracker.snapshot()
    assert snap.expected_events_total >= 3
    assert snap.observed_events_total >= 3
    assert snap.windows_closed_total.get("complete", 0) >= 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contract": "x.avsc"}, "remove 'contract'"),
        ({"event_time": "occurred_at"}, "Kafka record timestamp"),
        (
            {
                "completeness": {
                    "sequence": {"producer_field": "p", "sequence_field": "s"},
                }
            },
            "expected-volume",
        ),
    ],
)
def test_topic_only_refuses_what_needs_decoding(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        topic_only(**overrides)


def test_other_encodings_still_need_contract_and_event_time() -> None:
    with pytest.raises(ValueError, match="contract required for encoding 'avro-raw'"):
        ProductConfig(name="a", owner="o", topic="t", encoding="avro-raw")
    # A contract file says nothing about event time (a subject or ODCS file could).
    with pytest.raises(ValueError, match="event_time"):
        ProductConfig(name="a", owner="o", topic="t", encoding="avro-raw", contract="c.avsc")


def test_topic_only_refuses_rules_it_could_not_evaluate() -> None:
    with pytest.raises(ValueError, match="does not decode"):
        ProductConfig(
            name="a",
            owner="o",
            topic="t",
            encoding="none",
            rules=[{"name": "positive", "cel": "message.amount > 0"}],
        )


def test_kafka_timestamp_event_time_is_accepted_in_topic_only() -> None:
    assert topic_only(event_time="kafka-timestamp").topic_only


def test_topic_only_product_is_a_product_pipeline() -> None:
    product = build().products[TOPIC]
    assert isinstance(product, ProductPipeline)
    assert product.extract_event_time is None


def test_partition_series_false_keeps_product_level_series_only() -> None:
    pipeline = build(topic_only(partition_series=False))
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg(TOPIC, 0, 0, b"", ms(NOW - 1))], NOW)
    series = scrape(pipeline, NOW)
    assert not [n for n, s in series.items() for labels, _ in s if "partition" in labels]
    assert series["tidemark_events_total"][0][1] == 1
    assert "tidemark_watermark_timestamp_seconds" in series
