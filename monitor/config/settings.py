"""The whole configuration and how it is loaded: one YAML file plus TIDEMARK_*
environment overrides. Errors name the file, the key (with its line) and what is
wrong, so a bad config fails at start-up rather than mid-stream."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.completeness.config import SharingConfig
from monitor.config.clients import KafkaConfig, SchemaRegistryConfig
from monitor.config.discover import DiscoverConfig
from monitor.config.products import ProductConfig, SubjectRef
from monitor.config.service import LagConfig, LoggingConfig, ServerConfig
from monitor.errors import ConfigError
from monitor.redact import mask_patterns
from monitor.yamlpaths import KeyPath, dotted, line_index, line_of

CONFIG_ENV = "TIDEMARK_CONFIG"


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
