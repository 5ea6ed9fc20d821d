"""Schema look-ups off the poll loop: resolve() never waits, answers are remembered, bounded.

Real worker threads and a lookup that blocks until the test lets it answer: the
slow registry is simulated at the SchemaLookup boundary, the threading is real.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from monitor.contract.decoding import ConfluentDecoder, HoldReason, SchemaPending
from monitor.contract.model import Contract
from monitor.contract.registry import (
    BackgroundLookups,
    Lookup,
    RegistryUnavailable,
    SchemaNotFound,
)


class GatedLookup:
    """Answers only when the gate opens (a hanging registry until then); counts calls."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.down = False
        self._lock = threading.Lock()

    def get_schema_str(self, schema_id: int) -> str:
        with self._lock:
            self.calls.append(schema_id)
        self.gate.wait(10)
        if self.down:
            raise RegistryUnavailable(schema_id, "ReadTimeout: timed out")
        if schema_id not in self.schemas:
            raise SchemaNotFound(schema_id)
        return self.schemas[schema_id]


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.005)


@pytest.fixture
def orders_json(orders: Contract) -> str:
    return json.dumps(orders.schema)


def test_decode_does_not_wait_for_a_hanging_registry(orders, orders_json, avro_body, make_order):
    lookup = GatedLookup({1: orders_json})
    resolver = BackgroundLookups(lookup, workers=2)
    decoder = ConfluentDecoder(orders, resolver)
    payload = b"\x00\x00\x00\x00\x01" + avro_body(orders.schema, make_order())
    try:
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(SchemaPending) as info:
                decoder.decode(payload)
            assert info.value.reason is HoldReason.SCHEMA_LOOKUP
        assert time.monotonic() - started < 0.5  # 100 tries while the registry hangs
        wait_until(lambda: lookup.calls == [1])  # one look-up for all of them
        lookup.gate.set()
        wait_until(lambda: resolver.resolve(1).state is Lookup.FOUND)
        assert decoder.decode(payload)[0] == make_order()
        assert lookup.calls == [1]
    finally:
        resolver.close()


def test_distinct_ids_are_looked_up_in_parallel_and_in_flight_is_bounded(orders_json) -> None:
    lookup = GatedLookup({})
    resolver = BackgroundLookups(lookup, workers=4, max_pending=6)
    try:
        states = [resolver.resolve(i).state for i in range(10)]
        assert set(states) == {Lookup.PENDING}
        wait_until(lambda: len(lookup.calls) == 4)  # four workers busy at once
        assert resolver.in_flight() == 6  # ids 6..9 were not queued: asked on a later call
        lookup.gate.set()
        wait_until(lambda: resolver.in_flight() == 0)
        assert sorted(lookup.calls) == list(range(6))
        for i in range(10):
            resolver.resolve(i)
        wait_until(lambda: resolver.in_flight() == 0)
        assert sorted(lookup.calls) == list(range(10))
        assert {resolver.resolve(i).state for i in range(10)} == {Lookup.NOT_FOUND}
        assert sorted(lookup.calls) == list(range(10))  # remembered: no second look-up
    finally:
        resolver.close()


def test_unreachable_is_retried_with_backoff_and_reports_registry_down() -> None:
    lookup = GatedLookup({5: "{}"})
    lookup.gate.set()
    lookup.down = True
    resolver = BackgroundLookups(lookup, first_backoff=0.05, max_backoff=0.2)
    try:
        assert resolver.registry_up is None
        resolver.resolve(5)
        wait_until(lambda: resolver.resolve(5).state is Lookup.UNREACHABLE)
        assert resolver.registry_up is False
        polls = 0
        until = time.monotonic() + 0.5
        while time.monotonic() < until:  # the loop asks on every poll, as for a held partition
            assert resolver.resolve(5).state is not Lookup.FOUND
            polls += 1
            time.sleep(0.005)
        # backoff 0.05, 0.1, 0.2, 0.2 ...: a handful of attempts in 0.5 s, not one per poll
        assert 3 <= len(lookup.calls) <= 6 < polls
        lookup.down = False
        wait_until(lambda: resolver.resolve(5).state is Lookup.FOUND, timeout=2)
        assert resolver.registry_up is True
    finally:
        resolver.close()


def test_remembered_answers_are_bounded() -> None:
    lookup = GatedLookup({i: "{}" for i in range(0, 100, 2)})
    lookup.gate.set()
    resolver = BackgroundLookups(lookup, workers=1, max_remembered=8)
    try:
        for i in range(100):
            resolver.resolve(i)
            wait_until(lambda i=i: resolver.resolve(i).state is not Lookup.PENDING)
        assert len(resolver._found) == 8 and len(resolver._not_found) == 8
    finally:
        resolver.close()


def test_closed_resolver_queues_nothing_and_never_raises() -> None:
    lookup = GatedLookup({1: "{}"})
    resolver = BackgroundLookups(lookup)
    resolver.close()
    assert resolver.resolve(1).state is Lookup.PENDING
    assert lookup.calls == []
