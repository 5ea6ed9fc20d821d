"""The daemon's health: what /healthz, /readyz and the self-metrics report.

The loop and the lag tracker write it; the HTTP endpoint and the collector read
it. It lives apart from both so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.stats import LoopStats


@dataclass(slots=True)
class HealthState:
    """What /healthz, /readyz and the self-metrics report; written by the loop."""

    liveness_limit: float
    loop: LoopStats = field(default_factory=LoopStats)
    connected: bool = False
    assigned: bool = False
    lag_snapshot_at: float = 0.0
    stopping: bool = False
    # Partitions waiting for a schema look-up, by (topic, reason); written by the loop.
    held: dict[tuple[str, str], int] = field(default_factory=dict)

    def alive(self, now: float) -> bool:
        return self.loop.heartbeat > 0 and now - self.loop.heartbeat < self.liveness_limit

    def ready(self, now: float) -> bool:
        return self.alive(now) and self.connected and self.assigned and not self.stopping
