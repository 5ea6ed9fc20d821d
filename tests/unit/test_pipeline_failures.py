"""An event whose processing raises: counted, logged sparingly, skipped, then committable.

Positions (what the loop commits) move past an event only once it is counted, or
once its failure is counted in processing_errors.
"""

from __future__ import annotations

from typing import Any

import pytest

import monitor.pipeline
from monitor.completeness.config import CompletenessConfig
from monitor.completeness.manifests import Manifest, encode_manifest
from monitor.contract.eventtime import make_extractor
from monitor.contract.model import Contract
from monitor.pipeline import Pipeline, ProductPipeline
from tests.unit.fakes import BOOM, CONTRACT, NOW, Msg, RaisingDecoder, order, orders_config

TOPIC, CONTROL = "shop.orders", "shop.manifests"


class WatchingDecoder(RaisingDecoder):
    """Records the partition's position (what positions() offers to commit) while decoding."""

    pipeline: Pipeline
    seen: list[int]

    def decode(self, payload: bytes | None) -> Any:
        self.seen.append(self.pipeline.products[TOPIC].clock.partitions[0].position)
        return super().decode(payload)


def build() -> tuple[Pipeline, WatchingDecoder]:
    config = orders_config(
        TOPIC,
        completeness=CompletenessConfig(window=60, manifests={"topic": CONTROL}),  # type: ignore[arg-type]
    )
    contract = Contract.load(CONTRACT)
    decoder = WatchingDecoder(contract)
    product = ProductPipeline.build(
        config, decoder, make_extractor(contract, "occurred_at"), stuck_after=60
    )
    pipeline = Pipeline({TOPIC: product})
    decoder.pipeline, decoder.seen = pipeline, []
    pipeline.assign(TOPIC, 0, NOW, start=0, warmup_until=0)
    pipeline.assign(CONTROL, 0, NOW, start=0, warmup_until=0)
    return pipeline, decoder


def test_a_position_moves_past_an_event_only_after_it_is_counted() -> None:
    pipeline, decoder = build()
    pipeline.process_batch([Msg(TOPIC, 0, o, order(o)) for o in range(3)], NOW)
    assert decoder.seen == [0, 1, 2]  # while offset o is processed, o is not committable
    assert (TOPIC, 0, 3) in list(pipeline.positions())


class Recorder:
    """Stands in for the module's structlog logger (capture_logs misses cached loggers)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


def test_a_raising_event_is_counted_as_a_processing_error_and_the_partition_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, _ = build()
    recorder = Recorder()
    monkeypatch.setattr(monitor.pipeline, "log", recorder)
    values = [order(0), BOOM, order(2), BOOM, BOOM, BOOM, order(6)]
    pipeline.process_batch([Msg(TOPIC, 0, o, v) for o, v in enumerate(values)], NOW)
    logs = recorder.events
    stats = pipeline.products[TOPIC].stats
    assert stats.processing_errors == 4
    assert stats.events == 3  # the others, as usual; a failure is not an event class
    assert (TOPIC, 0, 7) in list(pipeline.positions())
    failed = [e for e in logs if e["event"] == "event_processing_failed"]
    assert [e["failures"] for e in failed] == [1, 2, 4]  # 1st, 2nd, 4th: never a flood
    assert failed[0]["offset"] == 1 and failed[0]["error_type"] == "RuntimeError"
    assert all("payload" not in str(e) for e in failed)  # the exception text is not logged


def test_a_raising_manifest_is_counted_and_its_position_moves_on() -> None:
    pipeline, _ = build()
    tracker = pipeline.products[TOPIC].completeness
    assert tracker is not None

    def explode(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a defect in Tidemark")

    tracker.on_manifest = explode  # type: ignore[method-assign]
    manifest = encode_manifest(Manifest("orders", NOW - 120, NOW - 60, 3))
    pipeline.process_batch([Msg(CONTROL, 0, 0, manifest)], NOW)
    assert pipeline.manifests[CONTROL].errors["processing_error"] == 1
    assert (CONTROL, 0, 1) in list(pipeline.positions())
