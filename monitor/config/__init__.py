"""Configuration: one YAML file plus TIDEMARK_* environment overrides.

Only this package reads the config file or the environment. One module per concern:
`clients` (Kafka, registry: the secrets), `service` (HTTP, logging, lag probe),
`products` (one data product per topic), `discover` (every topic by pattern) and
`settings` (the whole, and how it is loaded and its errors reported).
"""

from monitor.config.clients import CONSUMER_DEFAULTS, KafkaConfig, SchemaRegistryConfig
from monitor.config.discover import INTERNAL_TOPICS, DiscoverConfig, DiscoverDefaults, OwnerRule
from monitor.config.products import (
    TOPIC_ONLY,
    ConformanceObjective,
    CorrectnessObjective,
    Encoding,
    FreshnessObjective,
    ProductConfig,
    SubjectRef,
)
from monitor.config.service import LagConfig, LoggingConfig, ServerConfig
from monitor.config.settings import CONFIG_ENV, Settings, load_settings, loggable, with_workers

__all__ = [
    "CONFIG_ENV",
    "CONSUMER_DEFAULTS",
    "INTERNAL_TOPICS",
    "TOPIC_ONLY",
    "ConformanceObjective",
    "CorrectnessObjective",
    "DiscoverConfig",
    "DiscoverDefaults",
    "Encoding",
    "FreshnessObjective",
    "KafkaConfig",
    "LagConfig",
    "LoggingConfig",
    "OwnerRule",
    "ProductConfig",
    "SchemaRegistryConfig",
    "ServerConfig",
    "Settings",
    "SubjectRef",
    "load_settings",
    "loggable",
    "with_workers",
]
