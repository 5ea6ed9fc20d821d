"""Kafka and schema-registry client settings: the only sections holding secrets, kept
in SecretStr and revealed only when the client is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from monitor.config.section import Section, refuse_plain_secrets
from monitor.durations import Seconds

# Consumer settings Tidemark ships with; `kafka.properties` overrides any of them.
# librdkafka's default fetch.queue.backoff.ms (1000 ms) stops fetching for a whole
# second whenever the local queue is full, which on any backlog caps a consumer
# that keeps up near 100-150k events/s; 10 ms resumes fetching as soon as the
# loop has drained a little (measured: bench/throughput.py, README "Performance").
CONSUMER_DEFAULTS: dict[str, str | int | float | bool] = {
    "fetch.queue.backoff.ms": 10,
}


class KafkaConfig(Section):
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
        refuse_plain_secrets(value, "kafka", "kafka.secret_properties (or sasl_password)")
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


class SchemaRegistryConfig(Section):
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
        refuse_plain_secrets(
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
