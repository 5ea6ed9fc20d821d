"""Schema look-up by Confluent schema id, through confluent-kafka's registry client.

Errors are split in two because they are handled differently: a schema that
does not exist is the producer's problem (unknown_schema), a registry that
cannot answer is ours (the event waits, nothing is counted). Look-ups run off
the poll loop (BackgroundLookups). Messages never carry credentials.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

import structlog
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from monitor.errors import TidemarkError

# Look-ups run on a few worker threads (BackgroundLookups), never in the poll loop; a
# timeout still matters, or a hanging registry would keep the workers forever: the
# client's own defaults are no timeout and 3 retries with exponential backoff.
_DEFAULTS: dict[str, Any] = {"timeout": 5, "max.retries": 1, "retries.wait.ms": 250}
_SECRET_KEYS = (
    "basic.auth.user.info",
    "bearer.auth.token",
    "bearer.auth.client.secret",
    "ssl.key.password",
)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_MAX_CAUSE = 300

log = structlog.get_logger("tidemark.registry")


class RegistryError(TidemarkError):
    """A schema could not be obtained from the schema registry."""

    def __init__(self, schema_id: int, message: str) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class SchemaNotFound(RegistryError):  # noqa: N818 - name fixed by the interface
    """The registry answered: there is no (usable) schema with this id."""

    def __init__(self, schema_id: int, detail: str = "") -> None:
        super().__init__(
            schema_id,
            f"schema id {schema_id} is not in the schema registry{detail}; the producer "
            "wrote with a schema id this registry does not know (wrong registry URL?)",
        )


class NotAvroSchema(SchemaNotFound):
    """The id exists but names a JSON Schema or Protobuf schema, which Tidemark cannot read."""

    def __init__(self, schema_id: int, schema_type: str) -> None:
        super().__init__(schema_id, f" as an Avro schema (it is {schema_type})")
        self.schema_type = schema_type


class RegistryUnavailable(RegistryError):  # noqa: N818 - name fixed by the interface
    """The registry could not answer (refused, timed out, 5xx, auth failure...)."""

    def __init__(self, schema_id: int, cause: str) -> None:
        super().__init__(
            schema_id,
            f"schema registry could not be asked for schema id {schema_id}: {cause}",
        )
        self.cause = cause


class SchemaLookup(Protocol):
    def get_schema_str(self, schema_id: int) -> str:
        """Avro schema JSON for `schema_id`; raises SchemaNotFound or RegistryUnavailable."""
        ...


class ConfluentRegistryLookup:
    """SchemaLookup over confluent-kafka's SchemaRegistryClient (also its mock:// registry).

    `conf` is the client's own configuration (url, basic.auth.user.info, ...).
    With a mock:// URL the registry lives inside this client, so producers in the
    same process must register through `.client` (or pass their client in).
    """

    def __init__(self, conf: Mapping[str, Any] | None = None, *, client: Any = None) -> None:
        if (conf is None) == (client is None):
            raise ValueError("pass exactly one of conf (client configuration) or client")
        self._secrets: tuple[str, ...] = ()
        if client is None:
            assert conf is not None
            full = dict(conf)
            if not str(full.get("url", "")).startswith("mock://"):
                for key, value in _DEFAULTS.items():
                    full.setdefault(key, value)
            self._secrets = _secrets_of(full)
            try:
                client = _new_client(full)
            except Exception as exc:  # the client validates its conf in the constructor
                raise TidemarkError(
                    f"schema registry client configuration rejected: {self._redact(str(exc))}"
                ) from None
        self.client: Any = client
        self._counts = {"ok": 0, "not_found": 0, "error": 0}
        self._counts_lock = threading.Lock()  # look-ups run on several worker threads

    def counts(self) -> dict[str, int]:
        """Look-ups by result, for tidemark_schema_registry_lookups_total{result}."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, result: str) -> None:
        with self._counts_lock:
            self._counts[result] += 1

    def get_schema_str(self, schema_id: int) -> str:
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and str(exc.error_code).startswith("404"):
                self._count("not_found")
                raise SchemaNotFound(schema_id) from None
            self._count("error")
            raise RegistryUnavailable(schema_id, self._cause(exc)) from None
        except Exception as exc:  # httpx transport errors, OAuth errors, bugs: all "can't ask"
            self._count("error")
            raise RegistryUnavailable(schema_id, self._cause(exc)) from None
        schema_type = schema.schema_type or "AVRO"
        if schema_type.upper() != "AVRO":
            self._count("not_found")
            raise NotAvroSchema(schema_id, schema_type)
        self._count("ok")
        return str(schema.schema_str)

    def _cause(self, exc: BaseException) -> str:
        text = self._redact(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, SchemaRegistryError) and exc.http_status_code == 404:
            text += " (a 404 without a registry error code usually means a wrong registry URL)"
        if len(text) > _MAX_CAUSE:
            text = text[: _MAX_CAUSE - 3] + "..."
        return text

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_USERINFO.sub("***@", text)


