"""Contracts that live in the schema registry: a subject version, its metadata and rules.

A product may name a registry subject instead of an .avsc file:
`{subject: shop.orders.v1-value, version: latest | 3}`. `SubjectSource.fetch()`
reads it through confluent-kafka's own `SchemaRegistryClient` and model classes and
returns a `SubjectContract`: the reader schema as a `Contract`, the version and
global id, `metadata.properties` (and the product settings they carry, see
`monitor.contract.metadata`) and `ruleSet.domainRules` as plain `DomainRule`s.
Migration and encoding rules are not read: they transform data between versions
or encrypt fields, which a read-only monitor has no use for.

`SubjectWatcher` follows a `latest` subject off the hot path: a daemon thread (or
a caller's timer running `check()`) asks the registry every `interval` seconds and
keeps the newest acceptable version for the poll loop to `take()`, a lock-guarded
swap that never waits on the network. A candidate is refused, reported once and
the current version kept when the registry cannot answer, the subject or version
is gone, the schema is not Avro, uses references, is not valid Avro, carries bad
Tidemark properties, or is INCOMPATIBLE: when the new schema as reader cannot read
data written with the version in use, switching would turn every event still
written the old way into a conformance failure, so that is for a human to decide.

`get_latest_version` is not used for the check: the client caches its answer with
no expiry unless `cache.latest.ttl.sec` is set, so it would never see a new version;
`get_version(subject, "latest")` always asks the registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from confluent_kafka.schema_registry.error import SchemaRegistryError

from monitor.contract.metadata import settings_from_properties
from monitor.contract.model import Contract, Verdict, classify
from monitor.contract.registry import ConfluentRegistryLookup
from monitor.errors import ContractError

log = structlog.get_logger("tidemark.contract.subject")

Version = int | Literal["latest"]
# Why a version could not be used, as a metric label / log field.
ProblemKind = Literal[
    "unavailable",  # the registry could not answer (refused, timeout, 5xx, auth)
    "not_found",  # subject or version does not exist (or was deleted)
    "not_avro",
    "references",  # Avro with schema references: not one self-contained schema
    "invalid_schema",
    "invalid_metadata",
    "incompatible",  # cannot read data written with the version in use
]
_MAX_CAUSE = 300


class SubjectError(ContractError):
    """A registry subject version cannot be used as the contract; `kind` says why."""

    def __init__(self, subject: str, version: Version, kind: ProblemKind, detail: str) -> None:
        super().__init__(f"subject {subject} version {version}: {detail}")
        self.subject, self.version, self.kind, self.detail = subject, version, kind, detail


@dataclass(frozen=True, slots=True)
class DomainRule:
    """One `ruleSet.domainRules` entry as plain data (Confluent's JSON names in comments)."""

    name: str
    kind: str  # CONDITION | TRANSFORM
    mode: str  # WRITE | READ | WRITEREAD | ...
    type: str  # CEL | CEL_FIELD | JSONATA | ...
    expr: str
    params: dict[str, str] = field(default_factory=dict)
    on_success: str | None = None  # onSuccess
    on_failure: str | None = None  # onFailure: NONE | ERROR | DLQ
    disabled: bool = False
    tags: tuple[str, ...] = ()
    doc: str | None = None

    @classmethod
    def from_model(cls, rule: Any) -> DomainRule:
        """From confluent-kafka's `Rule`; its enums become their string values."""
        return cls(
            name=rule.name or "",
            kind=str(rule.kind) if rule.kind is not None else "",
            mode=str(rule.mode) if rule.mode is not None else "",
            type=rule.type or "",
            expr=rule.expr or "",
            params=dict(rule.params.params) if rule.params is not None else {},
            on_success=rule.on_success,
            on_failure=rule.on_failure,
            disabled=bool(rule.disabled),
            tags=tuple(rule.tags or ()),
            doc=rule.doc,
        )


@dataclass(frozen=True, slots=True)
class SubjectContract:
    subject: str
    version: int
    schema_id: int
    contract: Contract
    properties: dict[str, str]  # metadata.properties, as registered
    settings: dict[str, Any]  # product settings those properties carry (metadata.py)
    domain_rules: tuple[DomainRule, ...]
    registered: Any = field(repr=False, compare=False)  # confluent-kafka's RegisteredSchema

    @property
    def where(self) -> str:
        return f"subject {self.subject} version {self.version}"


class SubjectSource:
    """Reads one subject version through a `SchemaRegistryClient` (or anything alike).

    `describe` turns a client exception into a message without secrets; `from_conf`
    wires the one `ConfluentRegistryLookup` uses (same timeouts, same redaction).
    """

    def __init__(
        self,
        client: Any,
        subject: str,
        version: Version = "latest",
        *,
        describe: Callable[[BaseException], str] | None = None,
    ) -> None:
        if version != "latest" and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValueError(f"version must be 'latest' or a positive integer, got {version!r}")
        if isinstance(version, int) and version < 1:
            raise ValueError(f"version must be 'latest' or a positive integer, got {version!r}")
        self.client = client
        self.subject = subject
        self.version: Version = version
        self._describe = describe or _describe

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any], subject: str, version: Version) -> SubjectSource:
        lookup = ConfluentRegistryLookup(conf)
        return cls(lookup.client, subject, version, describe=lookup._cause)

    def fetch(self, version: Version | None = None) -> SubjectContract:
        """The subject at `version` (default: this source's); raises SubjectError."""
        wanted = self.version if version is None else version
        try:
            # get_version always asks for "latest"; get_latest_version would cache it forever.
            registered = self.client.get_version(self.subject, wanted)
        except SchemaRegistryError as exc:
            # 40401/40402: subject/version not found; 40400 is what confluent-kafka's own
            # mock:// registry answers for a missing subject (the demo's registry). A 404
            # without a registry code stays "unavailable": usually a wrong URL.
            if exc.http_status_code == 404 and exc.error_code in (40400, 40401, 40402):
                raise SubjectError(
                    self.subject, wanted, "not_found", f"not in the schema registry: {exc}"
                ) from None
            raise self._unavailable(wanted, exc) from None
        except Exception as exc:  # transport errors, OAuth errors: the registry cannot answer
            raise self._unavailable(wanted, exc) from None
        return self._build(wanted, registered)

    def _unavailable(self, wanted: Version, exc: BaseException) -> SubjectError:
        cause = self._describe(exc)
        return SubjectError(self.subject, wanted, "unavailable", f"registry unavailable: {cause}")

    def _build(self, wanted: Version, registered: Any) -> SubjectContract:
        version = int(registered.version)
        schema = registered.schema
        fail: Callable[[ProblemKind, str], SubjectError] = lambda kind, detail: SubjectError(  # noqa: E731
            self.subject, version, kind, detail
        )
        schema_type = (schema.schema_type or "AVRO").upper()
        if schema_type != "AVRO":
            raise fail("not_avro", f"is a {schema_type} schema; Tidemark reads Avro only")
        if schema.references:
            names = ", ".join(str(r.name) for r in schema.references)
            raise fail(
                "references",
                f"uses schema references ({names}); Tidemark needs one self-contained "
                "Avro schema (inline the referenced types or use a contract file)",
            )
        try:
            avro = json.loads(schema.schema_str or "")
        except json.JSONDecodeError as exc:
            raise fail("invalid_schema", f"schema is not valid JSON: {exc}") from None
        path = Path(f"registry:{self.subject}/versions/{version}")
        try:
            contract = Contract.from_schema(avro, path)
        except ContractError as exc:
            raise fail("invalid_schema", str(exc)) from None
        meta = schema.metadata
        properties = dict(meta.properties.properties) if meta and meta.properties else {}
        try:
            settings = settings_from_properties(
                properties, f"subject {self.subject} version {version}"
            )
        except ContractError as exc:
            raise fail("invalid_metadata", str(exc)) from None
        rules = schema.rule_set.domain_rules if schema.rule_set is not None else None
        return SubjectContract(
            subject=self.subject,
            version=version,
            schema_id=int(registered.schema_id),
            contract=contract,
            properties=properties,
            settings=settings,
            domain_rules=tuple(DomainRule.from_model(r) for r in rules or ()),
            registered=registered,
        )


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_CAUSE else text[: _MAX_CAUSE - 3] + "..."


