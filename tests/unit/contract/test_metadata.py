"""Contract properties as product settings, and the merge in which config wins."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.contract.metadata import merge_settings, parse_ratio, settings_from_properties
from monitor.errors import ContractError

WHERE = "subject shop.orders.v1-value version 3"


def test_every_documented_property_maps_to_its_setting() -> None:
    settings = settings_from_properties(
        {
            "owner": "team-shop",
            "email": "shop@example.com",
            "tier": "gold",
            "description": "Orders placed in the shop",
            "tidemark.event_time": "created_at",
            "tidemark.freshness.threshold": "5m",
            "tidemark.freshness.target": "0.99",
            "tidemark.conformance.target": "99.9%",
            "tidemark.correctness.target": "0.995",
            "application.major.version": "2",  # another tool's property: skipped
        },
        WHERE,
    )
    assert settings == {
        "owner": "team-shop",
        "owner_email": "shop@example.com",
        "tier": "gold",
        "description": "Orders placed in the shop",
        "event_time": "created_at",
        "freshness": {"threshold": 300.0, "target": 0.99},
        "conformance": {"target": 0.999},
        "correctness": {"target": 0.995},
    }


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("owner", "Shop Team", "metric label"),
        ("tier", "", "metric label"),
        ("email", "shop.example.com", "not an e-mail address"),
        ("tidemark.freshness.threshold", "soon", "not a duration"),
        ("tidemark.freshness.threshold", "0", "more than 0 seconds"),
        ("tidemark.freshness.target", "1", "strictly between 0 and 1"),
        ("tidemark.conformance.target", "100%", "strictly between 0 and 1"),
        ("tidemark.correctness.target", "high", "not a number"),
        ("tidemark.event_time", "created at", "field path"),
        ("tidemark.freshness.treshold", "5m", "not one Tidemark knows"),
    ],
)
def test_bad_values_name_subject_version_and_property(name: str, value: str, problem: str) -> None:
    with pytest.raises(ContractError) as info:
        settings_from_properties({name: value}, WHERE)
    message = str(info.value)
    assert message.startswith(f"{WHERE}: metadata property {name!r}")
    assert problem in message


def test_email_aliases_must_agree() -> None:
    same = settings_from_properties({"email": "a@x.io", "owner_email": "a@x.io"}, WHERE)
    assert same == {"owner_email": "a@x.io"}
    with pytest.raises(ContractError, match="'email' and 'owner_email' both set owner_email"):
        settings_from_properties({"email": "a@x.io", "owner_email": "b@x.io"}, WHERE)


def test_non_string_values_are_refused() -> None:
    with pytest.raises(ContractError, match="must be a string or a number, got bool"):
        settings_from_properties({"tidemark.freshness.target": True}, WHERE)
    assert settings_from_properties({"tidemark.freshness.target": 0.9}, WHERE) == {
        "freshness": {"target": 0.9}
    }


def test_ratio_accepts_fractions_and_percentages() -> None:
    assert parse_ratio("0.5") == 0.5
    assert parse_ratio(" 99.9% ") == 0.999


def test_config_wins_and_contract_fills_gaps_key_by_key() -> None:
    config: dict[str, Any] = {
        "name": "orders",
        "owner": "config-owner",
        "freshness": {"target": 0.95},
        "description": None,  # said nothing
    }
    metadata = {
        "owner": "registry-owner",
        "tier": "gold",
        "description": "from the registry",
        "freshness": {"threshold": 300.0, "target": 0.99},
    }
    odcs = {"tier": "silver", "event_time": "created_at", "freshness": {"threshold": 60.0}}
    merged = merge_settings(config, metadata, odcs)
    assert merged.settings == {
        "name": "orders",
        "owner": "config-owner",
        "freshness": {"target": 0.95, "threshold": 300.0},
        "description": "from the registry",
        "tier": "gold",
        "event_time": "created_at",
    }
    assert set(merged.filled) == {"tier", "description", "freshness.threshold", "event_time"}
    assert config["freshness"] == {"target": 0.95}  # inputs untouched
    assert metadata["freshness"] == {"threshold": 300.0, "target": 0.99}


def test_a_filled_section_is_a_copy() -> None:
    contract = {"freshness": {"threshold": 60.0}}
    merged = merge_settings({}, contract)
    merged.settings["freshness"]["threshold"] = 1.0
    assert contract["freshness"]["threshold"] == 60.0
    assert merged.filled == ("freshness.threshold",)


def test_a_config_scalar_is_not_replaced_by_a_contract_section() -> None:
    merged = merge_settings({"freshness": "weird"}, {"freshness": {"threshold": 60.0}})
    assert merged.settings == {"freshness": "weird"}  # validation reports it, not the merge
    assert merged.filled == ()
