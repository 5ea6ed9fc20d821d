"""The daemon's health: what /healthz, /readyz and the self-metrics report.

The loop and the lag tracker write it; the HTTP endpoint and the collector read
it. It lives apart from both so neither depends on the other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from monitor.stats import LoopStats


@dataclass(slots=True)
class Reachability:
    """Whether any Kafka broker answers Tidemark, from the newest evidence.

    Answers: a high-watermark or metadata reply of the lag tracker, an
    assignment from the group coordinator. Failures: librdkafka's
    _ALL_BROKERS_DOWN, or a lag snapshot in which the cluster answered nothing
    (a hung broker keeps its TCP connections open, so only a timed-out request
    shows it). Consumed messages are not evidence: the client's prefetch queue
    still delivers them after every broker has gone.
    """

    last_answer: float = 0.0  # wall clock of the newest answer; 0 until the first one
    down_since: float | None = None  # first failure since the last answer
    # The loop, its error callback and the lag tracker's thread all report here.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def reachable(self) -> bool:
        return self.last_answer > 0 and self.down_since is None

    def answered(self, at: float) -> bool:
        """Record an answer obtained at `at`; True when this ends an outage.

        An answer older than the failure that started the outage (a slow
        request that completed just before every broker went) does not end it.
        """
        with self._lock:
            if self.down_since is not None and at < self.down_since:
                return False
            recovered = self.down_since is not None
            self.last_answer = max(self.last_answer, at)
            self.down_since = None
            return recovered

    def failed(self, at: float) -> bool:
        """Record that nothing answered at `at`; True when this starts an outage."""
        with self._lock:
            if at < self.last_answer or self.down_since is not None:
                return False
            self.down_since = at
            return True


@dataclass(slots=True)
class HealthState:
    """What /healthz, /readyz and the self-metrics report; written by the loop."""

    liveness_limit: float
    loop: LoopStats = field(default_factory=LoopStats)
    # Messages have arrived since start. Not read for readiness: prefetched messages
    # still arrive after every broker has gone; whether Kafka answers is `kafka`.
    connected: bool = False
    assigned: bool = False
    lag_snapshot_at: float = 0.0  # the newest snapshot in which every partition answered
    stopping: bool = False
    # Partitions waiting for a schema look-up, by (topic, reason); written by the loop.
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    kafka: Reachability = field(default_factory=Reachability)

    def alive(self, now: float) -> bool:
        return self.loop.heartbeat > 0 and now - self.loop.heartbeat < self.liveness_limit

    def ready(self, now: float) -> bool:
        return self.not_ready_reason(now) is None

    def not_ready_reason(self, now: float) -> str | None:
        """Why /readyz answers 503, or None when ready."""
        if self.stopping:
            return "shutting down"
        if not self.alive(now):
            return "poll loop not running"
        if self.kafka.down_since is not None:
            return f"Kafka unreachable for {max(0.0, now - self.kafka.down_since):.0f}s"
        if not self.kafka.reachable:
            return "not connected to Kafka"
        if not self.assigned:
            return "connected, no partitions assigned yet"
        return None
