"""Partition counts for the rebalance callback come from the lag tracker's own thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from monitor.runtime.health import HealthState
from monitor.runtime.lag import LagTracker


@dataclass
class _Topic:
    partitions: dict[int, Any]


@dataclass
class _Metadata:
    topics: dict[str, _Topic]


@dataclass
class _Client:
    """Stands in for the tracker's Consumer; records which threads call it."""

    partitions: dict[str, int]
    callers: set[str] = field(default_factory=set)

    def list_topics(self, timeout: float) -> _Metadata:
        self.callers.add(threading.current_thread().name)
        return _Metadata({t: _Topic(dict.fromkeys(range(n))) for t, n in self.partitions.items()})

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        self.callers.add(threading.current_thread().name)
        return 0, 0

    def poll(self, timeout: float) -> None:
        self.callers.add(threading.current_thread().name)

    def close(self) -> None:
        pass


@dataclass
class _Pipeline:
    topics: list[str]
    products: dict[str, Any] = field(default_factory=dict)
    lock: Any = field(default_factory=threading.Lock)
    high_watermarks: dict[str, dict[int, int]] = field(default_factory=dict)
    discovered: set[str] = field(default_factory=set)


def test_counts_are_asked_by_the_lag_thread_only_even_for_a_new_topic() -> None:
    pipeline = _Pipeline(["a", "b"])
    tracker = LagTracker({"bootstrap.servers": "127.0.0.1:1"}, pipeline, HealthState(60), 30.0)  # type: ignore[arg-type]
    tracker._client.close()
    client = _Client({"a": 3})
    tracker._client = client  # type: ignore[assignment]
    tracker.start()
    try:
        assert tracker.partition_count("a") == 3
        client.partitions["b"] = 5  # created after the tracker's first answer
        started = time.monotonic()
        assert tracker.partition_count("b") == 5
        assert time.monotonic() - started < 2.0  # asked at once, not at the next interval
        assert client.callers == {"tidemark-lag"}
    finally:
        tracker.stop()
