"""Configuration: one YAML file plus TIDEMARK_* environment overrides.

This is the only module that reads YAML or the environment. Errors name the
file, the key (with its line where the file has it) and what is wrong, so a bad
config fails at start-up rather than mid-stream.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.completeness.config import CompletenessConfig, SharingConfig
from monitor.contract.ruleconfig import RuleList, SampleRatio
from monitor.durations import Seconds
from monitor.errors import ConfigError
from monitor.export.webconfig import load_web_config
from monitor.redact import SECRET_WORD, looks_secret, mask_patterns
from monitor.sizes import ByteSize
from monitor.yamlpaths import KeyPath, dotted, line_index, line_of

CONFIG_ENV = "TIDEMARK_CONFIG"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Client keys (librdkafka's, the registry client's) whose values are secrets
# wherever they appear; sasl.oauthbearer.config is a compound "k=v k=v" string
# that may carry clientSecret=... .
_SECRET_KEY = re.compile(rf"({SECRET_WORD}|key\.pem|private\.key|oauthbearer\.config)", re.I)
# Keys naming where a secret is, not the secret itself (their values are still
# checked for credentials, e.g. a URL with userinfo).
_SECRET_KEY_EXEMPT = re.compile(r"\.(url|location|file|source|id)$", re.I)


def _refuse_plain_secrets(value: dict[str, Any], section: str, secret_home: str) -> None:
    """A secret in a map that is logged is refused with where to put it instead."""
    for key, item in value.items():
        if _SECRET_KEY.search(key) and not _SECRET_KEY_EXEMPT.search(key):
            raise ValueError(
                f"{key!r} holds a secret: put it under {secret_home} so it is never logged"
            )
        found = looks_secret(item) if isinstance(item, str) else None
        if found:
            raise ValueError(
                f"{key!r}: the value holds {found}: put the whole entry under "
                f"{secret_home} so it is never logged"
            )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Consumer settings Tidemark ships with; `kafka.properties` overrides any of them.
# librdkafka's default fetch.queue.backoff.ms (1000 ms) stops fetching for a whole
# second whenever the local queue is full, which on any backlog caps a consumer
# that keeps up near 100-150k events/s; 10 ms resumes fetching as soon as the
# loop has drained a little (measured: bench/throughput.py, README "Performance").
CONSUMER_DEFAULTS: dict[str, str | int | float | bool] = {
    "fetch.queue.backoff.ms": 10,
}


class KafkaConfig(_Model):
    """Client settings; anything librdkafka accepts passes through `properties`."""

    bootstrap_servers: str = "localhost:9092"
    group_id: str = "tidemark"
    client_id: str = "tidemark"
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)
    secret_properties: dict[str, SecretStr] = Field(default_factory=dict)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    poll_timeout: Seconds = 0.5
    commit_interval: Seconds = 1.0
    readback_messages: int = Field(default=1000, ge=0, le=1_000_000)
    # Where a group with no committed offset starts. "latest" (with the read-back
    # above) suits a monitor: history is not replayed as if it were late data.
    start_from: Literal["latest", "earliest"] = "latest"
    # Consumer processes in the group behind one /metrics (`run --workers`); 1: no children.
    workers: int = Field(default=1, ge=1, le=64)

    @field_validator("properties")
    @classmethod
    def _no_plain_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        _refuse_plain_secrets(value, "kafka", "kafka.secret_properties (or sasl_password)")
        return value

    def librdkafka(self) -> dict[str, Any]:
        """The client configuration, secrets revealed: pass it to librdkafka only."""
        conf: dict[str, Any] = {
            **CONSUMER_DEFAULTS,
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
        }
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.properties)
        conf.update({k: v.get_secret_value() for k, v in self.secret_properties.items()})
        return conf


class SchemaRegistryConfig(_Model):
    """Registry client settings; `secret_properties` holds bearer tokens, key passwords."""

    url: str | None = None
    basic_auth_user_info: SecretStr | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    secret_properties: dict[str, SecretStr] = Field(default_factory=dict)
    retry_after: Seconds = 30.0
    lookup_workers: int = Field(default=4, ge=1, le=32)

    @field_validator("properties")
    @classmethod
    def _no_plain_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        _refuse_plain_secrets(
            value,
            "schema_registry",
            "schema_registry.secret_properties (or basic_auth_user_info)",
        )
        return value

    def client_conf(self) -> dict[str, Any]:
        """SchemaRegistryClient configuration, secrets revealed: for the client only."""
        conf: dict[str, Any] = {"url": self.url, **self.properties}
        conf.update({k: v.get_secret_value() for k, v in self.secret_properties.items()})
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        return conf


class ServerConfig(_Model):
    """The HTTP endpoint: where it listens, how much bad weather it takes, TLS and auth."""

    bind_address: str = "0.0.0.0"
    port: int = Field(default=9308, ge=0, le=65535)
    liveness_limit: Seconds = 60.0
    # /violations keeps this many most recent violations per product (0: none kept).
    violations_per_product: int = Field(default=100, ge=0, le=10_000)
    max_connections: int = Field(default=64, ge=1, le=10_000)
    read_timeout: Seconds = 5.0
    write_timeout: Seconds = 10.0
    idle_timeout: Seconds = 30.0
    # Prometheus' web-config.yml format (TLS, basic auth); checked here so a bad
    # file fails start-up and `tidemark validate`, not the first scrape.
    web_config_file: Path | None = None

    @field_validator("read_timeout", "write_timeout", "idle_timeout")
    @classmethod
    def _timeout_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value

    @field_validator("web_config_file")
    @classmethod
    def _web_config_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                load_web_config(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class LoggingConfig(_Model):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class LagConfig(_Model):
    refresh_interval: Seconds = 5.0
    stuck_after: Seconds = 60.0


class FreshnessObjective(_Model):
    threshold: Seconds = 300.0
    target: float = Field(default=0.99, gt=0.0, lt=1.0)

    @field_validator("threshold")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("threshold must be more than 0 seconds")
        return value


class ConformanceObjective(_Model):
    target: float = Field(default=0.999, gt=0.0, lt=1.0)


class CorrectnessObjective(_Model):
    """Share of rule-checked events that pass every rule of the contract."""

    target: float = Field(default=0.999, gt=0.0, lt=1.0)


Encoding = Literal["avro-raw", "confluent", "avro-single-object", "none"]
# Topic-only mode: no decoding and no contract; the Kafka record timestamp is the event time.
TOPIC_ONLY: Encoding = "none"


class SubjectRef(_Model):
    """A contract registered in the schema registry: `{subject: ..., version: latest | N}`."""

    subject: str = Field(min_length=1, max_length=500)
    version: Literal["latest"] | Annotated[int, Field(ge=1)] = "latest"
    # How often a `latest` subject is asked for a newer version (off the hot path).
    check_interval: Seconds = 60.0

    @field_validator("check_interval")
    @classmethod
    def _interval_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value


class ProductConfig(_Model):
    """One data product: a topic with an owner, a contract and objectives."""

    name: str
    # owner and event_time may come from the contract's metadata or ODCS file instead
    # (monitor.contract.metadata.merge_settings at build time; the config wins).
    owner: str | None = None
    owner_email: str | None = None
    tier: str = "standard"
    description: str = ""
    topic: str
    encoding: Encoding
    # A file or a registry subject; required unless encoding is "none" (topic-only:
    # no contract, the Kafka timestamp as event time).
    contract: Path | SubjectRef | None = None
    odcs: Path | None = None
    writer_schemas: list[Path] = Field(default_factory=list)
    event_time: str | None = None
    rules: RuleList = Field(default_factory=list)
    rules_sample_ratio: SampleRatio = 1.0
    max_out_of_orderness: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_future_skew: Seconds = 60.0
    max_writer_schemas: int = Field(default=32, ge=1, le=1000)
    # Larger events are counted as payload_too_large without being decoded: a decoded
    # event can take ~200x its size in memory. 64 MiB is beyond any sane event.
    max_payload_bytes: ByteSize = Field(default=1024 * 1024, ge=16, le=64 * 1024 * 1024)
    freshness: FreshnessObjective = Field(default_factory=FreshnessObjective)
    conformance: ConformanceObjective = Field(default_factory=ConformanceObjective)
    correctness: CorrectnessObjective = Field(default_factory=CorrectnessObjective)
    completeness: CompletenessConfig | None = None
    # False: product-level series only (large topics, many discovered products).
    partition_series: bool = True
    # A dead-letter topic: any event arriving is worth an alert (TidemarkDeadLetterEvents).
    dead_letter: bool = False

    @field_validator("name", "tier", "owner")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"{value!r} must start with a letter or digit and use only letters, digits, "
                "'_', '.' and '-' (it becomes a metric label)"
            )
        return value

    @property
    def topic_only(self) -> bool:
        """No decoding, no contract: only the record's Kafka timestamp is read."""
        return self.encoding == TOPIC_ONLY

    @model_validator(mode="after")
    def _contract_unless_topic_only(self) -> ProductConfig:
        if self.topic_only:
            if self.contract is not None:
                raise ValueError(
                    "encoding 'none' (topic-only) decodes nothing: remove 'contract' or "
                    "choose the encoding the topic is written in"
                )
            if self.event_time not in (None, "kafka-timestamp"):
                raise ValueError(
                    "encoding 'none' (topic-only) reads no field: its event time is the "
                    "Kafka record timestamp ('kafka-timestamp' or leave event_time out)"
                )
            if self.completeness is not None and self.completeness.sequence is not None:
                raise ValueError(
                    "completeness.sequence reads fields of the event, which encoding 'none' "
                    "(topic-only) does not decode: use expected-volume completeness"
                )
            if self.rules or self.odcs is not None:
                raise ValueError(
                    "rules and odcs check decoded fields, which encoding 'none' (topic-only) "
                    "does not decode: choose the encoding the topic is written in"
                )
            if self.owner is None:
                raise ValidationError.from_exception_data(
                    "ProductConfig",
                    [InitErrorDetails(type="missing", loc=("owner",), input=None)],
                )
            return self
        if self.contract is None:
            raise ValueError(
                f"contract required for encoding {self.encoding!r} "
                "(only encoding 'none', topic-only mode, needs none)"
            )
        return self

    @model_validator(mode="after")
    def _owner_and_event_time_known(self) -> ProductConfig:
        """Without a contract that could say them (subject metadata, ODCS), they are required."""
        if isinstance(self.contract, Path) and self.odcs is None:
            missing = [k for k in ("owner", "event_time") if getattr(self, k) is None]
            if missing:
                raise ValidationError.from_exception_data(
                    "ProductConfig",
                    [InitErrorDetails(type="missing", loc=(k,), input=None) for k in missing],
                )
        return self

    @model_validator(mode="after")
    def _writer_schemas_need_single_object(self) -> ProductConfig:
        if self.writer_schemas and self.encoding != "avro-single-object":
            raise ValueError(
                "writer_schemas lists writer schemas by fingerprint and only applies to "
                f"encoding 'avro-single-object', not {self.encoding!r}"
            )
        return self


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


