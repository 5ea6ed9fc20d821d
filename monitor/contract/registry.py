"""Schema look-up by Confluent schema id, through confluent-kafka's registry client.

Errors are split in two because they are handled differently: a schema that
does not exist is the producer's problem (unknown_schema), a registry that
cannot answer is ours (registry_unavailable). Messages never carry credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from monitor.errors import TidemarkError

# A registry that hangs must not stall the poll loop for long: the client's own
# defaults are no timeout and 3 retries with exponential backoff.
_DEFAULTS: dict[str, Any] = {"timeout": 5, "max.retries": 1, "retries.wait.ms": 250}
_SECRET_KEYS = (
    "basic.auth.user.info",
    "bearer.auth.token",
    "bearer.auth.client.secret",
    "ssl.key.password",
)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_MAX_CAUSE = 300


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
        self.lookups_ok = 0
        self.lookups_not_found = 0
        self.lookups_error = 0

    def counts(self) -> dict[str, int]:
        """Look-ups by result, for tidemark_schema_registry_lookups_total{result}."""
        return {
            "ok": self.lookups_ok,
            "not_found": self.lookups_not_found,
            "error": self.lookups_error,
        }

    def get_schema_str(self, schema_id: int) -> str:
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and str(exc.error_code).startswith("404"):
                self.lookups_not_found += 1
                raise SchemaNotFound(schema_id) from None
            self.lookups_error += 1
            raise RegistryUnavailable(schema_id, self._cause(exc)) from None
        except Exception as exc:  # httpx transport errors, OAuth errors, bugs: all "can't ask"
            self.lookups_error += 1
            raise RegistryUnavailable(schema_id, self._cause(exc)) from None
        schema_type = schema.schema_type or "AVRO"
        if schema_type.upper() != "AVRO":
            self.lookups_not_found += 1
            raise NotAvroSchema(schema_id, schema_type)
        self.lookups_ok += 1
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
