"""Wiring: settings → pipeline (runtime/build.py) → loop, server, lag tracker, signals."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException
from prometheus_client.registry import CollectorRegistry

from monitor.config import Settings, loggable
from monitor.contract.registry import SchemaLookup
from monitor.errors import ConfigError
from monitor.export.collector import TidemarkCollector, build_registry
from monitor.export.server import Limits, MetricsServer
from monitor.export.violations import violations_json
from monitor.export.webconfig import load_web_config
from monitor.logs import LibrdkafkaLogger
from monitor.redact import REDACTOR
from monitor.runtime.build import build_pipeline, report_not_evaluated
from monitor.runtime.health import HealthState
from monitor.runtime.lag import LagTracker
from monitor.runtime.loop import ConsumeLoop
from monitor.runtime.sharing import Sharing, shareable

log = structlog.get_logger("tidemark")


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
                    expected_volume=setup.expected_volume,  # what an ODCS rowCount became
                )
            report_not_evaluated(setup.config.name, list(setup.not_evaluated))
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
            # No clients, no topic when no product judges windows.
            sharing = settings.completeness_sharing
            # Discovered products judge windows when the defaults give them volume.
            discovers_windows = (
                settings.discover is not None
                and settings.discover.defaults.completeness is not None
            )
            self.sharing = (
                Sharing(
                    sharing,
                    conf,
                    self.pipeline,
                    logger=librdkafka_log,
                    discovers_windows=discovers_windows,
                )
                if sharing.enabled and (shareable(self.pipeline) or discovers_windows)
                else None
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
            created_since_start=self.lag.created_since_start,
            offset_bounds=self.lag.bounds,
            on_stopping=self._announce_stop,
            between_batches=built.take_contracts,
            discover=built.discovery,
            sharing=self.sharing,
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
        if self.sharing is not None:
            self.sharing.start()
        for watcher in self.built.watchers.values():
            watcher.start()
        started = time.monotonic()
        try:
            self.loop.run()
        finally:
            for watcher in self.built.watchers.values():
                watcher.stop(timeout=1.0)
            self.lag.stop()
            if self.sharing is not None:
                self.sharing.stop()
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
