"""The discover: section without a broker: which topics, which names, which settings.

Registry-backed planning runs against a real HTTP registry in
tests/integration/test_daemon_discovery.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from monitor.config import DiscoverConfig, Settings
from monitor.export.catalogue import METRICS
from monitor.pipeline import Pipeline
from monitor.runtime.build import build_pipeline
from monitor.runtime.discovery import MAX_NAME, Discoverer, product_name, subscription_patterns
from tests.unit.test_pipeline import NOW, Msg, scrape


def discoverer(**config: Any) -> Discoverer:
    return Discoverer(DiscoverConfig(**config))


def test_product_names_are_label_safe_and_bounded() -> None:
    assert product_name("shop.orders-v1_x") == "shop.orders-v1_x"
    assert product_name("_private") == "t_private"
    long_a, long_b = "a" * 240 + "1", "a" * 240 + "2"
    assert len(product_name(long_a)) == MAX_NAME
    assert product_name(long_a) != product_name(long_b)
    assert product_name("we ird/topic") == "we_ird_topic"


def test_internal_and_control_topics_are_not_discovered_by_default() -> None:
    d = Discoverer(DiscoverConfig(), explicit={"orders"}, control_topics={"manifests"})
    assert d.wanted("clicks")
    for topic in ("__consumer_offsets", "_schemas", "app-store-changelog", "orders", "manifests"):
        assert not d.wanted(topic), topic
    assert Discoverer(DiscoverConfig(exclude_internal=False)).wanted("_schemas")


def test_include_and_exclude_patterns_match_from_the_start() -> None:
    d = discoverer(include=["shop\\.", "web\\..*"], exclude=[".*\\.tmp$"])
    assert d.wanted("shop.orders")
    assert d.wanted("web.clicks")
    assert not d.wanted("web.clicks.tmp")
    assert not d.wanted("old.shop.orders")  # not from the start
    assert subscription_patterns(d.config) == ["^shop\\.", "^web\\..*"]


def test_owner_rules_first_match_wins_then_defaults() -> None:
    d = discoverer(
        owners=[
            {"pattern": "shop\\.pay", "owner": "payments", "tier": "gold"},
            {"pattern": "shop\\.", "owner": "shop"},
        ],
        defaults={"owner": "platform", "idle_timeout": 120, "freshness": {"threshold": 30}},
    )
    pay = d.plan("shop.payments").config
    assert (pay.owner, pay.tier, pay.encoding) == ("payments", "gold", "none")
    orders = d.plan("shop.orders").config
    assert (orders.owner, orders.tier) == ("shop", "standard")
    other = d.plan("misc").config
    assert other.owner == "platform"
    assert other.idle_timeout == 120
    assert other.freshness.threshold == 30
    assert other.topic_only and other.contract is None


def test_max_products_leaves_the_rest_out_and_logs_each_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = discoverer(max_products=2)
    assert d.admit("a", 0) and d.admit("b", 1)
    assert not d.admit("c", 2)
    assert not d.admit("c", 2)
    assert not d.admit("d", 2)
    assert d.left_out == {"c", "d"}
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("discovered_topic_left_out") == 2


def test_discover_alone_is_a_valid_config_and_nothing_is_not() -> None:
    assert Settings(discover={}).products == []
    with pytest.raises(ValidationError, match="nothing to monitor"):
        Settings()
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        Settings(discover={"include": ["("]})
    with pytest.raises(ValidationError, match="expected-volume"):
        Settings(
            discover={
                "defaults": {
                    "completeness": {"sequence": {"producer_field": "p", "sequence_field": "s"}}
                }
            }
        )


def built(**discover: Any) -> Pipeline:
    products = discover.pop("products", [])
    b = build_pipeline(Settings(discover=discover, products=products))
    assert b.discovery is not None
    b.pipeline.add_discovered(b.discovery({"clicks", "views", "__consumer_offsets"}))
    return b.pipeline


def test_assigned_topics_become_topic_only_products_and_metrics_say_how_many() -> None:
    pipeline = built()
    assert sorted(pipeline.products) == ["clicks", "views"]
    assert pipeline.subscription == ["clicks", "views", "^.*"]
    pipeline.assign("clicks", 0, NOW, start=0, warmup_until=0)
    pipeline.process_batch([Msg("clicks", 0, 0, b"x", int((NOW - 1) * 1000))], NOW)
    series = scrape(pipeline, NOW)
    assert series["tidemark_discovered_products"] == [({}, 2.0)]
    assert series["tidemark_discovery_left_out_topics"] == [({}, 0.0)]
    assert ({"product": "clicks", "topic": "clicks"}, 1.0) in series["tidemark_events_total"]


def test_products_beyond_the_bound_are_counted_in_a_metric() -> None:
    pipeline = built(max_products=1)
    assert list(pipeline.products) == ["clicks"]
    assert scrape(pipeline, NOW)["tidemark_discovery_left_out_topics"] == [({}, 1.0)]


def test_explicit_products_win_for_their_topics() -> None:
    explicit = {"name": "my-clicks", "owner": "me", "topic": "clicks", "encoding": "none"}
    pipeline = built(products=[explicit])
    assert pipeline.products["clicks"].config.name == "my-clicks"
    assert pipeline.discovered == {"views"}


def test_discovered_topics_outside_a_new_assignment_are_forgotten() -> None:
    pipeline = built()
    pipeline.assign("clicks", 0, NOW, start=0, warmup_until=0)
    pipeline.assign("views", 0, NOW, start=0, warmup_until=0)
    pipeline.revoke("clicks", 0)
    pipeline.revoke("views", 0)
    pipeline.assign("clicks", 0, NOW, start=0, warmup_until=0)  # views was deleted
    assert pipeline.forget_discovered([("clicks", 0)]) == ["views"]
    assert list(pipeline.products) == ["clicks"]
    assert all(
        labels.get("topic") != "views" for s in scrape(pipeline, NOW).values() for labels, _ in s
    )


def test_without_discover_the_discovery_metrics_are_absent() -> None:
    settings = Settings(products=[{"name": "c", "owner": "o", "topic": "c", "encoding": "none"}])
    series = scrape(build_pipeline(settings).pipeline, NOW)
    assert "tidemark_discovered_products" not in series
    assert {m.name for m in METRICS} >= {"tidemark_discovered_products"}


def test_the_lag_probe_forgets_topics_missing_from_two_metadata_answers_in_a_row() -> None:
    from monitor.runtime.health import HealthState
    from monitor.runtime.lag import LagTracker

    pipeline = built()
    tracker = LagTracker(
        {"bootstrap.servers": "127.0.0.1:1"}, pipeline, HealthState(liveness_limit=60), 1.0
    )
    try:
        tracker._forget_deleted({"clicks"})
        assert sorted(pipeline.products) == ["clicks", "views"]  # once is not proof
        tracker._forget_deleted({"clicks"})
        assert sorted(pipeline.products) == ["clicks"]
        assert pipeline.discovered == {"clicks"}
    finally:
        tracker.stop()


def test_dead_letter_topics_are_marked_by_pattern() -> None:
    d = discoverer()
    assert d.plan("shop.orders.dlq").config.dead_letter
    assert d.plan("shop.orders-dead-letter").config.dead_letter
    assert not d.plan("shop.orders").config.dead_letter
    settings = Settings(discover={})
    b = build_pipeline(settings)
    assert b.discovery is not None
    b.pipeline.add_discovered(b.discovery({"a.dlq", "a"}))
    info = scrape(b.pipeline, NOW)["tidemark_dead_letter_topic_info"]
    assert info == [({"product": "a.dlq", "topic": "a.dlq"}, 1.0)]
