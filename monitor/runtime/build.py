"""Settings → contracts, decoders and rules → the pipeline, before any event is read.

Everything that can be wrong with a product (a contract that does not load, a rule
that does not compile) fails here, at start-up and in `tidemark validate`; what
changes at run time (a new `latest` version, a discovered topic) is built by the same
code through `Built` and `Discovery`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.config import ProductConfig, Settings, SubjectRef
from monitor.contract.decoding import (
    ConfluentDecoder,
    Decoder,
    HoldReason,
    RawAvroDecoder,
    SingleObjectDecoder,
)
from monitor.contract.eventtime import EventTimeExtractor, make_extractor, raw_event_time
from monitor.contract.model import Contract
from monitor.contract.registry import (
    BackgroundLookups,
    ConfluentRegistryLookup,
    Lookup,
    SchemaLookup,
)
from monitor.contract.subject import SubjectContract, SubjectWatcher
from monitor.errors import ConfigError, ContractError
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.runtime.discovery import Discoverer, subscription_patterns
from monitor.runtime.products import (
    ProductSetup,
    compile_product_rules,
    resolve_product,
    version_of,
)

log = structlog.get_logger("tidemark")


def _load_contract(product: ProductConfig, index: int, path: Any, key: str) -> Contract:
    try:
        return Contract.load(path)
    except ContractError as exc:
        raise ConfigError(f"products[{index}].{key} ({product.name}): {exc}") from None


def build_decoder(
    product: ProductConfig,
    index: int,
    contract: Contract,
    resolver: BackgroundLookups | None,
    *,
    rules: bool = False,
) -> Decoder:
    # The hot path's records carry the event-time field as its raw epoch long
    # where that is exact (contract.eventtime.RawEventTime); verdicts are unchanged.
    # Rules see the record as Confluent's executors do, every logical type applied
    # (a rule may compare the event time with `now`), so a product with rules
    # decodes it as a timestamp.
    raw = None if rules else raw_event_time(contract, product.event_time or "")
    if product.encoding == "avro-raw":
        return RawAvroDecoder(
            contract, max_payload_bytes=product.max_payload_bytes, raw_event_time=raw
        )
    if product.encoding == "avro-single-object":
        writers = [
            _load_contract(product, index, path, f"writer_schemas[{i}]").schema
            for i, path in enumerate(product.writer_schemas)
        ]
        return SingleObjectDecoder(
            contract,
            writers,
            max_writer_schemas=product.max_writer_schemas,
            max_payload_bytes=product.max_payload_bytes,
            raw_event_time=raw,
        )
    if resolver is None:  # guarded by Settings validation; kept for type narrowing
        raise ConfigError(
            f"products[{index}] ({product.name}): confluent needs schema_registry.url"
        )
    return ConfluentDecoder(
        contract,
        resolver,
        max_writer_schemas=product.max_writer_schemas,
        max_payload_bytes=product.max_payload_bytes,
        raw_event_time=raw,
    )


def _decoding(
    product: ProductConfig,
    index: int,
    resolver: BackgroundLookups | None,
    contract: Contract | None = None,
) -> tuple[Decoder | None, EventTimeExtractor | None]:
    """The product's decoder and event-time extractor; (None, None) in topic-only mode.

    `contract` is given for a discovered product (fetched from the registry);
    otherwise it is loaded from the product's contract file.
    """
    if product.topic_only or product.contract is None or product.event_time is None:
        return None, None  # validation guarantees contract and event_time otherwise
    if contract is None:
        contract = _load_contract(product, index, product.contract, "contract")
    try:
        extractor = make_extractor(contract, product.event_time)
    except ContractError as exc:
        raise ConfigError(f"products[{index}].event_time ({product.name}): {exc}") from None
    return build_decoder(product, index, contract, resolver), extractor


class Discovery:
    """Builds products for assigned topics nobody configured: the loop's `discover` hook."""

    def __init__(
        self,
        discoverer: Discoverer,
        pipeline: Pipeline,
        resolver: BackgroundLookups | None,
        stuck_after: float,
    ) -> None:
        self.discoverer = discoverer
        self.pipeline = pipeline
        self.resolver = resolver
        self.stuck_after = stuck_after

    def __call__(self, topics: set[str]) -> dict[str, ProductPipeline]:
        """Products for the topics in `topics` that discovery wants and has room for."""
        pipeline, discoverer = self.pipeline, self.discoverer
        new: dict[str, ProductPipeline] = {}
        for topic in sorted(topics):
            if topic in pipeline.products or topic in pipeline.manifests:
                continue
            if not discoverer.wanted(topic):
                continue
            if not discoverer.admit(topic, len(pipeline.discovered) + len(new)):
                pipeline.left_out = len(discoverer.left_out)
                continue
            try:
                planned = discoverer.plan(topic)
                decoder, extractor = _decoding(planned.config, 0, self.resolver, planned.contract)
            except (ValueError, ConfigError, ContractError) as exc:
                # A registered contract Tidemark cannot use (e.g. a bad event-time
                # property): watch the topic rather than nothing, and say why.
                log.warning("discovered_contract_unusable", topic=topic, error=str(exc))
                planned = discoverer.plan_topic_only(topic)
                decoder, extractor = None, None
            new[topic] = ProductPipeline.build(
                planned.config, decoder, extractor, stuck_after=self.stuck_after
            )
            log.info(
                "product_discovered",
                topic=topic,
                product=planned.config.name,
                owner=planned.config.owner,
                mode="contract" if planned.contract is not None else "topic-only",
                subject=planned.subject,
                event_time=planned.config.event_time,
            )
        return new


