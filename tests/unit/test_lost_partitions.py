"""Partitions lost in a broker outage stay visible as orphans, and go when another owns them.

The shipped freshness rules compute from partition series; these tests pin that a lost
assignment keeps those series (freshness growing with the clock), that a new assignment
without a partition releases it, and that one with it carries the watermark over.
"""

from __future__ import annotations

import pytest

from monitor.watermarks import ClockSettings, ProductClock
from tests.unit.test_pipeline import NOW, TOPIC, Msg, build, order, scrape

SETTINGS = ClockSettings(max_out_of_orderness=5.0, idle_timeout=60.0, max_future_skew=30.0)


def product_with_events(*partitions: int) -> ProductClock:
    product = ProductClock(SETTINGS)
    for p in partitions:
        clock = product.assign(p, NOW, position=10, warm_until=0)
        clock.observe(NOW - 10 * (p + 1), NOW)
    return product


# --- the clock ----------------------------------------------------------------------


def test_lost_partition_keeps_its_watermark_and_the_product_watermark_holds() -> None:
    product = product_with_events(0, 1)
    before = product.watermark(NOW, {0: 10, 1: 10})
    product.lose(0, NOW + 1, 10)
    product.lose(1, NOW + 1, 10)
    assert product.partitions == {}
    assert {p: o.watermark for p, o in product.orphans.items()} == {0: NOW - 15, 1: NOW - 25}
    assert product.watermark(NOW + 500, {}) == before  # still known: freshness grows


def test_revoked_partition_leaves_nothing_behind() -> None:
    product = product_with_events(0)
    product.revoke(0)
    assert product.orphans == {}
    assert product.watermark(NOW, {}) is None


def test_lost_partition_without_a_watermark_leaves_no_orphan() -> None:
    product = ProductClock(SETTINGS)
    product.assign(0, NOW, position=0)
    product.lose(0, NOW, 10)
    assert product.orphans == {}
    assert product.watermark(NOW, {}) is None


def test_lost_partition_still_reading_back_leaves_no_orphan() -> None:
    """Its watermark is partial (not exported): keeping it would be a false staleness."""
    product = ProductClock(SETTINGS)
    clock = product.assign(0, NOW, position=0, warm_until=100)
    clock.warm(NOW - 3600, NOW)
    clock.advance_position(50, NOW)
    product.lose(0, NOW, 200)
    assert product.orphans == {}


def test_idleness_is_frozen_as_it_was_when_lost() -> None:
    product = product_with_events(0, 1)
    product.partitions[0].last_event_at = NOW + 119  # 1 quiet for 2 min and caught up
    product.lose(0, NOW + 120, 10)
    product.lose(1, NOW + 120, 10)
    assert (product.orphans[0].idle, product.orphans[1].idle) == (False, True)


def test_a_new_assignment_releases_orphans_it_does_not_include() -> None:
    product = product_with_events(0, 1)
    product.lose(0, NOW, 10)
    product.lose(1, NOW, 10)
    assert product.keep_orphans({1}) == [0]
    assert set(product.orphans) == {1}
    assert product.keep_orphans(set()) == [1]
    assert product.watermark(NOW, {}) is None  # nothing left here: no product watermark


def test_reassigned_partition_carries_its_watermark_over_and_is_not_settling() -> None:
    product = product_with_events(0)
    product.lose(0, NOW, 10)
    clock = product.assign(0, NOW + 30, position=0, warm_until=10)
    assert product.orphans == {}
    assert clock.watermark == NOW - 15
    assert not clock.is_settling(high_watermark=12)  # read-back cannot make it partial
    clock.warm(NOW - 3600, NOW + 30)  # an old read-back event does not move it back
    assert clock.watermark == NOW - 15
    assert product.watermark(NOW + 30, {0: 12}) == NOW - 15


# --- the pipeline and what a scrape shows ---------------------------------------------


def _values(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, float]:
    return {labels["partition"]: value for labels, value in samples.get(name, [])}


def test_lost_partitions_stay_exported_and_freshness_keeps_growing() -> None:
    pipeline = build()
    for p in (0, 1):
        pipeline.assign(TOPIC, p, NOW, start=0, warmup_until=0)
        pipeline.process_batch([Msg(TOPIC, p, 0, order(NOW - 1 - p))], NOW)
    pipeline.high_watermarks = {TOPIC: {0: 1, 1: 1}}
    pipeline.lose(TOPIC, 0, NOW + 1)
    pipeline.lose(TOPIC, 1, NOW + 1)
    assert not pipeline.owns_partitions()
    assert list(pipeline.positions()) == []  # nothing is committed for a lost partition

    samples = scrape(pipeline, NOW + 600)
    watermarks = _values(samples, "tidemark_partition_watermark_timestamp_seconds")
    assert watermarks == {"0": NOW - 1 - 5, "1": NOW - 2 - 5}
    assert _values(samples, "tidemark_partition_orphaned") == {"0": 1.0, "1": 1.0}
    assert samples["tidemark_assigned_partitions"][0][1] == 0
    assert "tidemark_consumer_lag_messages" not in samples  # no longer read: no lag
    # the product watermark is the older of the two (neither was idle when lost)
    assert samples["tidemark_freshness_seconds"][0][1] == pytest.approx(600 + 2 + 5)


def test_released_orphans_disappear_from_the_scrape() -> None:
    pipeline = build()
    for p in (0, 1):
        pipeline.assign(TOPIC, p, NOW, start=0, warmup_until=0)
        pipeline.process_batch([Msg(TOPIC, p, 0, order(NOW - 1))], NOW)
        pipeline.lose(TOPIC, p, NOW)
    assert pipeline.keep_orphans([(TOPIC, 1)]) == [(TOPIC, 0)]
    samples = scrape(pipeline, NOW)
    assert _values(samples, "tidemark_partition_orphaned") == {"1": 1.0}
    pipeline.keep_orphans([])
    samples = scrape(pipeline, NOW)
    assert "tidemark_partition_watermark_timestamp_seconds" not in samples
    assert "tidemark_freshness_seconds" not in samples


def test_reassigned_partition_is_exported_without_a_gap_while_reading_back() -> None:
    pipeline = build()
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg(TOPIC, 0, i, order(NOW - 10 + i)) for i in range(10)], NOW)
    pipeline.high_watermarks = {TOPIC: {0: 10}}
    pipeline.lose(TOPIC, 0, NOW)
    pipeline.assign(TOPIC, 0, NOW + 60, start=0, warmup_until=10)  # read-back from 0
    pipeline.process_batch([Msg(TOPIC, 0, 0, order(NOW - 10))], NOW + 60)
    samples = scrape(pipeline, NOW + 60)
    assert _values(samples, "tidemark_partition_watermark_timestamp_seconds") == {"0": NOW - 1 - 5}
    assert _values(samples, "tidemark_partition_orphaned") == {"0": 0.0}
    assert samples["tidemark_assigned_partitions"][0][1] == 1
    assert samples["tidemark_freshness_seconds"][0][1] == pytest.approx(66.0)
