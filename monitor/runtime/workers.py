"""`tidemark run --workers N`: N consumer processes behind one /metrics.

Why: one Python process uses one core. Each worker is a full Tidemark instance
(loop, lag tracker, commits) in the same consumer group, without an HTTP
server; the parent owns /metrics, /healthz and /readyz. On a scrape the parent
asks every worker for its snapshot over a pipe and merges them
(monitor/export/merge.py) into what one process owning every partition would
export, rendered by the same catalogue. The parent supervises: a worker that
exits is restarted with backoff (its series are absent meanwhile); too many
exits in a short time stop the daemon with an error, for the orchestrator to
see. SIGTERM to the parent stops every worker the normal way (each commits).
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog
from prometheus_client.core import Metric

from monitor.config import Settings, loggable
from monitor.export.catalogue import METRICS
from monitor.export.collector import _family, build_registry, render
from monitor.export.exposition import SnapshotCollector
from monitor.export.merge import SnapshotMerger, merge_process
from monitor.export.snapshot import Snapshot
from monitor.redact import REDACTOR
from monitor.runtime.health import HealthState

log = structlog.get_logger("tidemark")

SNAPSHOT_TIMEOUT = 5.0  # a worker's batch holds its lock ≤ ~1 s; then it answers from cache
HEALTH_EVERY = 0.5  # seconds between health questions to each worker
HEALTH_TIMEOUT = 2.0
START_TOGETHER_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0  # per worker, to finish its batch and commit
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
MAX_EXITS = 5  # exits of one worker within EXIT_WINDOW before the daemon gives up
EXIT_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    at: float  # parent's wall clock when the answer arrived
    alive: bool
    not_ready: str | None  # the worker's reason, None when ready


# --- the worker side ---------------------------------------------------------


def worker_main(
    settings: Settings, index: int, conn: Connection, start_together: Any = None
) -> None:
    """Entry point of a worker process (spawned: no threads or clients inherited).

    The first workers wait for each other (`start_together`, a Barrier) before
    joining the group: one that joined alone would take every partition and,
    at the rebalance the next one causes, hand over events it counted but
    could not commit yet, to be counted again.
    """
    from monitor.logs import configure_logging
    from monitor.runtime.app import Monitor

    configure_logging(settings.logging.format, settings.logging.level)
    structlog.contextvars.bind_contextvars(worker=index)
    monitor = Monitor(settings, serve=False)
    monitor.install_signal_handlers()
    if start_together is not None:
        try:
            start_together.wait(START_TOGETHER_TIMEOUT)
        except threading.BrokenBarrierError:
            log.warning("worker_started_alone")
    threading.Thread(target=_answer, args=(monitor, conn), name="parent-pipe", daemon=True).start()
    monitor.run()


def _answer(monitor: Any, conn: Connection) -> None:
    """Answer the parent's questions; the parent gone (EOF) means stop."""
    while True:
        try:
            request_id, kind = conn.recv()
        except (EOFError, OSError):
            log.warning("worker_parent_gone")
            monitor.stop()
            return
        now = time.time()
        answer: object
        if kind == "snapshot":
            answer = monitor.collector._snapshot(now)
        elif kind == "violations":
            from monitor.export.violations import violations_of

            answer = violations_of(monitor.pipeline)
        else:
            answer = (monitor.health.alive(now), monitor.health.not_ready_reason(now))
        try:
            conn.send((request_id, answer))
        except (BrokenPipeError, OSError):
            monitor.stop()
            return


# --- the parent side ---------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one question at a time
    health: WorkerHealth | None = None
    last: Snapshot | None = None  # last snapshot of the running process
    exits: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_EXITS))
    next_start: float = 0.0