def _secrets_of(conf: Mapping[str, Any]) -> tuple[str, ...]:
    """Every configured value that must not appear in a message, longest first."""
    found: set[str] = set()
    for key in _SECRET_KEYS:
        value = conf.get(key)
        if isinstance(value, str) and value:
            found.add(value)
            _, sep, password = value.partition(":")
            if sep and password:
                found.add(password)
    for url in str(conf.get("url", "")).split(","):
        userinfo, at, _ = url.partition("://")[2].partition("@")
        if at:
            password = userinfo.partition(":")[2]
            found.update(s for s in (userinfo, password, unquote(password)) if s)
    return tuple(sorted(found, key=len, reverse=True))


def _new_client(conf: dict[str, Any]) -> Any:
    """Real client for http(s):// URLs, confluent-kafka's in-process registry for mock://."""
    factory = getattr(SchemaRegistryClient, "new_client", SchemaRegistryClient)
    return factory(conf)


class Lookup(StrEnum):
    """Where the answer for one schema id stands, as the poll loop sees it."""

    FOUND = "found"  # the schema text is known
    NOT_FOUND = "not_found"  # the registry answered: no such (Avro) schema; remembered a while
    PENDING = "pending"  # a look-up is queued or in flight, no failure yet
    UNREACHABLE = "unreachable"  # the last attempt could not reach the registry; retried later


@dataclass(frozen=True, slots=True)
class Resolution:
    state: Lookup
    schema_str: str | None = None  # set when FOUND


_PENDING = Resolution(Lookup.PENDING)
_NOT_FOUND = Resolution(Lookup.NOT_FOUND)
_UNREACHABLE = Resolution(Lookup.UNREACHABLE)


@dataclass(slots=True)
class _Failure:
    attempts: int
    retry_at: float


