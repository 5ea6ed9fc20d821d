"""Discovered products join and leave completeness sharing while the daemon runs.

The Kafka clients of Sharing are built but never used here (nothing connects until
they are asked to); what is checked is its bookkeeping, which follows the pipeline's
products at each assignment and commit round: a product discovery adds is shared, and
the shared-topic partition holding its records is read again; a product the pipeline
drops (its topic deleted, seen by the lag thread) leaves; a product built again for
the same topic replaces the old one. The real-broker proof is
tests/faults/test_replicas_discovered.py.
"""

from __future__ import annotations

import zlib

from monitor.completeness.config import CompletenessConfig, ExpectedConfig, SharingConfig
from monitor.config import ProductConfig
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.sharing import Sharing

PARTITIONS = 4


def product(topic: str, *, windows: bool = True) -> ProductPipeline:
    completeness = (
        CompletenessConfig(window=60, expected=ExpectedConfig(min_events_per_window=10))
        if windows
        else None
    )
    config = ProductConfig(
        name=topic, owner="platform", topic=topic, encoding="none", completeness=completeness
    )
    return ProductPipeline.build(config, None, None, 60)


def sharing_of(pipeline: Pipeline) -> Sharing:
    sharing = Sharing(
        SharingConfig(enabled=True),
        {"bootstrap.servers": "127.0.0.1:9"},
        pipeline,
        discovers_windows=True,
    )
    sharing._partitions = PARTITIONS  # learnt from the broker at start()
    return sharing


def test_a_discovered_product_is_shared_at_its_assignment_and_its_records_read_again() -> None:
    pipeline = Pipeline({})
    sharing = sharing_of(pipeline)
    found = {"d.clicks": product("d.clicks"), "d.plain": product("d.plain", windows=False)}
    with pipeline.lock:
        pipeline.add_discovered(found)
    assert sharing.assigned([("d.clicks", 0), ("d.plain", 0)], {"d.clicks": 1}) == {}
    assert list(sharing.by_topic) == ["d.clicks"]  # the other judges no windows
    assert sharing.by_name["d.clicks"].product is found["d.clicks"]
    assert sharing._rewind == {zlib.crc32(b"d.clicks") % PARTITIONS}
    sharing._rewind.clear()
    assert sharing.publish(0.0)  # the same products: nothing new to read
    assert sharing._rewind == set()


def test_a_dropped_product_leaves_at_the_next_publish_and_a_rebuilt_one_replaces_it() -> None:
    pipeline = Pipeline({})
    sharing = sharing_of(pipeline)
    first = {"d.clicks": product("d.clicks")}
    with pipeline.lock:
        pipeline.add_discovered(first)
    assert sharing.publish(0.0)  # nothing counted: nothing sent
    assert sharing.by_topic["d.clicks"].product is first["d.clicks"]
    with pipeline.lock:
        pipeline.forget_topics(["d.clicks"])  # what the lag thread does for a deleted topic
    assert sharing.publish(0.0)
    assert sharing.by_topic == {} and sharing.by_name == {}
    again = {"d.clicks": product("d.clicks")}  # the topic is created again
    with pipeline.lock:
        pipeline.add_discovered(again)
    assert sharing.publish(0.0)
    assert sharing.by_topic["d.clicks"].product is again["d.clicks"]
    third = {"d.clicks": product("d.clicks")}  # deleted and found again between rounds
    with pipeline.lock:
        pipeline.forget_topics(["d.clicks"])
        pipeline.add_discovered(third)
    assert sharing.publish(0.0)
    assert sharing.by_topic["d.clicks"].product is third["d.clicks"]
    assert sharing.by_name["d.clicks"].product is third["d.clicks"]


def test_sharing_with_nothing_to_share_and_no_discovery_starts_nothing() -> None:
    sharing = Sharing(
        SharingConfig(enabled=True), {"bootstrap.servers": "127.0.0.1:9"}, Pipeline({})
    )
    sharing.start()  # nothing to share and nothing to discover: no topic, no thread
    assert sharing._thread is None
