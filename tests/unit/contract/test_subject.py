"""Registry subject contracts: argument checks and the rule model conversion.

Fetching and watching run against a real HTTP registry in
tests/integration/test_subject_contract.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import Rule, RuleKind, RuleMode, RuleParams

from monitor.contract.subject import DomainRule, SubjectSource, SubjectWatcher


def test_domain_rule_keeps_every_field_of_confluents_rule_as_plain_data() -> None:
    rule = Rule.from_dict(
        {
            "name": "email_valid",
            "doc": "emails look like emails",
            "kind": "CONDITION",
            "mode": "WRITEREAD",
            "type": "CEL_FIELD",
            "tags": ["PII"],
            "params": {"dlq.topic": "bad"},
            "expr": "name == 'email' ; value.contains('@')",
            "onSuccess": "NONE",
            "onFailure": "DLQ",
            "disabled": True,
        }
    )
    assert DomainRule.from_model(rule) == DomainRule(
        name="email_valid",
        kind="CONDITION",
        mode="WRITEREAD",
        type="CEL_FIELD",
        expr="name == 'email' ; value.contains('@')",
        params={"dlq.topic": "bad"},
        on_success="NONE",
        on_failure="DLQ",
        disabled=True,
        tags=("PII",),
        doc="emails look like emails",
    )


def test_domain_rule_from_a_sparse_rule() -> None:
    rule = Rule(
        name="r",
        doc=None,
        kind=RuleKind.CONDITION,
        mode=RuleMode.WRITE,
        type="CEL",
        tags=None,
        params=RuleParams({}),
        expr="true",
        on_success=None,
        on_failure=None,
        disabled=None,
    )
    plain = DomainRule.from_model(rule)
    assert (plain.kind, plain.mode, plain.disabled, plain.tags) == ("CONDITION", "WRITE", False, ())


@pytest.mark.parametrize("version", [0, -1, True, "3", 1.0])
def test_a_version_is_latest_or_a_positive_integer(version: Any) -> None:
    with pytest.raises(ValueError, match="'latest' or a positive integer"):
        SubjectSource(object(), "s-value", version)


def test_the_watch_interval_must_be_positive() -> None:
    source = SubjectSource(object(), "s-value", "latest")
    with pytest.raises(ValueError, match="interval must be more than 0"):
        SubjectWatcher(source, object(), interval=0)  # type: ignore[arg-type]


def test_a_missing_subject_in_confluents_mock_registry_is_not_found_not_unavailable() -> None:
    """The demo's registry (mock://) answers 404 with code 40400 for an unknown subject.

    Read as "unavailable", discovery would log a registry outage for every topic
    without a subject and stop asking the registry for retry_after.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from monitor.errors import ContractError

    client = SchemaRegistryClient.new_client({"url": "mock://subject-not-found"})
    with pytest.raises(ContractError) as info:
        SubjectSource(client, "nobody-registered-this-value").fetch()
    assert getattr(info.value, "kind", None) == "not_found"
