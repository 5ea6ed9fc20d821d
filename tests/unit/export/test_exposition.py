"""The direct renderer writes the bytes prometheus-client writes for the same snapshot.

/metrics renders Tidemark's families straight from the snapshot (fast at 100,000
series); prometheus-client's encoders over the Metric objects of
`collector.render` are the reference, in both formats Prometheus negotiates.
"""

from __future__ import annotations

import importlib.util
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from monitor.config import ProductConfig
from monitor.export.catalogue import MetricSpec
from monitor.export.collector import TidemarkCollector, build_registry, render
from monitor.export.exposition import Renderer, _family
from monitor.export.server import MetricsServer
from monitor.export.snapshot import Snapshot
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.health import HealthState

REPO = Path(__file__).resolve().parents[3]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_scrape_build", REPO / "bench/scrape.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rich_pipeline() -> tuple[Pipeline, HealthState]:
    """Contracts with completeness, a topic-only product, an orphan, held partitions, errors."""
    pipeline: Pipeline = _bench().build(6, 3, True)  # type: ignore[attr-defined]
    now = time.time()
    topic_only = ProductPipeline.build(
        ProductConfig(name="plain.topic", owner="ops", topic="plain.topic", encoding="none"),
        None,
        None,
        60,
    )
    pipeline.add_discovered({"plain.topic": topic_only})
    pipeline.assign("plain.topic", 0, now, start=0, warmup_until=0)
    pipeline.lose("bench.topic-1", 2, now)
    health = HealthState(liveness_limit=60)
    health.loop.kafka_errors["_TRANSPORT"] += 3
    health.held = {("bench.topic-0", "registry_unreachable"): 2}
    return pipeline, health


class _Fixed(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snap = snapshot

    def collect(self) -> Iterator[Metric]:
        return render(self.snap)


def _reference(snapshot: Snapshot, om: bool) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(snapshot))
    if om:
        return om_exposition.generate_latest(registry).decode().removesuffix("# EOF\n")
    return generate_latest(registry).decode()


@pytest.mark.parametrize("om", [False, True], ids=["text-0.0.4", "openmetrics-1.0"])
def test_direct_rendering_is_byte_identical_to_prometheus_client(om: bool) -> None:
    pipeline, health = _rich_pipeline()
    snapshot = TidemarkCollector(pipeline, health).snapshot()
    renderer = Renderer()
    first = renderer.render(snapshot, om)
    assert first == _reference(snapshot, om)
    assert "tidemark_completeness" in first and 'partition="2"' in first  # rich enough
    assert renderer.render(snapshot, om) == first  # cached label strings give the same bytes
    bench = _bench()
    now = time.time()
    more = [
        bench.Msg(
            "bench.topic-3", 1, 100, bench.order(bench.Contract.load(bench.CONTRACT), now, 1, 100)
        )  # type: ignore[attr-defined]
    ]
    pipeline.process_batch(more, now)
    changed = TidemarkCollector(pipeline, health).snapshot()
    again = renderer.render(changed, om)
    assert again == _reference(changed, om)  # a changed histogram is not served from cache
    assert again != first
    assert len(first.splitlines()) > 500


def test_label_values_and_help_are_escaped_like_prometheus_client() -> None:
    spec = MetricSpec(
        name="tidemark_escape_test",
        type="counter",
        labels=("zeta", "alpha"),
        help='back\\slash "quoted"\nnext line',
        samples=lambda s: [(['a"b', "c\\d\ne"], 1), (["x,y", ""], 2.5)],
    )
    hist = MetricSpec(
        name="tidemark_escape_hist",
        type="histogram",
        labels=("product", "a"),
        help="h",
        samples=lambda s: [],
    )
    snapshot = Snapshot(0.0, [], [], None)  # type: ignore[arg-type]
    renderer = Renderer([_family(spec), _family(hist)])
    for om in (False, True):
        expected = _reference_for([spec, hist], snapshot, om)
        assert renderer.render(snapshot, om) == expected


def _reference_for(specs: list[MetricSpec], snapshot: Snapshot, om: bool) -> str:
    from monitor.export import collector as collector_module

    class _Specs(Collector):
        def collect(self) -> Iterator[Metric]:
            for spec in specs:
                family = collector_module._family(spec)
                for labels, value in spec.samples(snapshot):
                    family.add_metric(labels, value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Specs())
    if om:
        return om_exposition.generate_latest(registry).decode().removesuffix("# EOF\n")
    return generate_latest(registry).decode()