class BackgroundLookups:
    """Schema look-ups off the poll loop: a few worker threads, a bounded set of ids.

    Why: a registry that hangs or answers slowly must cost the events that need it
    (their partition waits), never the loop. `resolve` never blocks: it returns what
    is known and, when nothing is in flight and a look-up is due, queues one.
    Answers are remembered, each kind for a bounded count of ids: schemas (LRU),
    "not found" for `not_found_ttl`, and failures with exponential backoff from
    `first_backoff` to `max_backoff` so a dead registry is not hammered.
    """

    def __init__(
        self,
        lookup: SchemaLookup,
        *,
        workers: int = 4,
        max_pending: int = 256,
        max_remembered: int = 1024,
        not_found_ttl: float = 30.0,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
    ) -> None:
        self._lookup = lookup
        self._max_pending = max_pending
        self._max_remembered = max_remembered
        self._not_found_ttl = not_found_ttl
        self._first_backoff = first_backoff
        self._max_backoff = max(first_backoff, max_backoff)
        self._clock = clock
        self._executor = executor or _DaemonPool(workers)
        self._lock = threading.Lock()
        self._found: OrderedDict[int, str] = OrderedDict()
        self._not_found: dict[int, float] = {}  # id -> remembered until
        self._failures: OrderedDict[int, _Failure] = OrderedDict()
        self._in_flight: set[int] = set()
        self._up: bool | None = None  # None until the registry was first asked
        self._closed = False

    @property
    def registry_up(self) -> bool | None:
        """Whether the last answered look-up reached the registry; None before the first."""
        return self._up

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def resolve(self, schema_id: int) -> Resolution:
        """What is known about `schema_id` now; queues a look-up if one is due. Never blocks."""
        now = self._clock()
        with self._lock:
            known = self._known(schema_id, now)
            if known is not None:
                return known
            self._in_flight.add(schema_id)
        try:
            self._executor.submit(self._run, schema_id)
        except RuntimeError:  # shut down: nothing will answer, the partition stays held
            with self._lock:
                self._in_flight.discard(schema_id)
            return _PENDING
        with self._lock:  # an inline executor (tests) has answered already
            return self._known(schema_id, now) or _PENDING

    def _known(self, schema_id: int, now: float) -> Resolution | None:
        """The current answer, or None when a look-up should be queued (lock held)."""
        schema_str = self._found.get(schema_id)
        if schema_str is not None:
            self._found.move_to_end(schema_id)
            return Resolution(Lookup.FOUND, schema_str)
        until = self._not_found.get(schema_id)
        if until is not None:
            if until > now:
                return _NOT_FOUND
            del self._not_found[schema_id]
        failure = self._failures.get(schema_id)
        if schema_id in self._in_flight:
            return _PENDING if failure is None else _UNREACHABLE
        if failure is not None and failure.retry_at > now:
            return _UNREACHABLE
        if self._closed or len(self._in_flight) >= self._max_pending:
            return _PENDING if failure is None else _UNREACHABLE  # asked again on a later call
        return None

    def _run(self, schema_id: int) -> None:
        """One look-up on a worker thread; the answer is stored, never raised."""
        schema_str: str | None = None
        reached, cause = True, ""
        try:
            schema_str = self._lookup.get_schema_str(schema_id)
        except SchemaNotFound:
            pass
        except RegistryUnavailable as exc:
            reached = False
            cause = exc.cause
        except Exception as exc:  # a SchemaLookup that breaks its contract: still "can't ask"
            reached = False
            cause = type(exc).__name__
        now = self._clock()
        with self._lock:
            self._in_flight.discard(schema_id)
            was_up, self._up = self._up, reached
            if not reached:
                failure = self._failures.pop(schema_id, None) or _Failure(0, now)
                failure.attempts += 1
                backoff = self._first_backoff * 2 ** min(failure.attempts - 1, 16)
                failure.retry_at = now + min(backoff, self._max_backoff)
                self._failures[schema_id] = failure
                _bound(self._failures, self._max_pending)
            else:
                self._failures.pop(schema_id, None)
                if schema_str is None:
                    self._remember_not_found(schema_id, now)
                else:
                    self._found[schema_id] = schema_str
                    _bound(self._found, self._max_remembered)
        if was_up is not False and not reached:
            log.warning("schema_registry_unreachable", schema_id=schema_id, error=cause)
        elif was_up is False and reached:
            log.info("schema_registry_reachable", schema_id=schema_id)

    def _remember_not_found(self, schema_id: int, now: float) -> None:
        if len(self._not_found) >= self._max_remembered:
            for stale in [k for k, until in self._not_found.items() if until <= now]:
                del self._not_found[stale]
            if len(self._not_found) >= self._max_remembered:
                del self._not_found[next(iter(self._not_found))]
        self._not_found[schema_id] = now + self._not_found_ttl

    def close(self) -> None:
        """Stop taking look-ups; ones in flight end by their client timeout, unawaited."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


class _DaemonPool(Executor):
    """Worker threads that never delay process exit.

    Why not ThreadPoolExecutor: its threads are joined at interpreter exit, so a
    look-up hanging on a dead registry would hold a shutdown for the client timeout.
    The queue needs no limit of its own: BackgroundLookups bounds the ids in flight.
    """

    def __init__(self, workers: int) -> None:
        self._tasks: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ]
        self._tasks = queue.SimpleQueue()
        self._shutdown = False
        self._workers = workers
        self._started = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("keyword arguments are not supported")
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._started < self._workers:  # threads start on demand, like the stdlib's
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"schema-lookup-{self._started}", daemon=True
                ).start()
            self._tasks.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # stored on the future, as Executor promises
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            workers = self._started
        if cancel_futures:
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in range(workers):
            self._tasks.put(None)


def _bound(cache: OrderedDict[int, Any], limit: int) -> None:
    while len(cache) > limit:
        cache.popitem(last=False)
