"""Pieces of test_daemon_completeness.py: numbered producers, a scenario runner and a model.

The model is a direct reading of the completeness semantics (issue 3, README) applied
to what the test produced; it never looks at the daemon. A test runs in *steps*: a step
produces data and control records, then waits until the daemon has read all of it, so
"when" something happened is a step index and the product watermark after each step
is known. The model refuses scripts whose outcome would depend on the order in which
the daemon reads records inside a step (say, an event for a window in the same step as
the events that close it): such a script would make the test flaky, not the daemon.
"""

from __future__ import annotations

import copy
import io
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastavro import parse_schema, schemaless_writer
from harness import Broker, Samples, TidemarkProcess, scrape

from monitor.completeness.emitter import Manifest, ManifestEmitter, encode_manifest

REPO = Path(__file__).resolve().parents[2]
ORDERS_AVSC = REPO / "config" / "contracts" / "orders.avsc"
_ORDERS = parse_schema(copy.deepcopy(json.loads(ORDERS_AVSC.read_text())))

# The label values the issue names; exported from the start at 0.
VERDICTS = ("complete", "incomplete", "partial", "no_manifest", "no_expectation")
MANIFEST_RESULTS = (
    "accepted",
    "duplicate",
    "superseded",
    "misaligned",
    "late",
    "beyond_open_windows",
    "not_configured",
)
MANIFEST_ERRORS = ("decode_error", "unknown_product", "processing_error")  # the last stays 0


