"""A short live summary on a terminal, read from the same metrics Prometheus scrapes."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from prometheus_client.registry import CollectorRegistry


class Summary:
    def __init__(self, registry: CollectorRegistry, products: list[str]) -> None:
        self.registry = registry
        self.products = products
        self.started = time.monotonic()

    def _samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out

    def render(self) -> str:
        samples = self._samples()

        def total(name: str, product: str, **match: str) -> float:
            return sum(
                v
                for labels, v in samples.get(name, [])
                if labels.get("product") == product
                and all(labels.get(k) == want for k, want in match.items())
            )

        def by(name: str, product: str, label: str) -> str:
            parts = [
                f"{labels[label]}={v:.0f}"
                for labels, v in samples.get(name, [])
                if labels.get("product") == product and v > 0
            ]
            return " ".join(parts) or "none"

        lines = [f"--- {time.monotonic() - self.started:5.0f} s ---"]
        for product in self.products:
            events = total("tidemark_events_total", product)
            conforming = total("tidemark_events_conforming_total", product)
            fresh = total("tidemark_events_fresh_total", product)
            latency_n = total("tidemark_event_latency_seconds_count", product)
            freshness = [
                v
                for labels, v in samples.get("tidemark_freshness_seconds", [])
                if labels.get("product") == product
            ]
            idle = [
                labels["partition"]
                for labels, v in samples.get("tidemark_partition_idle", [])
                if labels.get("product") == product and v == 1
            ]
            checked = any(
                labels.get("product") == product
                for labels, _ in samples.get("tidemark_events_conforming_total", [])
            )
            conformance = (
                f"conforming {(100 * conforming / events) if events else 0:5.1f}%"
                if checked
                else "topic-only       "  # no contract: nothing to conform to
            )
            lines.append(
                f"{product:<10} events {events:>8.0f}  {conformance}  "
                f"fresh {(100 * fresh / latency_n) if latency_n else 0:5.1f}%  "
                f"late {total('tidemark_late_events_total', product):.0f}  "
                f"freshness {f'{freshness[0]:.1f} s' if freshness else 'unknown'}  "
                f"idle partitions {','.join(idle) or '-'}"
            )
            if checked:
                violations = by("tidemark_contract_violations_total", product, "reason")
                drift = by("tidemark_schema_drift_events_total", product, "verdict")
                lines.append(f"{'':<10} violations: {violations}  drift: {drift}")
            rule_checked = total("tidemark_rule_checked_events_total", product)
            if rule_checked:
                correct = total("tidemark_events_correct_total", product)
                broken = by("tidemark_rule_violations_total", product, "rule")
                lines.append(
                    f"{'':<10} correctness {100 * correct / rule_checked:6.2f}% "
                    f"({correct:.0f}/{rule_checked:.0f} passed every rule), "
                    f"broken rules: {broken}"
                )
            expected = total("tidemark_completeness_expected_events_total", product)
            if expected:
                observed = total("tidemark_completeness_observed_events_total", product)
                lines.append(
                    f"{'':<10} completeness {100 * observed / expected:5.1f}% "
                    f"({observed:.0f}/{expected:.0f} in closed windows), missing sequences "
                    f"{total('tidemark_sequence_missing_events_total', product):.0f}"
                )
        return "\n".join(lines)

    def print_once(self, out: TextIO) -> None:
        print(self.render(), file=out, flush=True)

    def print_every(self, interval: float, stop: threading.Event, out: TextIO) -> None:
        while not stop.wait(interval):
            self.print_once(out)