class WorkerPool:
    """Starts, asks, restarts and stops the worker processes."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.slots = [_Slot(i) for i in range(count)]
        self._ctx = multiprocessing.get_context("spawn")
        self._ids = itertools.count()
        self._merger = SnapshotMerger()
        self._merge_lock = threading.Lock()
        self.cached_scrapes = 0
        self.restarts = 0
        self.stopping = threading.Event()
        self.failed: str | None = None  # why the pool gave up
        self._together: Any = None

    # -- lifecycle --

    def start(self) -> None:
        # Kept referenced: the children open it by name after start() returns.
        self._together = self._ctx.Barrier(len(self.slots))
        for slot in self.slots:
            self._spawn(slot, self._together)

    def _spawn(self, slot: _Slot, together: Any = None) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(self.settings, slot.index, child, together),
            name=f"tidemark-worker-{slot.index}",
        )
        process.start()
        child.close()
        with slot.lock:
            slot.process, slot.conn, slot.health, slot.last = process, parent, None, None
        log.info("worker_started", worker=slot.index, pid=process.pid)

    def supervise(self) -> None:
        """Until stop: restart exited workers, refresh every worker's health."""
        while not self.stopping.wait(HEALTH_EVERY):
            now = time.time()
            for slot in self.slots:
                if self.stopping.is_set():
                    return
                process = slot.process
                if process is not None and not process.is_alive():
                    self._exited(slot, process, now)
                if slot.process is None:
                    if self.failed is None and now >= slot.next_start:
                        self.restarts += 1
                        self._spawn(slot)
                    continue
                answer = self._ask(slot, "health", HEALTH_TIMEOUT)
                if answer is not None:
                    alive, reason = answer
                    slot.health = WorkerHealth(time.time(), alive, reason)

    def _exited(self, slot: _Slot, process: BaseProcess, now: float) -> None:
        with slot.lock:
            if slot.conn is not None:
                slot.conn.close()
            if slot.last is not None:
                with self._merge_lock:
                    self._merger.retire(slot.last)
            slot.process, slot.conn, slot.health, slot.last = None, None, None, None
        slot.exits.append(now)
        recent = [t for t in slot.exits if now - t < EXIT_WINDOW]
        delay = RESTART_BACKOFF[min(len(recent), len(RESTART_BACKOFF)) - 1]
        slot.next_start = now + delay
        log.error(
            "worker_exited",
            worker=slot.index,
            pid=process.pid,
            exit_code=process.exitcode,
            restart_in_seconds=delay,
        )
        if len(recent) >= MAX_EXITS:
            self.failed = (
                f"worker {slot.index} exited {len(recent)} times within {EXIT_WINDOW:.0f}s"
            )
            log.error("workers_gave_up", reason=self.failed)
            self.stopping.set()

    def stop(self) -> None:
        """SIGTERM every worker (each finishes its batch and commits), then wait."""
        self.stopping.set()
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker_stop_timeout", pid=process.pid)
                process.kill()
                process.join(5.0)
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.close()

    # -- questions --

    def _ask(self, slot: _Slot, kind: str, timeout: float) -> Any:
        """One question to one worker; None if it is not running or does not answer in time.

        Answers carry the question's id: a late answer to an earlier question is
        skipped rather than taken for this one's.
        """
        with slot.lock:
            conn = slot.conn
            if conn is None:
                return None
            request_id = next(self._ids)
            deadline = time.monotonic() + timeout
            try:
                conn.send((request_id, kind))
                while conn.poll(max(0.0, deadline - time.monotonic())):
                    answer_id, answer = conn.recv()
                    if answer_id == request_id:
                        return answer
            except (EOFError, OSError):
                return None
            return None

    def snapshot(self, now: float) -> Snapshot:
        """Every running worker's snapshot, merged; a slow one's previous copy is reused."""
        parts: list[Snapshot] = []
        owned: dict[str, int] = {}
        for slot in self.slots:
            got = self._ask(slot, "snapshot", SNAPSHOT_TIMEOUT)
            if isinstance(got, Snapshot):
                slot.last = got
            elif slot.last is not None and slot.process is not None:
                self.cached_scrapes += 1
                got = slot.last
            else:
                continue
            parts.append(got)
            owned[str(slot.index)] = sum(
                1 for v in got.products for p in v.partitions if not p.orphaned
            )
        process = merge_process(
            [p.process for p in parts], expected=len(self.slots), cached_scrapes=self.cached_scrapes
        )
        process.workers = owned
        process.worker_restarts = self.restarts
        with self._merge_lock:
            return self._merger.merge(now, parts, process)

    def violations(self) -> bytes:
        """/violations: every running worker's recent bad events, merged per product.

        Each worker owns some of a product's partitions, so a product's entries
        are the union, newest first, as many as one process keeps. A worker
        that does not answer in time is left out and the answer says so.
        """
        from monitor.export.violations import dump_violations

        kept = self.settings.server.violations_per_product
        merged: dict[str, Any] = {}
        answered = 0
        for slot in self.slots:
            got = self._ask(slot, "violations", SNAPSHOT_TIMEOUT)
            if not isinstance(got, dict):
                continue
            answered += 1
            for name, entry in got.items():
                into = merged.setdefault(name, {"topic": entry["topic"], "violations": []})
                into["violations"].extend(entry["violations"])
        for entry in merged.values():
            entry["violations"].sort(key=lambda v: v["timestamp_ms"], reverse=True)
            del entry["violations"][kept:]
        return dump_violations(merged, workers={"count": len(self.slots), "answered": answered})

    # -- health, from the supervisor's last answers --

    def alive(self, now: float, limit: float) -> bool:
        return all(
            s.health is not None and s.health.alive and now - s.health.at < limit
            for s in self.slots
        )

    def not_ready_reason(self, now: float, limit: float) -> str | None:
        for slot in self.slots:
            health = slot.health
            if health is None or now - health.at >= limit:
                return f"worker {slot.index} not running"
            if health.not_ready is not None:
                return f"worker {slot.index}: {health.not_ready}"
        return None


