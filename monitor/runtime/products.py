"""Each product's contract, settings and rules, read from wherever they live.

A product's contract is an .avsc file or a registry subject; an ODCS file may add
owner, description, freshness and rules. What the config leaves out is filled
from the ODCS file first, then from the registered metadata (the config always
wins, see monitor.contract.metadata.merge_settings). Registry fetches happen
here, at build time (`tidemark run` and `tidemark validate`), never in
load_settings: reading the config file stays offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from monitor.config import ProductConfig, SubjectRef
from monitor.contract.metadata import merge_settings
from monitor.contract.model import Contract
from monitor.contract.odcs import OdcsContract, load_odcs, unknown_fields
from monitor.contract.odcs_volume import plan_volume
from monitor.contract.registry import ConfluentRegistryLookup
from monitor.contract.ruleconfig import RuleConfig
from monitor.contract.rules import CompiledRules, compile_rules
from monitor.contract.subject import SubjectContract, SubjectSource
from monitor.errors import ConfigError, ContractError
from monitor.pipeline import ContractVersion


@dataclass(frozen=True, slots=True)
class ProductSetup:
    """One product, ready to build: the merged config, its contract and compiled rules."""

    config: ProductConfig  # the product config with gaps filled from the contract
    contract: Contract
    rules: CompiledRules
    subject: SubjectContract | None
    source: SubjectSource | None  # to follow a `latest` subject
    odcs: OdcsContract | None
    filled: tuple[str, ...]  # settings that came from the contract, for the start-up log
    not_evaluated: tuple[tuple[str, str], ...]  # (what, why): reported once, never silent
    expected_volume: str | None = None  # what an ODCS rowCount became, for validate

    @property
    def version(self) -> ContractVersion | None:
        return version_of(self.subject)


def version_of(subject: SubjectContract | None) -> ContractVersion | None:
    if subject is None:
        return None
    return ContractVersion(subject.subject, subject.version, subject.schema_id)


def resolve_product(
    index: int, product: ProductConfig, registry: ConfluentRegistryLookup | None
) -> ProductSetup:
    """Fetch/load the contract, merge settings, compile rules; ConfigError names the key."""
    where = f"products[{index}]"
    subject = source = None
    if isinstance(product.contract, SubjectRef):
        if registry is None:
            raise ConfigError(f"{where}.contract ({product.name}): a subject needs a registry")
        ref = product.contract
        source = SubjectSource(registry.client, ref.subject, ref.version, describe=registry._cause)
        try:
            subject = source.fetch()
        except ContractError as exc:
            raise ConfigError(f"{where}.contract ({product.name}): {exc}") from None
        contract = subject.contract
    else:
        if product.contract is None:  # topic-only products are built without a setup
            raise ConfigError(f"{where}.contract ({product.name}): required for this encoding")
        try:
            contract = Contract.load(product.contract)
        except ContractError as exc:
            raise ConfigError(f"{where}.contract ({product.name}): {exc}") from None
    odcs = None
    if product.odcs is not None:
        try:
            odcs = load_odcs(product.odcs)
        except ContractError as exc:
            raise ConfigError(f"{where}.odcs ({product.name}): {exc}") from None
        missing = unknown_fields(odcs, contract.schema)
        if missing:
            raise ConfigError(
                f"{where}.odcs ({product.name}): rules name fields the Avro contract does "
                f"not have: {', '.join(missing)}"
            )
    written = product.model_dump(exclude_unset=True).get("completeness")
    volume = plan_volume(odcs.volume if odcs is not None else None, written)
    config, filled = merged_config(index, product, odcs, subject, volume.settings)
    rules = compile_product_rules(index, config, contract, odcs, subject)
    skipped = [(n.name, n.reason) for n in rules.not_evaluated]
    if odcs is not None:
        skipped += [(f"odcs {n.what}", n.why) for n in odcs.not_evaluated]
    if volume.skipped is not None:
        skipped.append(volume.skipped)
    became = volume.became(config.completeness.window) if config.completeness else None
    return ProductSetup(
        config, contract, rules, subject, source, odcs, filled, tuple(skipped), became
    )


def merged_config(
    index: int,
    product: ProductConfig,
    odcs: OdcsContract | None,
    subject: SubjectContract | None,
    volume: Mapping[str, Any] | None = None,
) -> tuple[ProductConfig, tuple[str, ...]]:
    """The config with what it leaves out filled from ODCS (its settings, then the
    expected volume its rowCount became, see odcs_volume.plan_volume), then registry
    metadata."""
    sources = [s for s in (odcs and odcs.settings, volume, subject and subject.settings) if s]
    if not sources:
        merged: Mapping[str, Any] = product.model_dump(exclude_unset=True)
        filled: tuple[str, ...] = ()
        config = product
    else:
        result = merge_settings(product.model_dump(exclude_unset=True), *sources)
        merged, filled = result.settings, result.filled
        try:
            config = ProductConfig.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise ConfigError(
                f"products[{index}] ({product.name}): the settings filled from the "
                f"contract are invalid: {problems}"
            ) from None
    for key in ("owner", "event_time"):
        if getattr(config, key) is None:
            raise ConfigError(
                f"products[{index}].{key} ({product.name}): required key is missing: set it "
                "in the config or in the contract's metadata / ODCS file"
            )
    return config, filled


def compile_product_rules(
    index: int,
    config: ProductConfig,
    contract: Contract,
    odcs: OdcsContract | None,
    subject: SubjectContract | None,
) -> CompiledRules:
    """Config rules, then ODCS rules (a config rule of the same name wins), then registered."""
    rules = list(config.rules)
    names = {r.name for r in rules}
    where = f"products[{index}]"
    if odcs is not None:
        for spec in odcs.rules:
            if spec.name in names:
                continue
            try:
                rules.append(RuleConfig.model_validate({"name": spec.name, **spec.config()}))
            except ValidationError as exc:
                raise ConfigError(
                    f"{where}.odcs ({config.name}): rule {spec.name!r} from {spec.source}: "
                    f"{exc.errors(include_url=False, include_input=False)[0]['msg']}"
                ) from None
            names.add(spec.name)
    registered: Any = None
    tags: dict[str, list[str]] | None = None
    if subject is not None:
        schema = subject.registered.schema
        registered = schema.rule_set
        meta = schema.metadata
        if meta is not None and meta.tags is not None:
            tags = dict(meta.tags.tags)
    try:
        return compile_rules(rules, registered, schema=contract.schema, metadata_tags=tags)
    except ContractError as exc:
        raise ConfigError(f"{where}.rules ({config.name}): {exc}") from None