@pytest.mark.parametrize(
    "accept",
    ["", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"],
    ids=["text", "openmetrics"],
)
def test_the_server_serves_the_direct_rendering_with_the_process_families(accept: str) -> None:
    pipeline, health = _rich_pipeline()
    now = time.time()
    registry = build_registry(TidemarkCollector(pipeline, health, clock=lambda: now))
    server = MetricsServer(registry, health, "127.0.0.1", 0)
    server.start()
    try:
        request = urllib.request.Request(server.url(), headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = resp.read().decode()
            content_type = resp.headers["Content-Type"]
    finally:
        server.stop()
    om = bool(accept)
    assert content_type.startswith("application/openmetrics-text" if om else "text/plain")
    snapshot = TidemarkCollector(pipeline, health, clock=lambda: now).snapshot()
    ours = _reference(snapshot, om)
    assert body.startswith(ours)
    rest = body[len(ours) :]
    assert "process_cpu_seconds" in rest and "python_info" in rest
    assert body.endswith("# EOF\n") == om
    parser = om_parser.text_string_to_metric_families if om else None
    families = list(parser(body) if parser else text_string_to_metric_families(body))
    assert len(families) > 60


def test_numbers_are_formatted_like_float_to_go_string() -> None:
    import math
    import random

    from prometheus_client.utils import floatToGoString

    from monitor.export.exposition import _number

    rng = random.Random(7)
    values: list[float] = [True, False, 0, 1, 999_999, 1_000_000, 1_234_567, -5, -1_234_567]
    values += [10**17, 0.0, -0.0, 1e-7, 1.5, 1_796_133_199.0276017, 1e6, 999_999.5, 1e22]
    values += [math.inf, -math.inf, math.nan, 2**53 + 1]
    values += [rng.uniform(-1e12, 1e12) for _ in range(2000)]
    values += [rng.randint(-(10**12), 10**12) for _ in range(2000)]
    values += [rng.random() * 10 ** rng.randint(-10, 20) for _ in range(2000)]
    assert [_number(v) for v in values] == [floatToGoString(v) for v in values]


@pytest.mark.parametrize("om", [False, True], ids=["text-0.0.4", "openmetrics-1.0"])
def test_a_products_cached_lines_are_rerendered_when_and_only_when_its_view_changes(
    om: bool,
) -> None:
    pipeline, health = _rich_pipeline()
    clock = [time.time()]
    collector = TidemarkCollector(pipeline, health, clock=lambda: clock[0])
    renderer = Renderer()
    snapshot = collector.snapshot()
    first = renderer.render(snapshot, om)
    assert first == _reference(snapshot, om)
    assert renderer.rendered_products == len(snapshot.products) == 7

    # A fresh copy of the same state: every product's lines come from the cache.
    same = collector.snapshot()
    assert renderer.render(same, om) == first
    assert renderer.rendered_products == 0

    # The clock moves: ages and freshness (rendered every scrape) follow it, the rest is reused.
    clock[0] += 5
    later = collector.snapshot()
    moved = renderer.render(later, om)
    assert moved == _reference(later, om)
    assert moved != first
    assert renderer.rendered_products == 0

    # One event on one product: that product alone is rendered again, with its new values.
    bench = _bench()
    contract = bench.Contract.load(bench.CONTRACT)  # type: ignore[attr-defined]
    event = bench.order(contract, clock[0], 1, 100)  # type: ignore[attr-defined]
    pipeline.process_batch([bench.Msg("bench.topic-3", 1, 100, event)], clock[0])  # type: ignore[attr-defined]
    changed = collector.snapshot()
    again = renderer.render(changed, om)
    assert again == _reference(changed, om)
    assert 'tidemark_events_total{product="product-3",topic="bench.topic-3"} 61.0' in again
    assert 'tidemark_events_total{product="product-3",topic="bench.topic-3"} 60.0' in moved
    assert renderer.rendered_products == 1

    # A product that went away leaves the cache with its series.
    del pipeline.products["bench.topic-5"]
    gone = collector.snapshot()
    assert 'topic="bench.topic-5"' not in renderer.render(gone, om)
    assert len(renderer._products) == 6