class OwnerRule(_Model):
    """Topics matching `pattern` (from the start of the name) belong to `owner`."""

    pattern: str
    owner: str
    tier: str | None = None

    _pattern_ok = field_validator("pattern")(_regex)

    @field_validator("owner", "tier")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"{value!r} must use only letters, digits, '_', '.' and '-'")
        return value


class DiscoverDefaults(_Model):
    """Settings of every discovered product unless an owner rule or the registry says more."""

    owner: str = "unowned"
    tier: str = "standard"
    max_out_of_orderness: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_future_skew: Seconds = 60.0
    freshness: FreshnessObjective = Field(default_factory=FreshnessObjective)
    conformance: ConformanceObjective = Field(default_factory=ConformanceObjective)
    completeness: CompletenessConfig | None = None
    partition_series: bool = True

    @field_validator("owner", "tier")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must use only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("completeness")
    @classmethod
    def _volume_only(cls, value: CompletenessConfig | None) -> CompletenessConfig | None:
        if value is not None and (value.sequence is not None or value.manifests is not None):
            raise ValueError(
                "discovered products can only use expected-volume completeness "
                "(sequence fields and manifest products are per-product settings)"
            )
        return value


# Never monitored by discovery unless a products: block names them: Kafka's internal
# topics (__consumer_offsets, __transaction_state), Connect/Streams/registry internals.
INTERNAL_TOPICS = (r"__.*", r"_schemas$", r"_confluent.*", r".*-changelog$", r".*-repartition$")