@dataclass(frozen=True, slots=True)
class Rules:
    """The product's settings the model needs (the test writes the same into the config)."""

    product: str
    window: int
    out_of_orderness: int
    allowed_lateness: int
    grace: int
    retention: int
    producers: int  # manifests that make a window final
    objective: float

    def completeness(self, control_topic: str) -> dict[str, Any]:
        return {
            "window": self.window,
            "window_retention": self.retention,
            "allowed_lateness": self.allowed_lateness,
            "objective": self.objective,
            "sequence": {"producer_field": "producer_id", "sequence_field": "sequence"},
            "manifests": {
                "topic": control_topic,
                "require": True,
                "grace": self.grace,
                "producers": self.producers,
            },
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One numbered event; it exists (and is in its producer's manifest) once created."""

    producer: str
    partition: int
    seq: int
    t: int  # event time, whole epoch seconds


def order_bytes(event: Event) -> bytes:
    """The orders contract's record for `event` (raw Avro)."""
    out = io.BytesIO()
    schemaless_writer(
        out,
        _ORDERS,
        {
            "order_id": f"{event.producer}-{event.seq}",
            "customer_id": f"customer-{event.seq % 7}",
            "amount_cents": 100 + event.seq,
            "currency": "EUR",
            "occurred_at": datetime.fromtimestamp(event.t, UTC),
            "producer_id": event.producer,
            "sequence": event.seq,
        },
    )
    return out.getvalue()


# librdkafka's mock cluster ignores LeaveGroup: a restarted member's join waits for the
# old member's session to time out (45 s by default). Tansu needs at least 6 s.
MOCK_REJOIN = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


def write_config(
    path: Path,
    broker: Broker,
    topic: str,
    control_topic: str,
    rules: Rules,
    *,
    rejoin: bool = False,
    readback: int = 1000,
) -> Path:
    """Daemon config: one product with completeness, short intervals, earliest start.

    `rejoin`: the test restarts the daemon in the same group (fast rejoin on the mock).
    `readback`: kafka.readback_messages (per partition, before the committed offset).
    """
    properties: dict[str, str | int] = dict(broker.group_settings)
    if rejoin and broker.name == "mock":
        properties.update(MOCK_REJOIN)
    config = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"tidemark-completeness-{uuid.uuid4().hex[:10]}",
            "poll_timeout": 0.1,
            "commit_interval": 0.5,
            "start_from": "earliest",
            "readback_messages": readback,
            "properties": properties,
        },
        "lag": {"refresh_interval": 0.5},
        "logging": {"format": "json", "level": "info"},
        "products": [
            {
                "name": rules.product,
                "owner": "team-test",
                "topic": topic,
                "contract": str(ORDERS_AVSC),
                "encoding": "avro-raw",
                "event_time": "occurred_at",
                "max_out_of_orderness": rules.out_of_orderness,
                # Longer than the test: no partition turns idle between steps, so the
                # product watermark is always the min over both partitions.
                "idle_timeout": 300,
                "completeness": rules.completeness(control_topic),
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- the model -------------------------------------------------------------------------
@dataclass(slots=True)
class _Window:
    k: int
    deliveries: list[tuple[int, Event]] = field(default_factory=list)  # (step, event)
    manifests: list[tuple[int, Manifest]] = field(default_factory=list)  # accepted ones


class Model:
    """Expected metrics after each step, from the events and records the test produced."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.watermarks: list[int | None] = []  # product watermark after each step
        self.deliveries: list[tuple[int, Event]] = []  # (step, event), in reading order
        self._max: dict[int, int] = {}  # partition -> max event time
        self._first: dict[int, int] = {}  # partition -> first event time
        self._windows: dict[int, _Window] = {}
        self._manifest_results = dict.fromkeys(MANIFEST_RESULTS, 0)
        self._manifest_errors = dict.fromkeys(MANIFEST_ERRORS, 0)
        self._amended = 0
        # (window, producer) -> largest count received: a later manifest of the same
        # producer is superseded (larger) or duplicate (not); each counts once.
        self._best_manifest: dict[tuple[int, str | None], int] = {}

    # --- helpers ---
    def end(self, k: int) -> int:
        return (k + 1) * self.rules.window

    def window_of(self, t: int) -> int:
        return t // self.rules.window

    @property
    def watermark(self) -> int | None:
        return self.watermarks[-1] if self.watermarks else None

    def _window(self, k: int) -> _Window:
        return self._windows.setdefault(k, _Window(k))

    # --- a step ---
    def warm(self, events: Iterable[Event], manifests: Iterable[Manifest]) -> None:
        """The read-back after a restart, before any step: an earlier owner counted it.

        Events only move the clock; manifests only feed their windows' expectations.
        Replayed manifests must be for windows after the read-back's watermark: older
        ones are dropped or closed as partial, depending on which topic is read first.
        """
        assert not self.watermarks, "the read-back comes first"
        for e in events:
            self._max[e.partition] = max(self._max.get(e.partition, e.t), e.t)
        warm = min(self._max.values()) - self.rules.out_of_orderness
        for m in manifests:
            k = round(m.window_start / self.rules.window)
            assert self.end(k) > warm, f"ambiguous script: replayed {m} is for a closed window"
            self._window(k).manifests.append((-1, m))
            self._remember(k, m)  # a later retry is a duplicate

    def end_step(self, events: Iterable[Event], controls: Iterable[Manifest | None]) -> None:
        """Account for one step: `events` in production order, then the control records."""
        step = len(self.watermarks)
        before = self.watermark
        events, controls = list(events), list(controls)
        for e in events:
            self._first.setdefault(e.partition, e.t)
            self._max[e.partition] = max(self._max.get(e.partition, e.t), e.t)
        # Min over the partitions that have events (none is idle during the test),
        # never going back.
        after = min(self._max.values()) - self.rules.out_of_orderness if self._max else None
        if before is not None and (after is None or after < before):
            after = before
        for e in events:
            k = self.window_of(e.t)
            end = self.end(k)
            if before is not None and before >= end:
                assert before < end + self.rules.retention, f"{e}: window {k} already forgotten"
                self._amended += 1  # late: amends a closed window
            else:
                assert after is None or after < end, (
                    f"ambiguous script: {e} is in the step that closes its window {k}"
                )
            self._window(k).deliveries.append((step, e))
            self.deliveries.append((step, e))
        for m in controls:  # None: a record that is not a manifest
            self._control(step, m, before, after)
        self.watermarks.append(after)

    def _control(
        self, step: int, m: Manifest | None, before: int | None, after: int | None
    ) -> None:
        r = self.rules
        if m is None:
            self._manifest_errors["decode_error"] += 1
            return
        if m.product != r.product:
            self._manifest_errors["unknown_product"] += 1
            return
        k = round(m.window_start / r.window)
        if k * r.window != m.window_start or m.window_end - m.window_start != r.window:
            self._manifest_results["misaligned"] += 1
            return
        deadline = self.end(k) + r.grace
        if before is not None and before >= deadline:
            self._manifest_results["late"] += 1
            return
        assert after is None or after < deadline, (
            f"ambiguous script: manifest {m} is in the step that ends its grace"
        )
        key = (k, m.producer_id)
        if m.producer_id is None or key not in self._best_manifest:
            self._manifest_results["accepted"] += 1
        elif m.event_count > self._best_manifest[key]:
            self._manifest_results["superseded"] += 1
        else:
            self._manifest_results["duplicate"] += 1
        self._remember(k, m)
        self._window(k).manifests.append((step, m))

    def _remember(self, k: int, m: Manifest) -> None:
        key = (k, m.producer_id)
        self._best_manifest[key] = max(self._best_manifest.get(key, 0), m.event_count)

    # --- what the daemon should export now ---
    def expect(self) -> dict[str, Any]:
        r = self.rules
        wm = self.watermark
        closed = dict.fromkeys(VERDICTS, 0)
        expected_total = observed_total = recovered = 0
        ratio: float | None = None
        ratio_k: int | None = None
        if wm is not None and self._windows:
            # Windows up to a partition's first event (+ out-of-orderness) may hold
            # events counted elsewhere or never: partial. Before any event, all are.
            partial_through = max(
                ((t + r.out_of_orderness) // r.window for t in self._first.values()),
                default=wm // r.window,
            )
            first_k = min(self._windows)
            for k in range(first_k, wm // r.window):  # every window whose end wm passed
                win = self._windows.get(k, _Window(k))
                if k <= partial_through:
                    # Only a window this instance saw something of live is partial;
                    # one seen in read-back manifests alone (or not at all) is silent.
                    if any(step >= 0 for step, _ in [*win.deliveries, *win.manifests]):
                        closed["partial"] += 1
                    continue
                judged = self._judge(win)
                if judged is None:
                    continue  # waiting for its manifests, within grace
                verdict, expected, observed_now = judged
                closed[verdict] += 1
                if verdict == "no_manifest":
                    continue
                expected_total += expected
                observed_total += min(observed_now, expected)
                if verdict == "incomplete" and observed_now >= expected:
                    recovered += 1
                if expected > 0 and (ratio_k is None or k >= ratio_k):
                    ratio_k, ratio = k, observed_now / expected
        seq = self._sequences()
        return {
            "events": len(self.deliveries),
            "watermark": wm,
            "expected_events": expected_total,
            "observed_events": observed_total,
            "ratio": ratio,
            "windows_closed": closed,
            "windows_recovered": recovered,
            "window_amended_events": self._amended,
            **seq,
            "manifests": dict(self._manifest_results),
            "manifest_errors": dict(self._manifest_errors),
            "objective": r.objective,
        }

    def _judge(self, win: _Window) -> tuple[str, int, int] | None:
        """(first verdict, expected now, observed now) of a closed window; None: pending."""
        r = self.rules
        close_step = self._first_step(lambda wm: wm >= self.end(win.k))
        grace_step = self._first_step(lambda wm: wm >= self.end(win.k) + r.grace)
        assert close_step is not None
        producers: set[str | None] = set()
        ready_step = None
        for step, m in win.manifests:
            producers.add(m.producer_id)
            if len(producers) >= r.producers:
                ready_step = step
                break
        if ready_step is not None:
            decided = max(close_step, ready_step)
        elif grace_step is not None:
            decided = grace_step
            if not win.manifests:
                return "no_manifest", 0, 0
        else:
            return None
        assert all(step != decided for step, _ in win.deliveries), (
            f"ambiguous script: events of window {win.k} in the step that decides it"
        )
        expected_first = _manifest_sum(m for step, m in win.manifests if step <= decided)
        observed_first = sum(1 for step, _ in win.deliveries if step < decided)
        verdict = "complete" if observed_first >= expected_first else "incomplete"
        return verdict, _manifest_sum(m for _, m in win.manifests), len(win.deliveries)

    def _first_step(self, passed: Callable[[int], bool]) -> int | None:
        for step, wm in enumerate(self.watermarks):
            if wm is not None and passed(wm):
                return step
        return None

    def _sequences(self) -> dict[str, int]:
        """Per producer: gaps open when a number is skipped, with deadline = the skipping
        event's time + allowed_lateness; declared missing once the watermark passes it."""
        lateness = self.rules.allowed_lateness
        high: dict[str, int] = {}
        gaps: dict[tuple[str, int], int] = {}  # (producer, seq) -> deadline
        declared: set[tuple[str, int]] = set()
        counts = dict.fromkeys(("missing", "duplicate", "out_of_order", "late"), 0)
        by_step: dict[int, list[Event]] = {}
        for step, e in self.deliveries:
            by_step.setdefault(step, []).append(e)

        def declare(wm: int | None) -> None:
            if wm is None:
                return
            for key, deadline in list(gaps.items()):
                if deadline < wm:
                    del gaps[key]
                    declared.add(key)
                    counts["missing"] += 1

        for step, after in enumerate(self.watermarks):
            declare(self.watermarks[step - 1] if step else None)
            for e in by_step.get(step, []):
                key = (e.producer, e.seq)
                top = high.get(e.producer)
                if top is None or e.seq == top + 1:
                    high[e.producer] = e.seq
                elif e.seq > top:
                    for s in range(top + 1, e.seq):
                        gaps[(e.producer, s)] = e.t + lateness
                    high[e.producer] = e.seq
                elif key in gaps:
                    assert after is None or gaps[key] >= after, (
                        f"ambiguous script: {e} fills a gap in the step that declares it"
                    )
                    del gaps[key]
                    counts["out_of_order"] += 1
                elif key in declared:
                    declared.discard(key)
                    counts["late"] += 1
                else:
                    counts["duplicate"] += 1
        declare(self.watermark)
        return {
            "sequence_missing": counts["missing"],
            "sequence_duplicate": counts["duplicate"],
            "sequence_out_of_order": counts["out_of_order"],
            "sequence_late": counts["late"],
            "producers_tracked": len(high),
        }


def _manifest_sum(manifests: Iterable[Manifest]) -> int:
    """Largest count per producer (a retry or an update replaces), summed over producers."""
    best: dict[str | None, int] = {}
    for m in manifests:
        best[m.producer_id] = max(best.get(m.producer_id, 0), m.event_count)
    return sum(best.values())


# --- what the daemon exports -----------------------------------------------------------
def exported(s: Samples, product: str, control_topic: str) -> dict[str, Any]:
    """The scrape in the model's shape (counters as floats; equal to the model's ints)."""

    def one(name: str) -> float:
        return s.value(name, product=product)

    def by(name: str, label: str, **labels: str) -> dict[str, float]:
        return {
            dict(ls)[label]: v
            for ls, v in s.values(name).items()
            if all(dict(ls).get(k) == want for k, want in labels.items())
        }

    def maybe(name: str) -> float | None:
        return one(name) if s.has(name, product=product) else None

    return {
        "events": one("tidemark_events_total"),
        "watermark": maybe("tidemark_watermark_timestamp_seconds"),
        "expected_events": one("tidemark_completeness_expected_events_total"),
        "observed_events": one("tidemark_completeness_observed_events_total"),
        "ratio": maybe("tidemark_window_completeness_ratio"),
        "windows_closed": by("tidemark_windows_closed_total", "verdict", product=product),
        "windows_recovered": one("tidemark_windows_recovered_total"),
        "window_amended_events": one("tidemark_window_amended_events_total"),
        "sequence_missing": one("tidemark_sequence_missing_events_total"),
        "sequence_duplicate": one("tidemark_sequence_duplicate_events_total"),
        "sequence_out_of_order": one("tidemark_sequence_out_of_order_events_total"),
        "sequence_late": one("tidemark_sequence_late_events_total"),
        "producers_tracked": one("tidemark_producers_tracked"),
        "manifests": by("tidemark_manifests_total", "result", product=product),
        "manifest_errors": by("tidemark_manifest_errors_total", "reason", topic=control_topic),
        "objective": s.value("tidemark_slo_objective_ratio", product=product, sli="completeness"),
    }


def diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    lines = [f"  {k}: want {want[k]!r}, got {got.get(k)!r}" for k in want if want[k] != got.get(k)]
    return "\n".join(lines) or "  (none)"


# --- driving the daemon ----------------------------------------------------------------
class NumberedProducer:
    """A producer that numbers its events and reports them in manifests (ManifestEmitter).

    `create` is the producer handing an event to its client: the event gets the next
    sequence number and is counted in the manifest whether or not it ever reaches
    Kafka; the scenario decides what is delivered, when, and how often.
    """

    def __init__(self, producer_id: str, partition: int, rules: Rules, start: int) -> None:
        self.producer_id = producer_id
        self.partition = partition
        self.next_seq = 1
        # The emitter only collects counts here; the scenario publishes what due() says.
        self.emitter = ManifestEmitter(
            _NoProducer(),
            topic="unused",
            product=rules.product,
            window=rules.window,
            now=start,
            producer_id=producer_id,
        )

    def create(self, t: int) -> Event:
        event = Event(self.producer_id, self.partition, self.next_seq, t)
        self.next_seq += 1
        self.emitter.record(t)
        return event

    def due(self, clock: int) -> list[Manifest]:
        """Manifests of the windows that ended by the producer's (event-time) clock."""
        return self.emitter.due(clock)


class _NoProducer:
    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        raise AssertionError("the scenario publishes manifests itself")


class Scenario:
    """Produces a step, waits until the daemon has read it, compares every metric."""

    def __init__(
        self,
        broker: Broker,
        daemon: TidemarkProcess,
        topic: str,
        control_topic: str,
        model: Model,
    ) -> None:
        self.broker = broker
        self.daemon = daemon
        self.topic = topic
        self.control_topic = control_topic
        self.model = model
        self._events: list[Event] = []
        self._controls: list[Manifest | None] = []

    def deliver(self, *events: Event) -> None:
        for e in events:
            self.broker.produce(self.topic, e.partition, order_bytes(e))
            self._events.append(e)

    def publish(self, *manifests: Manifest) -> None:
        for m in manifests:
            self.broker.produce(self.control_topic, 0, encode_manifest(m), key=m.product.encode())
            self._controls.append(m)

    def publish_garbage(self, payload: bytes) -> None:
        self.broker.produce(self.control_topic, 0, payload)
        self._controls.append(None)

    def settle(self, timeout: float = 20.0) -> dict[str, Any]:
        """End the step: deliver, then wait until the scrape equals the model exactly."""
        self.broker.flush()
        self.model.end_step(self._events, self._controls)
        self._events, self._controls = [], []
        want = self.model.expect()
        return wait_exactly(
            self.daemon, want, self.model.rules.product, self.control_topic, timeout
        )


def wait_exactly(
    daemon: TidemarkProcess, want: dict[str, Any], product: str, control_topic: str, timeout: float
) -> dict[str, Any]:
    """Scrape until every metric equals `want`; AssertionError with the differences."""
    deadline = time.monotonic() + timeout
    got: dict[str, Any] = {}
    problem = ""
    while True:
        try:
            got = exported(scrape(daemon.metrics_url), product, control_topic)
            if got == want:
                return got
            problem = ""
        except (AssertionError, OSError) as exc:
            problem = f" ({exc})"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"metrics differ from the model after {timeout}s{problem}:\n{diff(want, got)}\n"
        f"{daemon.log_tail(15)}"
    )
