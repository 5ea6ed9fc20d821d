"""Helper for producers: count events per event-time window and publish manifests.

Usage, next to an ordinary confluent_kafka.Producer:

    manifests = ManifestEmitter(producer, topic="tidemark.manifests", product="orders",
                                window=60.0, now=time.time())
    manifests.record(event_time)        # when handing each event to produce()
    manifests.flush_closed(time.time()) # now and then, e.g. every poll

Record when the event is handed to the producer, not on delivery: an event whose
delivery fails is then missing downstream, which is what completeness must show.
Manifests carry cumulative counts and a stable producer id, so re-sending one (a
retry, or a late event for a window already reported) is safe: Tidemark keeps the
largest count per producer and window.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Protocol

from monitor.completeness.manifests import Manifest, ManifestError, decode_manifest, encode_manifest

__all__ = ["Manifest", "ManifestEmitter", "ManifestError", "decode_manifest", "encode_manifest"]


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the emitter uses."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        """Queue one message."""


def default_producer_id() -> str:
    """Unique per process run, so a restarted producer never merges with its past self."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ManifestEmitter:
    """Per-window counts of one producer for one data product (not thread-safe)."""

    def __init__(
        self,
        producer: ProducerLike,
        *,
        topic: str,
        product: str,
        window: float,
        now: float,
        producer_id: str | None = None,
        delay: float = 0.0,
        keep_windows: int = 60,
        emit_empty: bool = True,
    ) -> None:
        if window <= 0:
            raise ValueError(f"window must be more than 0 seconds, got {window}")
        if keep_windows < 1:
            raise ValueError(f"keep_windows must be at least 1, got {keep_windows}")
        self._producer = producer
        self._topic = topic
        self._key = product.encode()
        self.product = product
        self.producer_id = producer_id or default_producer_id()
        self._w = window
        self._delay = delay  # wait this long after a window ends before reporting it
        self._keep = keep_windows  # reported windows a late event can still update
        self._emit_empty = emit_empty  # a 0 manifest says "alive, sent nothing"
        self._counts: dict[int, int] = {}
        self._dirty: set[int] = set()  # reported windows whose count changed since
        self._next_due = int(now // window)  # first window not reported yet
        self.dropped_late = 0  # events for windows older than keep_windows

    def record(self, event_time: float, n: int = 1) -> None:
        """Count n events with this event time (call as you produce them)."""
        k = int(event_time // self._w)
        if k < self._next_due:
            if k < self._next_due - self._keep:
                self.dropped_late += n
                return
            self._dirty.add(k)
        self._counts[k] = self._counts.get(k, 0) + n

    def due(self, now: float) -> list[Manifest]:
        """Manifests to publish now: windows ended (plus delay), and updates to old ones."""
        last = int((now - self._delay) // self._w) - 1  # last window with end + delay <= now
        return self._take(last)

    def flush_closed(self, now: float) -> int:
        """Publish the due manifests; returns how many. Call producer.poll/flush as usual."""
        return self._publish(self.due(now))

    def flush_all(self) -> int:
        """Publish every window counted so far, open ones too (on shutdown)."""
        last = max(self._counts, default=self._next_due - 1)
        return self._publish(self._take(last))

    def _publish(self, manifests: list[Manifest]) -> int:
        for m in manifests:
            self._producer.produce(self._topic, value=encode_manifest(m), key=self._key)
        return len(manifests)

    def _take(self, last: int) -> list[Manifest]:
        counts = self._counts
        ks = sorted(self._dirty)
        self._dirty.clear()
        first = max(self._next_due, last - self._keep + 1)  # after a long pause: skip empties
        ks += sorted(k for k in counts if self._next_due <= k < first)
        ks += [k for k in range(first, last + 1) if self._emit_empty or k in counts]
        w, pid = self._w, self.producer_id
        out = [Manifest(self.product, k * w, (k + 1) * w, counts.get(k, 0), pid) for k in ks]
        self._next_due = max(self._next_due, last + 1)
        for k in [k for k in counts if k < self._next_due - self._keep]:
            del counts[k]
        return out
