"""Contracts read from registry subjects over real HTTP, and the watcher following `latest`.

The registry is the harness's Confluent-shaped HTTP server; the client is
confluent-kafka's own SchemaRegistryClient (built the way Tidemark builds it).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import (
    Metadata,
    MetadataProperties,
    Schema,
)
from harness.registry_server import RegistryServer

from monitor.contract.registered import cel_rule_set
from monitor.contract.subject import (
    DomainRule,
    SubjectContract,
    SubjectError,
    SubjectSource,
    SubjectWatcher,
)

SUBJECT = "shop.orders.v1-value"
V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# v2 adds an optional field: it can read v1 data (BACKWARD compatible).
V2 = {
    **V1,
    "fields": [*V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
}
# v3 adds a required field without a default: it cannot read v1 data.
V3_BAD = {**V1, "fields": [*V1["fields"], {"name": "channel", "type": "string"}]}
METADATA = {
    "properties": {
        "owner": "team-shop",
        "email": "shop@example.com",
        "tidemark.freshness.threshold": "5m",
        "tidemark.correctness.target": "99.5%",
    }
}
RULE_SET = {
    "domainRules": [
        {
            "name": "amount_positive",
            "kind": "CONDITION",
            "mode": "WRITE",
            "type": "CEL",
            "expr": "message.amount > 0.0",
            "params": {"dlq.topic": "orders-dlq"},
            "onFailure": "DLQ",
            "tags": ["quality"],
        }
    ],
    "migrationRules": [
        {"name": "up", "kind": "TRANSFORM", "mode": "UPGRADE", "type": "JSONATA", "expr": "$"}
    ],
}


def _register(registry: RegistryServer, schema: dict[str, Any], **extra: Any) -> int:
    return registry.register(SUBJECT, json.dumps(schema), **extra)


def _source(registry: RegistryServer, version: int | str = "latest") -> SubjectSource:
    return SubjectSource.from_conf(registry.client_config(), SUBJECT, version)  # type: ignore[arg-type]


def _wait(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout}s")


def test_fetch_returns_schema_version_id_metadata_and_domain_rules(
    registry: RegistryServer,
) -> None:
    schema_id = _register(registry, V1, metadata=METADATA, rule_set=RULE_SET)
    found = _source(registry).fetch()
    assert (found.subject, found.version, found.schema_id) == (SUBJECT, 1, schema_id)
    assert found.contract.schema == V1
    assert found.contract.name == "shop.Order"
    assert found.properties == METADATA["properties"]
    assert found.settings == {
        "owner": "team-shop",
        "owner_email": "shop@example.com",
        "freshness": {"threshold": 300.0},
        "correctness": {"target": 0.995},
    }
    assert found.domain_rules == (
        DomainRule(
            name="amount_positive",
            kind="CONDITION",
            mode="WRITE",
            type="CEL",
            expr="message.amount > 0.0",
            params={"dlq.topic": "orders-dlq"},
            on_failure="DLQ",
            tags=("quality",),
        ),
    )  # migration rules are not domain rules
    assert found.registered.schema.rule_set.domain_rules[0].name == "amount_positive"
    assert registry.count("GET", f"/subjects/{SUBJECT}/versions/latest") == 1


def test_a_pinned_version_stays_put_when_a_newer_one_is_registered(
    registry: RegistryServer,
) -> None:
    _register(registry, V1)
    _register(registry, V2)
    pinned = _source(registry, 1).fetch()
    assert (pinned.version, pinned.contract.schema) == (1, V1)
    assert _source(registry).fetch().version == 2


@pytest.mark.parametrize(
    ("setup", "kind", "message"),
    [
        (lambda r: None, "not_found", "not in the schema registry"),
        (
            lambda r: r.register(SUBJECT, json.dumps({"type": "object"}), "JSON"),
            "not_avro",
            "is a JSON schema",
        ),
        (
            lambda r: _register(r, V1, metadata={"properties": {"tidemark.freshness.target": "2"}}),
            "invalid_metadata",
            f"subject {SUBJECT} version 1: metadata property 'tidemark.freshness.target'",
        ),
        (
            lambda r: r._register(SUBJECT, json.dumps(V1), "AVRO", ({"name": "x.Y"},)),
            "references",
            "uses schema references (x.Y)",
        ),
    ],
)
def test_unusable_subjects_are_refused_with_a_reason(
    registry: RegistryServer, setup: Callable[[RegistryServer], Any], kind: str, message: str
) -> None:
    setup(registry)
    with pytest.raises(SubjectError) as info:
        _source(registry).fetch()
    assert info.value.kind == kind
    assert message in str(info.value)


def test_registry_down_is_unavailable_not_not_found(registry: RegistryServer) -> None:
    _register(registry, V1)
    source = _source(registry)
    registry.stop()
    with pytest.raises(SubjectError) as info:
        source.fetch()
    assert info.value.kind == "unavailable"
    assert "Connection refused" in str(info.value)


@pytest.fixture
def watched(registry: RegistryServer) -> Iterator[tuple[SubjectWatcher, list[Any]]]:
    """A watcher on version 1 checking every 0.1 s in its thread; events it reported."""
    _register(registry, V1, metadata=METADATA)
    source = _source(registry)
    events: list[Any] = []
    watcher = SubjectWatcher(
        source, source.fetch(), interval=0.1, on_switch=events.append, on_problem=events.append
    )
    watcher.start()
    yield watcher, events
    watcher.stop()


def test_watcher_hands_over_a_new_version_registered_while_running(
    registry: RegistryServer, watched: tuple[SubjectWatcher, list[Any]]
) -> None:
    watcher, events = watched
    assert watcher.take() is None
    # Registered over HTTP by confluent-kafka's client, as a producer team would.
    client = _source(registry).client
    started = time.monotonic()
    client.register_schema(
        SUBJECT,
        Schema(
            json.dumps(V2),
            "AVRO",
            metadata=Metadata(
                tags=None,
                properties=MetadataProperties({"owner": "team-shop", "tier": "gold"}),
                sensitive=None,
            ),
            rule_set=cel_rule_set([("note_short", "size(message.note) < 100")], "WRITE"),
        ),
    )
    new: SubjectContract = _wait(watcher.take)
    picked_up = time.monotonic() - started
    print(f"\nnew version handed over {picked_up * 1000:.0f} ms after registration")
    assert (new.version, new.contract.schema) == (2, V2)
    assert new.settings == {"owner": "team-shop", "tier": "gold"}
    assert [r.expr for r in new.domain_rules] == ["size(message.note) < 100"]
    assert watcher.take() is None  # handed over once
    assert events == [new]
    assert watcher.current is new
    assert picked_up < 5.0


def test_an_incompatible_version_is_refused_once_and_the_current_kept(
    registry: RegistryServer, watched: tuple[SubjectWatcher, list[Any]]
) -> None:
    watcher, events = watched
    _register(registry, V3_BAD)
    _wait(lambda: watcher.failures >= 3)  # several checks saw it
    assert watcher.take() is None
    assert watcher.current.version == 1
    assert len(events) == 1  # reported once, not at every check
    problem = events[0]
    assert isinstance(problem, SubjectError)
    assert (problem.kind, problem.version) == ("incompatible", 2)
    assert "channel" in str(problem) and "keeping version 1" in str(problem)
    # A later, compatible version is taken.
    _register(registry, V2)
    assert _wait(watcher.take).version == 3


def test_outage_and_deleted_subject_keep_the_current_version(
    registry: RegistryServer, watched: tuple[SubjectWatcher, list[Any]]
) -> None:
    watcher, events = watched
    registry.stop()
    _wait(lambda: watcher.failures >= 3)
    assert [e.kind for e in events] == ["unavailable"]
    registry.start()  # same port
    registry.delete_subject(SUBJECT)
    _wait(lambda: len(events) == 2)
    assert events[1].kind == "not_found"
    assert watcher.take() is None and watcher.current.version == 1
    _register(registry, V2)  # the subject comes back: its version 1 is V2 now
    new = _wait(watcher.take)
    assert new.contract.schema == V2


def test_take_never_waits_for_a_hanging_registry() -> None:
    """The registry accepts connections and never answers: checks hang, take() does not."""
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        port = hang.getsockname()[1]
        conf = {"url": f"http://127.0.0.1:{port}", "timeout": 2}
        source = SubjectSource.from_conf(conf, SUBJECT, "latest")
        current = _fake_current()
        watcher = SubjectWatcher(source, current, interval=0.01).start()
        try:
            _wait(lambda: watcher.checks >= 1)
            slowest = 0.0
            for _ in range(200):
                started = time.perf_counter()
                assert watcher.take() is None
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.005)
            print(f"\nslowest take() while a check hung: {slowest * 1e6:.0f} µs")
            assert slowest < 0.05
            assert watcher.current is current
        finally:
            started = time.monotonic()
            watcher.stop()
            print(f"stop() with a check in flight took {time.monotonic() - started:.2f} s")
    assert not any(t.name.startswith("subject-watch") for t in threading.enumerate())


def _fake_current() -> SubjectContract:
    with RegistryServer() as server:
        server.register(SUBJECT, json.dumps(V1))
        return SubjectSource.from_conf(server.client_config(), SUBJECT, "latest").fetch()


def test_only_a_latest_subject_can_be_watched(registry: RegistryServer) -> None:
    _register(registry, V1)
    pinned = _source(registry, 1)
    with pytest.raises(ValueError, match="pinned to version 1"):
        SubjectWatcher(pinned, pinned.fetch())