class DiscoverConfig(_Model):
    """Watch every topic matching `include`, without a products: block per topic."""

    # Regular expressions matched from the start of the topic name; the consumer
    # subscribes to them as patterns, so topics created later are picked up.
    include: list[str] = Field(default_factory=lambda: [".*"], min_length=1, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    exclude_internal: bool = True
    defaults: DiscoverDefaults = Field(default_factory=DiscoverDefaults)
    owners: list[OwnerRule] = Field(default_factory=list, max_length=1000)  # first match wins
    # Look up <topic>-value (TopicNameStrategy) in schema_registry, when configured.
    use_registry: bool = True
    # Event time of a registered contract: the first of these it has as a timestamp
    # logical type (the subject's tidemark.event_time property comes first); else
    # the Kafka record timestamp.
    event_time_fields: list[str] = Field(
        default_factory=lambda: ["event_time", "occurred_at", "created_at", "timestamp", "ts"],
        max_length=100,
    )
    # Discovered topics matching these are dead-letter topics (dead_letter: true).
    dead_letter_patterns: list[str] = Field(
        default_factory=lambda: [r".*[._-](dlq|dead[._-]?letters?)$"], max_length=100
    )
    # Bound on discovered products; topics beyond it are counted and logged once.
    max_products: int = Field(default=2000, ge=1, le=100_000)
    # How soon a new (or deleted) topic is noticed: librdkafka re-reads the cluster's
    # topics this often (topic.metadata.refresh.interval.ms, 5 min by default).
    refresh_interval: Seconds = 30.0

    @field_validator("refresh_interval")
    @classmethod
    def _refresh_positive(cls, value: float) -> float:
        if not 0.1 <= value <= 3600:
            raise ValueError("must be between 0.1 s and 1 h")
        return value

    @field_validator("include", "exclude", "dead_letter_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [_regex(v) for v in value]


class Settings(BaseSettings):
    """The whole configuration; env (TIDEMARK_SECTION__KEY) overrides the file."""

    model_config = SettingsConfigDict(
        env_prefix="TIDEMARK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    schema_registry: SchemaRegistryConfig = Field(default_factory=SchemaRegistryConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    lag: LagConfig = Field(default_factory=LagConfig)
    products: list[ProductConfig] = Field(default_factory=list)
    discover: DiscoverConfig | None = None
    completeness_sharing: SharingConfig = Field(default_factory=SharingConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)

    def secret_values(self) -> list[str]:
        """Every configured secret, revealed: for registering with the log redactor only."""
        secrets: list[SecretStr | None] = [
            self.kafka.sasl_password,
            *self.kafka.secret_properties.values(),
            self.schema_registry.basic_auth_user_info,
            *self.schema_registry.secret_properties.values(),
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        if self.schema_registry.url and "@" in self.schema_registry.url:
            values.append(self.schema_registry.url)  # redact derives the userinfo
        return values

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if not self.products and self.discover is None:
            raise ValueError(
                "nothing to monitor: add products (one block per topic) or a discover: "
                "section (every topic matching its patterns)"
            )
        names: set[str] = set()
        topics: dict[str, str] = {}
        for i, product in enumerate(self.products):
            if product.name in names:
                raise ValueError(f"products[{i}].name: {product.name!r} is used twice")
            names.add(product.name)
            if product.topic in topics:
                raise ValueError(
                    f"products[{i}].topic: {product.topic!r} is already monitored by product "
                    f"{topics[product.topic]!r}; one product per topic"
                )
            topics[product.topic] = product.name
            if isinstance(product.contract, SubjectRef) and not self.schema_registry.url:
                raise ValueError(
                    f"products[{i}] ({product.name}) reads its contract from subject "
                    f"{product.contract.subject!r}, which needs schema_registry.url"
                )
            if product.encoding == "confluent" and not self.schema_registry.url:
                raise ValueError(
                    f"products[{i}] ({product.name}) uses encoding 'confluent', which needs "
                    "schema_registry.url"
                )
        return self


def loggable(settings: Settings) -> dict[str, Any]:
    """The settings as logged at start-up: secrets masked, URL credentials removed."""
    data = settings.model_dump(mode="json", exclude={"products"})

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return mask_patterns(value)
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return value

    masked: dict[str, Any] = mask(data)
    return masked


def _format_errors(path: Path, exc: ValidationError, lines: dict[KeyPath, int]) -> str:
    out = [f"{path}: invalid configuration ({exc.error_count()} problem(s))"]
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        key = dotted(loc)
        line = line_of(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the config reference in README.md)"
        elif err["type"] == "missing":
            message = "required key is missing"
        out.append(f"  {where}: {key or '(top level)'}: {message}")
    return "\n".join(out)


def load_settings(path: Path | str | None = None) -> Settings:
    """Read the file (argument or TIDEMARK_CONFIG), apply env overrides, validate."""
    raw_path = path or os.environ.get(CONFIG_ENV)
    if not raw_path:
        raise ConfigError(f"no configuration file: pass --config FILE or set {CONFIG_ENV}")
    config_path = Path(raw_path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read configuration: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{config_path}:{mark.line + 1}" if mark else str(config_path)
        # Not str(exc): it quotes the offending line, which may hold a secret.
        problem = getattr(exc, "problem", None) or type(exc).__name__
        context = getattr(exc, "context", None)
        column = f" (column {mark.column + 1})" if mark else ""
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError(f"{where}: not valid YAML{column}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping of sections")
    base = config_path.resolve().parent
    server = data.get("server")
    if isinstance(server, dict) and isinstance(server.get("web_config_file"), str):
        server["web_config_file"] = str(base / server["web_config_file"])
    for product in data.get("products") or []:
        if isinstance(product, dict):
            _resolve_paths(product, base)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(config_path, exc, line_index(text))) from None


def _resolve_paths(product: dict[str, Any], base: Path) -> None:
    """Contract paths are relative to the config file, not the working directory."""
    for key in ("contract", "odcs"):
        if isinstance(product.get(key), str):
            product[key] = str(base / product[key])
    writers = product.get("writer_schemas")
    if isinstance(writers, list):
        product["writer_schemas"] = [str(base / w) if isinstance(w, str) else w for w in writers]


def with_workers(settings: Settings, workers: int) -> Settings:
    """`run --workers N` overrides kafka.workers, validated like the file's value."""
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers: must be between 1 and 64, got {workers}")
    kafka = settings.kafka.model_copy(update={"workers": workers})
    return settings.model_copy(update={"kafka": kafka})
