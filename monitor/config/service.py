"""The daemon's own service settings: HTTP endpoint, logging, lag probe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from monitor.config.section import Section
from monitor.durations import Seconds
from monitor.errors import ConfigError
from monitor.export.webconfig import load_web_config


class ServerConfig(Section):
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


class LoggingConfig(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class LagConfig(Section):
    refresh_interval: Seconds = 5.0
    stuck_after: Seconds = 60.0