class PoolHealth(HealthState):
    """The parent's /healthz and /readyz: every worker alive, every worker ready."""

    pool: WorkerPool

    def alive(self, now: float) -> bool:
        return self.pool.alive(now, self.liveness_limit)

    def not_ready_reason(self, now: float) -> str | None:
        if self.stopping:
            return "shutting down"
        return self.pool.not_ready_reason(now, self.liveness_limit)


class PoolCollector(SnapshotCollector):
    """Renders the merged snapshot with the same catalogue as a single process."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def describe(self) -> Iterator[Metric]:
        for spec in METRICS:
            yield _family(spec)

    def snapshot(self) -> Snapshot:
        return self.pool.snapshot(time.time())

    def collect(self) -> Iterator[Metric]:
        return render(self.snapshot())


def run_workers(settings: Settings) -> int:
    """The parent of `tidemark run --workers N`; returns the exit code."""
    from monitor.runtime.app import build_server
    from monitor.runtime.build import build_pipeline

    REDACTOR.add(*settings.secret_values())
    built = build_pipeline(settings)  # a config or contract error stops here, not N times
    if built.resolver is not None:
        built.resolver.close()
    count = settings.kafka.workers
    pool = WorkerPool(settings, count)
    health = PoolHealth(liveness_limit=settings.server.liveness_limit)
    health.pool = pool
    registry = build_registry(PoolCollector(pool))
    probe = build_server(settings, registry, health, violations=pool.violations)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        health.stopping = True  # no logging in a signal handler (see Monitor)
        pool.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    probe.start()
    log.info(
        "tidemark_started",
        metrics=probe.url(),
        workers=count,
        products=[p.name for p in settings.products],
        config=loggable(settings),
    )
    started = time.monotonic()
    pool.start()
    try:
        pool.supervise()
    finally:
        health.stopping = True
        log.info("shutdown_requested", workers=count)
        pool.stop()
        probe.stop()
        log.info("tidemark_stopped", uptime_seconds=round(time.monotonic() - started, 1))
    if pool.failed is not None:
        log.error("tidemark_failed", error=pool.failed)
        return 1
    return 0
