"""Wiring: settings → contracts and decoders → pipeline → loop, server, lag tracker."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException
from prometheus_client.registry import CollectorRegistry

from monitor.config import ProductConfig, Settings, SubjectRef, loggable
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
from monitor.export.collector import TidemarkCollector, build_registry
from monitor.export.server import Limits, MetricsServer
from monitor.export.webconfig import load_web_config
from monitor.logs import LibrdkafkaLogger
from monitor.pipeline import Pipeline, ProductPipeline
from monitor.redact import REDACTOR
from monitor.runtime.discovery import Discoverer, subscription_patterns
from monitor.runtime.health import HealthState
from monitor.runtime.lag import LagTracker
from monitor.runtime.loop import ConsumeLoop
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
            _report_not_evaluated(
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


def _report_not_evaluated(product: str, skipped: list[tuple[str, str]]) -> None:
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
            control_topics=set(pipeline.manifests),
            registry=registry_lookup.client if registry_lookup is not None else None,
            registry_describe=registry_lookup._cause if registry_lookup is not None else None,
        )
        discoverer.registry_retry_after = retry_after
        pipeline.patterns = subscription_patterns(settings.discover)
        discovery = Discovery(discoverer, pipeline, resolver, settings.lag.stuck_after)
    return Built(pipeline, registry_lookup, resolver, setups, watchers, discovery)


def violations_json(pipeline: Pipeline) -> bytes:
    """/violations: the most recent bad events per product, where they are, never their payload."""
    with pipeline.lock:
        copied = [(p.config, list(p.recent)) for p in pipeline.products.values()]
    out: dict[str, Any] = {}
    for config, records in copied:
        entries = []
        for r in reversed(records):  # newest first
            entry: dict[str, Any] = {
                "partition": r.partition,
                "offset": r.offset,
                "timestamp_ms": r.timestamp_ms,
                "timestamp": _iso(r.timestamp_ms),
            }
            if r.kind == "contract":
                entry["reason"] = r.names[0]
            else:
                entry["rules"] = list(r.names)
                if r.errors:
                    entry["rule_errors"] = list(r.errors)
            entries.append(entry)
        out[config.name] = {"topic": config.topic, "violations": entries}
    return json.dumps({"products": out}, indent=1).encode() + b"\n"


def _iso(ms: int) -> str | None:
    if ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def consumer_conf(settings: Settings) -> dict[str, Any]:
    conf = settings.kafka.librdkafka()
    conf.update(
        {
            "group.id": settings.kafka.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Start offsets are chosen in on_assign; this only covers out-of-range seeks.
            "auto.offset.reset": "earliest",
        }
    )
    if settings.discover is not None:
        # Pattern subscriptions see new and deleted topics only on a metadata refresh.
        refresh_ms = int(settings.discover.refresh_interval * 1000)
        conf.setdefault("topic.metadata.refresh.interval.ms", refresh_ms)
    return conf


def build_server(
    settings: Settings,
    registry: CollectorRegistry,
    health: HealthState,
    violations: Callable[[], bytes] | None = None,
) -> MetricsServer:
    """/metrics, /healthz and /readyz (and /violations, given a source) as configured."""
    server = settings.server
    return MetricsServer(
        registry,
        health,
        server.bind_address,
        server.port,
        limits=Limits(
            max_connections=server.max_connections,
            read_timeout=server.read_timeout,
            write_timeout=server.write_timeout,
            idle_timeout=server.idle_timeout,
        ),
        web=load_web_config(server.web_config_file) if server.web_config_file else None,
        violations=violations,
    )


class Monitor:
    """One Tidemark instance: consumer loop, lag tracker and HTTP server."""

    def __init__(
        self, settings: Settings, *, lookup: SchemaLookup | None = None, serve: bool = True
    ) -> None:
        self.settings = settings
        self._stop_signal: str | None = None
        # Before any client exists: their log lines and errors may echo a secret.
        REDACTOR.add(*settings.secret_values())
        built = build_pipeline(settings, lookup)
        self.built = built
        self.pipeline = built.pipeline
        for setup in built.setups.values():
            if setup.filled:
                log.info(
                    "product_settings_from_contract",
                    product=setup.config.name,
                    filled=list(setup.filled),
                )
            _report_not_evaluated(setup.config.name, list(setup.not_evaluated))
        self.health = HealthState(liveness_limit=settings.server.liveness_limit)
        registry_counts = built.lookup.counts if built.lookup is not None else None
        resolver = built.resolver
        collector = TidemarkCollector(
            self.pipeline,
            self.health,
            registry_lookups=registry_counts,
            registry_up=(lambda: resolver.registry_up) if resolver is not None else None,
        )
        self.collector = collector  # a worker (serve=False) hands its snapshots to the parent
        self.registry = build_registry(collector)
        self.server: MetricsServer | None = None
        if serve:
            self.server = build_server(
                settings,
                self.registry,
                self.health,
                violations=lambda: violations_json(self.pipeline),
            )
        conf = consumer_conf(settings)
        librdkafka_log = LibrdkafkaLogger()
        self.loop: ConsumeLoop  # the client's callbacks reach the loop built just below
        try:
            consumer = Consumer(
                {
                    **conf,
                    "error_cb": lambda err: self.loop.error_cb(err),
                    "on_commit": lambda err, parts: self.loop.commit_cb(err, parts),
                },
                logger=librdkafka_log,
            )
            self.lag = LagTracker(
                conf,
                self.pipeline,
                self.health,
                settings.lag.refresh_interval,
                logger=librdkafka_log,
                # Discovery: a deleted topic's series go within a refresh or two.
                counts_max_age=(
                    settings.discover.refresh_interval if settings.discover is not None else 60.0
                ),
            )
        except (KafkaException, ValueError, TypeError) as exc:
            # librdkafka quotes rejected values ("Invalid value ... for ...").
            raise ConfigError(
                f"kafka: the client rejected the configuration: {REDACTOR(str(exc))}"
            ) from None
        self.loop = ConsumeLoop(
            consumer,
            self.pipeline,
            self.health,
            batch_size=settings.kafka.batch_size,
            poll_timeout=settings.kafka.poll_timeout,
            commit_interval=settings.kafka.commit_interval,
            readback_messages=settings.kafka.readback_messages,
            start_from_earliest=settings.kafka.start_from == "earliest",
            on_rebalance=self.lag.refresh_soon,
            hold_check=built.hold_reason,
            partition_count=self.lag.partition_count,
            on_stopping=self._announce_stop,
            between_batches=built.take_contracts,
            discover=built.discovery,
        )

    @property
    def metrics_url(self) -> str:
        return self.server.url() if self.server is not None else ""

    def stop(self) -> None:
        """Safe from a signal handler: the loop finishes its batch, commits, closes."""
        self.health.stopping = True
        self.loop.stop_requested.set()

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, frame: FrameType | None) -> None:
            # Python runs this on the main thread between two bytecodes, possibly
            # while that thread holds a non-reentrant lock: the log output's (so no
            # logging here; the loop announces the stop) or, for a repeated signal,
            # the stop Event's inside the first signal's stop(). Only the first
            # signal acts.
            if self._stop_signal is not None:
                return
            self._stop_signal = signal.Signals(signum).name
            # Later SIGTERMs are ignored outright: at interpreter exit Python puts
            # the default action back for signals with a Python handler (not for
            # ignored ones), so one arriving then would kill a process that had
            # already shut down cleanly, with status -15 instead of 0.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def _announce_stop(self) -> None:
        if self._stop_signal is not None:
            log.info("shutdown_requested", signal=self._stop_signal)

    def run(self) -> None:
        """Serve and consume until stop(); blocks the calling thread."""
        if self.server is not None:
            self.server.start()
        log.info(
            "tidemark_started",
            metrics=self.metrics_url,
            products=[p.name for p in self.settings.products],
            config=loggable(self.settings),
        )
        self.lag.start()
        for watcher in self.built.watchers.values():
            watcher.start()
        started = time.monotonic()
        try:
            self.loop.run()
        finally:
            for watcher in self.built.watchers.values():
                watcher.stop(timeout=1.0)
            self.lag.stop()
            if self.server is not None:
                self.server.stop()
            if self.built.resolver is not None:
                self.built.resolver.close()
            log.info("tidemark_stopped", uptime_seconds=round(time.monotonic() - started, 1))


def run(settings: Settings) -> int:
    """`tidemark run`: consume until SIGTERM/SIGINT; returns the exit code."""
    if settings.kafka.workers > 1:
        from monitor.runtime.workers import run_workers

        return run_workers(settings)
    monitor = Monitor(settings)
    monitor.install_signal_handlers()
    monitor.run()
    return 0
