"""Completeness SLIs of a running daemon: manifests, sequence gaps, duplicates, recovery.

Two numbered producers, one per partition of the orders topic, count their events per
5 s event-time window with ManifestEmitter and publish the manifests on a control
topic. Event times are whole seconds about 15 minutes in the past, aligned to the
windows, so the test alone decides which window an event is in and how far the
product watermark (min over both partitions, minus the out-of-orderness) has moved.
After every step the scrape must equal the model in completeness_support exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from completeness_support import (
    Event,
    Model,
    NumberedProducer,
    Rules,
    Scenario,
    wait_exactly,
    write_config,
)
from harness import Broker, TidemarkProcess

from monitor.completeness.emitter import Manifest, ManifestError, decode_manifest

W = 5  # window, seconds
RULES = Rules(
    product="orders",
    window=W,
    out_of_orderness=1,
    allowed_lateness=2 * W,
    grace=2 * W,
    retention=6 * W,
    producers=2,
    objective=0.995,
)
PER_WINDOW = 4  # events per producer per window, at seconds 0..3 of the window
LOST = 3  # producer-a's first events of a window: numbered, counted, never produced
REDELIVERED = 2  # producer-b's events of a window that its client sends twice
GARBAGE = b"\xff\xff"  # a control record that is not a manifest


class Script:
    """Window k of the script starts at start + k*W; producer-a on p0, producer-b on p1."""

    def __init__(self) -> None:
        self.start = (int(time.time()) - 900) // W * W
        self.a = NumberedProducer("producer-a", 0, RULES, self.start)
        self.b = NumberedProducer("producer-b", 1, RULES, self.start)

    def at(self, k: int, second: int = 0) -> int:
        return self.start + k * W + second

    def window(self, p: NumberedProducer, k: int) -> list[Event]:
        """PER_WINDOW new events of `p` in window k (created: numbered and counted)."""
        return [p.create(self.at(k, i)) for i in range(PER_WINDOW)]

    def both(self, k: int) -> list[Event]:
        return [*self.window(self.a, k), *self.window(self.b, k)]

    def manifests_through(self, k: int) -> list[Manifest]:
        """Both producers' manifests, once their clocks reach the end of window k."""
        return [*self.a.due(self.at(k + 1)), *self.b.due(self.at(k + 1))]

    def tail(self) -> list[Event]:
        """One event each in window 8: closes window 7, ends the grace of window 5."""
        return [self.a.create(self.at(8, 3)), self.b.create(self.at(8, 3))]