@dataclass(slots=True)
class Built:
    pipeline: Pipeline
    lookup: ConfluentRegistryLookup | None
    resolver: BackgroundLookups | None  # look-ups off the poll loop; close() when done
    setups: dict[str, ProductSetup] = field(default_factory=dict)  # by topic
    # `latest` subjects, by topic: started by the Monitor, taken between batches.
    watchers: dict[str, SubjectWatcher] = field(default_factory=dict)
    discovery: Discovery | None = None  # products for topics nobody configured

    def take_contracts(self) -> list[tuple[str, SubjectContract]]:
        """Switch products whose subject has a new accepted version; never waits on the network.

        The new version's schema, decoder and rules replace the old ones under the
        pipeline lock, between two batches; counters, clocks and windows continue.
        The product's settings (owner, objectives, event time) stay those merged at
        start-up: changing them needs a restart.
        """
        switched = []
        for topic, watcher in self.watchers.items():
            found = watcher.take()
            if found is None:
                continue
            product = self.pipeline.products[topic]
            setup = self.setups[topic]
            index = list(self.setups).index(topic)
            try:
                extractor = make_extractor(found.contract, product.config.event_time or "")
                rules = compile_product_rules(
                    index, product.config, found.contract, setup.odcs, found
                )
                decoder = build_decoder(
                    product.config, index, found.contract, self.resolver, rules=bool(rules)
                )
            except (ConfigError, ContractError) as exc:
                log.error(
                    "contract_version_unusable",
                    product=product.config.name,
                    subject=found.subject,
                    version=found.version,
                    error=str(exc),
                )
                continue
            with self.pipeline.lock:
                product.switch_contract(decoder, extractor, rules, version_of(found))
            log.info(
                "contract_version_switched",
                product=product.config.name,
                subject=found.subject,
                version=found.version,
                schema_id=found.schema_id,
                rules=list(rules.names),
            )
            report_not_evaluated(
                product.config.name, [(n.name, n.reason) for n in rules.not_evaluated]
            )
            switched.append((topic, found))
        return switched

    def hold_reason(self, schema_id: int) -> HoldReason | None:
        """Why a partition held on `schema_id` must still wait; None once answered."""
        if self.resolver is None:
            return None
        state = self.resolver.resolve(schema_id).state
        if state is Lookup.PENDING:
            return HoldReason.SCHEMA_LOOKUP
        if state is Lookup.UNREACHABLE:
            return HoldReason.REGISTRY_UNREACHABLE
        return None


def report_not_evaluated(product: str, skipped: list[tuple[str, str]]) -> None:
    """Once per contract version: what Tidemark reads but does not check, and why."""
    if skipped:
        log.warning(
            "rules_not_evaluated",
            product=product,
            rules=[{"name": name, "reason": why} for name, why in skipped],
        )


def build_pipeline(settings: Settings, lookup: SchemaLookup | None = None) -> Built:
    """Load every contract and build per-product state; ConfigError names the key."""
    registry_lookup = lookup if isinstance(lookup, ConfluentRegistryLookup) else None
    if lookup is None and settings.schema_registry.url:
        registry_lookup = ConfluentRegistryLookup(settings.schema_registry.client_conf())
        lookup = registry_lookup
    retry_after = settings.schema_registry.retry_after
    resolver = None
    if lookup is not None:
        resolver = BackgroundLookups(
            lookup,
            workers=settings.schema_registry.lookup_workers,
            not_found_ttl=retry_after,
            max_backoff=retry_after,
        )
    subjects = registry_lookup
    if subjects is None and settings.schema_registry.url:
        subjects = ConfluentRegistryLookup(settings.schema_registry.client_conf())
    products: dict[str, ProductPipeline] = {}
    setups: dict[str, ProductSetup] = {}
    watchers: dict[str, SubjectWatcher] = {}
    for i, original in enumerate(settings.products):
        setup: ProductSetup | None = None
        if original.topic_only:
            product = original
            decoder, extractor = _decoding(product, i, resolver)
        else:
            setup = resolve_product(i, original, subjects)
            product, contract = setup.config, setup.contract
            try:
                extractor = make_extractor(contract, product.event_time or "")
            except ContractError as exc:
                raise ConfigError(f"products[{i}].event_time ({product.name}): {exc}") from None
            # An empty CompiledRules (no rules) is falsy: only real rules need datetimes.
            decoder = build_decoder(product, i, contract, resolver, rules=bool(setup.rules))
        products[product.topic] = ProductPipeline.build(
            product,
            decoder,
            extractor,
            stuck_after=settings.lag.stuck_after,
            rules=setup.rules if setup is not None else None,
            violations_kept=settings.server.violations_per_product,
            contract_version=setup.version if setup is not None else None,
        )
        if setup is None:
            continue
        setups[product.topic] = setup
        ref = original.contract
        if (
            setup.source is not None
            and setup.subject is not None
            and isinstance(ref, SubjectRef)
            and ref.version == "latest"
        ):
            watchers[product.topic] = SubjectWatcher(
                setup.source, setup.subject, interval=ref.check_interval
            )
    pipeline = Pipeline(products)
    discovery = None
    if settings.discover is not None:
        discoverer = Discoverer(
            settings.discover,
            explicit=set(pipeline.products),
            control_topics={*pipeline.manifests, settings.completeness_sharing.topic},
            registry=registry_lookup.client if registry_lookup is not None else None,
            registry_describe=registry_lookup._cause if registry_lookup is not None else None,
        )
        discoverer.registry_retry_after = retry_after
        pipeline.patterns = subscription_patterns(settings.discover)
        discovery = Discovery(discoverer, pipeline, resolver, settings.lag.stuck_after)
    return Built(pipeline, registry_lookup, resolver, setups, watchers, discovery)