@dataclass(frozen=True, slots=True)
class CheckResult:
    outcome: Literal["unchanged", "switched", "refused"]
    contract: SubjectContract  # the version now current (the new one when switched)
    problem: SubjectError | None = None


class SubjectWatcher:
    """Follows a `latest` subject; the poll loop calls `take()` to get a new version.

    Run `start()` for a daemon thread checking every `interval` seconds, or call
    `check()` from your own timer. `on_switch` and `on_problem` (optional) are called
    from the checking thread; a problem is reported once until it changes.
    """

    def __init__(
        self,
        source: SubjectSource,
        current: SubjectContract,
        *,
        interval: float = 60.0,
        on_switch: Callable[[SubjectContract], None] | None = None,
        on_problem: Callable[[SubjectError], None] | None = None,
    ) -> None:
        if source.version != "latest":
            raise ValueError(
                f"subject {source.subject} is pinned to version {source.version}; "
                "only a 'latest' subject can move"
            )
        if interval <= 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval}")
        self.source, self.interval = source, interval
        self._on_switch, self._on_problem = on_switch, on_problem
        self._lock = threading.Lock()
        self._current = current  # newest accepted
        self._in_use = current  # last handed to the caller (or the initial one)
        self._pending: SubjectContract | None = None
        self._problem_key: tuple[str, object, object] | None = None
        self.checks = self.switches = self.failures = 0
        self.last_problem: SubjectError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> SubjectContract:
        with self._lock:
            return self._current

    def take(self) -> SubjectContract | None:
        """The newest accepted version not yet taken, or None; never touches the network."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                self._in_use = pending
            return pending

    def check(self) -> CheckResult:
        """Ask the registry once; never raises (problems are returned and reported)."""
        with self._lock:
            current, in_use = self._current, self._in_use
        self.checks += 1
        try:
            found = self.source.fetch("latest")
            if (found.version, found.schema_id) == (current.version, current.schema_id):
                self._problem_key = None
                return CheckResult("unchanged", current)
            for used in {id(current): current, id(in_use): in_use}.values():
                verdict, reasons = classify(found.contract, used.contract.schema)
                if verdict is Verdict.INCOMPATIBLE:
                    raise SubjectError(
                        found.subject,
                        found.version,
                        "incompatible",
                        f"cannot read data written with version {used.version} "
                        f"({'; '.join(reasons)}); keeping version {current.version}",
                    )
        except SubjectError as exc:
            return self._refuse(current, exc)
        except Exception as exc:  # a bug must not end the watch; report it like a problem
            return self._refuse(
                current, SubjectError(self.source.subject, "latest", "unavailable", _describe(exc))
            )
        with self._lock:
            self._current = found
            self._pending = found
        self.switches += 1
        self._problem_key = None
        log.info(
            "contract_version_found",
            subject=found.subject,
            version=found.version,
            schema_id=found.schema_id,
            previous_version=current.version,
        )
        self._call(self._on_switch, found)
        return CheckResult("switched", found)

    def _refuse(self, current: SubjectContract, problem: SubjectError) -> CheckResult:
        self.failures += 1
        self.last_problem = problem
        # An outage is one problem however its message varies from check to check.
        detail = "" if problem.kind == "unavailable" else problem.detail
        key = (problem.kind, problem.version, detail)
        if key != self._problem_key:
            self._problem_key = key
            log.warning(
                "contract_version_refused",
                subject=problem.subject,
                version=problem.version,
                kind=problem.kind,
                error=str(problem),
                kept_version=current.version,
            )
            self._call(self._on_problem, problem)
        return CheckResult("refused", current, problem)

    def _call(self, callback: Callable[[Any], None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception as exc:
            log.error("contract_watch_callback_failed", error=_describe(exc))

    # --- background thread ----------------------------------------------------------
    def start(self) -> SubjectWatcher:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"subject-watch-{self.source.subject}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop checking; waits up to `timeout` for a registry call in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