def test_loss_duplicates_and_a_late_event_scraped_exactly(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(2)
    control = broker.new_topic(1, prefix="manifests")
    daemon = tidemark(write_config(tmp_path / "tidemark.yaml", broker, topic, control, RULES))
    s, model = Script(), Model(RULES)
    a, b = s.a, s.b
    run = Scenario(broker, daemon, topic, control, model)

    # Window 0: both producers start. Nothing says what came before their first
    # events, so window 0 closes as partial; its manifests are accepted, judge nothing.
    run.deliver(*s.both(0))
    run.publish(*s.manifests_through(0))
    run.settle()

    # Window 1: producer-b's second and third events arrive swapped (one out of order).
    # Window 0 closes. Window 1's manifests are held back: they arrive after it closed.
    a1, b1 = s.window(a, 1), s.window(b, 1)
    run.deliver(*a1, b1[0], b1[2], b1[1], b1[3])
    late_manifests = s.manifests_through(1)
    got = run.settle()
    assert got["windows_closed"]["partial"] == 1 and got["sequence_out_of_order"] == 1

    # Window 2, producer-a only, losing its first LOST events: producer-b's partition
    # holds the product watermark back, so window 1 does not close yet.
    run.deliver(*s.window(a, 2)[LOST:])
    assert run.settle()["watermark"] < s.at(2)

    # Window 2, producer-b: window 1 closes and waits for its manifests (within grace).
    run.deliver(*s.window(b, 2))
    got = run.settle()
    assert got["watermark"] >= s.at(2) and sum(got["windows_closed"].values()) == 1

    # Window 1's manifests arrive after its close (it is judged complete now), window
    # 2's on time, plus three control records that are not usable manifests.
    run.publish(*late_manifests, *s.manifests_through(2))
    run.publish(Manifest("orders", s.at(2, 2), s.at(3, 2), 4, "producer-c"))  # misaligned
    run.publish(Manifest("payments", s.at(2), s.at(3), 1, "producer-p"))  # unknown product
    run.publish_garbage(GARBAGE)
    got = run.settle()
    assert got["windows_closed"]["complete"] == 1 and got["ratio"] == 1.0

    # Window 3: producer-b's client sends REDELIVERED events twice, and producer-b
    # retries its manifest. Window 2 closes incomplete: LOST events missing.
    b3 = s.window(b, 3)
    run.deliver(*s.window(a, 3), *b3[: REDELIVERED + 1], *b3[1 : REDELIVERED + 1], *b3[3:])
    k3 = s.manifests_through(3)
    run.publish(*k3, k3[-1])
    got = run.settle()
    assert got["ratio"] == (2 * PER_WINDOW - LOST) / (2 * PER_WINDOW)
    assert got["sequence_missing"] == 0  # the gap waits for allowed_lateness

    # Window 4: producer-a holds one event back. Window 3 closes complete with a surplus.
    a4 = s.window(a, 4)
    held = a4.pop(1)
    run.deliver(*a4, *s.window(b, 4))
    run.publish(*s.manifests_through(4))
    got = run.settle()
    assert got["ratio"] == (2 * PER_WINDOW + REDELIVERED) / (2 * PER_WINDOW)
    assert got["sequence_duplicate"] == REDELIVERED

    # Window 5: its manifests are lost on the way to the control topic. Window 4 closes
    # incomplete; the watermark has passed window 2's gap + allowed_lateness.
    run.deliver(*s.both(5))
    s.manifests_through(5)  # emitted, never published
    got = run.settle()
    assert got["sequence_missing"] == LOST and got["windows_closed"]["incomplete"] == 2

    # The held-back event arrives within window_retention: window 4 recovers, and its
    # sequence gap (not declared yet) is filled out of order. producer-a retries its
    # window 1 manifest after that window's grace: late.
    run.deliver(held)
    run.publish(late_manifests[0])
    got = run.settle()
    assert got["windows_recovered"] == 1 and got["window_amended_events"] == 1

    # Windows 6 and 7 are whole; window 5 closes and waits for manifests in vain.
    for k in (6, 7):
        run.deliver(*s.both(k))
        run.publish(*s.manifests_through(k))
        assert run.settle()["windows_closed"]["no_manifest"] == 0

    # Window 8 moves the watermark past window 7's end and window 5's end + grace.
    run.deliver(*s.tail())
    final = run.settle()

    # The script does what it says (these follow from its constants, not from a run).
    with pytest.raises(ManifestError):
        decode_manifest(GARBAGE)
    assert final["windows_closed"] == {
        "complete": 4,  # windows 1, 3, 6, 7 (4 recovered later, counted as incomplete)
        "incomplete": 2,  # windows 2 and 4
        "partial": 1,  # window 0
        "no_manifest": 1,  # window 5
        "no_expectation": 0,
    }
    assert final["sequence_missing"] == LOST
    assert final["sequence_duplicate"] == REDELIVERED
    assert final["sequence_out_of_order"] == 2  # the swap and the held-back event
    assert final["manifests"]["late"] == final["manifests"]["misaligned"] == 1
    assert final["manifests"]["duplicate"] == 1 and final["producers_tracked"] == 2

    # Nothing moves afterwards: the counters were exact, not on their way elsewhere.
    time.sleep(1.0)
    assert wait_exactly(daemon, model.expect(), RULES.product, control, timeout=0) == final


READBACK = 2  # records read back per partition after the restart (data and manifests)


def test_restart_counts_nothing_twice_and_judges_only_what_it_saw(
    broker: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    topic = broker.new_topic(2)
    control = broker.new_topic(1, prefix="manifests")
    config = write_config(
        tmp_path / "tidemark.yaml", broker, topic, control, RULES, rejoin=True, readback=READBACK
    )
    s = Script()
    run = Scenario(broker, tidemark(config), topic, control, Model(RULES))

    # The first instance sees windows 0-3 and their manifests; it judges 1 and 2.
    counted: list[Event] = []
    replayed: list[Manifest] = []
    for k in range(4):
        events = s.both(k)
        replayed = s.manifests_through(k)  # the last READBACK control records
        run.deliver(*events)
        run.publish(*replayed)
        counted += events
        run.settle()
    assert len(replayed) == READBACK
    assert run.daemon.stop() == 0

    # The second instance reads back READBACK events per partition (window 3) and
    # window 3's manifests: they set its watermark and window 3's expectation, and
    # count nowhere. Window 3 was open when it started but sees no live record here:
    # it closes under no verdict. Window 4, where its first event is, is partial.
    run.daemon, run.model = tidemark(config), Model(RULES)
    run.model.warm(
        [e for p in (0, 1) for e in [e for e in counted if e.partition == p][-READBACK:]],
        replayed,
    )
    got = run.settle()
    assert got["watermark"] == s.at(3, PER_WINDOW - 1) - RULES.out_of_orderness
    # The control topic's read-back counts nothing, so it cannot be waited for; give it
    # a few poll cycles before new data moves the watermark.
    time.sleep(0.5)

    run.deliver(*s.both(4))
    run.publish(*s.manifests_through(4))
    run.settle()

    # Window 5 loses producer-a's first LOST events; windows 6 and 7 are whole.
    run.deliver(*s.window(s.a, 5)[LOST:], *s.window(s.b, 5))
    run.publish(*s.manifests_through(5))
    run.settle()
    for k in (6, 7):
        run.deliver(*s.both(k))
        run.publish(*s.manifests_through(k))
        run.settle()
    run.deliver(*s.tail())
    final = run.settle()

    # Only the lossy window is incomplete, and only the lost events are missing: the
    # restart itself raised no gap and judged no window it saw only part of.
    assert final["windows_closed"] == {
        "complete": 2,  # windows 6, 7
        "incomplete": 1,  # window 5
        "partial": 1,  # window 4; window 3 saw only read-back records here: silent
        "no_manifest": 0,
        "no_expectation": 0,
    }
    assert final["sequence_missing"] == LOST
    assert final["manifests"]["accepted"] == 2 * 4  # windows 4-7; the replayed ones not
